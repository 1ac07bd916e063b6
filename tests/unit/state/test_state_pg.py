"""The PostgreSQL store's own schema, migrations and failures, on the real server of dev/services (what both
stores share is tested on both in test_state_store.py and test_state_lock.py)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from madengine.errors import StateError
from madengine.state import pg
from madengine.state.location import PgLocation
from madengine.state.model import Status
from madengine.state.schema import PG_MIGRATIONS, SCHEMA_VERSION
from madengine.state.store import StateStore
from tests.infra.postgres import PgServer
from tests.unit.state.children import Child

TABLES = {"meta", "applies", "images", "attempts", "perf"}


def sql(location: PgLocation, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(location.url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def tables(location: PgLocation) -> set[str]:
    return {r[0] for r in sql(location, "SELECT table_name FROM information_schema.tables "
                                        "WHERE table_schema = current_schema()")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_fresh_schema_is_migrated_to_the_current_version(pg_schema: PgLocation) -> None:
    assert tables(pg_schema) == set()
    with StateStore.open(pg_schema) as store:
        assert (store.dialect, store.serial(), store.integrity_check()) == ("postgresql", 0, "ok")
    assert tables(pg_schema) == TABLES
    assert sql(pg_schema, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    columns = dict(sql(pg_schema, "SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema = current_schema() AND table_name = 'perf'"))
    assert columns["performance"] == "double precision"  # PostgreSQL's REAL would round 123.456789 to 4 bytes
    with StateStore.open(pg_schema) as store:  # reopening changes nothing
        assert store.serial() == 0


def test_a_reader_of_an_empty_database_creates_nothing(pg_schema: PgLocation) -> None:
    with StateStore.open(pg_schema, readonly=True) as store:
        assert (store.attempts(), store.serial()) == ([], 0)
    assert tables(pg_schema) == set()


def test_a_newer_schema_is_refused(pg_schema: PgLocation) -> None:
    StateStore.open(pg_schema).close()
    sql(pg_schema, "UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    for readonly in (False, True):
        with pytest.raises(StateError, match=f"state schema version {SCHEMA_VERSION + 1}, newer than"):
            StateStore.open(pg_schema, readonly=readonly)


def test_a_database_that_is_not_madengines_is_refused_and_left_as_it_was(pg_schema: PgLocation) -> None:
    sql(pg_schema, "CREATE TABLE customers (id int)")
    for readonly in (False, True):
        with pytest.raises(StateError) as info:
            StateStore.open(pg_schema, readonly=readonly)
        assert "is a PostgreSQL database, but not madengine's state" in str(info.value)
        assert "search_path" in info.value.diagnostics[0].hint
    from madengine.state.lock import WorkspaceLock

    with pytest.raises(StateError, match="not madengine's state"):
        WorkspaceLock.for_store(pg_schema).acquire()
    assert tables(pg_schema) == {"customers"}


def test_version_1_and_2_stores_migrate_in_order_keeping_their_rows(pg_schema: PgLocation) -> None:
    with psycopg.connect(pg_schema.url, autocommit=True) as conn:
        conn.execute(PG_MIGRATIONS[0])
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO applies (lock_hash, serial, started_at, host, pid) VALUES ('h', 1, 't', 'x', 1)")
        conn.execute("INSERT INTO attempts (apply_id, address, node_hash, status, started_at, inputs, pid) "
                     "VALUES (1, 'job:a@c/t#1', 'sha256:a', 'RUNNING', '2026-12-01T00:00:00Z', '{}', 4242)")
        conn.execute("INSERT INTO images (address, target, node_hash, tag, image_id, built_at, status, apply_id) "
                     "VALUES ('image:a@c', 'box', 'sha256:i', 'madengine/a:1', 'sha256:1', 't', 'SUCCESS', 1)")
    with StateStore.open(pg_schema, readonly=True) as store:  # a reader upgrades a store it can write
        (running,) = store.running_attempts()
        assert (running.address, running.handle, running.facts, running.gate) == ("job:a@c/t#1", "4242", None, None)
        assert list(store.placements()) == [("image:a@c", "box", "")]
    assert sql(pg_schema, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    with StateStore.open(pg_schema) as store:  # and new ids follow the old ones
        assert store.start_attempt(1, "job:b@c/t#1", "sha256:b", {}, None, None) == 2


def test_two_first_opens_at_once_migrate_once(pg_schema: PgLocation) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            StateStore.open(pg_schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sql(pg_schema, "SELECT count(*) FROM meta WHERE key = 'serial'") == [(1,)]


def test_a_finished_attempt_is_in_the_database_for_every_other_session(pg_schema: PgLocation) -> None:
    with StateStore.open(pg_schema) as store:
        attempt = store.start_attempt(store.begin_apply("h"), "job:a@c/t#1", "sha256:a", {}, None, None)
        store.finish_attempt(attempt, Status.SUCCESS)
        # committed: another connection sees it at once (no transaction left open by the store)
        assert sql(pg_schema, "SELECT status FROM attempts") == [("SUCCESS",)]
        assert sql(pg_schema, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                              "AND state LIKE 'idle in transaction%%'", (f"madengine/{os.getpid()}",)) == [(0,)]


# --- failures: one line naming the URL without its password ------------------------------------------


def failure(url: str, tmp_path: Path) -> StateError:
    with pytest.raises(StateError) as info:
        StateStore.open(PgLocation(url, tmp_path / ".madengine"))
    (d,) = info.value.diagnostics
    assert "\n" not in d.render()
    return info.value


def test_an_unreachable_server_is_named_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    error = failure(f"postgresql://ci:s3cret-pw@127.0.0.1:{port}/bench?connect_timeout=2", tmp_path)
    message = error.diagnostics[0].render()
    assert message.startswith(f"error: cannot reach the state database postgresql://ci:***@127.0.0.1:{port}/bench")
    assert "s3cret-pw" not in message and "Connection refused" in message
    assert "server running" in error.diagnostics[0].hint


def test_refused_credentials_and_a_missing_database_say_so(pg_server: PgServer, tmp_path: Path) -> None:
    base = pg_server.url.rsplit("/", 1)[0]  # postgresql://madengine@127.0.0.1:PORT
    host = base.split("@", 1)[1]
    error = failure(f"postgresql://nobody:hunter2@{host}/madengine", tmp_path)
    message = error.diagnostics[0].render()
    assert "refused the connection" in message and 'role "nobody" does not exist' in message
    assert "hunter2" not in message and "PGPASSWORD" in error.diagnostics[0].hint
    error = failure(f"{base}/no_such_db?password=hunter2", tmp_path)
    assert 'does not exist: database "no_such_db" does not exist' in str(error)
    assert "password=***" in str(error) and "hunter2" not in error.diagnostics[0].render()


def test_a_url_that_is_not_one_is_said(tmp_path: Path) -> None:
    error = failure("postgresql://u:pw@h/db?nosuch=1", tmp_path)
    assert str(error) == ('the state store postgresql://u:***@h/db?nosuch=1 is not a valid PostgreSQL URL: '
                          'invalid URI query parameter: "nosuch"')


def test_without_psycopg_a_postgresql_store_names_the_extra(tmp_path: Path) -> None:
    code = """
        import sys
        sys.modules["psycopg"] = None  # not installed
        from pathlib import Path
        from madengine.errors import StateError
        from madengine.state.location import PgLocation
        from madengine.state.store import StateStore
        try:
            StateStore.open(PgLocation("postgresql://u@127.0.0.1:1/db", Path(".")))
        except StateError as e:
            print(e.diagnostics[0].render(), flush=True)
    """
    with Child(code) as child:
        line = child.line()
    assert line.startswith("error: the state store postgresql://u@127.0.0.1:1/db is a PostgreSQL database, "
                           "and psycopg is not installed")
    assert "pip install 'madengine[postgresql]'" in line


def test_the_default_connect_timeout_is_short_and_the_urls_wins(tmp_path: Path) -> None:
    assert pg.CONNECT_TIMEOUT <= 5
    # A server that accepts and never answers: the URL's connect_timeout=1 bounds the wait.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        error = failure(f"postgresql://u@127.0.0.1:{port}/db?connect_timeout=1", tmp_path)
    assert "cannot reach the state database" in str(error)


def test_credentials_come_from_a_pgpass_file_or_pgpassword_and_are_never_shown(
        pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Role madengine_pw must give its password (dev/services' pg_hba): libpq takes it from PGPASSWORD or the
    .pgpass file PGPASSFILE names, as any PostgreSQL client; madengine never stores or prints it."""
    assert pg_server.passfile, "dev/services wrote no MADENGINE_PG_PASSFILE: restart it"
    secret = Path(pg_server.passfile).read_text().strip().rsplit(":", 1)[1]
    url = pg_server.password_role_url()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    error = failure(url, tmp_path)
    assert str(error) == f"the state database {url} refused the connection: fe_sendauth: no password supplied"
    assert "PGPASSWORD" in error.diagnostics[0].hint and ".pgpass" in error.diagnostics[0].hint
    monkeypatch.setenv("PGPASSWORD", "not-" + secret)
    error = failure(url, tmp_path)
    assert 'password authentication failed for user "madengine_pw"' in str(error)
    assert secret not in error.diagnostics[0].render()
    error = failure(pg_server.password_role_url("wrong-pw!"), tmp_path)  # in the URL: shown as ***
    assert "madengine_pw:***@" in str(error) and "wrong-pw" not in error.diagnostics[0].render()
    for env in ({"PGPASSWORD": secret}, {"PGPASSFILE": pg_server.passfile}):
        monkeypatch.delenv("PGPASSWORD", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with StateStore.open(PgLocation(url, tmp_path), readonly=True) as store:  # public: nothing of ours
            assert store.attempts() == []
    with pytest.raises(StateError) as info:  # may read, but not create tables there (PostgreSQL 15's public)
        StateStore.open(PgLocation(url, tmp_path))
    assert str(info.value) == (f"the state database {url} refused: permission denied for schema public")
    assert "own the schema" in info.value.diagnostics[0].hint
