"""What a backend is handed for a node: the lock entry joined with the compiled project. Pure."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from madengine.backends.base import ImageSpec, JobSpec
from madengine.compile.ir import Project
from madengine.errors import ConfigError
from madengine.lock.lockfile import Lock

_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def image_spec(address: str, lock: Lock, registry: str | None, *, no_cache: bool = False) -> ImageSpec:
    entry = lock["images"][address]
    return ImageSpec(address=address, node_hash=entry["hash"], tag=entry["tag"],
                     dockerfile=entry["dockerfile"]["path"], build_context=entry["context"]["path"],
                     build_args=dict(entry["build_args"]), base=entry["base"]["ref"],
                     base_digest=entry["base"]["digest"], registry=registry, no_cache=no_cache)


def job_spec(address: str, lock: Lock, project: Project, *, timeout_override: int | None = None,
             keep_alive: bool = False, environ: Mapping[str, str] = os.environ) -> JobSpec:
    """The job as a backend runs it. `${env:NAME}` references are resolved here, at apply time only."""
    entry = lock["jobs"][address]
    node = project.jobs[address]
    context = project.contexts[node.context]
    image = lock["images"][entry["image"]] if entry["image"] else None
    # The lock holds what the node hashes; the node holds the same, typed: take the typed values.
    return JobSpec(
        address=address,
        node_hash=entry["hash"],
        model=entry["model"],
        context=node.context,
        target=node.target,
        script=entry["script"]["path"],
        args=tuple(entry["args"]),
        env=resolve_env(entry["env"], environ),
        n_gpus=entry["n_gpus"],
        timeout=entry["timeout"] if timeout_override is None else timeout_override,
        image_tag=image["tag"] if image else None,
        image_digest=None,
        multiple_results=entry["multiple_results"] or "",
        gpu_vendor=context.gpu_vendor,
        guest_os=context.guest_os,
        package_dir=project.package_path or ".",
        pre_scripts=node.pre_scripts,
        post_scripts=node.post_scripts,
        cmd_prefix=node.cmd_prefix,
        data_mounts=node.data_mounts,
        mounts=dict(context.docker_mounts),
        docker_options=node.additional_docker_run_options,
        keep_alive=keep_alive,
    )


def resolve_env(env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Values with `${env:NAME}` take NAME from madengine's environment; a missing one is an error."""
    out = {}
    for key, value in env.items():
        missing = [m.group(1) for m in _ENV_REFERENCE.finditer(value) if m.group(1) not in environ]
        if missing:
            raise ConfigError(f"environment variable {missing[0]} is not set (needed by {key})",
                              hint=f"export {missing[0]}=... before running madengine")
        out[key] = _ENV_REFERENCE.sub(lambda m: environ[m.group(1)], value)
    return out


def job_metadata(address: str, lock: Lock, project: Project, backend: str) -> dict[str, Any]:
    """What results exports need beyond the lock entry (recorded with each attempt as `meta`)."""
    node = project.jobs[address]
    entry = lock["jobs"][address]
    image = lock["images"][entry["image"]] if entry["image"] else None
    return {
        "tags": list(node.tags),
        "training_precision": node.training_precision,
        "owner": node.owner,
        "dockerfile": image["dockerfile"]["path"] if image else None,
        "base": image["base"]["ref"] if image else None,
        "image_tag": image["tag"] if image else None,
        "backend": backend,
        "gpu_vendor": project.contexts[node.context].gpu_vendor,
        "additional_docker_run_options": node.additional_docker_run_options,
        "cred": node.cred,
        "script_dir": posixpath.dirname(entry["script"]["path"]),
    }
