"""Backends register under a name (entry-point group `madengine.backends`), as ReFrame's schedulers do.

madengine's own backends are listed here as well, so a source checkout works without installing;
a plugin package adds one with `[project.entry-points."madengine.backends"] name = "pkg.mod:Class"`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from madengine.backends.base import Backend, Workspace
from madengine.errors import ConfigError

ENTRY_POINT_GROUP = "madengine.backends"
BUILTIN: Mapping[str, str] = {
    "local": "madengine.backends.local:LocalBackend",
    "docker": "madengine.backends.docker:DockerBackend",
}


def available() -> dict[str, str]:
    """Every backend name with where its class lives."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


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
