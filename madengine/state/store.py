"""The state store (DESIGN §5, §7): SQLite in WAL mode at `.madengine/state.db` beside the madfile, or a
PostgreSQL database by URL (`state: postgresql://...`, $MADENGINE_STATE_URL, `--state URL`; pg.py).

One `StateStore`, one set of queries: the few differences of dialect (placeholders, how a transaction
begins, what an error means) are in the connection wrappers `_SqliteDb` and `pg.PgDb`; the schema has
one script per version per dialect (schema.py). What follows about files, WAL and PRAGMAs is SQLite's;
pg.py says how PostgreSQL gives the same guarantees.

It records each apply (lock hash, serial, outcome), the images realized per target, every attempt of
every job and its performance rows. Every write is its own committed transaction, so each finished
node is durable the moment `finish_attempt` returns: an apply killed right after resumes from there.

Durability: `synchronous=NORMAL`. In WAL mode a commit has been written to the WAL file (the OS page
cache) before it returns, so it survives the process being killed (SIGKILL, OOM, Ctrl-C) and the
database cannot be corrupted by any crash. Only a power loss or OS crash may drop the last few
commits, and what they recorded is then simply run again by the next apply. FULL would add an fsync
per commit for that case alone; `StateStore.open(..., synchronous="FULL")` is there for those who want it.

Threads: one connection per store, in autocommit mode (`isolation_level=None`) with explicit
`BEGIN IMMEDIATE` around multi-statement writes. Every public method holds the store's mutex, so calls
from several threads are serialized and never interleave inside a transaction; the intended use is
still one writer thread per apply. Processes: the workspace lock (`state/lock.py`) keeps applies
apart; WAL lets readers (`plan`, `state list`) run beside a writer, and `busy_timeout` covers the
short write transactions of `state forget` or a migration.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import json
import operator
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Protocol

from madengine.errors import FileSystemError, MadengineError, StateError
from madengine.files import NotAFileError, refuse_non_file
from madengine.state.location import (
    STATE_DIR,
    STATE_ENV,
    STATE_NAME,
    STATE_URL_ENV,
    PgLocation,
    StateLocation,
    describe,
    state_location,
)
from madengine.state.lock import STATE_ELSEWHERE
from madengine.state.model import ApplyRecord, Attempt, ImageRecord, Observed, PerfRow, Status, instant, utc_now
from madengine.state.schema import OlderSchemaError, check_readable, migrate

__all__ = ["STATE_DIR", "STATE_ENV", "STATE_NAME", "STATE_URL_ENV", "StateLocation", "StateStore", "state_path"]
BUSY_TIMEOUT_MS = 10_000

_ATTEMPT_COLUMNS = ("id, apply_id, address, node_hash, status, started_at, ended_at, host, exit_code, log_path, "
                    "image_digest, inputs, handle, message, gate, facts")
_IMAGE_COLUMNS = "address, target, node_hash, tag, image_id, digest, inputs, built_at, status, host"
# The latest attempt of each address and its perf rows. The (address, id) index answers the inner
# GROUP BY without reading the table; each attempt and perf row is then one primary-key lookup.
_LATEST_WITH_PERF = (
    "SELECT " + ", ".join(f"a.{c.strip()}" for c in _ATTEMPT_COLUMNS.split(",")) +
    ", p.model, p.performance, p.metric, p.status"
    " FROM (SELECT max(id) AS id FROM attempts GROUP BY address) AS latest"
    " JOIN attempts AS a ON a.id = latest.id"
    " LEFT JOIN perf AS p ON p.attempt_id = a.id"
    " ORDER BY a.id, p.seq")
_STATUS = {s.value: s for s in Status}


def state_path(madfile_root: Path, override: str | None = None, environ: Mapping[str, str] | None = None,
               configured: str | None = None) -> StateLocation:
    """Where the state store is (`location.state_location`): an SQLite file, or a PostgreSQL URL."""
    return state_location(madfile_root, override, environ, configured)


class Db(Protocol):
    """A store's connection, as its queries use it: `?` placeholders, explicit transactions, and what a
    failure means for the user (`fail`). `_SqliteDb` here, `pg.PgDb` for PostgreSQL."""

    dialect: str
    errors: tuple[type[BaseException], ...]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def begin(self, write: bool) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    @property
    def in_transaction(self) -> bool: ...
    def close(self) -> None: ...
    def ids_given(self, tables: Sequence[str]) -> None: ...
    def fail(self, exc: BaseException) -> NoReturn: ...


class _SqliteDb:
    """The store's SQLite connection, with the calls the queries make of a connection (pg.PgDb has them too)."""

    dialect = "sqlite"
    errors: tuple[type[BaseException], ...] = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def begin(self, write: bool) -> None:
        # IMMEDIATE takes the write lock up front, so a busy database waits (busy_timeout) at BEGIN
        # rather than failing mid-transaction; a read is one WAL snapshot.
        self.conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def close(self) -> None:
        self.conn.close()

    def ids_given(self, tables: Sequence[str]) -> None:
        """Rows were inserted with their ids: AUTOINCREMENT's sequence already follows them."""

    def fail(self, exc: BaseException) -> NoReturn:
        assert isinstance(exc, sqlite3.Error)
        _reraise(exc, self.path)


