"""The issue's required scenarios, end to end through the CLI, on the real dockerd and registry."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry, service_env

RUN = """\
#!/bin/bash
for a in "$@"; do printf 'arg<%s>\\n' "$a"; done
[ -n "${SLEEP:-}" ] && sleep "$SLEEP"
echo "performance: ${PERF:-10.5} samples_per_second"
"""


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def make(root: Path, base: str, models: list[dict[str, Any]], extra: str = "") -> Path:
    """A MAD package with two images (docker/a, docker/b) and the given root models.

    Images are content-addressed: without a label of its own, every project here would build the same
    tags, and a test that removes its image (or the engine's cleanup of another) would remove it from
    under a test running at the same time ("image ... not found on target box")."""
    own = f"LABEL madengine.test={uuid.uuid4().hex}\n"
    write(root, {
        "models.json": json.dumps(models, indent=1),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\nLABEL image=a\n{own}",
        "docker/b.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\nLABEL image=b\n{own}",
        "scripts/m/run.sh": RUN,
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\n"
                        "contexts: {cpu: {gpu_vendor: NONE}}\ntargets: {box: {backend: docker}}\n" + extra,
    })
    return root


def model(name: str, image: str = "a", **fields: Any) -> dict[str, Any]:
    return {"name": name, "dockerfile": f"docker/{image}", "scripts": "scripts/m/run.sh", "n_gpus": "0",
            "owner": "", "training_precision": "", "tags": ["t"], "args": "", **fields}


def db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / ".madengine" / "state.db")


def statuses(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        rows = db(root).execute("SELECT address, status FROM attempts ORDER BY id").fetchall()
    except sqlite3.OperationalError:
        return out
    for address, status in rows:
        out.setdefault(address, []).append(status)
    return out


def containers(docker_client: Any, root: Path) -> list[Any]:
    """Containers of this test's workspace (they are labelled with its id)."""
    from madengine.backends.base import workspace_id

    workspace = workspace_id(root / ".madengine" / "state.db")
    return list(docker_client.containers.list(all=True, filters={"label": f"madengine.workspace={workspace}"}))


@pytest.fixture
def env() -> dict[str, str]:
    return service_env()


def test_apply_twice_then_nothing_to_do(run_cli: RunCli, tmp_path: Path, registry: Registry,
                                        docker_client: Any, env: dict[str, str]) -> None:
    root = make(tmp_path, registry.base_image, [model("m1"), model("m2", "b")])
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert "Plan: 2 to build, 2 to run, 0 unchanged." in out
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out
    code, out, _ = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0 and "No changes: everything is up to date." in out
    assert sum(len(v) for v in statuses(root).values()) == 4
    assert containers(docker_client, root) == []


def test_one_dockerfile_changed_rebuilds_one_image_and_reruns_its_jobs(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    root = make(tmp_path, registry.base_image, [model("m1"), model("m2"), model("m3", "b")])
    assert run_cli("apply", "--yes", cwd=root, env=env).code == 0
    with (root / "docker/b.ubuntu.Dockerfile").open("a") as f:
        f.write("LABEL changed=1\n")
    code, out, _ = run_cli("plan", "--changes-only", cwd=root, env=env)
    assert code == 0, out
    changes = [line for line in out.splitlines() if line[:1] in "+~"]
    assert changes == ["~ rebuild image:b.ubuntu@cpu (Dockerfile changed)",
                       "~ rerun job:m3@cpu/box#1 (image changed)"], out
    assert "Plan: 1 to build, 1 to run, 3 unchanged." in out


def test_an_image_deleted_by_hand_is_rebuilt(run_cli: RunCli, tmp_path: Path, registry: Registry,
                                             docker_client: Any, env: dict[str, str]) -> None:
    root = make(tmp_path, registry.base_image, [model("m1")])
    assert run_cli("apply", "--yes", cwd=root, env=env).code == 0
    tag = json.loads((root / "madengine.lock").read_text())["images"]["image:a.ubuntu@cpu"]["tag"]
    docker_client.images.remove(tag, force=True)
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 2
    assert "~ rebuild image:a.ubuntu@cpu (image gone from box (removed outside madengine))" in out
    assert "= up to date job:m1@cpu/box#1" in out  # the result stands: same content
    assert run_cli("apply", "--yes", cwd=root, env=env).code == 0
    docker_client.images.get(tag)


def _start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes", *args], cwd=root, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


# Kill points: (status, how many attempts with it) to wait for before SIGKILL.
KILL_POINTS = [("RUNNING", 1), ("SUCCESS", 1), ("RUNNING", 2), ("RUNNING", 3), ("SUCCESS", 2),
               ("RUNNING", 4), ("SUCCESS", 3), ("RUNNING", 5), ("SUCCESS", 4), ("SUCCESS", 5)]


def test_sigkill_at_ten_points_then_a_second_apply_finishes(
        tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    for i, (status, count) in enumerate(KILL_POINTS):
        root = make(tmp_path / f"k{i}", registry.base_image,
                    [model(f"m{j}", "a" if j < 3 else "b", env_vars={"SLEEP": "0.2"}) for j in range(5)])

        def reached(status: str = status, count: int = count, root: Path = root) -> bool:
            seen = [s for v in statuses(root).values() for s in v]
            return sum(s == status for s in seen) + (status == "RUNNING") * sum(s != "RUNNING" for s in seen) \
                >= count

        first = _start(root, env, "--parallelism", "2")
        _wait_for(reached)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        succeeded = {a for a, s in statuses(root).items() if s[-1] == "SUCCESS"}
        second = _start(root, env)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, f"kill point {i}: {out}{err}"
        final = statuses(root)
        for address in succeeded:  # nothing that had succeeded ran again
            assert final[address] == ["SUCCESS"], (i, address, final[address])
        assert len([a for a in final if a.startswith("job:")]) == 5
        assert all(v[-1] == "SUCCESS" for v in final.values()), (i, final)
        assert containers(docker_client, root) == [], f"kill point {i}: containers left behind"
        assert db(root).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_applies_at_once(run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any,
                             env: dict[str, str]) -> None:
    # The first apply's job runs until this test stops it: the second apply is refused while it holds the
    # workspace (it did not wait for it to finish), however slow the machine.
    root = make(tmp_path, registry.base_image, [model("m1", env_vars={"SLEEP": "600"})])
    first = _start(root, env)
    try:
        _wait_for(lambda: statuses(root).get("job:m1@cpu/box#1") == ["RUNNING"])  # its image built
        code, _, err = run_cli("apply", "--yes", cwd=root, env=env)
        assert first.poll() is None, "the first apply ended: the second could not have met its lock"
        assert code == 1 and f"pid {first.pid}" in err and "locked" in err
    finally:
        os.kill(first.pid, signal.SIGINT)  # Ctrl-C: the running job is stopped and recorded
        out, err = first.communicate(timeout=120)
    assert first.returncode == 130, out + err
    assert db(root).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert statuses(root)["job:m1@cpu/box#1"] == ["INTERRUPTED"]
    assert containers(docker_client, root) == []


def test_a_job_over_its_timeout(run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any,
                                env: dict[str, str]) -> None:
    root = make(tmp_path, registry.base_image,
                [model("slow", env_vars={"SLEEP": "60"}, timeout=2), model("quick")])
    code, out, err = run_cli("apply", "--yes", "--keep-going", cwd=root, env=env)
    assert code == 3, out + err
    final = statuses(root)
    assert final["job:slow@cpu/box#1"] == ["TIMEOUT"] and final["job:quick@cpu/box#1"] == ["SUCCESS"]
    assert containers(docker_client, root) == []


def test_hostile_names_args_and_params_reach_the_container_literally(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, env: dict[str, str]) -> None:
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker}); `touch {marker}` 'q' \"dq\" a\nb"
    name = "evil;$(touch_x)'q'"
    root = make(tmp_path / "p", registry.base_image, [model(name, args="--x " + shlex.quote(evil))],
                extra=f"runs: [{{models: [{json.dumps(name)}]}}]\n")
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace(
        "models: [{select: all}]", "models: [{select: all, params: {p: " + json.dumps("a;b $(id)") + "}}]"))
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert not marker.exists() and not (root / "touch_x").exists()
    log = next((root / ".madengine" / "logs").rglob("job_*.log")).read_text()
    assert f"arg<{evil}>" in log and "arg<a;b $(id)>" in log


