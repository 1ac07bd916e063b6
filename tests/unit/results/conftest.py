"""Builders of state records for the results tests: lock entries shaped like examples/mad-package's."""

from __future__ import annotations

import copy
from typing import Any

from madengine.state.model import Attempt, ImageRecord, PerfRow, Status

IMAGE = "image:dummy.ubuntu.none@cpu"
TAG = "madengine/dummy.ubuntu.none:fdafa146f350"
IMAGE_HASH = "sha256:fdafa146f3506799228b630dee1d3bb7beaeeffd7340819d29a3fda0f1b4333b"

IMAGE_INPUTS: dict[str, Any] = {
    "base": {"digest": "sha256:9c1e00", "ref": "localhost:5000/madengine/busybox:1"},
    "build_args": {"MAD_SYSTEM_GPU_ARCHITECTURE": "gfx942"},
    "context": {"path": "docker", "sha256": "sha256:e3b0"},
    "dockerfile": {"path": "docker/dummy.ubuntu.none.Dockerfile", "sha256": "sha256:3815"},
    "hash": IMAGE_HASH,
    "tag": TAG,
}


def job_inputs(model: str = "dummy", *, target: str = "box", context: str = "cpu", backend: str = "docker",
               image: str | None = IMAGE, params: dict[str, Any] | None = None, repeat: int = 1,
               args: list[str] | None = None, **meta: Any) -> dict[str, Any]:
    """A job's lock entry plus the `meta` apply adds to Attempt.inputs."""
    entry: dict[str, Any] = {
        "args": list(args) if args is not None else ["--steps", "5"],
        "context": context,
        "data": None,
        "depends_on": [image] if image else [],
        "env": {"MAD_GPU_VENDOR": "NONE", "MAD_GUEST_OS": "UBUNTU", "MAD_MODEL_NAME": model},
        "hash": "sha256:a00d",
        "image": image,
        "image_hash": IMAGE_HASH if image else None,
        "model": model,
        "multiple_results": None,
        "n_gpus": 1,
        "params": dict(params or {}),
        "repeat": repeat,
        "script": {"path": f"scripts/{model}/run.sh", "sha256": "sha256:b93e"},
        "target": target,
        "timeout": 7200,
    }
    entry["meta"] = {
        "tags": ["dummies", "smoke"],
        "training_precision": "fp16",
        "owner": "mad@example.org",
        "dockerfile": "docker/dummy",
        "base": None,
        "image_tag": TAG if image else None,
        "backend": backend,
        "gpu_vendor": "NONE",
        "additional_docker_run_options": "--shm-size=8g",
        **meta,
    }
    return entry


def job_address(model: str = "dummy", *, context: str = "cpu", target: str = "box", repeat: int = 1,
                params: dict[str, Any] | None = None) -> str:
    p = "[" + ",".join(f"{k}={v}" for k, v in sorted((params or {}).items())) + "]" if params else ""
    return f"job:{model}{p}@{context}/{target}#{repeat}"


def attempt(id: int, address: str, inputs: dict[str, Any], *, status: Status = Status.SUCCESS,
            perf: tuple[PerfRow, ...] = (), apply_id: int = 1, start: str = "2026-11-28T10:00:00Z",
            end: str | None = "2026-11-28T10:00:42Z", host: str | None = "bench-01", message: str = "",
            node_hash: str = "sha256:a00d", log_path: str | None = None) -> Attempt:
    return Attempt(id=id, apply_id=apply_id, address=address, node_hash=node_hash, status=status, started_at=start,
                   ended_at=end, host=host, exit_code=0 if status is Status.SUCCESS else 1,
                   log_path=log_path, inputs=copy.deepcopy(inputs), message=message, perf=perf)


def image_record(address: str = IMAGE, target: str = "box", *, digest: str | None = None,
                 tag: str = TAG) -> ImageRecord:
    return ImageRecord(address=address, target=target, node_hash=IMAGE_HASH, tag=tag, image_id="sha256:1d2e",
                       digest=digest, inputs=copy.deepcopy(IMAGE_INPUTS), built_at="2026-11-28T09:59:00Z")


def build_attempt(id: int, address: str = IMAGE, *, status: Status = Status.SUCCESS,
                  start: str = "2026-11-28T09:58:00Z", end: str = "2026-11-28T09:59:00Z",
                  message: str = "") -> Attempt:
    return attempt(id, address, {"images": IMAGE_INPUTS}, status=status, start=start, end=end, message=message,
                   node_hash=IMAGE_HASH, log_path="logs/image-dummy.log")


def perf(value: float | None, metric: str = "samples_per_second", model: str = "dummy",
         status: Status = Status.SUCCESS) -> PerfRow:
    return PerfRow(model=model, performance=value, metric=metric, status=status)