class StateStore:
    """The state of one workspace. Open with `StateStore.open(location)`; a context manager."""

    def __init__(self, db: Db, location: StateLocation, *, readonly: bool = False) -> None:
        self._db = db
        self.location = location
        # The SQLite file; for a PostgreSQL store, its local workspace directory (messages use `where`).
        self.path: Path = location.workspace if isinstance(location, PgLocation) else location
        self.where = describe(location)
        self.readonly = readonly
        self._mutex = threading.RLock()

    @property
    def dialect(self) -> str:
        return str(self._db.dialect)

    @classmethod
    def open(cls, location: StateLocation, *, synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
             readonly: bool = False) -> StateStore:
        """Open (creating it and its directory if needed), check and migrate the store at `location`.

        `readonly` is for commands that only read (plan, results, state list): they create nothing,
        write nothing, and so work on a read-only workspace; a store that does not exist reads as empty.
        `synchronous` is SQLite's (PostgreSQL's durability is its server's)."""
        if isinstance(location, PgLocation):
            return cls._open_pg(location, readonly=readonly)
        path = Path(location)
        _refuse_non_file(path)
        if readonly:
            return cls._open_readonly(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileSystemError.of(exc, path.parent, also=STATE_ELSEWHERE, doing="write") or StateError(
                f"cannot create the state directory {path.parent}: {exc.strerror}") from exc
        try:
            # check_same_thread=False: the mutex below serializes threads instead of refusing them.
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            raise _failure(exc, path) or StateError(f"cannot open the state database {path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            _check_pages(conn, path, trust_unchanged=False)  # what apply builds on is always checked
            migrate(conn, str(path))
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                _reraise(exc, path)
            raise
        return cls(_SqliteDb(conn, path), path)

    @classmethod
    def _open_pg(cls, location: PgLocation, *, readonly: bool) -> StateStore:
        from madengine.state import pg
        from madengine.state.schema import SCHEMA_VERSION

        conn = pg.connect(location)
        db = pg.PgDb(conn, location)
        try:
            if readonly:
                found = pg.check_schema(conn, location)
                if found == 0:
                    conn.close()
                    return cls._empty(location)
                if found < SCHEMA_VERSION:
                    pg.migrate(conn, location)  # as SQLite's: the first reader of an older store upgrades it
            else:
                pg.migrate(conn, location)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, db.errors):
                db.fail(exc)
            raise
        return cls(db, location, readonly=readonly)

    @classmethod
    def _open_readonly(cls, path: Path) -> StateStore:
        if not path.exists():
            return cls._empty(path)
        uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
        except sqlite3.Error as exc:
            _reraise(exc, path)
        try:
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL, or cannot
            except sqlite3.OperationalError as exc:
                # A WAL database is read through its shared-memory file (`-shm`), which a read-only
                # directory cannot get. With no log to replay, the file alone is the whole state.
                if _code(exc) != sqlite3.SQLITE_CANTOPEN or _wal_pending(path):
                    raise
                conn.close()
                conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None,
                                       check_same_thread=False)
            _check_pages(conn, path, trust_unchanged=True)
            if check_readable(conn, str(path)) == 0:
                conn.close()
                return cls._empty(path)
        except OlderSchemaError:
            conn.close()
            if _unwritable(path) is not None:
                raise
            # Written by an older madengine: upgraded by the first command that reads it, where it can be
            # written, so that a new madengine's `results` or `plan` never needs an `apply` first.
            return cls.open(path)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                _reraise(exc, path)
            raise
        return cls(_SqliteDb(conn, path), path, readonly=True)

    @classmethod
    def _empty(cls, location: StateLocation) -> StateStore:
        """No store yet: an empty one in memory, which reads as "nothing recorded" and writes nowhere."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        migrate(conn, describe(location))
        return cls(_SqliteDb(conn, Path(":memory:")), location, readonly=True)

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- transactions ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Db]:
        """One write transaction, committed on exit (SQLite: BEGIN IMMEDIATE, which waits busy_timeout
        for the write lock at BEGIN rather than failing mid-transaction)."""
        if self.readonly:
            raise RuntimeError("a store opened read-only was asked to write")
        with self._mutex:
            db = self._db
            try:
                db.begin(write=True)
            except db.errors as exc:  # still locked after busy_timeout, the server gone, or worse
                db.fail(exc)
            try:
                yield db
                db.commit()
            except BaseException as exc:
                if db.in_transaction:
                    with contextlib.suppress(*db.errors):
                        db.rollback()
                if isinstance(exc, db.errors):
                    db.fail(exc)
                raise

    @contextmanager
    def _read(self) -> Iterator[Db]:
        """A read transaction: one snapshot across the several queries of one answer (SQLite: of the WAL;
        PostgreSQL: REPEATABLE READ). A damaged page or a row madengine cannot have written is a state
        error naming the store and the row."""
        with self._mutex:
            db = self._db
            if db.in_transaction:  # nested in another read (see `observed`): same snapshot
                yield db
                return
            try:
                db.begin(write=False)
                try:
                    yield db
                finally:
                    if db.in_transaction:
                        db.commit()
            except db.errors as exc:
                db.fail(exc)
            except _BadRow as bad:
                raise bad.error(self.where) from None

    # --- applies and the serial -----------------------------------------------------------------

    def serial(self) -> int:
        """The state serial: moves with every write a planner could see (an apply starting, an image or
        attempt recorded, state forgotten), as Terraform's does. A plan saved at one serial is stale at
        another: check it under the workspace lock, before `begin_apply`."""
        with self._read() as conn:
            return _serial(conn)

    def begin_apply(self, lock_hash: str) -> int:
        """Record the start of an apply (host, pid, now) and bump the serial; return the apply id."""
        with self._write() as conn:
            serial = _bump_serial(conn)
            cur = conn.execute(
                "INSERT INTO applies (lock_hash, serial, started_at, host, pid) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (lock_hash, serial, utc_now(), socket.gethostname(), os.getpid()))
            return _new_id(cur)

    def finish_apply(self, apply_id: int, outcome: str) -> None:
        """Record the outcome; the apply's serial becomes the one it leaves the state at."""
        with self._write() as conn:
            cur = conn.execute("UPDATE applies SET ended_at = ?, outcome = ?, serial = ? WHERE id = ?",
                               (utc_now(), outcome, _serial(conn), apply_id))
            _expect_row(cur, "apply", apply_id)

    def close_abandoned_applies(self, outcome: str = "INTERRUPTED") -> list[int]:
        """Give applies that never finished (their process died) an outcome; return their ids.
        Call it holding the workspace lock, before `begin_apply`: then no open apply is alive."""
        with self._write() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM applies WHERE outcome IS NULL ORDER BY id")]
            conn.execute("UPDATE applies SET outcome = ? WHERE outcome IS NULL", (outcome,))
            return ids

    def applies(self) -> list[ApplyRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, lock_hash, serial, started_at, ended_at, outcome, host FROM applies ORDER BY id")
            return [ApplyRecord(id=r[0], lock_hash=r[1], serial=r[2], started_at=r[3], ended_at=r[4],
                                outcome=r[5], host=r[6]) for r in rows]

    # --- images ---------------------------------------------------------------------------------

    def record_image(self, rec: ImageRecord, apply_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO images ({_IMAGE_COLUMNS}, apply_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.address, rec.target, rec.node_hash, rec.tag, rec.image_id, rec.digest, _dumps(rec.inputs),
                 rec.built_at, Status(rec.status).value, rec.host, apply_id))
            _bump_serial(conn)

    def images(self) -> dict[tuple[str, str], ImageRecord]:
        """The latest successful build of each (address, target), on whichever of its hosts."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN "
                "(SELECT max(id) FROM images WHERE status = 'SUCCESS' GROUP BY address, target)")
            return {(r[0], r[1]): _image(r) for r in rows}

    def placements(self) -> dict[tuple[str, str, str], ImageRecord]:
        """The latest successful record of each (address, target, host): where each image was put
        (host '' is the target's only host)."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id IN "
                "(SELECT max(id) FROM images WHERE status = 'SUCCESS' GROUP BY address, target, host)")
            return {(r[0], r[1], r[9]): _image(r) for r in rows}

    def image_records(self, address: str) -> list[ImageRecord]:
        """Every recorded build of one image address (all targets, failures too), oldest first."""
        with self._read() as conn:
            rows = conn.execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE address = ? ORDER BY id", (address,))
            return [_image(r) for r in rows]

    def forget_image(self, address: str, target: str) -> int:
        """Drop the records of one image on one target (it is gone: the next plan builds it).
        Returns the number of records removed."""
        with self._write() as conn:
            removed = conn.execute("DELETE FROM images WHERE address = ? AND target = ?", (address, target)).rowcount
            if removed:
                _bump_serial(conn)
            return int(removed)

    # --- attempts -------------------------------------------------------------------------------

    def start_attempt(self, apply_id: int, address: str, node_hash: str, inputs: dict[str, Any],
                      host: str | None, log_path: str | None, handle: str | None = None,
                      facts: Mapping[str, Any] | None = None) -> int:
        """Record a RUNNING attempt (committed before the job starts); return its id. `facts`: the
        host facts it runs under (JSON), stored as given."""
        model = inputs.get("model")
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO attempts (apply_id, address, node_hash, model, status, started_at, host, log_path, "
                "inputs, handle, facts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (apply_id, address, node_hash, model if isinstance(model, str) else None, Status.RUNNING.value,
                 utc_now(), host, log_path, _dumps(inputs), handle,
                 _dumps(dict(facts)) if facts is not None else None))
            attempt_id = _new_id(cur)
            _bump_serial(conn)
            return attempt_id

    def set_attempt_handle(self, attempt_id: int, handle: str | None) -> None:
        """What to stop if the apply is killed (a process group id, a container id...), as text."""
        with self._write() as conn:
            _expect_row(conn.execute("UPDATE attempts SET handle = ? WHERE id = ?", (handle, attempt_id)),
                        "attempt", attempt_id)

    def finish_attempt(self, attempt_id: int, status: Status, *, exit_code: int | None = None, message: str = "",
                       perf: Sequence[PerfRow] = (), image_digest: str | None = None,
                       gate: Mapping[str, Any] | None = None) -> None:
        """Record how an attempt ended, with its performance rows and its gate's verdict (`results.gates`),
        in one committed transaction."""
        status = Status(status)
        if status is Status.RUNNING:
            raise ValueError("finish_attempt needs a final status, not RUNNING")
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE attempts SET status = ?, ended_at = ?, exit_code = ?, message = ?, "
                "image_digest = coalesce(?, image_digest), gate = ? WHERE id = ?",
                (status.value, utc_now(), exit_code, message, image_digest,
                 _dumps(dict(gate)) if gate is not None else None, attempt_id))
            _expect_row(cur, "attempt", attempt_id)
            conn.execute("DELETE FROM perf WHERE attempt_id = ?", (attempt_id,))
            conn.executemany(
                "INSERT INTO perf (attempt_id, seq, model, performance, metric, status) VALUES (?, ?, ?, ?, ?, ?)",
                [(attempt_id, i, p.model, p.performance, p.metric, Status(p.status).value)
                 for i, p in enumerate(perf)])
            _bump_serial(conn)

    def set_gates(self, verdicts: Mapping[int, Mapping[str, Any]]) -> None:
        """Record gate verdicts (`Verdict.to_json`) on finished attempts, by attempt id, in one transaction:
        the end of an apply re-judges the latest results with the current gates, and what `results` shows
        is that judgement. The serial does not move: a planner never reads a verdict."""
        if not verdicts:
            return
        with self._write() as conn:
            for attempt_id, verdict in verdicts.items():
                _expect_row(conn.execute("UPDATE attempts SET gate = ? WHERE id = ?",
                                         (_dumps(dict(verdict)), attempt_id)), "attempt", attempt_id)

    def mark_interrupted(self, attempt_ids: Sequence[int], message: str) -> int:
        """Mark still-RUNNING attempts INTERRUPTED (Ctrl-C, or left by a killed apply); return how many."""
        if not attempt_ids:
            return 0
        now = utc_now()
        with self._write() as conn:
            marked = sum(conn.execute(
                "UPDATE attempts SET status = ?, ended_at = coalesce(ended_at, ?), message = ? "
                "WHERE id = ? AND status = ?",
                (Status.INTERRUPTED.value, now, message, i, Status.RUNNING.value)).rowcount for i in attempt_ids)
            if marked:
                _bump_serial(conn)
            return int(marked)

    def running_attempts(self) -> list[Attempt]:
        with self._read() as conn:
            return _attempts(conn, "WHERE status = 'RUNNING'", ())

    def latest_attempts(self) -> dict[str, Attempt]:
        """The latest attempt (finished or running) of every address, with its perf rows, in one query."""
        with self._read() as conn:
            rows = conn.execute(_LATEST_WITH_PERF).fetchall()
            # One row per perf row (or one with NULL perf columns), grouped by attempt.
            groups = [list(g) for _, g in itertools.groupby(rows, key=operator.itemgetter(0))]
            # One JSON parse for all the inputs: about twice as fast as one `json.loads` per attempt.
            try:
                inputs = json.loads("[" + ",".join(g[0][11] for g in groups) + "]")
            except (ValueError, TypeError, RecursionError):
                inputs = [_inputs(g[0][11], "attempts", g[0][0], g[0][2]) for g in groups]  # to name the bad one
            out: dict[str, Attempt] = {}
            for group, data in zip(groups, inputs, strict=True):
                perf = tuple(_perf_row(r[0], r[2], r[16], r[17], r[18], r[19]) for r in group if r[16] is not None)
                attempt = _attempt(group[0], perf, data)
                out[attempt.address] = attempt
            return out

    def attempts(self, address: str | None = None, apply_id: int | None = None,
                 model: str | None = None) -> list[Attempt]:
        """Attempts, oldest first, with their perf rows. `model` matches the job's model or a perf row's
        model name (`<model>_<row>` of a multiple_results CSV)."""
        clauses: list[str] = []
        params: list[Any] = []
        if address is not None:
            clauses.append("address = ?")
            params.append(address)
        if apply_id is not None:
            clauses.append("apply_id = ?")
            params.append(apply_id)
        if model is not None:
            clauses.append("(model = ? OR id IN (SELECT attempt_id FROM perf WHERE model = ?))")
            params += [model, model]
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with self._read() as conn:
            return _attempts(conn, where, tuple(params))

    def addresses(self) -> list[str]:
        """Every address with a recorded attempt or image, sorted."""
        with self._read() as conn:
            rows = conn.execute("SELECT address FROM attempts UNION SELECT address FROM images")
            return sorted(r[0] for r in rows)  # by code point, whatever the database's collation

    def observed(self) -> Observed:
        """What the planner reads, from one snapshot: serial, realized images, latest attempts."""
        with self._read():
            return Observed(serial=self.serial(), images=self.placements(), latest=self.latest_attempts())

    # --- maintenance ----------------------------------------------------------------------------

    def forget(self, address: str) -> int:
        """Remove every image record and attempt (with its perf rows) of `address`, so the next plan
        treats it as never realized; bump the serial. Returns the number of records removed."""
        with self._write() as conn:
            images = conn.execute("DELETE FROM images WHERE address = ?", (address,)).rowcount
            attempts = conn.execute("DELETE FROM attempts WHERE address = ?", (address,)).rowcount
            if images or attempts:
                _bump_serial(conn)
            return int(images + attempts)

    def count_records(self, address: str) -> tuple[int, int]:
        """How many attempts and image records `address` has (without reading them: `state forget` of
        a row that cannot be read is how it is removed)."""
        with self._read() as conn:
            attempts = conn.execute("SELECT count(*) FROM attempts WHERE address = ?", (address,)).fetchone()[0]
            images = conn.execute("SELECT count(*) FROM images WHERE address = ?", (address,)).fetchone()[0]
            return int(attempts), int(images)

    # --- export and import (results export|import; state/transfer.py gives the file its shape) -----------

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every record, from one snapshot, oldest first: applies, images, attempts (each with its perf rows),
        as plain values (the JSON columns parsed)."""
        with self._read() as db:
            applies = [dict(zip(_DUMP_APPLY, r, strict=True)) for r in db.execute(
                f"SELECT {', '.join(_DUMP_APPLY)} FROM applies ORDER BY id")]
            images = []
            for r in db.execute(f"SELECT {', '.join(_DUMP_IMAGE)} FROM images ORDER BY id"):
                rec = dict(zip(_DUMP_IMAGE, r, strict=True))
                rec["inputs"] = _inputs(rec["inputs"], "images", rec["id"], rec["address"])
                images.append(rec)
            perf: dict[int, list[dict[str, Any]]] = {}
            for attempt_id, model, performance, metric, status in db.execute(
                    "SELECT attempt_id, model, performance, metric, status FROM perf ORDER BY attempt_id, seq"):
                perf.setdefault(attempt_id, []).append(
                    {"model": model, "performance": performance, "metric": metric, "status": status})
            attempts = []
            for r in db.execute(f"SELECT {', '.join(_DUMP_ATTEMPT)} FROM attempts ORDER BY id"):
                rec = dict(zip(_DUMP_ATTEMPT, r, strict=True))
                for key, what in (("inputs", "inputs that are"), ("gate", "a gate verdict that is"),
                                  ("facts", "host facts that are")):
                    if rec[key] is not None:
                        rec[key] = _inputs(rec[key], "attempts", rec["id"], rec["address"], what)
                rec["perf"] = perf.get(rec["id"], [])
                attempts.append(rec)
        return {"applies": applies, "images": images, "attempts": attempts}

    def load(self, records: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, int]:
        """Add records in `dump`'s shape, in their order, in one transaction; what is already here (the same
        apply, image or attempt by its natural key: when, where, what) is not added again, so loading the
        same records twice adds nothing. Ids are kept when the store has no record yet, else new ones are
        given (references follow). The serial moves once if anything was added. Returns the counts added."""
        added = {"applies": 0, "images": 0, "attempts": 0, "perf": 0}
        with self._write() as db:
            empty = all(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0
                        for t in ("applies", "images", "attempts"))
            apply_ids: dict[Any, int] = {}
            known_applies = {(r[1], r[2], r[3], r[4]): r[0] for r in db.execute(
                "SELECT id, lock_hash, started_at, host, pid FROM applies")}
            # An apply added after the newest here gets a higher id: one that started before it would
            # become `latest` (compare, plan) though it is older. Refused, nothing added (ids are kept).
            newest = max((k[1] for k in known_applies), key=_instant, default=None)
            for a in records.get("applies", ()):
                key = (a["lock_hash"], a["started_at"], a["host"], a["pid"])
                if key not in known_applies and newest is not None and _instant(a["started_at"]) < _instant(newest):
                    raise OlderHistoryError(a["started_at"], newest)
            for a in records.get("applies", ()):
                key = (a["lock_hash"], a["started_at"], a["host"], a["pid"])
                if key in known_applies:
                    apply_ids[a["id"]] = known_applies[key]
                    continue
                cols = [c for c in _DUMP_APPLY if empty or c != "id"]
                apply_ids[a["id"]] = known_applies[key] = _insert(db, "applies", cols, [a[c] for c in cols])
                added["applies"] += 1
            known_images = collections.Counter(tuple(r) for r in db.execute(
                "SELECT address, target, host, node_hash, tag, built_at, status FROM images"))
            for i in records.get("images", ()):
                ikey = (i["address"], i["target"], i["host"], i["node_hash"], i["tag"], i["built_at"], i["status"])
                if known_images[ikey] > 0:
                    known_images[ikey] -= 1
                    continue
                row = {**i, "inputs": _dumps(i["inputs"]),
                       "apply_id": apply_ids.get(i["apply_id"]) if i["apply_id"] is not None else None}
                cols = [c for c in _DUMP_IMAGE if empty or c != "id"]
                _insert(db, "images", cols, [row[c] for c in cols])
                added["images"] += 1
            # Attempts by all they recorded but their id, counted: the same attempt twice in the store (two
            # starts within a millisecond) is two attempts, and a file with both adds what is missing of them.
            known_attempts = collections.Counter(tuple(r) for r in db.execute(
                f"SELECT {', '.join(_ATTEMPT_KEY)} FROM attempts"))
            for t in records.get("attempts", ()):
                apply_id = apply_ids[t["apply_id"]]
                tkey = tuple(apply_id if c == "apply_id" else t[c] for c in _ATTEMPT_KEY)
                if known_attempts[tkey] > 0:
                    known_attempts[tkey] -= 1
                    continue
                row = {**t, "apply_id": apply_id, "inputs": _dumps(t["inputs"]),
                       "gate": _dumps(t["gate"]) if t["gate"] is not None else None,
                       "facts": _dumps(t["facts"]) if t["facts"] is not None else None}
                cols = [c for c in _DUMP_ATTEMPT if empty or c != "id"]
                attempt_id = _insert(db, "attempts", cols, [row[c] for c in cols])
                db.executemany(
                    "INSERT INTO perf (attempt_id, seq, model, performance, metric, status) VALUES (?, ?, ?, ?, ?, ?)",
                    [(attempt_id, n, p["model"], p["performance"], p["metric"], p["status"])
                     for n, p in enumerate(t["perf"])])
                added["attempts"] += 1
                added["perf"] += len(t["perf"])
            if empty and any(added.values()):
                db.ids_given(("applies", "images", "attempts"))
            if any(added.values()):
                _bump_serial(db)
        return added

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok", or the problems found, one per line. A PostgreSQL
        server checks its own pages; there "ok" means the store answers a query."""
        with self._mutex:
            if self.dialect != "sqlite":
                with self._read() as db:
                    db.execute("SELECT count(*) FROM meta").fetchone()
                return "ok"
            return "\n".join(str(r[0]) for r in self._db.execute("PRAGMA integrity_check"))


