"""ROCm madengine's `database create-table` and `update-table`: perf.csv rows in an SQL table.

Theirs (tools/create_table_db.py, update_table_db.py, db/: removed from ROCm madengine in December 2025)
wrote into the MySQL table `dlm_table` (db/db_table_def.sql) of the server the TUNA_DB_* variables name,
through SQLAlchemy. Ours writes the same table into SQLite or PostgreSQL, by URL, with sqlite3 and
psycopg 3 directly. What is the same, and what is not (on purpose):

- The table: `dlm_table`, ROCm's columns in their order with their types (`VARCHAR(128)`, `pipeline` and
  `tags` `VARCHAR(65535)`, `relative_change` `TEXT`), `id` and `created_date` first. Then the perf.csv
  columns ROCm's table lacks (nnodes, gpus_per_node, deployment_type, launcher, the data_* columns,
  build_number, additional_docker_run_options): ROCm's update-table passed every column of a row to its
  table, which refused a row with a column it does not have, so a perf.csv of today stored nothing there.
  create-table is idempotent: it creates what is missing (the table, a column an older table lacks).
- A value longer than its column is refused before anything is written, at its file and line, in both
  stores alike (SQLite would store it, PostgreSQL refuse it, MySQL in strict mode refuse the whole upload).
- `id` is ROCm's: the table's largest plus one, but taken under a lock that keeps uploads apart (two of
  ROCm's at once collided). So a table ROCm's shape (`id INT PRIMARY KEY`, no default) works as well;
  `created_date` is the upload's time, UTC, the same for every row of one upload (theirs: local time).
- `relative_change` is ROCm's: for each GPU architecture in the table, the row's performance as a
  percentage of the average of the last 5 successful rows of the same model, architecture and base image,
  written as ROCm's (a Python dict literal: `{'gfx942': {'pct_change': ..., 'baseline_avg': ...,
  'sample_count': ...}}`), merged into the perf.csv's value when that is such a dict, else replacing it
  (madengine's own `+5.00%` would have stopped ROCm's upload).
- Duplicates: ROCm's appended every row each time, so running update-table again, or on a perf.csv that
  runs append to, stored its rows again. Ours adds only rows the table does not have yet: a row is the
  same as a stored one when every perf column but relative_change is equal, and a row that is in the
  perf.csv n times is stored n times (a second identical measurement is not lost).
"""

from __future__ import annotations

import ast
import contextlib
import sqlite3
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from madengine.compat.rocm_csv import CsvTable
from madengine.errors import ConfigError, Diagnostic, StateError, UsageError
from madengine.state.location import redact  # the one redactor of URLs: messages never show a password

TABLE = "dlm_table"
TEXT = None  # a column's length: None is TEXT
# ROCm's db_table_def.sql, in its order (after id and created_date).
ROCM_COLUMNS: tuple[tuple[str, int | None], ...] = (
    ("model", 128), ("pipeline", 65535), ("n_gpus", 128), ("training_precision", 128), ("args", 128),
    ("tags", 65535), ("docker_file", 128), ("base_docker", 128), ("docker_sha", 128), ("docker_image", 128),
    ("git_commit", 128), ("machine_name", 128), ("gpu_architecture", 128), ("performance", 128),
    ("metric", 128), ("relative_change", TEXT), ("status", 128), ("build_duration", 128),
    ("test_duration", 128),
)
# perf.csv's other columns (results/perfcsv.py), after ROCm's.
MORE_COLUMNS: tuple[tuple[str, int | None], ...] = (
    ("nnodes", 128), ("gpus_per_node", 128), ("deployment_type", 128), ("launcher", 128), ("dataname", 128),
    ("data_provider_type", 128), ("data_size", 128), ("data_download_duration", 128), ("build_number", 128),
    ("additional_docker_run_options", TEXT),
)
COLUMNS: tuple[tuple[str, int | None], ...] = ROCM_COLUMNS + MORE_COLUMNS
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
LENGTHS: dict[str, int | None] = dict(COLUMNS)
# What makes two rows the same row (relative_change is computed against the table at each upload).
SAME_ROW: tuple[str, ...] = tuple(name for name in COLUMN_NAMES if name != "relative_change")
BASELINE_RUNS = 5  # ROCm's get_avg_perf(n=5)

