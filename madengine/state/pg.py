"""PostgreSQL for the state store (`state: postgresql://...`): connections, errors, schema and migrations.

psycopg 3 (the `madengine[postgresql]` extra) is imported only when a PostgreSQL store is used. Every
failure to reach or use the database is one `StateError` naming the URL without its password, with a
hint; nothing of the driver's text that could hold the password is shown.

Semantics, as SQLite's (store.py): each write is its own committed transaction (READ COMMITTED; the
serial's row lock orders concurrent writers), each answer is read from one snapshot (REPEATABLE READ,
READ ONLY). Durability is the server's: a commit that returned is on its WAL (synchronous_commit=on, the
default), so a killed madengine loses nothing it recorded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, cast

from madengine.errors import StateError
from madengine.state.location import CREDENTIALS_HINT, PG_EXTRA, PgLocation, scrub

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT = 5  # seconds, unless the URL says (connect_timeout=N)
_NOT_OURS_HINT = ("point MADENGINE_STATE_URL (or --state, or the madfile's state:) at an empty database, or at "
                  "a schema of its own (`?options=-csearch_path%3DNAME` in the URL)")


def _psycopg(location: PgLocation) -> Any:
    try:
        import psycopg
    except ImportError:
        raise StateError(f"the state store {location.display} is a PostgreSQL database, and psycopg is not "
                         "installed", hint=f"install the extra: pip install '{PG_EXTRA}'") from None
    return psycopg


def connect(location: PgLocation) -> psycopg.Connection[Any]:
    """An autocommit connection to the store's database, or a `StateError` saying why not."""
    driver = _psycopg(location)
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(location.url)
    except driver.Error as exc:
        raise StateError(f"the state store {location.display} is not a valid PostgreSQL URL: "
                         f"{_reason(exc, location)}", hint="e.g. postgresql://user@host:5432/dbname") from None
    # Which process a session is, for whoever looks at pg_stat_activity (a DBA, `unlock --force`'s user).
    extra: dict[str, Any] = {"application_name": f"madengine/{os.getpid()}"}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    try:
        conn = driver.connect(location.url, autocommit=True, **extra)
    except driver.Error as exc:
        raise connect_failure(exc, location) from None
    return cast("psycopg.Connection[Any]", conn)


def connect_failure(exc: BaseException, location: PgLocation) -> StateError:
    """Why a connection failed, for the user: unreachable, credentials refused, no such database."""
    text = _reason(exc, location)
    low = text.lower()
    where = location.display
    if any(s in low for s in ("password authentication failed", "no password supplied", "authentication failed",
                              "pg_hba.conf", "role \"", "permission denied for database")):
        return StateError(f"the state database {where} refused the connection: {text}", hint=CREDENTIALS_HINT)
    if re.search(r'database ".*" does not exist', low):
        return StateError(f"the state database {where} does not exist: {text}",
                          hint="create it (`createdb NAME`, owned by the URL's user), or fix the URL")
    timeout = location.url and "connect_timeout" in location.url
    return StateError(f"cannot reach the state database {where}: {text}",
                      hint="is the server running, and are host and port right?" + (
                          "" if timeout else f" (it waits {CONNECT_TIMEOUT} s; connect_timeout=N in the URL "
                                             "sets another)"))


def failure(exc: BaseException, location: PgLocation) -> StateError | None:
    """What a failing statement means for the user; None for an error no user can cause (a bug)."""
    import psycopg

    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StateError(f"lost the connection to the state database {location.display}: "
                          f"{_reason(exc, location)}",
                          hint="what was recorded before stays recorded; run the command again once the server "
                               "is back")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege | psycopg.errors.ReadOnlySqlTransaction):
        return StateError(f"the state database {location.display} refused: {_reason(exc, location)}",
                          hint="the URL's user needs to create, read and write madengine's tables there (own "
                               "the schema, or be granted it)")
    if isinstance(exc, psycopg.errors.InvalidSchemaName):
        return StateError(f"the state database {location.display}: {_reason(exc, location)}",
                          hint="the schema of the URL's search_path must exist: CREATE SCHEMA it first")
    return None