class OlderHistoryError(Exception):
    """`load` refused: an apply to add started (`started`) before the store's newest apply (`newest`)."""

    def __init__(self, started: str, newest: str) -> None:
        super().__init__(f"an apply of {started} is older than the newest here, of {newest}")
        self.started, self.newest = started, newest


def _instant(text: str) -> datetime:
    return instant(text) or datetime.min.replace(tzinfo=timezone.utc)  # unreadable: the oldest


# --- rows -> records ---------------------------------------------------------------------------


_DUMP_APPLY = ("id", "lock_hash", "serial", "started_at", "ended_at", "outcome", "host", "pid")
_DUMP_IMAGE = ("id", "apply_id", "address", "target", "host", "node_hash", "tag", "image_id", "digest", "inputs",
               "built_at", "status")
# What tells an attempt from another besides its id (its apply's id is the store's)
_ATTEMPT_KEY = ("apply_id", "address", "node_hash", "status", "started_at", "ended_at", "host", "exit_code",
                "handle", "message")
_DUMP_ATTEMPT = ("id", "apply_id", "address", "node_hash", "model", "status", "started_at", "ended_at", "host",
                 "exit_code", "log_path", "image_digest", "inputs", "handle", "message", "gate", "facts")


def _insert(db: Any, table: str, columns: Sequence[str], values: Sequence[Any]) -> int:
    cur = db.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                     "RETURNING id", tuple(values))
    return _new_id(cur)


