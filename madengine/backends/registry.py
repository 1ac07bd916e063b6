"""Backends register under a name (entry-point group `madengine.backends`), as ReFrame's schedulers do.

madengine's own backends are listed here as well, so a source checkout works without installing;
a plugin package adds one with `[project.entry-points."madengine.backends"] name = "pkg.mod:Class"`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from madengine.backends.base import Backend, Workspace
from madengine.errors import ConfigError, Diagnostic

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "madengine.backends"
BUILTIN: Mapping[str, str] = {
    "local": "madengine.backends.local:LocalBackend",
    "docker": "madengine.backends.docker:DockerBackend",
    "ssh": "madengine.backends.ssh:SshBackend",
    "ansible": "madengine.backends.ansible:AnsibleBackend",
    "kubernetes": "madengine.backends.kubernetes:KubernetesBackend",
    "slurm": "madengine.backends.slurm:SlurmBackend",
}
# Built-in backends that need an optional extra: the modules they import, and how to install them.
REQUIRES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "ansible": (("ansible_runner", "ansible"), "pip install 'madengine[ansible]' (ansible-core and ansible-runner)"),
    "kubernetes": (("kubernetes",), "pip install 'madengine[kubernetes]'"),
}


def missing_requirement(name: str) -> tuple[str, str] | None:
    """(what is missing, how to install it) when a built-in backend cannot work here; found without
    importing anything."""
    from importlib.util import find_spec

    modules, hint = REQUIRES.get(name, ((), ""))
    for module in modules:
        if find_spec(module) is None:
            return f"the Python module `{module}` is not installed", hint
    return None


def available() -> dict[str, str]:
    """Every backend name with where its class lives.

    Two backends of one name are refused (a ConfigError naming both places), never resolved by
    whichever was found first: two plugins registering one name with different classes, or a plugin
    reusing a built-in name with another class. The same class registered twice (a package found on
    two paths, madengine's own entry points) is one backend."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    origin = {name: "built into madengine" for name in BUILTIN}
    problems = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        known = found.get(ep.name)
        if known is None:
            found[ep.name], origin[ep.name] = ep.value, _origin(ep)
        elif known != ep.value:
            problems.append(Diagnostic(
                None, None, None, f"two backends are named {ep.name!r}: {known} ({origin[ep.name]}) and "
                f"{ep.value} ({_origin(ep)})",
                hint="uninstall one of the two packages, or give its entry point another name"))
    if problems:
        raise ConfigError.many(problems)
    return found


def _origin(ep: EntryPoint) -> str:
    """Where an entry point comes from: its distribution, and the metadata directory it was read from."""
    dist = ep.dist
    if dist is None:
        return "an unknown distribution"
    path = getattr(dist, "_path", None)  # PathDistribution's metadata directory: the place to look
    return f"distribution {dist.name} {dist.version}" + (f" at {path}" if path is not None else "")


def installed(names: Iterable[str] = ()) -> set[str]:
    """The installed backends' names. Entry points are read only when `names` holds one that is not
    built in: validating a madfile of `local` and `docker` targets costs nothing."""
    found = set(BUILTIN) if all(name in BUILTIN for name in names) else set(available())
    return {name for name in found if name not in REQUIRES or missing_requirement(name) is None}


def backend_class(name: str) -> type[Backend]:
    where = BUILTIN.get(name) or available().get(name)
    if where is None:
        raise ConfigError(f"no backend named {name!r} is installed",
                          hint=f"installed backends: {', '.join(sorted(available()))}")
    module, _, attr = where.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def make_backends(targets: Mapping[str, Any], workspace: Workspace, registry: str | None = None) -> dict[str, Backend]:
    """One backend per target, constructed with the target's configuration; a backend whose constructor takes
    `registry` (its nodes pull images from it: `slurm`) is given the madfile's."""
    made = {}
    for name, t in targets.items():
        cls: Any = backend_class(t.backend)
        takes = registry is not None and "registry" in inspect.signature(cls).parameters
        made[name] = cls(name, t, workspace, registry=registry) if takes else cls(name, t, workspace)
    return made


class LazyBackends(Mapping[str, Backend]):
    """The backends of these targets, each constructed on first use.

    A plan asks a backend something only about images it built; a no-op plan of `local` jobs asks
    nothing, and so never imports a backend, nor reads the targets' configuration.
    """

    def __init__(self, names: Iterable[str], targets: Callable[[], Mapping[str, Any]],
                 workspace: Workspace, registry: str | None = None) -> None:
        self._names = sorted(names)
        self._read_targets = targets
        self._targets: Mapping[str, Any] | None = None
        self._workspace = workspace
        self._registry = registry
        self._made: dict[str, Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._made:
            if self._targets is None:
                self._targets = self._read_targets()
            self._made.update(make_backends({name: self._targets[name]}, self._workspace, self._registry))
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def close(self) -> None:
        """Close the backends made so far (their sessions to hosts, their engine connections)."""
        made, self._made = list(self._made.values()), {}
        for backend in made:
            backend.close()

    def __len__(self) -> int:
        return len(self._names)
