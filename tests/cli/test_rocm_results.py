"""ROCm madengine's results commands on real perf.csv files: `report to-html|to-email`, `database
create-table|update-table` (SQLite, and a real PostgreSQL server: MADENGINE_PG_URL) and `upload-mongodb`'s
command line.

The perf.csv files are madengine's own: one written by `madengine run --backend local` in a copy of
examples/mad-package, and one by madengine's perf.csv writer (results/perfcsv.py) from recorded attempts
that ran in Docker on a gfx942 host (every column filled).
"""

from __future__ import annotations

import csv
import html.parser
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from madengine.results.perfcsv import PERF_CSV_COLUMNS, perf_rows, write_perf_csv
from madengine.state.location import redact
from madengine.state.model import Status
from tests.cli.rocm_report_main import report_cli
from tests.conftest import REPO_ROOT, RunCli, run_cli
from tests.infra.postgres import PgServer
from tests.unit.results.conftest import attempt, build_attempt, image_record, job_address, job_inputs, perf

ROCM_TABLE_COLUMNS = ["id", "created_date", "model", "pipeline", "n_gpus", "training_precision", "args", "tags",
                      "docker_file", "base_docker", "docker_sha", "docker_image", "git_commit", "machine_name",
                      "gpu_architecture", "performance", "metric", "relative_change", "status", "build_duration",
                      "test_duration"]


# --- perf.csv files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_perf_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The perf.csv `madengine run --tags ... --backend local` wrote (two models)."""
    root = tmp_path_factory.mktemp("run") / "MAD"
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", root,
                    ignore=shutil.ignore_patterns("madfile.yaml", "madengine.lock", ".madengine"))
    code, out, err = run_cli("run", "--tags", "dummy_perf:batch_size=8,dummy_dir/quick", "--backend", "local",
                             cwd=root)
    assert code == 0, out + err
    return root / "perf.csv"


def gfx942_rows(values: list[float | None], first_id: int = 10) -> list[dict[str, str]]:
    """perf.csv rows of model `dummy` run in Docker on a gfx942 host, one per value (None: a failure)."""
    inputs = job_inputs()
    inputs["env"]["MAD_SYSTEM_GPU_ARCHITECTURE"] = "gfx942"
    attempts = [build_attempt(1)]
    for i, value in enumerate(values):
        status = Status.SUCCESS if value is not None else Status.FAILURE
        attempts.append(attempt(first_id + i, job_address(), inputs, status=status, apply_id=i + 1,
                                start=f"2026-11-28T10:{i:02d}:00Z", end=f"2026-11-28T10:{i:02d}:42Z",
                                perf=(perf(value),) if value is not None else ()))
    return perf_rows(attempts, {("image:dummy.ubuntu.none@cpu", "box"): image_record()})


def writer_perf_csv(path: Path, values: list[float | None]) -> Path:
    write_perf_csv(path, gfx942_rows(values))
    return path


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