def _serial(conn: Any) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'serial'").fetchone()
    return int(row[0]) if row is not None else 0


def _bump_serial(conn: Any) -> int:
    # fetchall: an SQLite statement with RETURNING is finished only once all its rows are read.
    rows = conn.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'serial' "
                        "RETURNING value").fetchall()
    return int(rows[0][0]) if rows else 0


def _new_id(cur: Any) -> int:
    """The id an `INSERT ... RETURNING id` made (both dialects have RETURNING)."""
    rows = cur.fetchall()
    if not rows:  # pragma: no cover - an INSERT always returns its row
        raise RuntimeError("INSERT without a row id")
    return int(rows[0][0])


def _expect_row(cur: Any, kind: str, ident: int) -> None:
    if cur.rowcount == 0:
        raise StateError(f"no {kind} {ident} in the state store",
                         hint="was it removed by `madengine state forget` during the apply?")


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


class _BadRow(Exception):
    """A row madengine cannot have written (an unknown status, inputs that are not a JSON object)."""

    def __init__(self, table: str, ident: object, address: object, what: str) -> None:
        super().__init__(what)
        self.table, self.ident, self.address, self.what = table, ident, address, what

    def error(self, path: Path | str) -> StateError:
        return StateError(f"{path}: {self.table} row {self.ident} ({self.address}) {self.what}",
                          hint=f"`madengine state forget {self.address}` removes its records; or move {path} "
                               "aside to start from empty state")


