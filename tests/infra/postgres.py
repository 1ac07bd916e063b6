"""The PostgreSQL server of `dev/services start`, for the state store by URL.

What runs (dev/services' PostgreSQL section has the details): one server of Debian's `postgresql`, its own
cluster under $MADENGINE_SERVICES_DIR/postgres, on 127.0.0.1 (MADENGINE_PG_PORT, else 5432 or a free port),
trust authentication; role `madengine` (CREATEDB) owns database `madengine`. The env file's
MADENGINE_PG_URL names them (no password). Role `madengine_pw` alone must give a password, which only the .pgpass
file MADENGINE_PG_PASSFILE holds: for the tests of credentials.

Fixtures (import them into a conftest: `from tests.infra.postgres import pg_server, pg_schema  # noqa: F401`):

- `pg_server` (session): the server's URL, checked to answer; a FAILURE (naming `bash dev/services start`)
  when it does not, never a skip. A test that uses it is marked `postgresql` (tests/conftest.py).
- `pg_schema`: a fresh, empty schema of that database for one test (dropped after it), as a
  `PgLocation` whose URL selects it (`options=-csearch_path=...`): a store of its own, in milliseconds.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from madengine.state.location import PgLocation
from tests.infra.services import service_env, unavailable

HINT = "run `bash dev/services start` (dev/test does it before pytest)"


@dataclass(frozen=True)
class PgServer:
    url: str  # postgresql://madengine@127.0.0.1:PORT/madengine
    passfile: str | None = None  # a .pgpass with the password of role madengine_pw (the only one that needs one)

    def password_role_url(self, password: str | None = None) -> str:
        """The URL of role madengine_pw, which must log in with its password (with `password` in the URL)."""
        parts = urllib.parse.urlsplit(self.url)
        auth = "madengine_pw" + (f":{urllib.parse.quote(password, safe='')}" if password is not None else "")
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@{parts.hostname}:{parts.port}"))

    def schema_url(self, schema: str) -> str:
        """The URL of a store in `schema` of the server's database."""
        return f"{self.url}?options=" + urllib.parse.quote(f"-csearch_path={schema}", safe="")

    def connect(self) -> object:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_server() -> PgServer:
    url = service_env().get("MADENGINE_PG_URL") or os.environ.get("MADENGINE_PG_URL")
    if not url:
        unavailable(f"PostgreSQL is not running: no MADENGINE_PG_URL in the services' env file: {HINT}")
    try:
        import psycopg
    except ImportError as e:  # the test extra has it: its absence is a broken install, not a skip
        pytest.fail(f"psycopg is not installed ({e}): pip install 'madengine[postgresql]'", pytrace=False)
    error = ""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        error = str(e).splitlines()[0]
    if error:
        unavailable(f"PostgreSQL is not reachable ({url}: {error}): {HINT}")
    return PgServer(url, service_env().get("MADENGINE_PG_PASSFILE"))


@pytest.fixture
def pg_schema(pg_server: PgServer, tmp_path: Path) -> Iterator[PgLocation]:
    """A store of its own for one test: an empty schema, dropped afterwards."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield PgLocation(pg_server.schema_url(schema), tmp_path / ".madengine")
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")  # a session a test left would say so, not hang
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def location_arg(location: PgLocation | Path) -> str:
    """How a child process is told of a store (`madengine.state.location.state_location` reads it back)."""
    return location.url if isinstance(location, PgLocation) else str(location)


# --- the same tests on both stores ----------------------------------------------------------------------

DIALECTS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql))


@pytest.fixture(params=DIALECTS)
def state_location(request: pytest.FixtureRequest, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> PgLocation | Path:
    """The store of the workspace `tmp_path`, once per dialect: `.madengine/state.db`, or a fresh PostgreSQL
    schema that $MADENGINE_STATE_URL names for the whole test (so every command it runs uses that store)."""
    if request.param == "sqlite":
        return tmp_path / ".madengine" / "state.db"
    location: PgLocation = request.getfixturevalue("pg_schema")
    monkeypatch.setenv("MADENGINE_STATE_URL", location.url)
    return location


def run_sql(location: PgLocation | Path, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """One statement on a store's database directly (not through madengine), `?` placeholders; its rows."""
    if isinstance(location, PgLocation):
        import psycopg

        with psycopg.connect(location.url, autocommit=True) as conn:
            cur = conn.execute(query.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    import sqlite3

    with sqlite3.connect(location) as conn:
        return conn.execute(query, params).fetchall()