class Tables(html.parser.HTMLParser):
    """The h2 titles and tables of a page: each table its header cells and rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.titles: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.tags: set[str] = set()
        self.attrs_seen: set[str] = set()
        self._cell: list[str] | None = None
        self._title: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs_seen.update(name for name, _ in attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "h2":
            self._title = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "h2" and self._title is not None:
            self.titles.append("".join(self._title))
            self._title = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._title):
            if part is not None:
                part.append(data)


def parse(path: Path) -> Tables:
    page = Tables()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def self_contained(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    page = parse(path)
    assert not page.tags & {"script", "link", "img", "iframe"} and "src" not in page.attrs_seen
    assert "http://" not in text and "https://" not in text


# --- report ---------------------------------------------------------------------------------------


def test_to_html_writes_the_table_beside_the_csv(run_perf_csv: Path, tmp_path: Path) -> None:
    source = shutil.copy(run_perf_csv, tmp_path / "perf_mi300.csv")
    code, out, err = report_cli("to-html", "--csv-file-path", source, cwd=tmp_path)
    assert (code, err) == (0, "")
    output = tmp_path / "perf_mi300.html"  # ROCm's name: the CSV's, .html for .csv
    assert out == f"wrote {output} (2 rows)\n"
    [table] = parse(output).tables
    assert table == csv_rows(run_perf_csv)  # header and rows, every value as written
    self_contained(output)


def test_to_html_escapes_what_the_csv_holds(tmp_path: Path) -> None:
    rows = gfx942_rows([1.0])
    rows[0]["model"] = "<script>alert(1)</script>"
    rows[0]["args"] = '"><img src=x onerror=alert(2)> & =HYPERLINK("http://x")'
    write_perf_csv(tmp_path / "perf.csv", rows)
    code, _, err = report_cli("to-html", "--csv-file-path", "perf.csv", cwd=tmp_path)
    assert code == 0, err
    page = parse(tmp_path / "perf.html")
    assert not page.tags & {"script", "img"}
    assert page.tables[0][1][0] == "<script>alert(1)</script>"  # shown as text
    assert page.tables[0][1][PERF_CSV_COLUMNS.index("args")] == rows[0]["args"]


def test_to_email_one_page_a_section_per_csv(run_perf_csv: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(run_perf_csv, results / "perf.csv")
    writer_perf_csv(results / "perf_mi300.csv", [100.0, None])
    (results / "notes.txt").write_text("not a CSV\n")
    (results / "old.csv").mkdir()  # a directory named *.csv is not a file to report
    code, out, err = report_cli("to-email", "--csv-file-path", "results", cwd=tmp_path)
    assert (code, err) == (0, "")
    output = results / "run_results.html"  # ROCm's default name, in the directory
    assert out == "wrote results/run_results.html (2 CSV files, 4 rows)\n"
    page = parse(output)
    assert page.titles == ["perf", "perf_mi300"]
    assert page.tables == [csv_rows(results / "perf.csv"), csv_rows(results / "perf_mi300.csv")]
    self_contained(output)
    code, out, _ = report_cli("to-email", "--dir", "results", "-o", "summary.html", cwd=tmp_path)
    assert code == 0 and parse(results / "summary.html").titles == ["perf", "perf_mi300"]


def test_to_email_reports_every_bad_csv_and_writes_nothing(tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "a.csv", [1.0])
    (tmp_path / "b.csv").write_bytes(b"model,performance\nx,\xff\n")
    (tmp_path / "c.csv").write_text("model,performance\nx,1,2\n")
    code, out, err = report_cli("to-email", "--csv-file-path", ".", cwd=tmp_path)
    assert code == 5 and out == ""
    assert err.splitlines() == [
        "b.csv:2:3: error: not UTF-8 text: byte 0xff cannot be decoded (hint: perf.csv is comma-separated UTF-8 "
        "text with a header line, as madengine and ROCm madengine write it)",
        "c.csv:2: error: 3 fields, but the header has 2 (hint: quote a value that has a comma in it)"]
    assert not (tmp_path / "run_results.html").exists()


def test_to_email_with_no_csv_writes_nothing(tmp_path: Path) -> None:
    code, out, err = report_cli("to-email", cwd=tmp_path)
    assert (code, out) == (0, "") and err == "no *.csv file in .: nothing written\n"
    assert list(tmp_path.iterdir()) == []


def test_report_options_refused(tmp_path: Path) -> None:
    (tmp_path / "perf.txt").write_text("model\n")
    for args, message in [
        (("to-html", "--csv-file-path", "perf.txt"), "error: --csv-file-path perf.txt: not a .csv file"),
        (("to-html", "--csv-file-path", "nope.csv"), "error: --csv-file-path nope.csv: no such file"),
        (("to-email", "--csv-file-path", "perf.txt"), "error: --csv-file-path perf.txt: not a directory"),
        (("to-email", "--dir", "nope"), "error: --csv-file-path nope: no such directory"),
    ]:
        code, _, err = report_cli(*args, cwd=tmp_path)
        assert code == 4 and err.startswith(message), (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perf.txt"]


# --- database: SQLite -------------------------------------------------------------------------------


def sqlite_rows(path: Path, columns: str = "*") -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT {columns} FROM dlm_table ORDER BY id").fetchall()


def sqlite_columns(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute("PRAGMA table_info(dlm_table)")]


def test_create_and_update_table_in_the_default_sqlite_file(run_perf_csv: Path, tmp_path: Path) -> None:
    shutil.copy(run_perf_csv, tmp_path / "perf.csv")
    db = tmp_path / ".madengine" / "perf.db"
    assert run_cli("database", "create-table", cwd=tmp_path).stdout == f"dlm_table in {db}: created dlm_table\n"
    assert run_cli("database", "create-table", cwd=tmp_path).stdout == f"dlm_table in {db}: already there\n"
    assert sqlite_columns(db)[:21] == ROCM_TABLE_COLUMNS  # ROCm's, in its order; perf.csv's others after
    assert sqlite_columns(db)[21:] == [c for c in PERF_CSV_COLUMNS if c not in ROCM_TABLE_COLUMNS]
    code, out, err = run_cli("database", "update-table", "--csv-file-path", "perf.csv", cwd=tmp_path)
    assert (code, out, err) == (0, f"dlm_table in {db}: 2 rows added, 0 already there\n", "")
    stored = sqlite_rows(db, ", ".join(PERF_CSV_COLUMNS))
    expected = [tuple(v or None for v in row) for row in csv_rows(run_perf_csv)[1:]]
    assert stored == expected
    # again, and on a perf.csv another run appended to: only the new rows
    assert run_cli("database", "update-table", cwd=tmp_path).stdout == \
        f"dlm_table in {db}: 0 rows added, 2 already there\n"
    with (tmp_path / "perf.csv").open("a", encoding="utf-8") as f:
        f.write(run_perf_csv.read_text(encoding="utf-8").splitlines()[2].replace("32.5", "33") + "\n")
    assert run_cli("database", "update-table", cwd=tmp_path).stdout == \
        f"dlm_table in {db}: 1 row added, 2 already there\n"
    assert [r[0] for r in sqlite_rows(db, "performance")] == ["200", "32.5", "33"]
    [(created,)] = {r for r in sqlite_rows(db, "created_date")[:2]}  # one time per upload, as ROCm's
    assert len(str(created)) == 19  # YYYY-MM-DD HH:MM:SS


def test_a_table_of_rocm_s_shape_gets_the_missing_columns_and_ids(tmp_path: Path) -> None:
    import sqlite3

    # ROCm's table: `id INT PRIMARY KEY` (no default: its uploader numbers rows), its columns only
    columns = ", ".join(f"`{c}` VARCHAR(128)" for c in ROCM_TABLE_COLUMNS[2:])
    with sqlite3.connect(tmp_path / "perf.db") as db:
        db.execute(f"CREATE TABLE `dlm_table` (`id` INT PRIMARY KEY, `created_date` DATETIME DEFAULT "
                   f"CURRENT_TIMESTAMP, {columns})")
        db.execute("INSERT INTO dlm_table (id, model, performance) VALUES (41, 'old', '1')")
    writer_perf_csv(tmp_path / "perf.csv", [1.0, 2.0])
    code, out, err = run_cli("database", "update-table", "--db-url", "perf.db", cwd=tmp_path)
    more = ", ".join(f"dlm_table.{c}" for c in PERF_CSV_COLUMNS if c not in ROCM_TABLE_COLUMNS)
    assert (code, err) == (0, "") and out == f"dlm_table in perf.db: created {more}; 2 rows added, 0 already there\n"
    assert sqlite_rows(tmp_path / "perf.db", "id, model, nnodes") == [(41, "old", None), (42, "dummy", "1"),
                                                                       (43, "dummy", "1")]


def test_relative_change_is_rocm_s(tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "perf.csv", [100.0, 110.0, None, 120.0])
    code, _, err = run_cli("database", "update-table", "--db-url", "sqlite:///perf.db", cwd=tmp_path)
    assert code == 0, err
    # The table now knows gfx942; a new run is compared with the average of the model's last successes
    # on it with the same base image (the failure is not one).
    writer_perf_csv(tmp_path / "perf.csv", [100.0, 110.0, None, 120.0, 132.0])
    code, out, err = run_cli("database", "update-table", "--db-url", "perf.db", cwd=tmp_path)
    assert out.endswith(": 1 row added, 4 already there\n"), err
    change = sqlite_rows(tmp_path / "perf.db", "relative_change")[-1][0]
    assert change == str({"gfx942": {"pct_change": 132.0 / 110.0 * 100, "baseline_avg": 110.0, "sample_count": 3}})


def test_equal_rows_are_stored_as_often_as_the_csv_has_them(tmp_path: Path) -> None:
    rows = gfx942_rows([5.0])
    write_perf_csv(tmp_path / "perf.csv", rows * 2)  # the same measurement twice
    assert run_cli("database", "update-table", cwd=tmp_path).stdout.endswith("2 rows added, 0 already there\n")
    write_perf_csv(tmp_path / "perf.csv", rows * 3)
    assert run_cli("database", "update-table", cwd=tmp_path).stdout.endswith("1 row added, 2 already there\n")


def test_concurrent_update_tables_add_each_row_once(tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "perf.csv", [float(i) for i in range(50)])
    outputs = _at_once(tmp_path, 3, "--db-url", "perf.db")
    assert sorted(o.split("; ")[-1].rsplit(": ", 1)[-1] for o in outputs) == [
        "0 rows added, 50 already there\n", "0 rows added, 50 already there\n", "50 rows added, 0 already there\n"]
    assert len(sqlite_rows(tmp_path / "perf.db")) == 50


def _at_once(cwd: Path, n: int, *args: str, env: dict[str, str] | None = None) -> list[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    procs = [subprocess.Popen([sys.executable, "-m", "madengine", "database", "update-table", *args], cwd=cwd,
                              env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, results
    return [out for out, _ in results]


def test_database_errors_are_one_line(tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "perf.csv", [1.0])
    (tmp_path / "not.db").write_text("model,performance\n")
    for args, code, message in [
        (("--db-url", "not.db"), 1, "error: cannot open the SQLite database not.db: file is not a database"),
        (("--db-url", "postgresql://ci:hunter2@127.0.0.1:1/perf"), 1,
         "error: cannot connect to postgresql://ci:***@127.0.0.1:1/perf: connection failed: "),
        (("--db-url", "mongodb://db:27017"), 4, "error: --db-url mongodb://db:27017: mongodb:// is not an SQL "
         "database madengine speaks"),
        (("--csv-file-path", "nope.csv"), 4, "error: --csv-file-path nope.csv: no such file"),
    ]:
        result = run_cli("database", "update-table", *args, cwd=tmp_path)
        assert result.code == code and result.stderr.startswith(message), (args, result)
        assert len(result.stderr.splitlines()) == 1 and "hunter2" not in result.stderr + result.stdout
    assert not (tmp_path / ".madengine").exists()


# --- database: PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server of MADENGINE_PG_URL (dev/services starts one), dropped after."""
    base = os.environ.get("MADENGINE_PG_URL")
    if not base:
        pytest.fail("MADENGINE_PG_URL is not set: start the services (dev/services) or export a server's URL")
    import psycopg

    name = f"madengine_rocm_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg(url: str, sql: str, *, commit: bool = False) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=commit) as db:
        cur = db.execute(sql)
        return cur.fetchall() if cur.description else []


