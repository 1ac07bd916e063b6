"""The engine that builds a target's images when its hosts do not: this machine's (ssh, slurm, kubernetes
targets build here, then deliver, push or let the nodes pull)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from madengine.backends.base import Workspace
    from madengine.backends.docker import DockerBackend


class BuildsHere:
    """A backend whose images this machine's Docker engine builds: `builder()`, made at first use (the
    Docker SDK is imported then), one per backend, shared by its threads."""

    target_name: str
    workspace: Workspace
    _lock: threading.Lock
    _builder: DockerBackend | None = None

    def builder(self) -> DockerBackend:
        """This machine's engine: builds, pushes, and pulls images built elsewhere."""
        with self._lock:
            if self._builder is None:
                from madengine.backends.docker import DockerBackend
                from madengine.madfile.model import DockerTarget

                self._builder = DockerBackend(self.target_name, DockerTarget(backend="docker"), self.workspace)
            return self._builder