def _status(value: object, table: str, ident: object, address: object) -> Status:
    try:
        return _STATUS[value]  # type: ignore[index]
    except (KeyError, TypeError):
        raise _BadRow(table, ident, address, f"has an unknown status {value!r}") from None


def _inputs(text: object, table: str, ident: object, address: object,
            what: str = "inputs that are") -> dict[str, Any]:
    try:
        data = json.loads(text)  # type: ignore[arg-type]
    except (ValueError, TypeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise _BadRow(table, ident, address, f"has {what} not a JSON object: {str(text)[:40]!r}")
    return data


def _perf_row(attempt_id: int, address: str, model: str, performance: float | None, metric: str,
              status: str) -> PerfRow:
    return PerfRow(model, performance, metric, _status(status, "perf", f"of attempt {attempt_id}", address))


def _image(r: sqlite3.Row | tuple[Any, ...]) -> ImageRecord:
    return ImageRecord(address=r[0], target=r[1], node_hash=r[2], tag=r[3], image_id=r[4], digest=r[5],
                       inputs=_inputs(r[6], "images", f"for {r[1]}", r[0]), built_at=r[7],
                       status=_status(r[8], "images", f"for {r[1]}", r[0]), host=r[9])


def _attempts(conn: Any, where: str, params: tuple[Any, ...]) -> list[Attempt]:
    """Attempts matching `where`, oldest first, each with its perf rows (fetched in one more query)."""
    rows = conn.execute(f"SELECT {_ATTEMPT_COLUMNS} FROM attempts {where} ORDER BY id", params).fetchall()
    if not rows:
        return []
    perf: dict[int, list[PerfRow]] = {}
    addresses = {r[0]: r[2] for r in rows}
    for attempt_id, model, performance, metric, status in conn.execute(
            f"SELECT attempt_id, model, performance, metric, status FROM perf WHERE attempt_id IN "
            f"(SELECT id FROM attempts {where}) ORDER BY attempt_id, seq", params):
        perf.setdefault(attempt_id, []).append(
            _perf_row(attempt_id, addresses.get(attempt_id, "?"), model, performance, metric, status))
    return [_attempt(r, tuple(perf.get(r[0], ()))) for r in rows]


def _attempt(r: tuple[Any, ...], perf: tuple[PerfRow, ...], inputs: dict[str, Any] | None = None) -> Attempt:
    """An attempt from a row of `_ATTEMPT_COLUMNS` (further columns are ignored)."""
    if inputs is None or not isinstance(inputs, dict):
        inputs = _inputs(r[11], "attempts", r[0], r[2])
    return Attempt(id=r[0], apply_id=r[1], address=r[2], node_hash=r[3],
                   status=_status(r[4], "attempts", r[0], r[2]), started_at=r[5], ended_at=r[6], host=r[7],
                   exit_code=r[8], log_path=r[9], image_digest=r[10], inputs=inputs, handle=r[12], message=r[13],
                   perf=perf,
                   gate=_inputs(r[14], "attempts", r[0], r[2], "a gate verdict that is") if r[14] else None,
                   facts=_inputs(r[15], "attempts", r[0], r[2], "host facts that are") if r[15] else None)


# --- checks and failures -------------------------------------------------------------------------

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_CLOCK_SLACK_NS = 100_000_000  # file mtimes come from the kernel's coarse clock


def _refuse_non_file(path: Path) -> None:
    """A directory or a FIFO where the store should be: said, not opened (SQLite would wait on a FIFO
    forever, retrying through every signal)."""
    try:
        refuse_non_file(path)
    except NotAFileError as exc:
        raise StateError(f"the state database {path} is {exc.what}", hint=f"move it aside (`mv {path} "
                         f"{path}.old`); the next apply starts from empty state") from None
    except OSError as exc:
        raise StateError(f"cannot read the state database {path}: {exc.strerror}") from exc


def _check_pages(conn: sqlite3.Connection, path: Path, *, trust_unchanged: bool) -> None:
    """`PRAGMA quick_check`: a damaged page must be said at open, not read as "nothing recorded".

    It reads the whole file: ~1.5 ms for the store of one apply of 1,000 jobs, ~3 ms per 1,000 attempts
    more as history grows (300 ms at 100,000). So a store that passed is remembered by its files' stat
    (size, mtime, inode of the database and its WAL, in `checked_record`), and a reader (`trust_unchanged`)
    skips the check while that has not moved. Writers always check: apply builds on what it reads."""
    stamp = _stat_stamp(path)
    record = checked_record(path)
    if trust_unchanged and stamp is not None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text(encoding="utf-8")) == stamp:
                return
    rows = conn.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        first = str(rows[0][0]).replace("\n", " ").replace("*** in database main *** ", "")
        raise StateError(f"{path} is damaged: {first}", hint=_damaged_hint(path))
    if stamp is not None:
        with contextlib.suppress(OSError):  # a read-only workspace: checked again next time
            record.parent.mkdir(exist_ok=True)
            # Written in place, in one write, with no temporary file that a kill could leave behind: a
            # torn or empty record is not valid JSON, or not the stamp, and only means one more check.
            fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, json.dumps(stamp).encode())
            finally:
                os.close(fd)


