"""The workspace lock: one apply (or `state forget`) at a time per state store (DESIGN §5).

An exclusive, non-blocking `fcntl.flock` on `.madengine/state.lock`. The file also holds the holder's
record (pid, host, since, command) as JSON, so a second apply fails at once naming the holder.

The kernel drops a flock when its holder dies, even by SIGKILL, so a dead local holder never blocks
anyone: the next apply takes the lock and finds the dead holder's record (`HeldLock.previous`). The
record is therefore only information; the flock is the truth. `unlock` clears a stale record, and
with `force` unlinks the file under a live holder (the only way to get past a flock that is held).

Limits: flock is per open file description, so a process that *forks* (not fork+exec: the fd is
close-on-exec) while holding the lock shares it with the child until the child exits. On network
filesystems flock is only as good as the server's locking (NFSv4: fine).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, overload

from madengine.errors import FileSystemError, StateError, StateLockedError
from madengine.files import NotAFileError, open_file
from madengine.state.model import Holder, utc_now

if TYPE_CHECKING:
    from madengine.state.location import PgLocation, StateLocation
    from madengine.state.pg_lock import PgWorkspaceLock

LOCK_NAME = "state.lock"
_UNLOCK_HINT = "wait for it to finish, or run `madengine unlock` if it is dead"
# Said when the state's directory cannot be written: reading commands never need to.
STATE_ELSEWHERE = "--state (or $MADENGINE_STATE) puts the state elsewhere; plan, results and state list only read it"
_TRIES = 10  # x 10 ms: how long a lock without a holder record is looked at again


@dataclass(frozen=True)
class Unlocked:
    """What `WorkspaceLock.unlock` did: nothing to do, cleared a dead holder's record, or forced."""

    outcome: Literal["free", "stale", "forced"]
    holder: Holder | None


