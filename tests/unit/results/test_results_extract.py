"""Performance extraction, multiple_results, error patterns and judgement, against log samples."""

from __future__ import annotations

import time

import pytest

from madengine.results.extract import (
    ERROR_PATTERNS,
    PERFORMANCE_RE,
    MultipleResultsError,
    extract_performance,
    find_error,
    judge,
    read_multiple_results,
)
from madengine.state.model import PerfRow, Status

DESIGN_REGEX = (r"performance:\s+([+\-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?)"
                r"(?:,?\s*/[a-zA-Z]+\s*,?|,)?\s+([^\s,]+)")


def test_the_regex_is_design_s_verbatim() -> None:
    assert PERFORMANCE_RE.pattern == DESIGN_REGEX


# --- the performance line ------------------------------------------------------------------------

@pytest.mark.parametrize(("log", "value", "metric"), [
    ("performance: 123.4 samples_per_second", 123.4, "samples_per_second"),
    ("performance: 14164 samples_per_second\n", 14164.0, "samples_per_second"),
    ("performance: 1.2e3 samples/sec", 1200.0, "samples/sec"),
    ("performance: 1.2E+3 tokens", 1200.0, "tokens"),
    ("performance: 3.5e-2 s", 0.035, "s"),
    ("performance: -5 ms_regression", -5.0, "ms_regression"),
    ("performance: +7.25 gflops", 7.25, "gflops"),
    ("performance: .5 ms", 0.5, "ms"),
    ("performance: 12. it", 12.0, "it"),
    ("performance: 7, fps", 7.0, "fps"),  # a bare comma after the value
    ("performance: 12, /sec, tokens", 12.0, "tokens"),  # `, /sec,` is swallowed: the metric follows it
    ("performance: 12 /sec tokens", 12.0, "tokens"),
    ("performance: 12/sec tokens", 12.0, "tokens"),
    ("performance: 100 /sec", 100.0, "/sec"),  # nothing after the unit: the unit is the metric
    ("performance: 42 gflops, more text", 42.0, "gflops"),  # the metric stops at a comma
    ("performance:\t9\timages_per_second", 9.0, "images_per_second"),
    ("performance:   3.0E-2   gflops", 0.03, "gflops"),
    ("[rank0] 2026-11-28 10:00:00 performance: 880.5 tok/s (bs=8)", 880.5, "tok/s"),
    ("model dummy performance: 1 x", 1.0, "x"),
    ("performance: 5\nsamples_per_second", 5.0, "samples_per_second"),  # \s+ spans the newline, as written
], ids=lambda v: v if isinstance(v, str) else None)
def test_performance_line(log: str, value: float, metric: str) -> None:
    found = extract_performance(log)
    assert found is not None
    assert found[0] == pytest.approx(value)
    assert found[1] == metric


@pytest.mark.parametrize("log", [
    "",
    "performance:9 x",  # needs whitespace after the colon
    "performance: fast",  # no number
    "Performance: 9 x",  # case matters
    "perf: 9 x",
    "performance: 9",  # no metric
    "performance: 9 ",
])
def test_no_performance_line(log: str) -> None:
    assert extract_performance(log) is None


def test_first_match_wins() -> None:
    log = "warmup\nperformance: 1 warmup_metric\nperformance: 2 samples_per_second\n"
    assert extract_performance(log) == (1.0, "warmup_metric")


# --- multiple_results ----------------------------------------------------------------------------

def test_multiple_results_rows_are_named_model_underscore_row() -> None:
    csv_text = "model,performance,metric\nbs1,10.5,tokens_per_second\nbs8,80,tokens_per_second\n"
    assert read_multiple_results(csv_text, "llama") == [
        PerfRow("llama_bs1", 10.5, "tokens_per_second"),
        PerfRow("llama_bs8", 80.0, "tokens_per_second"),
    ]


@pytest.mark.parametrize("csv_text", [
    "model,performance,metric\nbs1,10.5,tps\n",
    " model , performance , metric \nbs1 , 10.5 , tps \n",  # headers and cells are stripped
    "model, performance, metric\r\nbs1, 10.5, tps\r\n",  # CRLF, spaces after commas
    "\ufeffmodel,performance,metric\nbs1,10.5,tps\n",  # a BOM
    "metric,model,performance\ntps,bs1,10.5\n",  # columns in another order
    "model,performance,metric,gpu_util,notes\nbs1,10.5,tps,97,\"a, b\"\n",  # extra columns
    "Model,Performance,Metric\nbs1,10.5,tps\n",  # capitalised header
    "\n\nmodel,performance,metric\n\nbs1,10.5,tps\n\n",  # blank lines
    "model,performance,metric\nbs1,1.05e1,tps",  # no final newline, exponent
], ids=["plain", "spaces", "crlf", "bom", "reordered", "extra-columns", "capitalised", "blank-lines", "exponent"])
def test_multiple_results_header_variants(csv_text: str) -> None:
    assert read_multiple_results(csv_text, "m") == [PerfRow("m_bs1", 10.5, "tps")]