def checked_record(path: Path) -> Path:
    """Where the stamp of a store that passed its page check is kept: a cache of the workspace
    (`.madengine/cache/state.db.checked`), not beside the store, which readers leave as it is."""
    return path.parent / "cache" / f"{path.name}.checked"


def _stat_stamp(path: Path) -> list[list[int]] | None:
    """What changes when the store's content does: the stat of the database and of its WAL. None when
    it cannot be trusted: a file changed in the last moment may change again within the same mtime
    tick (git's "racy clean")."""
    stamp: list[list[int]] = []
    recent = time.time_ns() - _CLOCK_SLACK_NS
    for name in (str(path), str(path) + "-wal"):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            stamp.append([])
            continue
        except OSError:
            return None
        if st.st_mtime_ns >= recent:
            return None
        stamp.append([st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev])
    return stamp


def _damaged_hint(path: Path) -> str:
    return (f"move it aside (`mv {path} {path}.damaged`): the next apply starts from empty state and runs "
            f"everything again; `sqlite3 {path}.damaged .recover` may salvage its records")


def _code(exc: sqlite3.Error) -> int | None:
    """The primary SQLite result code of an error (Python 3.11+ has it; older ones are read from the text)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF
    text = str(exc)
    for needle, value in (("disk is full", sqlite3.SQLITE_FULL), ("readonly", sqlite3.SQLITE_READONLY),
                          ("malformed", _SQLITE_CORRUPT), ("not a database", _SQLITE_NOTADB),
                          ("unable to open", sqlite3.SQLITE_CANTOPEN), ("locked", sqlite3.SQLITE_BUSY),
                          ("disk I/O error", sqlite3.SQLITE_IOERR)):
        if needle in text:
            return value
    return None


def _reraise(exc: sqlite3.Error, path: Path) -> NoReturn:
    """Raise what a failing SQLite call means for the user; an error no user can cause (an SQL mistake)
    is raised as it is: a bug, not a reason to move the user's history aside."""
    error = _failure(exc, path)
    if error is None:
        raise exc
    raise error from exc


