"""ROCm-style `build` / `run` and base-image pinning, on the real dockerd and registry."""

from __future__ import annotations

import csv
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry, service_env


@pytest.fixture
def env() -> dict[str, str]:
    return service_env()


def mad_package(tmp_path: Path) -> Path:
    root = tmp_path / "MAD"
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", root,
                    ignore=shutil.ignore_patterns("madfile.yaml", "madengine.lock", ".madengine"))
    return root


def test_build_pushes_and_writes_the_manifest_then_run_uses_the_image(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    root = mad_package(tmp_path)
    code, out, err = run_cli("build", "--tags", "dummy,dummy_dir/quick", "--registry", registry.address,
                             "--additional-context", '{"gpu_vendor": "NONE", "guest_os": "UBUNTU"}', cwd=root, env=env)
    assert code == 0, out + err
    manifest = json.loads((root / "build_manifest.json").read_text())
    assert set(manifest) >= {"built_images", "built_models", "context", "credentials_required", "summary"}
    assert manifest["summary"]["successful_builds"]
    pushed = [i for i in manifest["built_images"].values() if i.get("registry_image")]
    assert pushed, manifest["built_images"]
    code, out, err = run_cli("run", "--tags", "dummy,dummy_dir/quick",
                             "--additional-context", '{"gpu_vendor": "NONE"}', cwd=root, env=env)
    assert code == 0, out + err
    assert "Plan: 0 to build" in out  # the image built above is reused: content-addressed
    rows = {r["model"]: r for r in csv.DictReader((root / "perf.csv").open())}
    assert rows["dummy"]["status"] == "SUCCESS" and rows["dummy"]["deployment_type"] == "docker"
    assert rows["dummy"]["docker_image"].startswith("madengine/dummy.ubuntu.none:")


def test_run_from_a_manifest_pulls_what_another_machine_built(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    builder = mad_package(tmp_path / "builder")
    with (builder / "docker" / "dummy.ubuntu.none.Dockerfile").open("a") as f:
        f.write(f"# an image of this test's own: {uuid.uuid4()}\n")  # removed below, used by no other test
    context = ["--additional-context", '{"gpu_vendor": "NONE", "guest_os": "UBUNTU"}']
    code, out, err = run_cli("build", "--tags", "dummy", "--registry", registry.address, *context,
                             cwd=builder, env=env)
    assert code == 0, out + err
    (built,) = [i for i in json.loads((builder / "build_manifest.json").read_text())["built_images"].values()]
    # Another machine: its own workspace, and an engine that never had the image.
    docker_client.images.remove(built["madengine"]["image_id"], force=True)
    runner = tmp_path / "runner"
    shutil.copytree(builder, runner, ignore=shutil.ignore_patterns(".madengine", "perf.csv"))
    code, out, err = run_cli("run", "--manifest-file", "build_manifest.json", *context, cwd=runner, env=env)
    assert code == 0, out + err
    assert f"+ pull {built['madengine']['address']} (never built; in the registry as sha256:" in out
    assert "Plan: 0 to build, 1 to pull, 1 to run, 1 unchanged." in out  # the push: already there
    assert docker_client.images.get(built["docker_image"]).labels["madengine.node"] == built["madengine"]["node_hash"]
    rows = list(csv.DictReader((runner / "perf.csv").open()))
    assert [(r["model"], r["status"]) for r in rows] == [("dummy", "SUCCESS")]
    code, out, _ = run_cli("run", "--manifest-file", "build_manifest.json", *context, cwd=runner, env=env)
    assert code == 0 and "Plan: 0 to build, 1 to run, 2 unchanged." in out  # pulled once, then recorded


def _push(docker_client: Any, registry: Registry, repo: str, label: str) -> str:
    """Push a new image (the base plus a label) as `repo`; its registry digest."""
    docker_client.images.build(fileobj=_dockerfile(f"FROM {registry.base_image}\nLABEL v={label}\n"),
                                          tag=repo, rm=True)
    docker_client.images.push(repo)
    return str(docker_client.images.get_registry_data(repo).id)


def _dockerfile(text: str) -> Any:
    import io

    return io.BytesIO(text.encode())


def test_base_images_are_pinned_and_updated_on_request(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    repo = f"localhost:5000/madengine/pin-{uuid.uuid4().hex[:8]}:1"
    first = _push(docker_client, registry, repo, "1")
    root = tmp_path / "p"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "m.Dockerfile").write_text(f"ARG BASE_DOCKER={repo}\nFROM $BASE_DOCKER\n")
    (root / "run.sh").write_text("echo 'performance: 1 x'\n")
    (root / "madfile.yaml").write_text("version: 1\nmodels: [{name: m, dockerfile: docker/m, scripts: run.sh}]\n"
                                       "targets: {box: {backend: docker}}\n")
    assert run_cli("lock", cwd=root, env=env).code == 0

    def pinned() -> tuple[str, str]:
        image = json.loads((root / "madengine.lock").read_text())["images"]["image:m@default"]
        return image["base"]["digest"], image["hash"]

    digest, image_hash = pinned()
    assert digest == first
    second = _push(docker_client, registry, repo, "2")
    assert second != first
    assert run_cli("lock", cwd=root, env=env).code == 0 and pinned() == (first, image_hash)  # pins are kept
    code, out, err = run_cli("lock", "--update", "image:m@default", cwd=root, env=env)
    assert code == 0, out + err
    assert pinned()[0] == second and pinned()[1] != image_hash
    code, out, _ = run_cli("plan", cwd=root, env=env)
    assert "+ build image:m@default" in out