@pytest.mark.parametrize("cell", ["", " ", "nan", "NaN", "N/A", "null", "None", "not-a-number"])
def test_multiple_results_missing_performance_is_a_failed_row(cell: str) -> None:
    rows = read_multiple_results(f"model,performance,metric\nok,1,x\nbad,{cell},x\n", "m")
    assert rows == [PerfRow("m_ok", 1.0, "x"), PerfRow("m_bad", None, "x", Status.FAILURE)]


def test_multiple_results_short_row() -> None:
    assert read_multiple_results("model,performance,metric\nbs1\n", "m") == [PerfRow("m_bs1", None, "", Status.FAILURE)]


def test_multiple_results_header_only() -> None:
    assert read_multiple_results("model,performance,metric\n", "m") == []
    assert read_multiple_results("", "m") == []


@pytest.mark.parametrize(("header", "column"), [("name,performance,metric", "model"),
                                                ("model,value,metric", "performance"),
                                                ("model,performance", "metric")])
def test_multiple_results_missing_column(header: str, column: str) -> None:
    with pytest.raises(MultipleResultsError, match=f"missing the {column} column"):
        read_multiple_results(header + "\na,1,x\n", "m")


# --- error patterns ------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "torch.OutOfMemoryError: HIP out of memory. Tried to allocate 2.00 GiB",
    "HIP out of memory",
    "RuntimeError: CUDA out of memory.",
    "RuntimeError: NCCL error",
    "AssertionError: shapes differ",
    "ValueError: bad batch size",
    "SystemExit: 2",
    "torch.distributed.elastic.multiprocessing.api: failed (exitcode: 1) local_rank: 0",
    "Traceback (most recent call last):",
    "TEST FAILED",
    "Exception: something broke",
    "ImportError: cannot import name 'x'",
    "ModuleNotFoundError: No module named 'apex'",
])
def test_each_rocm_error_pattern_is_found(line: str) -> None:
    message = find_error(f"starting\n{line}\ndone\n")
    assert message is not None
    assert message.endswith(f"at line 2: {line}")


def test_the_pattern_list_is_rocm_s() -> None:
    assert ERROR_PATTERNS == ("OutOfMemoryError", "HIP out of memory", "CUDA out of memory", "RuntimeError:",
                              "AssertionError:", "ValueError:", "SystemExit", "failed (exitcode:",
                              "Traceback (most recent call last)", "FAILED", "Exception:", "ImportError:",
                              "ModuleNotFoundError:")


@pytest.mark.parametrize("line", [
    "runtime error without the colon form",
    "Failed to establish connection to the metrics exporter agent: RuntimeError: x",
    "FutureWarning: ValueError: deprecated",
    "RuntimeError: Console script timeout",
    "  File \"rocEnvTool/console.py\", line 3, Traceback (most recent call last)",
    "W20261128 12:00:00.000 simple_timer.cpp:42] RuntimeError: slow",
    "E20261128 12:00:00.000 generateRocpd.cpp:10] Exception: ignored",
    "[rocprofv3] FAILED to write a counter",
    "+ grep -q 'RuntimeError:' run.log",
    "Found error pattern 'ValueError:' in logs",
    "failed (exit code 1)",  # not "failed (exitcode:"
    "0 failed, 12 passed",  # FAILED is case-sensitive
])
def test_benign_lines_are_not_errors(line: str) -> None:
    assert find_error(f"{line}\nperformance: 1 x\n") is None


def test_the_earliest_error_line_is_reported() -> None:
    log = "a\nb\nValueError: first\nTraceback (most recent call last):\nRuntimeError: last\n"
    assert find_error(log) == "error pattern 'ValueError:' at line 3: ValueError: first"


def test_a_benign_hit_does_not_hide_a_later_real_one() -> None:
    log = "FutureWarning: RuntimeError: noise\nok\nRuntimeError: real\n"
    assert find_error(log) == "error pattern 'RuntimeError:' at line 3: RuntimeError: real"


def test_an_error_on_the_last_line_without_newline() -> None:
    assert find_error("x\ny\nTEST FAILED") == "error pattern 'FAILED' at line 3: TEST FAILED"