def _failure(exc: sqlite3.Error, path: Path) -> MadengineError | None:
    """What a failing SQLite call means for the user, with what to do about it."""
    code = _code(exc)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StateError(f"the state database {path} is busy: {exc}",
                          hint="another madengine is writing to it; try again")
    if code == _SQLITE_CORRUPT:
        return StateError(f"{path} is damaged: {exc}", hint=_damaged_hint(path))
    if code == sqlite3.SQLITE_CANTOPEN and (denied := _unreadable(path)) is not None:
        # A store that cannot be opened at all: its permissions, not its content, and not a write.
        error = FileSystemError.of(OSError(denied, os.strerror(denied)), path, doing="read")
        assert error is not None
        return error
    refused = errno.ENOSPC if code == sqlite3.SQLITE_FULL else (
        _unwritable(path) if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN) else None)
    if refused is not None:
        error = FileSystemError.of(OSError(refused, os.strerror(refused)), path, also=STATE_ELSEWHERE,
                                   doing="write")
        assert error is not None
        return error
    if code == sqlite3.SQLITE_IOERR and _nearly_full(path.parent):
        # SQLite says "disk I/O error" for a write to its log or shared memory that found no space.
        error = FileSystemError.of(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path, also=STATE_ELSEWHERE,
                                   doing="write")
        assert error is not None
        return error
    if code == sqlite3.SQLITE_IOERR:
        return StateError(f"I/O error on {path}: {exc}",
                          hint=f"is the disk of {path.parent} full or failing? `df -h {path.parent}` tells")
    if code == _SQLITE_NOTADB:
        return StateError(f"{path} is not a usable state database: {exc}", hint=_damaged_hint(path))
    return None


def _nearly_full(directory: Path) -> bool:
    """Less free space than SQLite may need for one more write (a WAL frame, shared memory)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def _unreadable(path: Path) -> int | None:
    """Why `path` cannot be read, as an errno (EACCES, EPERM), found by opening it as SQLite would."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    except OSError as exc:
        return exc.errno if exc.errno in (errno.EACCES, errno.EPERM) else None
    return None


def _unwritable(path: Path) -> int | None:
    """Why `path` cannot be written, as an errno: a read-only file system, or permissions."""
    for p in (path, path.parent):
        try:
            if os.statvfs(p).f_flag & os.ST_RDONLY:
                return errno.EROFS
        except OSError:
            continue
        if not os.access(p, os.W_OK):
            return errno.EACCES
    return None


def _wal_pending(path: Path) -> bool:
    """Whether the write-ahead log beside `path` holds commits (a read without `-shm` would miss them)."""
    try:
        return os.path.getsize(str(path) + "-wal") > 0
    except OSError:
        return False


def _enable_wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode = WAL` (persistent: a no-op after the first open). Switching a new database
    needs its exclusive lock, and SQLite answers "locked" at once instead of waiting as busy_timeout
    does: several processes opening a fresh store together retry here, within the same timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