def test_update_table_in_postgresql(run_perf_csv: Path, pg_url: str, tmp_path: Path) -> None:
    shown = redact(pg_url)
    code, out, err = run_cli("database", "create-table", "--db-url", pg_url, cwd=tmp_path)
    assert (code, out, err) == (0, f"dlm_table in {shown}: created dlm_table\n", "")
    types = dict((r[0], (r[1], r[2])) for r in pg(pg_url, "SELECT column_name, data_type, character_maximum_length "
                                                  "FROM information_schema.columns WHERE table_name = 'dlm_table'"))
    assert types["args"] == ("character varying", 128) and types["tags"] == ("character varying", 65535)
    assert types["relative_change"] == ("text", None) and types["id"][0] == "integer"
    assert types["created_date"][0] == "timestamp without time zone"
    shutil.copy(run_perf_csv, tmp_path / "perf.csv")
    for added, already in ((2, 0), (0, 2)):
        code, out, err = run_cli("database", "update-table", "--db-url", pg_url, cwd=tmp_path)
        assert (code, out, err) == (0, f"dlm_table in {shown}: {added} rows added, {already} already there\n", "")
    stored = pg(pg_url, f"SELECT {', '.join(PERF_CSV_COLUMNS)} FROM dlm_table ORDER BY id")
    assert stored == [tuple(v or None for v in row) for row in csv_rows(run_perf_csv)[1:]]
    writer_perf_csv(tmp_path / "perf.csv", [100.0, 120.0])
    assert run_cli("database", "update-table", "--db-url", pg_url, cwd=tmp_path).code == 0
    writer_perf_csv(tmp_path / "perf.csv", [100.0, 120.0, 99.0])
    assert run_cli("database", "update-table", "--db-url", pg_url, cwd=tmp_path).stdout.endswith(
        ": 1 row added, 2 already there\n")
    [(change,)] = pg(pg_url, "SELECT relative_change FROM dlm_table ORDER BY id DESC LIMIT 1")
    assert change == str({"gfx942": {"pct_change": 99.0 / 110.0 * 100, "baseline_avg": 110.0, "sample_count": 2}})


