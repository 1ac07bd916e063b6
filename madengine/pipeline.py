"""The front of the pipeline, chained: load -> check -> compile -> lock (DESIGN §1).

Commands call these instead of repeating the chain. Each stage stays a function of its own package;
this module only wires them, and reads and writes nothing but the lockfile it is asked to.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path

from madengine.compile.compiler import compile_project
from madengine.compile.ir import Project
from madengine.errors import ConfigError
from madengine.lock import LOCK_NAME
from madengine.lock.lockfile import (
    Lock,
    LockDiff,
    build_lock,
    diff_locks,
    missing_inputs,
    read_lock,
)
from madengine.madfile.load import LoadedMadfile, load_and_check


@dataclass(frozen=True)
class Locked:
    """A compiled project with its freshly computed lock and the lock found on disk (if any)."""

    loaded: LoadedMadfile
    project: Project
    lock: Lock
    lock_path: Path
    on_disk: Lock | None

    @property
    def diff(self) -> LockDiff:
        return diff_locks(self.on_disk, self.lock)

    @property
    def stale(self) -> bool:
        return self.on_disk != self.lock

    def input_dirs(self) -> set[str]:
        """Every directory this lock's inputs were read from, relative to the madfile's directory."""
        p = self.project
        dirs = {p.package_path or "."}
        dirs.update(posixpath.dirname(i.dockerfile) for i in p.images.values())
        dirs.update(i.build_context for i in p.images.values())
        dirs.update(posixpath.dirname(j.script) for j in p.jobs.values())
        return dirs


def load_project(madfile: Path) -> tuple[LoadedMadfile, Project]:
    loaded = load_and_check(madfile)
    return loaded, compile_project(loaded)


def lock_project(madfile: Path) -> Locked:
    """Compile and hash; raise a config error if a file that a node needs is missing."""
    loaded, project = load_project(madfile)
    lock = build_lock(project)
    problems = missing_inputs(lock, loaded.display_path)
    if problems:
        raise ConfigError.many(problems)
    lock_path = loaded.root / LOCK_NAME
    return Locked(loaded, project, lock, lock_path, read_lock(lock_path))