# ROCm's TUNA_DB_* variables (db/utils.py get_env_vars) and their defaults, but the port: theirs is
# MySQL's 3306, and the server madengine speaks is PostgreSQL.
TUNA_USER, TUNA_PASSWORD, TUNA_HOST, TUNA_PORT, TUNA_NAME = (
    "TUNA_DB_USER_NAME", "TUNA_DB_USER_PASSWORD", "TUNA_DB_HOSTNAME", "TUNA_DB_PORT", "TUNA_DB_NAME")
TUNA_SSH_HOST = "TUNA_SSH_HOSTNAME"
DEFAULT_PG_PORT = "5432"
DEFAULT_DB_NAME = "dlm_db"
DEFAULT_SQLITE = Path(".madengine") / "perf.db"
CONNECT_TIMEOUT_S = 10


# --- where ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlTarget:
    """An SQL database: a SQLite file or a PostgreSQL URL. `password`, when it does not come in the URL
    (TUNA_DB_USER_PASSWORD), is passed to the driver apart: it is never part of what is shown."""

    kind: Literal["sqlite", "postgresql"]
    url: str
    path: Path | None = None
    password: str | None = None
    made_up: bool = False  # the default file, whose directory may be created

    def shown(self) -> str:
        return str(self.path) if self.path is not None else redact(self.url)