def test_tuna_db_variables_name_the_server(pg_url: str, pg_server: PgServer, tmp_path: Path) -> None:
    # As ROCm's users do: a role that logs in with its password (dev/services' madengine_pw, whose password
    # only its .pgpass holds), given by TUNA_DB_USER_PASSWORD, not by a .pgpass.
    assert pg_server.passfile, "dev/services wrote no MADENGINE_PG_PASSFILE: restart it"
    password = Path(pg_server.passfile).read_text().strip().rsplit(":", 1)[1]
    pg(pg_url, "GRANT CREATE ON SCHEMA public TO madengine_pw", commit=True)
    parts = urlsplit(pg_server.password_role_url(password))._replace(path=urlsplit(pg_url).path)
    assert parts.hostname and parts.port and parts.password
    writer_perf_csv(tmp_path / "perf.csv", [1.0, 2.0])
    tuna = {"TUNA_DB_HOSTNAME": parts.hostname, "TUNA_DB_PORT": str(parts.port), "TUNA_DB_NAME": parts.path[1:],
            "TUNA_DB_USER_NAME": parts.username or "", "TUNA_DB_USER_PASSWORD": parts.password,
            "PGPASSFILE": str(tmp_path / "no-pgpass")}
    code, out, err = run_cli("database", "update-table", cwd=tmp_path, env=tuna)
    assert (code, err) == (0, "") and out == (f"dlm_table in postgresql://{parts.username}@{parts.hostname}:"
                                              f"{parts.port}/{parts.path[1:]}: created dlm_table; 2 rows added, "
                                              "0 already there\n")
    assert pg(urlunsplit(parts), "SELECT count(*) FROM dlm_table") == [(2,)]  # the role that made it
    code, out, err = run_cli("database", "update-table", cwd=tmp_path,
                             env={**tuna, "TUNA_DB_USER_PASSWORD": "not-the-password"})
    assert code == 1 and len(err.splitlines()) == 1 and "password authentication failed" in err
    assert "not-the-password" not in err + out and parts.password not in err + out
    code, _, err = run_cli("database", "update-table", cwd=tmp_path, env={**tuna, "TUNA_SSH_HOSTNAME": "dbhost"})
    assert code == 4 and err.startswith("error: TUNA_SSH_HOSTNAME=dbhost: madengine connects to the database itself")
    assert not (tmp_path / ".madengine").exists()  # TUNA_DB_* chose the server, not the SQLite file


