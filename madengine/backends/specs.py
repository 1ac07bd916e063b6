"""What a backend is handed for a node (`ImageSpec`, `JobSpec`) and how it is made from the lock entry
joined with the compiled project. Pure: plan reads it (to ask about images) as apply does."""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madengine.compile.ir import DataMount, Project, ScriptCall
from madengine.errors import ConfigError
from madengine.lock.entries import ImageEntry, JobEntry, LockEntries
from madengine.lock.lockfile import Lock


@dataclass(frozen=True)
class ImageSpec:
    """An image node, as apply hands it to a backend: the lock entry plus what is needed to build."""

    address: str
    node_hash: str
    tag: str  # madengine/<name>:<hash12>
    dockerfile: str  # project-relative
    build_context: str  # project-relative
    build_args: Mapping[str, str]
    base: str | None
    base_digest: str | None
    registry: str | None  # push here when set
    no_cache: bool = False  # build every step again, reusing no cached layer


@dataclass(frozen=True)
class JobSpec:
    """A job node, as apply hands it to a backend."""

    address: str
    node_hash: str
    model: str
    context: str
    target: str
    script: str  # project-relative path of the run script
    args: tuple[str, ...]
    env: Mapping[str, str]  # secrets already resolved here, never recorded
    n_gpus: int  # -1: all of the host's GPUs (per node, for a multi-node job)
    timeout: int  # seconds; 0: none
    image_tag: str | None  # None on `local`
    image_digest: str | None
    multiple_results: str = ""
    gpu_vendor: str = "NONE"
    guest_os: str = "UBUNTU"
    package_dir: str = "."  # project-relative MAD package root: what `../` means from the run directory
    pre_scripts: tuple[ScriptCall, ...] = ()  # each copied into the run dir, run as `bash <name> <args>`
    post_scripts: tuple[ScriptCall, ...] = ()
    cmd_prefix: tuple[str, ...] = ()  # tools' wrappers, put before `bash <script> <args>`
    data_mounts: tuple[DataMount, ...] = ()
    mounts: Mapping[str, str] = field(default_factory=dict)  # host path -> container path
    docker_options: str = ""  # additional_docker_run_options
    keep_alive: bool = False
    log_path: Path | None = None  # where the backend writes the run's log (apply chooses it)
    host: str | None = None  # which host of the target (apply's GPU scheduler chooses it)
    gpu_ids: tuple[int, ...] = ()  # which of the host's GPUs this job was given
    # Variables whose values came from `${env:NAME}` references (madengine's environment): whatever their
    # names, never written into a file a backend submits or generate writes (as variables named like secrets)
    referenced: frozenset[str] = frozenset()
    # A multi-node job's other nodes (ranks 1..nnodes-1, `host` is rank 0), each with the GPUs it was given.
    peers: tuple[tuple[str, tuple[int, ...]], ...] = ()
    nnodes: int = 1  # nodes the job spans (models.json `nnodes`): one launch per node, MASTER_ADDR/NODE_RANK set


_ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def _entries(lock: Lock | LockEntries) -> LockEntries:
    return lock if isinstance(lock, LockEntries) else LockEntries.of(lock)


def image_spec(address: str, lock: Lock | LockEntries, registry: str | None, *, no_cache: bool = False) -> ImageSpec:
    return image_spec_of(address, _entries(lock).images[address], registry, no_cache=no_cache)


def image_spec_of(address: str, entry: ImageEntry, registry: str | None, *, no_cache: bool = False) -> ImageSpec:
    return ImageSpec(address=address, node_hash=entry.hash, tag=entry.tag, dockerfile=entry.dockerfile_path,
                     build_context=entry.context_path, build_args=dict(entry.build_args), base=entry.base["ref"],
                     base_digest=entry.base["digest"], registry=registry, no_cache=no_cache)


def job_spec(address: str, lock: Lock | LockEntries, project: Project, *, timeout_override: int | None = None,
             keep_alive: bool = False, environ: Mapping[str, str] = os.environ) -> JobSpec:
    """The job as a backend runs it. `${env:NAME}` references are resolved here, at apply time only."""
    entries = _entries(lock)
    entry: JobEntry = entries.jobs[address]
    node = project.jobs[address]
    context = project.contexts[node.context]
    image = entries.images[entry.image] if entry.image else None
    # The lock holds what the node hashes; the node holds the same, typed: take the typed values.
    return JobSpec(
        address=address,
        node_hash=entry.hash,
        model=entry.model,
        context=node.context,
        target=node.target,
        script=entry.script_path,
        args=tuple(entry.args),
        env=resolve_env(entry.env, environ),
        referenced=frozenset(k for k, v in entry.env.items() if _ENV_REFERENCE.search(v)),
        n_gpus=entry.n_gpus,
        nnodes=entry.nnodes,
        timeout=entry.timeout if timeout_override is None else timeout_override,
        image_tag=image.tag if image else None,
        image_digest=None,
        multiple_results=entry.multiple_results or "",
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


def hidden(name: str, job: JobSpec) -> bool:
    """Is this variable of the job's environment one whose value never goes into a file: named like a
    secret, or given by a `${env:NAME}` reference?"""
    from madengine.madfile.model import is_secret_name

    return is_secret_name(name) or name in job.referenced


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


def job_metadata(address: str, lock: Lock | LockEntries, project: Project, backend: str) -> dict[str, Any]:
    """What results exports need beyond the lock entry (recorded with each attempt as `meta`)."""
    entries = _entries(lock)
    node = project.jobs[address]
    entry = entries.jobs[address]
    image = entries.images[entry.image] if entry.image else None
    return {
        "tags": list(node.tags),
        "training_precision": node.training_precision,
        "owner": node.owner,
        "dockerfile": image.dockerfile_path if image else None,
        "base": image.base["ref"] if image else None,
        "image_tag": image.tag if image else None,
        "backend": backend,
        "gpu_vendor": project.contexts[node.context].gpu_vendor,
        "additional_docker_run_options": node.additional_docker_run_options,
        "cred": node.cred,
        "script_dir": posixpath.dirname(entry.script_path),
    }