def parse_sql_url(text: str) -> SqlTarget:
    """`--db-url`: `postgresql://…` (or `postgres://`), `sqlite:///PATH`, or a path to a SQLite file."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return SqlTarget("postgresql", text)
    if scheme == "sqlite":
        path = text.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel/x.db, sqlite:////abs/x.db
        if not path:
            raise UsageError("--db-url sqlite:// names no file", hint="e.g. sqlite:///perf.db")
        return SqlTarget("sqlite", text, Path(path))
    if scheme:
        raise UsageError(f"--db-url {redact(text)}: {scheme}:// is not an SQL database madengine speaks",
                         hint="give postgresql://USER@HOST:PORT/NAME or a SQLite file" +
                         ("; a MongoDB goes to `madengine database upload-mongodb`" if scheme.startswith("mongodb")
                          else ""))
    if not text:
        raise UsageError("--db-url is empty")
    return SqlTarget("sqlite", text, Path(text))


def tuna_target(environ: Mapping[str, str]) -> SqlTarget | None:
    """The database ROCm's TUNA_DB_* variables name (when any of host, name, user or port is set): a
    PostgreSQL server. The password is TUNA_DB_USER_PASSWORD, kept out of the URL."""
    if not any(environ.get(v) for v in (TUNA_HOST, TUNA_NAME, TUNA_USER, TUNA_PORT)):
        return None
    ssh = environ.get(TUNA_SSH_HOST, "")
    if ssh and "localhost" not in ssh and "127.0.0.1" not in ssh:
        raise UsageError(f"{TUNA_SSH_HOST}={ssh}: madengine connects to the database itself "
                         f"({TUNA_HOST}), not by running a script on an SSH host as ROCm's did",
                         hint=f"unset {TUNA_SSH_HOST} (and reach the server directly, or through "
                         "`ssh -L 5432:DBHOST:5432 HOST`)")
    user = urllib.parse.quote(environ.get(TUNA_USER, ""), safe="")
    host = environ.get(TUNA_HOST) or "localhost"
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    port = environ.get(TUNA_PORT) or DEFAULT_PG_PORT
    if not port.isdigit():
        raise UsageError(f"{TUNA_PORT}={port!r} is not a port number")
    name = urllib.parse.quote(environ.get(TUNA_NAME) or DEFAULT_DB_NAME, safe="")
    url = f"postgresql://{user + '@' if user else ''}{host}:{port}/{name}"
    return SqlTarget("postgresql", url, password=environ.get(TUNA_PASSWORD) or None)


def sql_target(db_url: str | None, environ: Mapping[str, str], root: Path) -> SqlTarget:
    """--db-url, else ROCm's TUNA_DB_* variables, else `.madengine/perf.db` in `root` (a SQLite file of
    its own: madengine's state database holds madengine's tables only)."""
    if db_url is not None:
        return parse_sql_url(db_url)
    return tuna_target(environ) or SqlTarget("sqlite", "", root / DEFAULT_SQLITE, made_up=True)


# --- what (pure) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerfRecord:
    line: int
    values: dict[str, str | None]  # every column of COLUMN_NAMES; "" is None (NULL), as ROCm's NaN

    def same_row(self) -> tuple[str | None, ...]:
        return tuple(self.values[c] for c in SAME_ROW)


def perf_records(table: CsvTable) -> tuple[list[PerfRecord], list[str]]:
    """The rows of a perf.csv as the table stores them, and the columns it does not store.

    Values are stripped of spaces (ROCm's load_perf_csv); a value longer than its column is an error at
    its line (all of them at once)."""
    stored = [(c, i) for i, c in enumerate(table.columns) if c in LENGTHS]
    bounded = [(c, i, n) for c, i in stored if (n := LENGTHS[c]) is not None]
    not_stored = [c for c in table.columns if c not in LENGTHS]
    errors: list[Diagnostic] = []
    records: list[PerfRecord] = []
    empty: dict[str, str | None] = dict.fromkeys(COLUMN_NAMES)
    for row, line in zip(table.rows, table.lines, strict=True):
        values = empty | {c: row[i].strip() or None for c, i in stored}
        for column, i, length in bounded:
            if len(row[i]) > length and len(value := row[i].strip()) > length:
                errors.append(Diagnostic(table.shown, line, None, f"{len(value)} characters, more than the "
                                         f"{length} of {TABLE}'s column", key_path=column,
                                         hint="ROCm's table has these column sizes; shorten the value"))
        records.append(PerfRecord(line, values))
    if errors:
        raise ConfigError.many(errors[:50])
    return records, not_stored


def new_records(records: Sequence[PerfRecord], stored: Sequence[tuple[str | None, ...]]) -> list[PerfRecord]:
    """The records the table does not have yet: each stored row (its SAME_ROW values) accounts for one
    equal record, in file order."""
    left = Counter(stored)
    out: list[PerfRecord] = []
    for record in records:
        key = record.same_row()
        if left[key] > 0:
            left[key] -= 1
        else:
            out.append(record)
    return out


def _number(value: object) -> float | None:
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _dict_literal(text: str | None) -> dict[Any, Any] | None:
    if not text or not text.lstrip().startswith("{") or len(text) > 65536:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


Baselines = dict[tuple[str | None, str | None, str | None], list[float]]
_AT = {name: i for i, name in enumerate(SAME_ROW)}


def baselines(stored: Iterable[Sequence[str | None]]) -> Baselines:
    """(model, gpu_architecture, base_docker) -> the performance of its successful rows, oldest first,
    from the table's rows (SAME_ROW values, in id order)."""
    model, arch, base, status, perf = (_AT[c] for c in ("model", "gpu_architecture", "base_docker", "status",
                                                        "performance"))
    out: Baselines = {}
    for row in stored:
        if row[status] == "SUCCESS" and row[perf] and (n := _number(row[perf])) is not None:
            out.setdefault((row[model], row[arch], row[base]), []).append(n)
    return out


def relative_change(record: PerfRecord, archs: Sequence[str], past: Baselines) -> str:
    """ROCm's relative_perf_all_configs for one row: per GPU architecture of the table, the row's
    performance against the average of the last BASELINE_RUNS successful rows of its model on that
    architecture with its base image."""
    out = _dict_literal(record.values["relative_change"]) or {}
    performance = _number(record.values["performance"]) if record.values["performance"] else None
    for arch in archs:
        perfs = past.get((record.values["model"], arch, record.values["base_docker"]), [])[-BASELINE_RUNS:]
        average = mean(perfs) if perfs else None
        out[arch] = {
            "pct_change": performance / average * 100 if performance is not None and average else None,
            "baseline_avg": average,
            "sample_count": len(perfs) if perfs else None,
        }
    return str(out) if out else (record.values["relative_change"] or "")


# --- the database ---------------------------------------------------------------------------------


def _type(length: int | None) -> str:
    return "TEXT" if length is None else f"VARCHAR({length})"


def create_statement(kind: str) -> str:
    key = "INTEGER PRIMARY KEY"  # ROCm's INT; ids are given by update_table, as ROCm's
    when = "DATETIME" if kind == "sqlite" else "TIMESTAMP"
    columns = ",\n    ".join(f"{name} {_type(length)}" for name, length in COLUMNS)
    return (f"CREATE TABLE IF NOT EXISTS {TABLE} (\n    id {key},\n    created_date {when} DEFAULT "
            f"CURRENT_TIMESTAMP,\n    {columns}\n)")


class Connection:
    """One connection to SQLite or PostgreSQL, with `?` placeholders whichever it is."""

    def __init__(self, target: SqlTarget, raw: Any) -> None:
        self.target = target
        self.kind = target.kind
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        cursor = self.raw.execute(sql, tuple(params))
        return list(cursor.fetchall()) if cursor.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self.kind == "postgresql":
            with self.raw.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)
        else:
            self.raw.executemany(sql, rows)