def _reason(exc: BaseException, location: PgLocation) -> str:
    """The driver's message in one line, without the password or the connection boilerplate."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^connection failed: ", "", text)
    text = re.sub(r"^(?:FATAL|ERROR):\s+", "", text)
    text = re.sub(r"^connection to server at \"[^\"]*\"(?: \([^)]*\))?, port \d+ failed: ", "", text)
    text = re.sub(r"^connection to server on socket \"[^\"]*\" failed: ", "", text)
    text = re.sub(r"^(?:FATAL|ERROR):\s+", "", text)
    return scrub(text, location.url).rstrip(".") or type(exc).__name__


class PgDb:
    """The store's connection to PostgreSQL, with the calls store.py makes of a connection: `?` placeholders
    are rewritten for psycopg once per statement text."""

    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any], location: PgLocation) -> None:
        import psycopg

        self.conn = conn
        self.location = location
        self.errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._sql: dict[str, str] = {}
        self._idle = psycopg.pq.TransactionStatus.IDLE

    def _text(self, sql: str) -> str:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(self._text(sql), tuple(params) or None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._text(sql), rows)

    def begin(self, write: bool) -> None:
        self.conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED" if write
                          else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        if write:
            from madengine.state.pg_lock import still_held

            # The workspace lock lives on a session of its own, which the server may end (a restart, a
            # dropped connection, `unlock --force`): then another apply may have begun, and this one must
            # not write another record.
            if not still_held(self.conn, self.location.url):
                self.conn.execute("ROLLBACK")
                raise StateError(f"lost the workspace lock of the state database {self.location.display} (its "
                                 "session ended): stopping before recording anything more, as another apply may "
                                 "have started", hint="what was recorded before stays recorded; run the command "
                                                      "again (`madengine plan` shows where it stands)")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.conn.info.transaction_status != self._idle

    def close(self) -> None:
        self.conn.close()

    def ids_given(self, tables: Sequence[str]) -> None:
        """Rows were inserted with their ids: each identity continues after the largest."""
        for table in tables:
            self.conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")

    def fail(self, exc: BaseException) -> NoReturn:
        error = failure(exc, self.location)
        if error is None:
            raise exc
        raise error from None


# --- schema ----------------------------------------------------------------------------------------

def schema_version(conn: psycopg.Connection[Any], location: PgLocation) -> int:
    """The version recorded in the store's `meta` table (of the URL's schema); 0 when there is none."""
    if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise StateError(f"{location.display}: the state's schema version is not a number: {row[0]!r}",
                         hint=_NOT_OURS_HINT) from None


def foreign_tables(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
                       ).fetchone()
    return bool(row and row[0])


def not_ours(location: PgLocation) -> StateError:
    return StateError(f"{location.display} is a PostgreSQL database, but not madengine's state", hint=_NOT_OURS_HINT)


def check_schema(conn: psycopg.Connection[Any], location: PgLocation) -> int:
    """The store's version, refusing one newer than this madengine and a database that is someone else's."""
    from madengine.state.schema import SCHEMA_VERSION, refuse_newer

    found = schema_version(conn, location)
    refuse_newer(found, SCHEMA_VERSION, location.display)
    if found == 0 and foreign_tables(conn):
        raise not_ours(location)
    if found == 0 and conn.execute("SELECT current_schema()").fetchone() == (None,):
        raise StateError(f"the state database {location.display}: its search_path names no schema that exists",
                         hint="CREATE SCHEMA it first, or drop the search_path option from the URL")
    return found


def migrate(conn: psycopg.Connection[Any], location: PgLocation) -> int:
    """Bring the store up to this madengine's schema (the PostgreSQL script of each version, numbered as
    SQLite's) in one transaction; return the version it had. Two processes migrating a fresh store at once
    are serialized by a transaction-level advisory lock, and the second finds it done."""
    from madengine.state.schema import PG_MIGRATIONS, SCHEMA_VERSION

    found = check_schema(conn, location)
    if found == SCHEMA_VERSION:
        return found
    # A session lock taken before the transaction, not a transaction-level one inside it: the transaction
    # that begins after the wait sees the tables another migrator committed meanwhile (a lock on no relation
    # does not refresh the session's catalog cache).
    row = conn.execute("SELECT hashtextextended('madengine-migrate:' || current_database() || ':' || "
                       "coalesce(current_schema(), ''), 0)").fetchone()
    key = int(row[0]) if row is not None else 0
    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    try:
        with _transaction(conn):
            found = check_schema(conn, location)
            for script in PG_MIGRATIONS[found:]:
                conn.execute(script)  # several statements: no parameters, so one simple query
            conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return found


@contextmanager
def _transaction(conn: psycopg.Connection[Any]) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        yield
    except BaseException:
        if not conn.closed:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
