"""The PostgreSQL server of `dev/services`: what tests/infra/postgres.py promises of it."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

import psycopg

from madengine.state.location import PgLocation, url_password
from tests.infra.postgres import PgServer
from tests.infra.services import SERVICES_DIR, service_env


def test_the_env_file_names_the_server_without_a_password(pg_server: PgServer) -> None:
    url = service_env()["MADENGINE_PG_URL"]
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.username, parts.hostname, parts.path) == ("postgresql", "madengine", "127.0.0.1",
                                                                          "/madengine")
    assert url_password(url) is None and parts.port
    passfile = Path(service_env()["MADENGINE_PG_PASSFILE"])  # role madengine_pw's password, for libpq only
    assert passfile.stat().st_mode & 0o777 == 0o600
    assert passfile.read_text().startswith("127.0.0.1:*:*:madengine_pw:")


def test_it_listens_on_loopback_only_and_runs_unprivileged(pg_server: PgServer) -> None:
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_setting('listen_addresses'), current_user").fetchone() == (
            "127.0.0.1", "madengine")
        row = conn.execute("SELECT rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        assert row == (True, False)  # the tests' role may create databases, and is no superuser
    pid = int((SERVICES_DIR / "postgres" / "postgres.pid").read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"  # the recorded PID is the server's
    uid = os.stat(f"/proc/{pid}").st_uid
    assert uid != 0  # PostgreSQL refuses root: it runs as its own user


def test_a_schema_per_test_is_a_store_of_its_own(pg_schema: PgLocation) -> None:
    schema = urllib.parse.unquote(pg_schema.url.split("options=", 1)[1]).split("=", 1)[1]
    with psycopg.connect(pg_schema.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_schema()").fetchone() == (schema,)
        conn.execute("CREATE TABLE t (x int)")
        assert conn.execute("SELECT table_schema FROM information_schema.tables WHERE table_name = 't'"
                            ).fetchall() == [(schema,)]


def test_start_and_stop_in_a_directory_of_its_own_keep_the_cluster() -> None:
    """`dev/services start --only postgres` in another base directory: a second server on a free port, ready
    in seconds; `stop` ends it by its recorded PID; a later start reuses the cluster (initdb once)."""
    import subprocess
    import tempfile

    from tests.conftest import REPO_ROOT

    # Not under tmp_path: pytest's directories are private to root, and the server runs as another user.
    base = Path(tempfile.mkdtemp(prefix="madengine-pg-services-", dir="/tmp"))
    base.chmod(0o755)
    env = {**os.environ, "MADENGINE_SERVICES_DIR": str(base)}
    env.pop("MADENGINE_PG_PORT", None)

    def services(*args: str) -> None:
        done = subprocess.run(["bash", str(REPO_ROOT / "dev" / "services"), *args], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    def url() -> str:
        lines = dict(line.split("=", 1) for line in (base / "env").read_text().splitlines())
        return lines["MADENGINE_PG_URL"]

    def namespaces() -> set[str]:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
        return {line.split()[0] for line in listed.splitlines() if line.startswith("madengine")}

    hosts = namespaces()  # the SSH hosts of the services every other test uses
    try:
        services("start", "--only", "postgres")
        first = url()
        pid = int((base / "postgres" / "postgres.pid").read_text())
        with psycopg.connect(first, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
        services("stop")
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        assert not (base / "postgres" / "postgres.pid").exists()
        services("start", "--only", "postgres")
        with psycopg.connect(url(), autocommit=True) as conn:
            assert conn.execute("SELECT to_regclass('kept') IS NOT NULL").fetchone() == (True,)
    finally:
        services("stop")
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    # A stop in another base dir stops what it started there, not the hosts (namespaces, bridge) of another.
    assert namespaces() == hosts