def _reason(exc: BaseException, target: SqlTarget) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for secret in (target.password, urllib.parse.urlsplit(target.url).password if target.url else None):
        if secret:
            text = text.replace(secret, "***")
    return text.replace(target.url, target.shown()) if target.url else text


@contextlib.contextmanager
def connect(target: SqlTarget) -> Iterator[Connection]:
    """A connection inside one transaction, committed when the block ends (rolled back if it raises).
    A database that cannot be reached or opened is a StateError naming it, its password never shown."""
    if target.kind == "sqlite":
        assert target.path is not None
        if target.made_up:
            target.path.parent.mkdir(parents=True, exist_ok=True)
        if target.path.is_dir():
            raise StateError(f"{target.path} is a directory, not a SQLite database")
        try:
            raw: Any = sqlite3.connect(target.path, isolation_level=None, timeout=CONNECT_TIMEOUT_S)
            raw.execute("BEGIN IMMEDIATE")  # one writer at a time: the check for duplicates holds
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the SQLite database {target.shown()}: {_reason(exc, target)}",
                             hint="give --db-url a SQLite file you can write, or postgresql://…") from None
        try:
            yield Connection(target, raw)
            raw.execute("COMMIT")
        except BaseException:
            raw.execute("ROLLBACK")
            raise
        finally:
            raw.close()
        return
    try:
        import psycopg
    except ImportError:
        raise UsageError("a PostgreSQL database needs psycopg", hint="pip install 'psycopg[binary]'") from None
    try:
        extra: dict[str, Any] = {"password": target.password} if target.password else {}
        raw = psycopg.connect(target.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, **extra)
    except (psycopg.Error, ValueError) as exc:
        raise StateError(f"cannot connect to {target.shown()}: {_reason(exc, target)}",
                         hint="check the URL (or TUNA_DB_*), that the server runs, and the password") from None
    try:
        with raw.transaction():
            yield Connection(target, raw)
    finally:
        raw.close()


def _sql_errors(target: SqlTarget) -> tuple[type[BaseException], ...]:
    if target.kind == "sqlite":
        return (sqlite3.Error,)
    import psycopg

    return (psycopg.Error,)


