"""build_manifest.json: ROCm madengine's structure, from realized images and the jobs that use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from madengine.results.manifest import build_manifest, image_key, registry_image, write_build_manifest
from madengine.state.model import Attempt, ImageRecord, Status
from tests.unit.results.conftest import (
    IMAGE,
    IMAGE_HASH,
    TAG,
    attempt,
    build_attempt,
    image_record,
    job_address,
    job_inputs,
    perf,
)

IMAGES = {(IMAGE, "box"): image_record()}


def manifest_of(images: dict[tuple[str, str], ImageRecord], runs: list[Attempt], registry: str | None
                ) -> dict[str, Any]:
    """The manifest of a build whose jobs are those of `runs` (with their `meta`, as `build` gives them)."""
    return build_manifest(images, runs, registry,
                          jobs={a.address: a.inputs for a in runs if a.address.startswith("job:")})


def _runs() -> list[Attempt]:
    return [build_attempt(1),
            attempt(2, job_address(), job_inputs(), perf=(perf(1),)),
            attempt(3, job_address(repeat=2), job_inputs(repeat=2), perf=(perf(1),)),
            attempt(4, job_address(target="here"), job_inputs(target="here", backend="local", image=None))]


def test_top_level_keys_are_rocm_s() -> None:
    manifest = manifest_of(IMAGES, _runs(), None)
    assert list(manifest) == ["built_images", "built_models", "context", "credentials_required", "summary"]
    assert list(manifest["summary"]) == ["successful_builds", "failed_builds", "total_build_time",
                                         "successful_pushes", "failed_pushes"]
    assert list(manifest["context"]) == ["docker_env_vars", "docker_mounts", "docker_build_arg", "gpu_vendor",
                                         "docker_gpus"]


def test_built_images_entry() -> None:
    manifest = manifest_of(IMAGES, _runs(), None)
    # One entry per model and image (repeats and local jobs add none), named as ROCm names its images.
    assert list(manifest["built_images"]) == ["ci-dummy_dummy.ubuntu.none"]
    info = manifest["built_images"]["ci-dummy_dummy.ubuntu.none"]
    assert info == {
        "model": "dummy",
        "docker_image": TAG,
        "dockerfile": "docker/dummy.ubuntu.none.Dockerfile",
        "base_docker": "localhost:5000/madengine/busybox:1",
        "docker_sha": "sha256:9c1e00",
        "build_duration": 60.0,
        "build_command": "",
        "log_file": "logs/image-dummy.log",
        "gpu_vendor": "NONE",
        "gpu_architecture": "gfx942",
        "madengine": {"address": IMAGE, "target": "box", "node_hash": IMAGE_HASH, "image_id": "sha256:1d2e",
                      "digest": None, "built_at": "2026-11-28T09:59:00Z"},
    }


def test_built_models_entry_is_a_models_json_entry() -> None:
    manifest = manifest_of(IMAGES, _runs(), None)
    assert manifest["built_models"]["ci-dummy_dummy.ubuntu.none"] == {
        "name": "dummy",
        "dockerfile": "docker/dummy",
        "scripts": "scripts/dummy/run.sh",
        "n_gpus": "1",
        "owner": "mad@example.org",
        "training_precision": "fp16",
        "tags": ["dummies", "smoke"],
        "args": "--steps 5",
        "multiple_results": "",
        "timeout": 7200,
        "data": "",
        "cred": "",
        "additional_docker_run_options": "--shm-size=8g",
        "madengine": {"address": "job:dummy@cpu/box#1", "image": IMAGE, "context": "cpu", "target": "box",
                      "params": {}},
    }


def test_context_and_summary() -> None:
    manifest = manifest_of(IMAGES, _runs(), None)
    assert manifest["context"] == {
        "docker_env_vars": {"MAD_GPU_VENDOR": "NONE", "MAD_GUEST_OS": "UBUNTU"},  # per-job variables left out
        "docker_mounts": {},
        "docker_build_arg": {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx942"},
        "gpu_vendor": "NONE",
        "docker_gpus": "",
    }
    assert manifest["credentials_required"] == []
    summary = manifest["summary"]
    assert summary["successful_builds"] == [manifest["built_images"]["ci-dummy_dummy.ubuntu.none"]]
    assert (summary["failed_builds"], summary["total_build_time"]) == ([], 60.0)
    assert (summary["successful_pushes"], summary["failed_pushes"]) == ([], [])


def test_a_shared_image_gives_one_key_per_model_and_counts_its_build_once() -> None:
    runs = [build_attempt(1),
            attempt(2, job_address(), job_inputs(), perf=(perf(1),)),
            attempt(3, job_address("dummy2"), job_inputs("dummy2", cred="hf"), perf=(perf(1),)),
            attempt(4, job_address("dummy", params={"bs": 8}), job_inputs(params={"bs": 8}), perf=(perf(1),))]
    manifest = manifest_of(IMAGES, runs, None)
    assert sorted(manifest["built_images"]) == ["ci-dummy2_dummy.ubuntu.none", "ci-dummy_bs-8_dummy.ubuntu.none",
                                                "ci-dummy_dummy.ubuntu.none"]
    assert {i["docker_image"] for i in manifest["built_images"].values()} == {TAG}
    assert manifest["built_images"].keys() == manifest["built_models"].keys()
    assert manifest["summary"]["total_build_time"] == 60.0
    assert manifest["credentials_required"] == ["hf"]


def test_registry_and_pushed_image() -> None:
    images = {(IMAGE, "box"): image_record(digest="sha256:feed")}
    info = manifest_of(images, _runs(), "localhost:5000")["built_images"]["ci-dummy_dummy.ubuntu.none"]
    assert (info["registry"], info["registry_image"]) == ("localhost:5000", f"localhost:5000/{TAG}")
    assert info["madengine"]["digest"] == "sha256:feed"
    not_pushed = manifest_of(IMAGES, _runs(), "localhost:5000")["built_images"]["ci-dummy_dummy.ubuntu.none"]
    assert not_pushed["registry"] == "localhost:5000" and "registry_image" not in not_pushed


def test_registry_image_names() -> None:
    assert registry_image("madengine/x:1", "localhost:5000/") == "localhost:5000/madengine/x:1"
    assert registry_image("localhost:5000/madengine/x:1", "localhost:5000") == "localhost:5000/madengine/x:1"
    assert registry_image("madengine/x:1", "docker.io") == "madengine/x:1"


def test_image_key() -> None:
    assert image_key("dummy_dir/Quick", {}, "dummy.ubuntu.amd") == "ci-dummy_dir_quick_dummy.ubuntu.amd"
    assert image_key("m", {"size": 256, "dtype": "fp16"}, "s") == "ci-m_dtype-fp16_size-256_s"
    assert image_key("m", {"x": "a b/$(c)"}, "s") == "ci-m_x-a_b_c__s"


def test_failed_builds() -> None:
    runs = [build_attempt(1, status=Status.FAILURE, message="COPY failed: no such file"),
            attempt(2, job_address(), job_inputs(), status=Status.SKIPPED, message="image:... failed")]
    manifest = manifest_of({}, runs, None)
    assert manifest["built_images"] == {} and manifest["built_models"] == {}
    assert manifest["summary"]["failed_builds"] == [
        {"model": "dummy", "error": "COPY failed: no such file", "image": IMAGE}]


def test_a_rebuilt_image_is_not_a_failure() -> None:
    runs = [build_attempt(1, status=Status.FAILURE, start="2026-11-28T09:00:00Z", end="2026-11-28T09:00:05Z"),
            build_attempt(2, start="2026-11-28T10:00:00Z", end="2026-11-28T10:00:30Z"),
            attempt(3, job_address(), job_inputs(), start="2026-11-28T11:00:00Z", end="2026-11-28T11:00:01Z")]
    manifest = manifest_of(IMAGES, runs, None)
    assert manifest["summary"]["failed_builds"] == []
    assert manifest["built_images"]["ci-dummy_dummy.ubuntu.none"]["build_duration"] == 30.0


def test_lock_jobs_stand_in_for_jobs_that_have_not_run() -> None:
    entry = job_inputs()
    del entry["meta"]  # a lock entry has no meta
    manifest = build_manifest(IMAGES, [build_attempt(1)], None, jobs={job_address(): entry})
    model = manifest["built_models"]["ci-dummy_dummy.ubuntu.none"]
    assert (model["name"], model["owner"], model["tags"]) == ("dummy", "", [])
    assert manifest["context"]["gpu_vendor"] == "NONE"  # from MAD_GPU_VENDOR


def test_several_contexts_keep_what_they_share() -> None:
    amd_image = "image:dummy.ubuntu.amd@mi300x"
    images = {**IMAGES, (amd_image, "box"): image_record(amd_image, tag="madengine/dummy.ubuntu.amd:1fbd")}
    amd = job_inputs(context="mi300x", image=amd_image, gpu_vendor="AMD")
    amd["env"]["MAD_GPU_VENDOR"] = "AMD"
    runs = [*_runs(), attempt(9, job_address(context="mi300x"), amd, perf=(perf(1),))]
    manifest = manifest_of(images, runs, None)
    assert manifest["context"]["gpu_vendor"] == ""
    assert manifest["context"]["docker_env_vars"] == {"MAD_GUEST_OS": "UBUNTU"}
    assert sorted(manifest["contexts"]) == ["cpu", "mi300x"]
    assert manifest["contexts"]["mi300x"]["gpu_vendor"] == "AMD"


def test_empty() -> None:
    manifest = manifest_of({}, [], None)
    assert manifest["built_images"] == {} and manifest["summary"]["total_build_time"] == 0


def test_write_build_manifest(tmp_path: Path) -> None:
    manifest = manifest_of(IMAGES, _runs(), None)
    path = tmp_path / "build_manifest.json"
    write_build_manifest(path, manifest)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "built_images"')
    assert json.loads(text) == manifest


def test_the_manifest_of_a_command_describes_its_jobs_only_never_an_earlier_run() -> None:
    # An earlier run here: the same address in another context (AMD, another hash), and another model.
    earlier = [build_attempt(1),
               attempt(2, job_address(), job_inputs(gpu_vendor="AMD", dockerfile="docker/dummy.ubuntu.amd"),
                       node_hash="sha256:amd"),
               attempt(3, job_address("other"), job_inputs("other", gpu_vendor="AMD"))]
    entry = job_inputs(gpu_vendor="NONE")  # this command's job, with its own metadata
    manifest = build_manifest(IMAGES, earlier, None, jobs={job_address(): entry})
    assert [m["name"] for m in manifest["built_models"].values()] == ["dummy"]
    assert manifest["context"]["gpu_vendor"] == "NONE" and "contexts" not in manifest
    assert [m["dockerfile"] for m in manifest["built_models"].values()] == ["docker/dummy"]
    # Without its own metadata, a job borrows none from history (its gpu_vendor is from MAD_GPU_VENDOR).
    bare = {k: v for k, v in entry.items() if k != "meta"}
    assert build_manifest(IMAGES, earlier, None, jobs={job_address(): bare})["context"]["gpu_vendor"] == "NONE"