class HeldLock:
    """The lock, held: a context manager that releases it (and clears the record) on exit."""

    def __init__(self, lock: WorkspaceLock, fd: int, holder: Holder, previous: Holder | None) -> None:
        self.lock = lock
        self.holder = holder
        self.previous = previous  # a holder that died without releasing (its record was still there)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # a clean release leaves no holder record behind
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class WorkspaceLock:
    """The lock of the state store in `state_dir` (file `state_dir/name`)."""

    def __init__(self, state_dir: Path, name: str = LOCK_NAME) -> None:
        self.path = Path(state_dir) / name

    @overload
    @classmethod
    def for_store(cls, location: Path) -> WorkspaceLock: ...

    @overload
    @classmethod
    def for_store(cls, location: PgLocation) -> PgWorkspaceLock: ...

    @overload
    @classmethod
    def for_store(cls, location: StateLocation) -> WorkspaceLock | PgWorkspaceLock: ...

    @classmethod
    def for_store(cls, location: StateLocation) -> WorkspaceLock | PgWorkspaceLock:
        """The lock of a store: beside an SQLite database (`state.db` -> `state.lock`, `other.db` ->
        `other.lock`), or, for a PostgreSQL store, an advisory lock in its database (pg_lock.py)."""
        from madengine.state.location import PgLocation

        if isinstance(location, PgLocation):
            from madengine.state.pg_lock import PgWorkspaceLock

            return PgWorkspaceLock(location)
        return cls(location.parent, location.stem + ".lock")

    def acquire(self, command: str = "", kind: str = "apply") -> HeldLock:
        """Take the lock at once or raise `StateLockedError` naming the holder; never waits. `kind` is
        recorded with the holder: what it is doing ("apply", "forget"), for readers of the record."""
        tries = 0
        while True:
            fd = self._open(os.O_RDWR | os.O_CREAT, create=True)
            try:
                locked = _try_flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            if locked:
                if _same_file(fd, self.path):
                    break
                # `unlock --force` unlinked the file between our open and flock: lock the new one.
                os.close(fd)
                continue
            os.close(fd)
            holder = self.holder()
            tries += 1
            # No record yet: the holder is writing it, or `is_held` is probing. Look again, briefly.
            if holder is not None or tries >= _TRIES:
                who = holder.describe() if holder is not None else (
                    f"another process (no holder recorded in {self.path})")
                raise StateLockedError(f"state is locked by {who}", hint=_UNLOCK_HINT)
            time.sleep(0.01)
        try:
            previous = parse_holder(_read_fd(fd))
            holder = Holder(pid=os.getpid(), host=socket.gethostname(), since=utc_now(), command=command,
                            kind=kind)
            data = json.dumps(asdict(holder), sort_keys=True).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data + b"\n", 0)
        except BaseException as exc:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if isinstance(exc, OSError) and (
                    error := FileSystemError.of(exc, self.path, also=STATE_ELSEWHERE, doing="write")):
                raise error from exc  # a full disk: named, the lock left free
            raise
        return HeldLock(self, fd, holder, previous)

    def _open(self, flags: int, create: bool = False) -> int:
        """The lock file, opened; FileNotFoundError passes (callers know what no lock means). Anything
        else in its place, or a file system that refuses it, is a state error naming the path."""
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            return open_file(self.path, flags)  # a FIFO there must not hang us
        except NotAFileError as exc:
            raise self._not_a_lock(exc.what) from None
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise self._not_a_lock("a directory") from None
            raise FileSystemError.of(exc, self.path, also=STATE_ELSEWHERE, doing="write") or StateError(
                f"cannot open the workspace lock {self.path}: {exc.strerror}") from exc

    def _not_a_lock(self, what: str) -> StateError:
        return StateError(f"the workspace lock {self.path} is {what}",
                          hint=f"madengine keeps a small file there; remove or move it (`mv {self.path} "
                               f"{self.path}.old`) and run the command again")

    def holder(self) -> Holder | None:
        """The recorded holder, live or dead (`is_held` tells which); None when there is no record."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return parse_holder(_read_fd(fd))
        finally:
            os.close(fd)

    def live_holder(self) -> Holder | None:
        """The recorded holder if it is alive, without touching the lock when it can be asked otherwise:
        a holder on this host is alive if its pid is (signal 0: ESRCH is dead, EPERM alive), so a reader
        (plan) never takes the flock that would make a concurrent `acquire` fail. A holder on another
        host (a shared file system) can only be asked through the lock: `is_held`."""
        holder = self.holder()
        if holder is None:
            return None
        if holder.host == socket.gethostname():
            try:
                os.kill(holder.pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                return holder  # alive, another user's
            return holder
        return holder if self.is_held() else None

    def is_held(self) -> bool:
        """Whether a live process holds the lock. Probed with a shared, non-blocking flock, which for
        its microseconds makes a concurrent `acquire` fail as if this caller held the lock."""
        try:
            fd = self._open(os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            if _try_flock(fd, fcntl.LOCK_SH):
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
            return True
        finally:
            os.close(fd)

    def unlock(self, force: bool = False) -> Unlocked:
        """Clear a dead holder's record; refuse a live holder unless `force`, which unlinks the lock file."""
        try:
            fd = self._open(os.O_RDWR)
        except FileNotFoundError:
            return Unlocked("free", None)
        try:
            if _try_flock(fd, fcntl.LOCK_EX):
                stale = parse_holder(_read_fd(fd))
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return Unlocked("stale" if stale is not None else "free", stale)
            holder = parse_holder(_read_fd(fd))
        finally:
            os.close(fd)
        if not force:
            who = holder.describe() if holder is not None else "another process"
            raise StateLockedError(f"state is locked by {who}, which is still running",
                                   hint="wait for it to finish; `madengine unlock --force` removes the lock "
                                        "anyway, and two applies may then run at once")
        self.path.unlink(missing_ok=True)
        return Unlocked("forced", holder)


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


def _read_fd(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def parse_holder(data: bytes) -> Holder | None:
    """A holder record, or None for an empty or unreadable one (a record is information, not truth)."""
    try:
        raw = json.loads(data.decode("utf-8"))
        return Holder(pid=int(raw["pid"]), host=str(raw["host"]), since=str(raw["since"]),
                      command=str(raw.get("command", "")), kind=str(raw.get("kind", "apply")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
