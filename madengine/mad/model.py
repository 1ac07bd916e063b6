"""Typed values produced by MAD package discovery.

These are plain frozen dataclasses, not pydantic models: discovery of a 6,000-model package must stay
fast, and MAD files are lenient by design (unknown keys are kept and warned about, DESIGN §3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Keys of a models.json entry that madengine understands (DESIGN §3). Anything else is kept in `extra`.
KNOWN_KEYS: tuple[str, ...] = (
    "name", "dockerfile", "scripts", "n_gpus", "owner", "training_precision", "tags", "args",
    "multiple_results", "timeout", "url", "data", "skip_gpu_arch", "cred", "dockercontext",
    "additional_docker_run_options", "env_vars", "nnodes",
)

MAX_NODES = 65536  # nodes one run may span (`nnodes`): beyond any cluster, within what a scheduler takes
DEFAULT_TIMEOUT = 7200  # seconds; a models.json `timeout` of -1 (or none) means this

# What an environment variable may be called (docker's --env, ROCm's container_runner.py; and any
# name with `=` or NUL cannot be put in a process's environment at all).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Integers are stored as SQLite and JSON 64-bit integers: a number beyond that is an input error.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Origin:
    """Where a model was declared: the file, the entry index and (for JSON) the line."""

    file: str  # relative to the package root, POSIX separators
    index: int
    line: int | None = None


@dataclass(frozen=True)
class MadModel:
    """One model of a MAD package, with paths relative to the package root.

    `dockerfile`, `scripts` and `dockercontext` have already been resolved against the directory
    of the file that declared them (for `scripts/<dir>/models.json`), and normalized to POSIX.
    `n_gpus` is an int: -1 means all of the host's GPUs. `timeout` is in seconds, -1 = default.
    """

    name: str
    dockerfile: str
    scripts: str
    n_gpus: int = 1
    owner: str = ""
    training_precision: str = ""
    tags: tuple[str, ...] = ()
    args: str = ""
    multiple_results: str = ""
    timeout: int = -1
    url: str = ""
    data: str = ""
    skip_gpu_arch: tuple[str, ...] = ()
    cred: str = ""
    dockercontext: str = ""
    additional_docker_run_options: str = ""
    env_vars: Mapping[str, str] = field(default_factory=dict)
    nnodes: int = 1  # nodes one run spans (ROCm madengine's multi-node key): one launch per node
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim
    directory: str = ""  # "" for the root models.json, else the `<dir>` of scripts/<dir>/
    origin: Origin | None = field(default=None, compare=False)

    @property
    def effective_timeout(self) -> int:
        return DEFAULT_TIMEOUT if self.timeout in (-1, None) else self.timeout


@dataclass(frozen=True)
class SelectedModel:
    """A model picked by a tag, with the extra arguments the tag carried (`name:k=v:flag`).

    `tag_args` keeps the ordered (key, value) pairs; a bare flag has value None. They are appended
    to the model's args as ` --k v --flag` and shown in the job address as params.
    """

    model: MadModel
    tag_args: tuple[tuple[str, str | None], ...] = ()

    @property
    def args(self) -> str:
        extra = "".join(f" --{k}" if v is None else f" --{k} {v}" for k, v in self.tag_args)
        return self.model.args + extra


@dataclass(frozen=True)
class Dockerfile:
    """A Dockerfile that a model's prefix resolves to, with its `# CONTEXT {...}` header."""

    path: str  # relative to the package root, POSIX
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """`docker/dummy.ubuntu.amd.Dockerfile` -> `dummy.ubuntu.amd` (the image's name)."""
        name = self.path.rsplit("/", 1)[-1]
        return name[: -len(".Dockerfile")] if name.endswith(".Dockerfile") else name

    def matches(self, context: Mapping[str, Any]) -> bool:
        """MAD's rule: every CONTEXT key that the context also has must be equal."""
        return all(context[k] == v for k, v in self.context.items() if k in context)


@dataclass(frozen=True)
class Package:
    """A discovered MAD package: its models in discovery order, and warnings about its files."""

    root: str  # absolute path of the package root
    models: tuple[MadModel, ...]
    warnings: tuple[Any, ...] = ()  # madengine.errors.Diagnostic, severity "warning"
