"""Backends register under a name (entry-point group `madengine.backends`), as ReFrame's schedulers do.

madengine's own backends are listed here as well, so a source checkout works without installing;
a plugin package adds one with `[project.entry-points."madengine.backends"] name = "pkg.mod:Class"`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from madengine.backends.base import Backend, Workspace
from madengine.errors import ConfigError

ENTRY_POINT_GROUP = "madengine.backends"
BUILTIN: Mapping[str, str] = {
    "local": "madengine.backends.local:LocalBackend",
    "docker": "madengine.backends.docker:DockerBackend",
    "ssh": "madengine.backends.ssh:SshBackend",
}


def available() -> dict[str, str]:
    """Every backend name with where its class lives."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def installed(names: Iterable[str] = ()) -> set[str]:
    """The installed backends' names. Entry points are read only when `names` holds one that is not
    built in: validating a madfile of `local` and `docker` targets costs nothing."""
    if all(name in BUILTIN for name in names):
        return set(BUILTIN)
    return set(available())


def backend_class(name: str) -> type[Backend]:
    where = BUILTIN.get(name) or available().get(name)
    if where is None:
        raise ConfigError(f"no backend named {name!r} is installed",
                          hint=f"installed backends: {', '.join(sorted(available()))}")
    module, _, attr = where.partition(":")
    cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def make_backends(targets: Mapping[str, Any], workspace: Workspace) -> dict[str, Backend]:
    """One backend per target, constructed with the target's configuration."""
    return {name: backend_class(t.backend)(name, t, workspace)  # type: ignore[call-arg]
            for name, t in targets.items()}


class LazyBackends(Mapping[str, Backend]):
    """The backends of these targets, each constructed on first use.

    A plan asks a backend something only about images it built; a no-op plan of `local` jobs asks
    nothing, and so never imports a backend, nor reads the targets' configuration.
    """

    def __init__(self, names: Iterable[str], targets: Callable[[], Mapping[str, Any]],
                 workspace: Workspace) -> None:
        self._names = sorted(names)
        self._read_targets = targets
        self._targets: Mapping[str, Any] | None = None
        self._workspace = workspace
        self._made: dict[str, Backend] = {}

    def __getitem__(self, name: str) -> Backend:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._made:
            if self._targets is None:
                self._targets = self._read_targets()
            self._made.update(make_backends({name: self._targets[name]}, self._workspace))
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