def test_credentials_never_written_anywhere(run_cli: RunCli, tmp_path: Path, registry: Registry,
                                           docker_client: Any, env: dict[str, str]) -> None:
    secret = "s3cr3t-Value-9f2c"
    root = make(tmp_path, registry.base_image, [model("m1")],
                extra=f"registry: {registry.address}\n")
    (root / "credential.json").write_text(json.dumps({registry.address: {"username": "u", "password": secret}}))
    with (root / "docker" / "a.ubuntu.Dockerfile").open("a") as f:  # an image no other test pushed
        f.write(f"# {uuid.uuid4()}\n")
    creds = {**env, "MAD_DOCKERHUB_USER": "u", "MAD_DOCKERHUB_PASSWORD": secret}
    code, out, err = run_cli("plan", "-o", "plan.json", cwd=root, env=creds)
    assert code == 0, out + err
    code, out2, err2 = run_cli("apply", "plan.json", cwd=root, env=creds)
    assert code == 0, out2 + err2
    assert "+ push push:a.ubuntu@cpu" in out
    for text in (out, err, out2, err2):
        assert secret not in text
    for path in [*root.rglob("*")]:
        if path.is_file() and path.name != "credential.json":
            assert secret.encode() not in path.read_bytes(), path
    pushed = db(root).execute("SELECT digest FROM images WHERE digest IS NOT NULL").fetchall()
    assert pushed and pushed[0][0].startswith("sha256:")
