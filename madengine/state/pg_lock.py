"""The workspace lock of a PostgreSQL state store (DESIGN §5): one apply (or `state forget`) at a time per
store, from any machine.

A session-level advisory lock (`pg_try_advisory_lock`) on a key derived from the database and the URL's
schema, held on a connection of its own for as long as the apply runs. The holder's record (pid, host,
since, command) is the `meta` row 'lock_holder', so a second apply, wherever it runs, fails at once naming
the holder. PostgreSQL releases a session's advisory locks when its connection drops: a holder killed by
SIGKILL, or whose machine died, never blocks anyone for longer than the server takes to notice (at once
for a killed process; TCP keepalive for a dead machine). Its record is then information only
(`HeldLock.previous`), as with the file lock. `unlock` clears a dead holder's record; `unlock --force`
ends the live holder's lock session (pg_terminate_backend), after which two applies may run at once.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict
from types import TracebackType
from typing import Any

from madengine.errors import StateError, StateLockedError
from madengine.state.location import PgLocation
from madengine.state.lock import Unlocked, parse_holder
from madengine.state.model import Holder, utc_now

# The locks this process holds, by store URL: (server pid of the lock's session, key). A store writing to a
# database whose lock this process took checks, in each write transaction, that the lock is still held.
HELD: dict[str, tuple[int, int]] = {}
_KEY = "SELECT hashtextextended('madengine-workspace:' || current_database() || ':' || current_schema(), 0)"
_UNLOCK_HINT = "wait for it to finish, or run `madengine unlock` if it is dead"


class PgHeldLock:
    """The lock, held on its own connection: a context manager that releases it (and clears the record)."""

    def __init__(self, lock: PgWorkspaceLock, conn: Any, key: int, holder: Holder, previous: Holder | None) -> None:
        self.lock = lock
        self.holder = holder
        self.previous = previous
        self._conn: Any = conn
        self._key = key

    @property
    def held(self) -> bool:
        return self._conn is not None

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        HELD.pop(self.lock.location.url, None)
        try:
            with conn.transaction():
                conn.execute("DELETE FROM meta WHERE key = 'lock_holder'")
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        except Exception:
            pass
        finally:
            conn.close()

    def __enter__(self) -> PgHeldLock:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class PgWorkspaceLock:
    """The lock of the PostgreSQL store at `location` (the interface of `lock.WorkspaceLock`)."""

    def __init__(self, location: PgLocation) -> None:
        self.location = location

    def _connect(self) -> Any:
        from madengine.state import pg

        return pg.connect(self.location)

    def _fail(self, exc: BaseException) -> StateError:
        from madengine.state import pg

        return pg.failure(exc, self.location) or StateError(
            f"the workspace lock of {self.location.display}: {pg.connect_failure(exc, self.location).args[0]}")

    def acquire(self, command: str = "", kind: str = "apply") -> PgHeldLock:
        """Take the lock at once or raise `StateLockedError` naming the holder; never waits. The store is
        created (migrated) under the lock if it is new: the holder's record lives in it."""
        import psycopg

        from madengine.state import pg

        conn = self._connect()
        try:
            key = int(conn.execute(_KEY).fetchone()[0])
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                holder = _record(conn)
                who = holder.describe() if holder is not None else (
                    f"another session of {self.location.display} (no holder recorded)")
                raise StateLockedError(f"state is locked by {who}", hint=_UNLOCK_HINT)
            pg.migrate(conn, self.location)
            previous = _record(conn)
            holder = Holder(pid=os.getpid(), host=socket.gethostname(), since=utc_now(), command=command, kind=kind)
            with conn.transaction():
                conn.execute("INSERT INTO meta (key, value) VALUES ('lock_holder', %s) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             (json.dumps(asdict(holder), sort_keys=True),))
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise self._fail(exc) from None
            raise
        HELD[self.location.url] = (conn.info.backend_pid, key)
        return PgHeldLock(self, conn, key, holder, previous)

    def holder(self) -> Holder | None:
        """The recorded holder, live or dead (`is_held` tells which); None when there is no record."""
        import psycopg

        conn = self._connect()
        try:
            return _record(conn)
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        finally:
            conn.close()

    def live_holder(self) -> Holder | None:
        """The recorded holder if its lock session is alive (asked of pg_locks: nothing is taken)."""
        import psycopg

        conn = self._connect()
        try:
            holder = _record(conn)
            if holder is None:
                return None
            return holder if _lock_pid(conn) is not None else None
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        finally:
            conn.close()

    def is_held(self) -> bool:
        """Whether a live session holds the lock."""
        import psycopg

        conn = self._connect()
        try:
            return _lock_pid(conn) is not None
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        finally:
            conn.close()

    def unlock(self, force: bool = False) -> Unlocked:
        """Clear a dead holder's record; refuse a live holder unless `force`, which ends its lock session."""
        import psycopg

        conn = self._connect()
        try:
            if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
                return Unlocked("free", None)
            key = int(conn.execute(_KEY).fetchone()[0])
            if conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                stale = _record(conn)
                with conn.transaction():
                    conn.execute("DELETE FROM meta WHERE key = 'lock_holder'")
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                return Unlocked("stale" if stale is not None else "free", stale)
            holder = _record(conn)
            if not force:
                who = holder.describe() if holder is not None else "another session"
                raise StateLockedError(f"state is locked by {who}, which is still running",
                                       hint="wait for it to finish; `madengine unlock --force` removes the lock "
                                            "anyway, and two applies may then run at once")
            backend = _lock_pid(conn)
            if backend is not None:
                ended = conn.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
                if not ended:
                    raise StateError(f"cannot end the lock session of {self.location.display} (server pid "
                                     f"{backend})", hint="ask the database's administrator to end it, or stop "
                                                          "the holder")
            with conn.transaction():
                conn.execute("DELETE FROM meta WHERE key = 'lock_holder'")
            return Unlocked("forced", holder)
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        finally:
            conn.close()


def still_held(conn: Any, url: str) -> bool:
    """Whether the lock this process took on the store at `url` is still held by its session (asked on
    `conn`, another session); True when this process took none."""
    held = HELD.get(url)
    if held is None:
        return True
    pid, key = held
    key &= 0xFFFFFFFFFFFFFFFF
    return conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        "AND pid = %s AND classid::bigint = %s AND objid::bigint = %s)", (pid, key >> 32, key & 0xFFFFFFFF),
    ).fetchone()[0] is True


def _record(conn: Any) -> Holder | None:
    if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'lock_holder'").fetchone()
    return parse_holder(row[0].encode()) if row is not None else None


def _lock_pid(conn: Any) -> int | None:
    """The server pid of the session holding the lock, or None. A bigint advisory key is classid (high 32
    bits) and objid (low 32 bits), objsubid 1, in pg_locks."""
    key = int(conn.execute(_KEY).fetchone()[0]) & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid::bigint = %s AND objid::bigint = %s AND pid <> pg_backend_pid() LIMIT 1",
        (key >> 32, key & 0xFFFFFFFF)).fetchone()
    return int(row[0]) if row is not None else None