def test_a_long_error_line_is_shortened() -> None:
    message = find_error("RuntimeError: " + "x" * 1000)
    assert message is not None and message.endswith("...") and len(message) < 300


# --- judge ---------------------------------------------------------------------------------------

def test_judge_success() -> None:
    assert judge("step 1\nperformance: 12.5 samples_per_second\n", 0, None, "dummy") == (
        Status.SUCCESS, (PerfRow("dummy", 12.5, "samples_per_second"),), "")


def test_judge_nonzero_exit_fails_first() -> None:
    assert judge("performance: 12.5 x\n", 137, None, "dummy") == (Status.FAILURE, (), "exit code 137")
    assert judge("ok\nImportError: no apex\n", 1, None, "m") == (
        Status.FAILURE, (), "exit code 1 (error pattern 'ImportError:' at line 2: ImportError: no apex)")


def test_judge_unknown_exit_code_lets_the_log_decide() -> None:
    assert judge("performance: 1 x\n", None, None, "m")[0] is Status.SUCCESS


def test_judge_error_pattern_fails_even_with_performance() -> None:
    status, rows, message = judge("performance: 12.5 x\nTraceback (most recent call last):\n", 0, None, "m")
    assert status is Status.FAILURE
    assert rows == (PerfRow("m", 12.5, "x", Status.FAILURE),)  # kept, as ROCm writes them, but failed
    assert message == "error pattern 'Traceback (most recent call last)' at line 2: Traceback (most recent call last):"


def test_judge_no_performance() -> None:
    assert judge("all done\n", 0, None, "m") == (Status.FAILURE, (), "no performance line in the log")


def test_judge_multiple_results() -> None:
    csv_text = "model,performance,metric\nbs1,10,tps\nbs8,,tps\n"
    status, rows, message = judge("performance: 99 ignored\n", 0, csv_text, "m")
    assert (status, message) == (Status.SUCCESS, "")
    # The CSV's rows are the figures; the log's performance line is not one of them (as in ROCm).
    assert rows == (PerfRow("m_bs1", 10.0, "tps"), PerfRow("m_bs8", None, "tps", Status.FAILURE))


@pytest.mark.parametrize("csv_text", ["", "model,performance,metric\n", "model,performance,metric\na,,x\n"])
def test_judge_multiple_results_without_any_figure(csv_text: str) -> None:
    status, _, message = judge("performance: 99 x\n", 0, csv_text, "m")
    assert (status, message) == (Status.FAILURE, "no performance in the multiple_results CSV")


def test_judge_multiple_results_with_a_missing_column() -> None:
    status, rows, message = judge("", 0, "model,metric\na,x\n", "m")
    assert (status, rows) == (Status.FAILURE, ())
    assert "missing the performance column" in message


def test_judge_multiple_results_and_an_error_pattern() -> None:
    status, rows, message = judge("ImportError: x\n", 0, "model,performance,metric\na,1,x\n", "m")
    assert status is Status.FAILURE and rows == (PerfRow("m_a", 1.0, "x", Status.FAILURE),)
    assert message.startswith("error pattern 'ImportError:' at line 1")


# --- a 50 MB log ---------------------------------------------------------------------------------

_LINE = "step 1234/100000 | loss 2.3456 | lr 1.0e-4 | throughput 1234.5 samples/s | grad_norm 0.98 | mem 12.3GB\n"


def _big_log(size: int = 50_000_000) -> str:
    return _LINE * (size // len(_LINE))


def test_a_50_mb_log(capsys: pytest.CaptureFixture[str]) -> None:
    body = _big_log()
    clean = body + "performance: 4321.5 samples_per_second\n"
    start = time.perf_counter()
    result = judge(clean, 0, None, "big")
    clean_s = time.perf_counter() - start
    assert result == (Status.SUCCESS, (PerfRow("big", 4321.5, "samples_per_second"),), "")
    del clean  # keep the test's peak memory near 100 MB

    middle = len(body) // 2 - len(body) // 2 % len(_LINE)
    broken = body[:middle] + "RuntimeError: HIP error: out of memory\n" + body[middle:] + "performance: 1 x\n"
    start = time.perf_counter()
    status, _, message = judge(broken, 0, None, "big")
    broken_s = time.perf_counter() - start
    assert status is Status.FAILURE
    assert message == (f"error pattern 'RuntimeError:' at line {middle // len(_LINE) + 1}: "
                       "RuntimeError: HIP error: out of memory")
    with capsys.disabled():
        print(f"\n50 MB log: judge {clean_s:.3f} s clean, {broken_s:.3f} s with an error mid-log")
