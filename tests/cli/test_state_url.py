"""The state store by URL: `state:` in the madfile, $MADENGINE_STATE_URL, `--state URL`; and what a user sees
when the database cannot be used (one line, the URL without its password, nothing written)."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg
import pytest

from madengine.state.location import PgLocation
from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.conftest import RunCli

NO_URL = {"MADENGINE_STATE_URL": None, "MADENGINE_STATE": None}


def madfile(root: Path, state: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "madfile.yaml").write_text(f"version: 1\nmodels: []\nstate: {state}\n")
    return root


def record_one(location: PgLocation | Path, value: float = 42.0) -> None:
    with StateStore.open(location) as store:
        apply_id = store.begin_apply("sha256:lock")
        attempt = store.start_attempt(apply_id, "job:a@cpu/here#1", "sha256:a", {"model": "a"}, "h", None)
        store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, perf=[PerfRow("a", value, "gflops")])
        store.finish_apply(apply_id, "SUCCESS")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_password_in_the_madfiles_url_is_refused_at_its_line(run_cli: RunCli, tmp_path: Path) -> None:
    root = madfile(tmp_path, "postgresql://ci:hunter2@db.example:5432/bench")
    for command in (("validate",), ("results",), ("state", "list")):
        code, out, err = run_cli(*command, cwd=root, env=NO_URL)
        assert (code, out) == (5, ""), command
        assert err.startswith("madfile.yaml:3:8: error: state: the URL contains a password (hint: the madfile is "
                              "committed: give the password by PGPASSWORD or a ~/.pgpass file"), err
        assert "${env:MADENGINE_STATE_URL}" in err and "hunter2" not in err
    assert sorted(p.name for p in root.iterdir()) == ["madfile.yaml"]  # nothing written


def test_another_scheme_is_refused(run_cli: RunCli, tmp_path: Path) -> None:
    root = madfile(tmp_path, "mysql://ci@db.example/bench")
    code, _, err = run_cli("validate", cwd=root, env=NO_URL)
    assert code == 5 and "madfile.yaml:3:8: error: state: `state` is a mysql:// URL" in err
    code, _, err = run_cli("results", cwd=tmp_path, env={"MADENGINE_STATE_URL": "mysql://u:pw@h/db"})
    assert code == 4 and err.startswith("error: the state store 'mysql://u:***@h/db' is a mysql:// URL")
    assert "pw@" not in err


def test_the_madfiles_state_names_the_store(run_cli: RunCli, tmp_path: Path, pg_schema: PgLocation) -> None:
    record_one(pg_schema)
    root = madfile(tmp_path / "w", pg_schema.url)
    code, out, err = run_cli("results", "--json", cwd=root, env=NO_URL)
    assert (code, err) == (0, "") and '"performance": 42.0' in out
    code, out, _ = run_cli("state", "list", cwd=root, env=NO_URL)
    assert code == 0 and out.splitlines()[-1] == f"1 address ({pg_schema.display}, serial 3)"
    assert code == 0 and run_cli("validate", cwd=root, env=NO_URL).code == 0
    # The environment and the command line come first: a path there is an SQLite store, empty here.
    for env, args in (({"MADENGINE_STATE": "other.db"}, ()), ({"MADENGINE_STATE_URL": None}, ("--state", "x.db"))):
        code, out, err = run_cli("state", "list", *args, cwd=root, env={**NO_URL, **env})
        assert code == 0 and out.startswith("0 addresses ("), (out, err)


def test_a_reference_gives_the_whole_url(run_cli: RunCli, tmp_path: Path, pg_schema: PgLocation) -> None:
    record_one(pg_schema, 7.5)
    root = madfile(tmp_path / "w", "${env:BENCH_DB_URL}")
    code, out, err = run_cli("results", cwd=root, env=NO_URL)
    assert (code, out) == (5, "")
    assert err.startswith("madfile.yaml:3:8: error: state: environment variable BENCH_DB_URL is not set (needed by "
                          "`state`)")
    code, out, err = run_cli("results", cwd=root, env={**NO_URL, "BENCH_DB_URL": pg_schema.url})
    assert (code, err) == (0, "") and "7.5" in out


@pytest.mark.parametrize("command", [("results",), ("state", "list"), ("state", "show", "job:a@c/t#1"),
                                     ("state", "forget", "job:a@c/t#1"), ("unlock",), ("plan",),
                                     ("apply", "--yes")])
def test_an_unreachable_database_is_one_line_without_the_password(run_cli: RunCli, tmp_path: Path,
                                                                  command: tuple[str, ...]) -> None:
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: []\n")
    port = closed_port()
    url = f"postgresql://ci:s3cret@127.0.0.1:{port}/bench?connect_timeout=2"
    code, out, err = run_cli(*command, cwd=tmp_path, env={**NO_URL, "MADENGINE_STATE_URL": url})
    lines = [ln for ln in err.splitlines() if not ln.startswith("madengine.lock ")]  # plan's lock note
    assert (code, len(lines)) == (1, 1), err
    assert lines[0].startswith(f"error: cannot reach the state database postgresql://ci:***@127.0.0.1:{port}/bench"
                               "?connect_timeout=2: Connection refused (hint: is the server running")
    assert "s3cret" not in out + err and "Traceback" not in err
    assert not (tmp_path / ".madengine" / "state.db").exists()
    if command[0] not in ("plan", "apply"):  # plan and apply refresh the lock first; these read only
        assert sorted(p.name for p in tmp_path.iterdir()) == ["madfile.yaml"]


def test_a_database_that_is_not_madengines_is_one_line_and_left_alone(run_cli: RunCli, tmp_path: Path,
                                                                       pg_schema: PgLocation) -> None:
    with psycopg.connect(pg_schema.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int)")
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: []\n")
    for command in (("results",), ("apply", "--yes")):
        code, _, err = run_cli(*command, cwd=tmp_path, env={**NO_URL, "MADENGINE_STATE_URL": pg_schema.url})
        assert code == 1, err
        assert f"error: {pg_schema.display} is a PostgreSQL database, but not madengine's state" in err
        assert "Traceback" not in err
    with psycopg.connect(pg_schema.url, autocommit=True) as conn:
        assert conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                            "current_schema()").fetchall() == [("customers",)]
