"""Hostile results files given to `madengine compare` (a perf.csv, madengine's JSON): each is refused in one
clear line naming the file (and line where it is text), exit 5, fast, never a traceback; or compared with
what it holds shown harmlessly."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import RunCli

CONFIG = 5
GOOD = "model,performance,metric,status\ndummy,1,gflops,SUCCESS\n"


def refused(run_cli: RunCli, root: Path, name: str, env: dict[str, str | None] | None = None) -> str:
    """`compare NAME good.csv` in a directory without a madfile: exit 5, one line naming NAME."""
    (root / "good.csv").write_text(GOOD)
    code, out, err = run_cli("compare", name, "good.csv", cwd=root, env=env, timeout=60)
    assert (code, out) == (CONFIG, ""), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith(f"{name}"), err
    return err


def test_a_file_claiming_a_gigabyte_is_refused_before_it_is_read(run_cli: RunCli, tmp_path: Path) -> None:
    with (tmp_path / "huge.json").open("wb") as f:
        f.truncate(1 << 30)  # sparse: a gigabyte by its size, nothing on the disk
    err = refused(run_cli, tmp_path, "huge.json")
    assert "huge.json is 1024.0 MB; the limit is 8.0 MB (hint: set MADENGINE_MAX_INPUT_BYTES" in err


def test_the_size_limit_is_the_input_limit(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text(GOOD * 100)
    err = refused(run_cli, tmp_path, "perf.csv", env={"MADENGINE_MAX_INPUT_BYTES": "1000"})
    assert "the limit is 1000 bytes" in err


def test_deeply_nested_json(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "nested more than 64 levels deep" in refused(run_cli, tmp_path, "deep.json")
    (tmp_path / "deep2.json").write_text('{"format": "madengine-results", "version": 1, "series": '
                                         + '{"a": ' * 70 + "1" + "}" * 70 + "}")
    assert "nested more than 64 levels deep" in refused(run_cli, tmp_path, "deep2.json")


def test_nul_bytes_in_a_csv(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_bytes(b"model,performance,metric\nx\x00,1,gflops\n")
    assert refused(run_cli, tmp_path, "perf.csv").startswith("perf.csv:2:2: error: a NUL byte: not a text file")


def test_bytes_that_are_not_utf8(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_bytes(b"model,performance,metric\nm\xe9,1,gflops\n")
    assert refused(run_cli, tmp_path, "perf.csv").startswith("perf.csv:2:2: error: not UTF-8 text: byte 0xe9")
    (tmp_path / "r.json").write_bytes(b'{"format": "\xff"}')
    assert refused(run_cli, tmp_path, "r.json").startswith("r.json:1:13: error: not UTF-8 text: byte 0xff")


def test_a_fifo_or_a_device_is_not_read(run_cli: RunCli, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.csv")  # reading it would wait forever
    assert "fifo.csv is not a regular file" in refused(run_cli, tmp_path, "fifo.csv")
    (tmp_path / "zero.json").symlink_to("/dev/zero")  # endless
    assert "zero.json is not a regular file" in refused(run_cli, tmp_path, "zero.json")


def test_a_csv_field_beyond_the_csv_reader_limit(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text('model,performance,metric\n"' + "x" * 200_000 + '",1,gflops\n')
    assert "not a CSV file: field larger than field limit" in refused(run_cli, tmp_path, "perf.csv")


def test_a_number_of_thousands_of_digits_or_beyond_a_float(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "big.json").write_text("[" + "9" * 5000 + "]")
    assert "invalid JSON" in refused(run_cli, tmp_path, "big.json")
    series = {"job:a@c/t": {"model": "a", "status": "SUCCESS", "figures": [
        {"model": "a", "metric": "m", "values": [1e400]}]}}
    (tmp_path / "inf.json").write_text('{"format": "madengine-results", "version": 1, "series": '
                                       + json.dumps(series).replace("Infinity", "1e400") + "}")
    assert "values: must be finite numbers" in refused(run_cli, tmp_path, "inf.json")
    (tmp_path / "perf.csv").write_text("model,performance,metric\nx,1e400,gflops\nx,nan,gflops\n")
    err = refused(run_cli, tmp_path, "perf.csv")
    assert "perf.csv:2:2: error: performance '1e400' is not a finite number" in err
    assert "perf.csv:3:2: error: performance 'nan' is not a finite number" in err


def test_a_file_of_errors_reports_the_first_hundred(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "perf.csv").write_text("model,performance,metric\n" + "x,fast,gflops\n" * 100_000)
    err = refused(run_cli, tmp_path, "perf.csv")
    assert len(err.splitlines()) == 100


def test_control_characters_in_names_are_shown_escaped(run_cli: RunCli, tmp_path: Path) -> None:
    """A model or metric name that would drive a terminal (an OSC title, a colour) prints escaped."""
    evil = "m\x1b]0;pwned\x07\x1b[31m"
    (tmp_path / "a.csv").write_text(f"model,performance,metric\n{evil},1,gflops\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(f"model,performance,metric\n{evil},2,gflops\n", encoding="utf-8")
    for extra in ((), ("--markdown",), ("--fail-on-regression", "b.csv", "a.csv")):
        args = extra if extra and extra[0] == "--fail-on-regression" else ("a.csv", "b.csv", *extra)
        code, out, err = run_cli("compare", *args, cwd=tmp_path)
        assert code in (0, 6), err
        assert "\x1b" not in out + err and "\x07" not in out + err
        assert "\\x1b]0;pwned\\x07" in (out + err).replace("\\\\", "\\")  # markdown doubles a backslash


def test_a_results_json_of_the_wrong_shape(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps([{"address": 3, "status": "SUCCESS", "perf": "x"}] * 3))
    err = refused(run_cli, tmp_path, "r.json")
    assert "r.json: error: [0].address: must be a string, not 3 (hint: is it a madengine results or baseline " \
           "file?)\n" in err
    assert "r.json: error: [2].perf: must be a list, not 'x'" in err