def test_concurrent_update_tables_in_postgresql(pg_url: str, tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "perf.csv", [float(i) for i in range(50)])
    outputs = _at_once(tmp_path, 3, "--db-url", pg_url)
    assert sorted(o.split("; ")[-1].rsplit(": ", 1)[-1] for o in outputs) == [
        "0 rows added, 50 already there\n", "0 rows added, 50 already there\n", "50 rows added, 0 already there\n"]
    assert pg(pg_url, "SELECT count(*) FROM dlm_table") == [(50,)]


# --- upload-mongodb ---------------------------------------------------------------------------------


def test_upload_mongodb_command_line(run_cli: RunCli, tmp_path: Path) -> None:
    writer_perf_csv(tmp_path / "perf.csv", [1.0])
    code, _, err = run_cli("database", "upload-mongodb", "--collection-name", "perf", cwd=tmp_path)
    assert code == 4 and "--database-name" in err
    code, _, err = run_cli("database", "upload-mongodb", "--database-name", "a/b", "--collection-name", "perf",
                           cwd=tmp_path)
    assert code == 4 and err.startswith("error: --database-name 'a/b' is not a MongoDB name")
    code, out, err = run_cli("database", "upload-mongodb", "--database-name", "mad", "--collection-name", "perf",
                             "--db-url", "mongodb://ci:hunter2@127.0.0.1:1/?connectTimeoutMS=500", cwd=tmp_path)
    assert code == 1 and err.startswith("error: cannot upload to mongodb://ci:***@127.0.0.1:1/") and out == ""
    assert len(err.splitlines()) == 1 and "hunter2" not in err
