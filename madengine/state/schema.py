"""The state database's schema and its forward migrations.

`MIGRATIONS[i]` takes a database from schema version `i` to `i + 1`; the version lives in the `meta`
table. Migrations only ever move forward and are never edited once released: a change is a new
script appended to the list. `migrate` applies the missing ones in order inside one transaction,
so a crash mid-migration leaves the old schema intact.
"""

from __future__ import annotations

import sqlite3

from madengine.errors import StateError

# Version 1: applies, realized images, attempts and their performance rows.
_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('serial', '0');

CREATE TABLE applies (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    lock_hash  TEXT NOT NULL,
    serial     INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    outcome    TEXT,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL
);

-- AUTOINCREMENT everywhere: ids are never reused after `forget`, so "latest" is always max(id).
CREATE TABLE images (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    address   TEXT NOT NULL,
    target    TEXT NOT NULL,
    node_hash TEXT NOT NULL,
    tag       TEXT NOT NULL,
    image_id  TEXT,
    digest    TEXT,
    inputs    TEXT NOT NULL DEFAULT '{}',
    built_at  TEXT NOT NULL,
    status    TEXT NOT NULL,
    apply_id  INTEGER REFERENCES applies (id)
);
CREATE INDEX images_by_key ON images (address, target, id);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    apply_id     INTEGER NOT NULL REFERENCES applies (id),
    address      TEXT NOT NULL,
    node_hash    TEXT NOT NULL,
    model        TEXT,  -- the lock entry's model, copied out of `inputs` for `attempts(model=...)`
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    host         TEXT,
    exit_code    INTEGER,
    log_path     TEXT,
    image_digest TEXT,
    inputs       TEXT NOT NULL DEFAULT '{}',
    pid          INTEGER,
    message      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX attempts_by_address ON attempts (address, id);
CREATE INDEX attempts_by_apply ON attempts (apply_id);
CREATE INDEX attempts_by_model ON attempts (model);
CREATE INDEX attempts_running ON attempts (id) WHERE status = 'RUNNING';

CREATE TABLE perf (
    attempt_id  INTEGER NOT NULL REFERENCES attempts (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    model       TEXT NOT NULL,
    performance REAL,
    metric      TEXT NOT NULL,
    status      TEXT NOT NULL,
    PRIMARY KEY (attempt_id, seq)
) WITHOUT ROWID;
CREATE INDEX perf_by_model ON perf (model);
"""

# Version 2: the verdict of a job's `expect:` gate (JSON), recorded with its result; NULL without a gate.
_V2 = """
ALTER TABLE attempts ADD COLUMN gate TEXT;
"""

# Version 3, for backends of many machines: an attempt's handle is text (a process group id, a container
# id, later a SLURM or Kubernetes id; a v2 pid becomes its text), the host facts it ran under (JSON,
# NULL when unknown), and image records per host of their target ('': the target's only host, as
# every record of a v2 store was made).
_V3 = """
ALTER TABLE attempts ADD COLUMN handle TEXT;
UPDATE attempts SET handle = CAST(pid AS TEXT) WHERE pid IS NOT NULL;
ALTER TABLE attempts DROP COLUMN pid;
ALTER TABLE attempts ADD COLUMN facts TEXT;
ALTER TABLE images ADD COLUMN host TEXT NOT NULL DEFAULT '';
DROP INDEX images_by_key;
CREATE INDEX images_by_key ON images (address, target, host, id);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in the database; 0 for an empty database.

    It is kept twice: in the `meta` table and in SQLite's header (`PRAGMA user_version`), which a
    newer madengine may move first; the higher of the two is the store's version."""
    header = int(conn.execute("PRAGMA user_version").fetchone()[0])
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if has_meta is None:
        return header
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        recorded = int(row[0]) if row is not None else 0
    except (TypeError, ValueError):
        raise StateError(f"the state's schema version is not a number: {row[0]!r}",
                         hint="move the state database aside to start from empty state") from None
    return max(header, recorded)


def migrate(conn: sqlite3.Connection, where: str, migrations: tuple[str, ...] = MIGRATIONS) -> int:
    """Bring the database up to `len(migrations)`; return the version it had. `conn` is in autocommit mode.

    The version is read again under the write lock (BEGIN IMMEDIATE), so two processes opening a
    fresh database at once migrate it once.
    """
    target = len(migrations)
    found = schema_version(conn)
    _refuse_newer(found, target, where)
    if found == target:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        _refuse_newer(found, target, where)
        if found == 0 and _has_foreign_tables(conn):
            raise StateError(f"{where} is an SQLite database, but not madengine's state",
                             hint="point MADENGINE_STATE (or --state) at another file")
        for script in migrations[found:]:
            # Statement by statement: `executescript` would COMMIT the open transaction first.
            for statement in _statements(script):
                conn.execute(statement)
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(target),))
        conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


class OlderSchemaError(StateError):
    """A store of an older schema, opened read-only: it can be read once it is migrated."""


def check_readable(conn: sqlite3.Connection, where: str) -> int:
    """The version of a database opened read-only, which cannot be migrated: this madengine's, or 0
    for an empty one; anything else is refused."""
    found = schema_version(conn)
    _refuse_newer(found, SCHEMA_VERSION, where)
    if found == 0 and _has_foreign_tables(conn):
        raise StateError(f"{where} is an SQLite database, but not madengine's state",
                         hint="point MADENGINE_STATE (or --state) at another file")
    if 0 < found < SCHEMA_VERSION:
        raise OlderSchemaError(f"{where} has state schema version {found}, older than this madengine's "
                               f"({SCHEMA_VERSION})", hint="run `madengine apply` once to upgrade it")
    return found


def _refuse_newer(found: int, known: int, where: str) -> None:
    if found > known:
        raise StateError(f"{where} has state schema version {found}, newer than this madengine knows ({known})",
                         hint=f"upgrade madengine (an older one cannot read newer state), or move {where} aside "
                              "to start from empty state")


def _has_foreign_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()
    return bool(row[0])


def _statements(script: str) -> list[str]:
    """Split a script into complete statements (a `;` inside a string or trigger does not split)."""
    out: list[str] = []
    pending = ""
    pieces = script.split(";")
    for i, piece in enumerate(pieces):
        pending += piece if i == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(pending):
            if _strip_comments(pending).strip(" \n\t;"):
                out.append(pending.strip())
            pending = ""
    if _strip_comments(pending).strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:60]}")
    return out


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
