"""The project IR: what the compiler hands to the lock stage.

Immutable, fully resolved, and free of anything machine-specific: every path is relative to the
project root (the madfile's directory) with POSIX separators, so the lock is the same everywhere.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic stays out of what imports the IR's dataclasses (a no-op plan does)
    from madengine.madfile.model import Context, Target
    from madengine.results.gates import Gate


@dataclass(frozen=True)
class ImageNode:
    """An image to build: one Dockerfile built for one context.

    Address: `image:<dockerfile stem>@<context>`.
    """

    address: str
    name: str  # the Dockerfile stem, e.g. `dummy.ubuntu.amd`
    context: str
    dockerfile: str  # project-relative path
    build_context: str  # project-relative directory sent to the builder
    build_args: Mapping[str, str]
    dockerfile_context: Mapping[str, Any]  # the file's `# CONTEXT` header
    base: str | None  # the base image reference (FROM, or ARG BASE_DOCKER), None if unknown


@dataclass(frozen=True)
class ScriptCall:
    """A pre/post script: copied into the run directory and run there as `bash <name> <args>`."""

    path: str  # project-relative
    args: tuple[str, ...] = ()


def run_dir_names(pre: tuple[ScriptCall, ...], post: tuple[ScriptCall, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names the pre and post scripts get in the run directory: their own, unless a different
    script already has that name (ROCm's rpd tool has a pre_scripts/trace.sh and a post_scripts/trace.sh):
    then `<pre|post>-<name>`, so no copy replaces another. One script listed twice keeps one name."""
    taken: dict[str, str] = {}
    out: list[tuple[str, ...]] = []
    for kind, calls in (("pre", pre), ("post", post)):
        names = []
        for call in calls:
            base = posixpath.basename(call.path)
            name, n = base, 1
            while taken.get(name, call.path) != call.path:
                n += 1
                name = f"{kind}-{base}" if n == 2 else f"{kind}{n - 1}-{base}"
            taken[name] = call.path
            names.append(name)
        out.append(tuple(names))
    return out[0], out[1]


@dataclass(frozen=True)
class DataMount:
    """A data directory a job sees at `container_path` (and as MAD_DATAHOME)."""

    host_path: str  # project-relative when in the package, else as data.json gives it
    container_path: str
    readwrite: bool = False
    in_project: bool = False


@dataclass(frozen=True)
class JobNode:
    """One run of one model (with one combination of params) in one context on one target.

    Address: `job:<model>[k=v,...]@<context>/<target>#<repeat>`; when a model's Dockerfile prefix
    matches several Dockerfiles in a context, each gets its own job, told apart by `~<stem>` after
    the params.
    """

    address: str
    model: str
    params: tuple[tuple[str, str | None], ...]  # ordered (key, value); tag args first, None = a flag
    context: str
    target: str
    repeat: int  # 1-based
    image: str | None  # image node address; None on a `local` target
    script: str  # project-relative path of the run script
    args: tuple[str, ...]  # argv after the script, already split (never re-joined for a shell)
    env: Mapping[str, str]  # non-secret environment (MAD_* and the context's docker_env_vars)
    n_gpus: int  # -1 = all of the host's GPUs (per node)
    timeout: int  # seconds, after the context multiplier; 0 = none
    multiple_results: str = ""
    nnodes: int = 1  # nodes one run spans
    data: str = ""
    tags: tuple[str, ...] = ()
    owner: str = ""
    training_precision: str = ""
    additional_docker_run_options: str = ""
    cred: str = ""  # the credential.json key the model needs (ROCm's `cred`), never its value
    tools: tuple[str, ...] = ()  # the context's tools, by name
    pre_scripts: tuple[ScriptCall, ...] = ()  # tools' pre_scripts, then the context's
    post_scripts: tuple[ScriptCall, ...] = ()  # the context's post_scripts, then the tools'
    cmd_prefix: tuple[str, ...] = ()  # the tools' `cmd` wrappers, outermost first, before `bash <script>`
    data_mounts: tuple[DataMount, ...] = ()
    data_provider: str = ""
    skip_gpu_arch: tuple[str, ...] = ()  # models.json's: GPU architectures the model must not run on
    expect: Gate | None = None  # the run's `expect:` gate for this model; not an input (not in the lock)


@dataclass(frozen=True)
class Project:
    """A compiled madfile: every node, keyed by address, in a stable (sorted) order."""

    root: str  # absolute directory of the madfile; never written to the lock
    madfile_path: str  # relative to root
    package_path: str | None  # relative to root, None without a package
    name: str | None
    registry: str | None
    contexts: Mapping[str, Context]
    targets: Mapping[str, Target]
    images: Mapping[str, ImageNode]
    jobs: Mapping[str, JobNode]
    warnings: tuple[Any, ...] = field(default=())

    def model_tags(self) -> dict[str, tuple[str, ...]]:
        """Each model's tags, by model name: what the graph needs besides the lock."""
        return {job.model: job.tags for job in self.jobs.values()}

    def skip_gpu_arch(self) -> dict[str, tuple[str, ...]]:
        """The models that have a `skip_gpu_arch`, by name, with it: what the planner needs besides the
        lock (where a job must not run is not an input of it, so not in the lock)."""
        return {job.model: job.skip_gpu_arch for job in self.jobs.values() if job.skip_gpu_arch}
