"""Is the lock already fresh? A stat fingerprint of its inputs answers without recompiling.

Like DVC's state database and ninja's log: after a lock is computed, the size, mtime and inode of every
file under the project and the package (and of any input outside them) are recorded with the hash of
the lock text. If nothing moved since and the lock file holds those bytes, the lock is fresh; anything
else, including a missing or unreadable record, means "compute it". The record lives in `.madengine/`
and never changes what a lock contains.

The record also keeps the little that the dependency graph needs besides the lock (the registry and
each model's tags), the targets' configuration that backends are made from, the contexts' (for their
`rerun_on`), the models' `skip_gpu_arch`, and the jobs' `expect:` gates (none of them inputs, so
none in the lock), so that a no-op `plan` or `apply` reads the lock and the state
and neither compiles nor reads the madfile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madengine import __version__, shape
from madengine.shape import ListOf, MapOf, Opt

RECORD = Path(".madengine") / "cache" / "lock-fingerprint.json"
# File mtimes come from the kernel's coarse clock, which may lag the wall clock by a tick.
_CLOCK_SLACK_NS = 100_000_000
_SKIP_DIRS = frozenset({".git", ".madengine", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


@dataclass(frozen=True)
class Fresh:
    """What the last computation recorded about the lock it wrote."""

    images: int
    jobs: int
    lock_text: bytes = field(repr=False)  # the lock file's bytes, those the record was checked against
    lock_hash: str = ""  # the lock's canonical hash (`pipeline.lock_digest`), which plans are tied to
    registry: str | None = None
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model name -> its tags
    gates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # job address -> `Gate.to_json()`
    targets: Mapping[str, Any] | None = None  # target name -> its configuration as JSON (None: not recorded)
    contexts: Mapping[str, Any] = field(default_factory=dict)  # context name -> its configuration as JSON
    skip_gpu_arch: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model name -> its skip_gpu_arch


def fingerprint(root: Path, madfile_name: str, extra_dirs: Iterable[str], lock_name: str) -> tuple[str, int]:
    """A digest of the stat data of every entry under root and extra_dirs (relative to root), and the
    newest mtime seen, so that a caller can refuse to record inputs that changed while it read them."""
    h = hashlib.sha256(f"{__version__}\0{madfile_name}".encode())
    # The code that computes a lock is one of its inputs: an upgrade (or an edit of an editable
    # install) must not be answered from a record made by other code.
    code = Path(__file__).resolve().parents[1]
    for line, _ in _scan(code, code, ""):
        h.update(line)
    newest = 0
    for top in sorted({root.resolve(), *((root / d).resolve() for d in extra_dirs)}):
        h.update(b"\0top\0" + os.fsencode(top))
        for line, mtime in _scan(top, top, lock_name):
            h.update(line)
            newest = max(newest, mtime)
    return h.hexdigest(), newest


def _is_lock_file(name: str, lock_name: str) -> bool:
    """The lock, or a temporary file of its write in progress (files.write_atomic: `.NAME.XXXX.tmp`)."""
    return name == lock_name or (name.startswith(f".{lock_name}.") and name.endswith(".tmp"))


def _scan(top: Path, path: Path, lock_name: str) -> Iterable[tuple[bytes, int]]:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        yield b"\0missing\0" + os.fsencode(path), 0
        return
    for entry in entries:
        if entry.name in _SKIP_DIRS or (path == top and _is_lock_file(entry.name, lock_name)):
            continue
        st = entry.stat(follow_symlinks=False)
        line = f"\0{entry.path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_mode}"
        mtime = st.st_mtime_ns
        if entry.is_symlink():  # an input read through a link changes with its target, not the link
            try:
                target = os.stat(entry.path)
                line += f"\0->{os.readlink(entry.path)}\0{target.st_size}\0{target.st_mtime_ns}\0{target.st_ino}"
                mtime = max(mtime, target.st_mtime_ns)
            except OSError:
                line += "\0->dangling"
        yield line.encode("utf-8", "surrogateescape"), mtime
        if entry.is_dir(follow_symlinks=False):
            yield from _scan(top, Path(entry.path), lock_name)


def _read(lock_path: Path) -> bytes | None:
    try:
        return lock_path.read_bytes()
    except OSError:
        return None


def _digest(text: bytes | None) -> str | None:
    return None if text is None else hashlib.sha256(text).hexdigest()


# The record's shape: a record that does not fit it (edited, truncated, from another version) is ignored.
_SHAPE = {"inputs": str, "lock": str, "lock_hash": str, "extra": ListOf(str), "images": int, "jobs": int,
          "registry": Opt(str), "tags": MapOf(ListOf(str)), "gates": MapOf({"metric": str}),
          "targets": Opt(MapOf(object)), "contexts": MapOf(object),
          "skip_gpu_arch": MapOf(ListOf(str))}


def check(madfile: Path, lock_path: Path) -> Fresh | None:
    """The recorded counts if the lock is known fresh, else None (then compute it). The record is a
    cache: one that cannot be read or does not have its shape is no record."""
    root = madfile.parent
    try:
        rec = json.loads((root / RECORD).read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    if shape.problems(rec, _SHAPE, limit=1):
        return None
    lock_text = _read(lock_path)
    if lock_text is None or rec["lock"] != _digest(lock_text):
        return None
    try:
        inputs = fingerprint(root, madfile.name, rec["extra"], lock_path.name)[0]
    except (OSError, ValueError):  # a file vanished mid-scan; a NUL in a recorded directory name
        return None
    if rec["inputs"] != inputs:
        return None
    return Fresh(images=rec["images"], jobs=rec["jobs"], lock_text=lock_text, lock_hash=rec["lock_hash"],
                 registry=rec["registry"], tags={m: tuple(t) for m, t in rec["tags"].items()},
                 gates=rec["gates"], targets=rec["targets"], contexts=rec["contexts"],
                 skip_gpu_arch={m: tuple(a) for m, a in rec["skip_gpu_arch"].items()})


def record(madfile: Path, lock_path: Path, extra_dirs: Iterable[str], started_ns: int, *,
           images: int, jobs: int, lock_hash: str, registry: str | None,
           tags: Mapping[str, Sequence[str]], gates: Mapping[str, Mapping[str, Any]],
           targets: Mapping[str, Any] | None = None, contexts: Mapping[str, Any] | None = None,
           skip_gpu_arch: Mapping[str, Sequence[str]] | None = None) -> None:
    """Remember that the lock at lock_path is what its current inputs give. Never raises.

    Nothing is recorded when an input is newer than `started_ns` (when the caller began reading):
    it may have changed after it was read, as in git's "racy clean" case.
    """
    root = madfile.parent
    extra = sorted(set(extra_dirs))
    try:
        inputs, newest = fingerprint(root, madfile.name, extra, lock_path.name)
        if newest >= started_ns - _CLOCK_SLACK_NS:
            return
        data = {"inputs": inputs, "lock": _digest(_read(lock_path)), "lock_hash": lock_hash, "extra": extra,
                "images": images, "jobs": jobs, "registry": registry, "tags": {m: list(t) for m, t in tags.items()},
                "gates": {a: dict(g) for a, g in gates.items()}, "targets": targets,
                "contexts": dict(contexts or {}),
                "skip_gpu_arch": {m: list(a) for m, a in (skip_gpu_arch or {}).items()}}
        path = root / RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def outside_dirs(root: Path, dirs: Iterable[str]) -> set[str]:
    """Those input directories (relative to root, or absolute) that the scan of root does not reach:
    outside it (`../MAD`, `/abs/MAD`) or inside it only through a symlink (`MAD -> ~/src/MAD`),
    since the scan does not follow links."""
    top = root.resolve()
    out = set()
    for d in dirs:
        real = (root / d).resolve()
        if real != top and top not in real.parents:
            out.add(d)
    return out