def ensure_table(db: Connection) -> list[str]:
    """Create the table, or the columns an existing one lacks; return what was created."""
    if db.kind == "postgresql":
        # Held until the transaction ends: one create-table or update-table at a time, so a second
        # creator finds the table there, and what an upload found already stored stays true until it
        # commits (SQLite's BEGIN IMMEDIATE does the same).
        db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"madengine {TABLE}",))
    before = _columns(db)
    db.execute(create_statement(db.kind))
    db.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_model ON {TABLE} (model)")
    if not before:
        return [TABLE]
    added = [name for name, _ in COLUMNS if name not in before]
    for name in added:
        db.execute(f"ALTER TABLE {TABLE} ADD COLUMN {name} {_type(LENGTHS[name])}")
    return [f"{TABLE}.{name}" for name in added]


def _columns(db: Connection) -> set[str]:
    if db.kind == "sqlite":
        return {str(row[1]) for row in db.execute(f"PRAGMA table_info({TABLE})")}
    rows = db.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                      "AND table_name = ?", (TABLE,))
    return {str(row[0]) for row in rows}


@dataclass(frozen=True)
class Upload:
    created: list[str]
    added: int
    already: int


def _stored(db: Connection, models: Sequence[str | None]) -> list[tuple[str | None, ...]]:
    """The table's rows of these models (their SAME_ROW values), oldest first."""
    select = f"SELECT {', '.join(SAME_ROW)} FROM {TABLE} WHERE "
    out: list[tuple[str | None, ...]] = []
    real = sorted({m for m in models if m is not None})
    for start in range(0, len(real), 500):
        chunk = real[start:start + 500]
        out.extend(map(tuple, db.execute(select + f"model IN ({', '.join('?' * len(chunk))}) ORDER BY id", chunk)))
    if None in models:
        out.extend(map(tuple, db.execute(select + "model IS NULL ORDER BY id")))
    return out


def _values(record: PerfRecord, change: str | None) -> list[str | None]:
    values = dict(record.values, relative_change=change)
    return [values[c] for c in COLUMN_NAMES]


def update_table(target: SqlTarget, records: Sequence[PerfRecord], now: datetime | None = None) -> Upload:
    """Create the table if needed and add the records it does not have yet, in one transaction."""
    when = (now or datetime.now(timezone.utc)).replace(tzinfo=None, microsecond=0)
    try:
        with connect(target) as db:
            created = ensure_table(db)
            history = _stored(db, [r.values["model"] for r in records])
            fresh = new_records(records, history)
            past = baselines(history)
            del history
            archs = sorted(str(row[0]) for row in db.execute(
                f"SELECT DISTINCT gpu_architecture FROM {TABLE} WHERE gpu_architecture IS NOT NULL"))
            names = ["id", "created_date", *COLUMN_NAMES]
            stamp: Any = when if db.kind == "postgresql" else when.strftime("%Y-%m-%d %H:%M:%S")
            [(last,)] = db.execute(f"SELECT max(id) FROM {TABLE}")
            first = int(last or 0) + 1
            rows = [[first + i, stamp, *_values(r, relative_change(r, archs, past) or None)]
                    for i, r in enumerate(fresh)]
            if rows:
                db.executemany(f"INSERT INTO {TABLE} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                               rows)
    except _sql_errors(target) as exc:
        raise StateError(f"{target.shown()}: {_reason(exc, target)}",
                         hint=f"is {TABLE} there a table of another shape? `database create-table` makes ROCm's"
                         ) from None
    return Upload(created, len(fresh), len(records) - len(fresh))


def create_table(target: SqlTarget) -> list[str]:
    try:
        with connect(target) as db:
            return ensure_table(db)
    except _sql_errors(target) as exc:
        raise StateError(f"{target.shown()}: {_reason(exc, target)}") from None

