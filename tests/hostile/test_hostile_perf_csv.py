"""A hostile perf.csv given to ROCm's results commands (report to-html|to-email, database update-table,
upload-mongodb): one line naming the file and line, exit 5, nothing written; or, where the file is fine
but odd, what it holds shown or stored as it is written, never interpreted."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from tests.cli.rocm_report_main import report_cli
from tests.conftest import RunCli

HEADER = "model,performance,metric,status\n"
HINT = ("(hint: perf.csv is comma-separated UTF-8 text with a header line, as madengine and ROCm madengine "
        "write it)")
# update-table and upload-mongodb read the file before they look for a database: a MongoDB that is not
# there is never asked.
COMMANDS = [("database", "update-table", "--csv-file-path", "perf.csv"),
            ("database", "upload-mongodb", "--database-name", "mad", "--collection-name", "perf",
             "--db-url", "mongodb://127.0.0.1:1")]


def refused(run_cli: RunCli, tmp_path: Path, content: bytes, line: str, env: dict[str, str] | None = None) -> None:
    """Every command refuses the file with `line` on stderr, exit 5, and writes nothing."""
    (tmp_path / "perf.csv").write_bytes(content)
    for args in COMMANDS:
        code, out, err = run_cli(*args, cwd=tmp_path, env=env)
        assert (code, out, err) == (5, "", line + "\n"), args
    code, out, err = report_cli("to-html", "--csv-file-path", "perf.csv", cwd=tmp_path, env=env)
    assert (code, out, err) == (5, "", line + "\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["perf.csv"]


def stored(tmp_path: Path, columns: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / ".madengine" / "perf.db") as db:
        return db.execute(f"SELECT {columns} FROM dlm_table ORDER BY id").fetchall()


def test_nul_byte(run_cli: RunCli, tmp_path: Path) -> None:
    refused(run_cli, tmp_path, (HEADER + "a,1,x,SUCCESS\nb,2\0,x,SUCCESS\n").encode(),
            f"perf.csv:3:4: error: a NUL byte: not a text file {HINT}")


def test_not_utf8(run_cli: RunCli, tmp_path: Path) -> None:
    refused(run_cli, tmp_path, (HEADER + "r\xe9sum\xe9,1,x,SUCCESS\n").encode("latin-1"),
            f"perf.csv:2:2: error: not UTF-8 text: byte 0xe9 cannot be decoded {HINT}")


def test_no_model_column(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text("name,performance\na,1\n")
    for args in COMMANDS:
        code, _, err = run_cli(*args, cwd=tmp_path)
        assert (code, err) == (5, "perf.csv:1: error: no model column: not a perf.csv (hint: give the perf.csv "
                                  "that `madengine run` or `apply` wrote)\n"), args
    assert not (tmp_path / ".madengine").exists()


def test_more_fields_than_the_header_at_their_line(run_cli: RunCli, tmp_path: Path) -> None:
    # a quoted value over two lines first: the bad row is named at the line it starts on
    refused(run_cli, tmp_path, (HEADER + 'a,1,"two\nlines",SUCCESS\nb,2,x,SUCCESS,extra\n').encode(),
            "perf.csv:4: error: 5 fields, but the header has 4 (hint: quote a value that has a comma in it)")


def test_header_twice_named_or_nameless(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text("model,performance,model,\na,1,b,\n")
    code, _, err = report_cli("to-html", "--csv-file-path", "perf.csv", cwd=tmp_path)
    assert code == 5 and err.splitlines() == [
        f"perf.csv:1: error: column 'model' is in the header twice {HINT}",
        f"perf.csv:1: error: column 4 of the header has no name {HINT}"]


def test_empty_file(run_cli: RunCli, tmp_path: Path) -> None:
    refused(run_cli, tmp_path, b"", f"perf.csv:1: error: empty: no header line {HINT}")


def test_bigger_than_the_limit(run_cli: RunCli, tmp_path: Path) -> None:
    refused(run_cli, tmp_path, (HEADER + "a,1,x,SUCCESS\n" * 100).encode(),
            "perf.csv: error: perf.csv is 1 KB; the limit is 1000 bytes (hint: set "
            "MADENGINE_MAX_PERF_CSV_BYTES (in bytes) to raise it)", env={"MADENGINE_MAX_PERF_CSV_BYTES": "1000"})


def test_a_fifo_is_refused_not_waited_on(run_cli: RunCli, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "perf.csv")
    code, _, err = run_cli(*COMMANDS[0], cwd=tmp_path, timeout=30)
    assert (code, err) == (5, "perf.csv: error: perf.csv is not a regular file (hint: perf.csv must be a file "
                              "(not a FIFO, socket or device))\n")


def test_a_value_too_long_for_rocm_s_table(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text("model,args\na,--ok\nb," + "x" * 129 + "\nc," + "y" * 200_000 + "\n")
    code, _, err = run_cli(*COMMANDS[0], cwd=tmp_path)
    assert code == 5 and err.splitlines() == [
        f"perf.csv:{n}: error: args: {k} characters, more than the 128 of dlm_table's column (hint: ROCm's table "
        "has these column sizes; shorten the value)" for n, k in ((3, 129), (4, 200_000))]
    assert not (tmp_path / ".madengine").exists()  # nothing written, not even the table
    code, _, err = report_cli("to-html", "--csv-file-path", "perf.csv", cwd=tmp_path)  # a table shows any length
    assert code == 0 and ("y" * 200_000) in (tmp_path / "perf.html").read_text()


def test_missing_and_extra_columns(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text("model,performance,owner\na,1,me\nb\n")  # b: fewer fields, as pandas
    code, _, err = run_cli(*COMMANDS[0], cwd=tmp_path)
    assert code == 0 and err == "perf.csv:1: warning: not stored (no such column in dlm_table): owner\n"
    assert stored(tmp_path, "model, performance, metric") == [("a", "1", None), ("b", None, None)]


def test_formula_cells_are_text_everywhere(run_cli: RunCli, tmp_path: Path) -> None:
    cells = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "=HYPERLINK(\"http://x\")"]
    (tmp_path / "perf.csv").write_text(HEADER + "".join(f'm{i},1,"{c.replace(chr(34), chr(34) * 2)}",SUCCESS\n'
                                                        for i, c in enumerate(cells)))
    assert run_cli(*COMMANDS[0], cwd=tmp_path).code == 0
    assert [m for (m,) in stored(tmp_path, "metric")] == cells  # stored as written: data is not rewritten
    code, _, _ = report_cli("to-html", "--csv-file-path", "perf.csv", cwd=tmp_path)
    page = (tmp_path / "perf.html").read_text()
    assert code == 0 and "<td>=cmd|&#39; /C calc&#39;!A0</td>" in page and "<td>+1+1</td>" in page


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf", b""])
def test_an_editor_s_byte_order_mark_and_crlf(run_cli: RunCli, tmp_path: Path, bom: bytes) -> None:
    (tmp_path / "perf.csv").write_bytes(bom + b"model ,performance\r\na,1\r\n\r\n")
    code, out, err = run_cli(*COMMANDS[0], cwd=tmp_path)
    assert (code, err) == (0, "") and out.endswith("; 1 row added, 0 already there\n")
    assert stored(tmp_path, "model, performance") == [("a", "1")]


def test_markup_in_column_names_and_section_names(tmp_path: Path) -> None:
    (tmp_path / "<b>x<script>.csv").write_text("model,<i>perf</i>\n<u>a</u>,1\n")
    code, _, err = report_cli("to-email", cwd=tmp_path)
    page = (tmp_path / "run_results.html").read_text()
    assert code == 0, err
    assert "<h2>&lt;b&gt;x&lt;script&gt;</h2>" in page and "<th>&lt;i&gt;perf&lt;/i&gt;</th>" in page
    assert "<u>" not in page and "<i>" not in page and "<script>" not in page


def test_a_directory_where_the_page_goes(run_cli: RunCli, tmp_path: Path) -> None:
    """to-html writes perf.html beside perf.csv, to-email its -o: a directory there is one line, exit 4."""
    (tmp_path / "perf.csv").write_text(HEADER + "a,1,x,SUCCESS\n")
    (tmp_path / "perf.html").mkdir()
    code, out, err = run_cli("report", "to-html", "--csv-file-path", "perf.csv", cwd=tmp_path)
    assert (code, out) == (4, "") and err.startswith("error: the page perf.html: a directory") and "internal" not in err
    code, out, err = run_cli("report", "to-email", "--csv-file-path", ".", "-o", "perf.html", cwd=tmp_path)
    assert (code, out) == (4, "") and err.startswith("error: -o perf.html: a directory")
