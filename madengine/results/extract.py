"""MAD performance extraction and run judgement (DESIGN §3): pure functions of a run's log and outputs.

What ROCm madengine does, and where it comes from (ROCm/madengine):

- The performance line: the first match of `PERFORMANCE_RE` in the run log gives value and metric
  (`execution/container_runner.py` searches the whole log once with `PERFORMANCE_LOG_PATTERN`).
- `multiple_results`: a CSV with (at least) the columns `model, performance, metric`; header names are
  whitespace-stripped, extra columns are allowed, a missing column is an error, each row is named
  `<model>_<row model>`, and a row whose performance is missing (NaN) is a FAILURE
  (`reporting/update_perf_csv.py: handle_multiple_results`). A run with `multiple_results` takes its
  figures from the CSV only, not from the log, and succeeds when at least one row has a performance.
- Error patterns: literal substrings searched line by line, skipping benign lines
  (`execution/container_runner_helpers.py: DEFAULT_LOG_ERROR_PATTERNS, log_text_has_error_pattern`,
  benign lists in `container_runner.py`). A match fails the run even when a performance line was found,
  as DESIGN §3 says and as `container_runner.py` does; note that later ROCm versions (ROCM-27774,
  `resolve_run_status`) let a found performance win over a matched pattern.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import replace

from madengine.state.model import PerfRow, Status

# DESIGN §3, verbatim: value in group 1, metric in group 2. Do not "improve" it: MAD scripts are
# written against exactly this.
PERFORMANCE_RE = re.compile(
    r"performance:\s+([+\-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?)(?:,?\s*/[a-zA-Z]+\s*,?|,)?\s+([^\s,]+)"
)

# ROCm madengine's DEFAULT_LOG_ERROR_PATTERNS (execution/container_runner_helpers.py), in its order:
# literal, case-sensitive substrings of one log line.
ERROR_PATTERNS: tuple[str, ...] = (
    "OutOfMemoryError",
    "HIP out of memory",
    "CUDA out of memory",
    "RuntimeError:",
    "AssertionError:",
    "ValueError:",
    "SystemExit",
    "failed (exitcode:",
    "Traceback (most recent call last)",
    "FAILED",
    "Exception:",
    "ImportError:",
    "ModuleNotFoundError:",
)

# Lines that contain an error pattern but are known noise (container_runner.py's benign lists):
# metrics-exporter chatter, warnings, rocEnvTool's own timeouts, rocprof/rpd tracer output.
BENIGN_SUBSTRINGS: tuple[str, ...] = (
    "Failed to establish connection to the metrics exporter agent",
    "RpcError: Running out of retries to initialize the metrics agent",
    "Metrics will not be exported",
    "FutureWarning",
    "RuntimeError: Console script timeout",
    "rocEnvTool/console.py",
    "rocEnvTool/rocenv_tool.py",
    "Opened result file:",
    "SQLite3 generation ::",
    "rocpd_op:",
    "rpd_tracer:",
)
# glog-style `E20260101 ...`/`W2026...` lines of ROCProf are log levels, not application errors.
BENIGN_LINE_RE = re.compile(
    r"^E[0-9]{8}.*generateRocpd\.cpp|^W[0-9]{8}.*simple_timer\.cpp|^W[0-9]{8}.*generateRocpd\.cpp"
    r"|^E[0-9]{8}.*tool\.cpp|\[rocprofv3\]"
)

# What pandas.read_csv reads as NaN: ROCm decides a multiple_results row's status with `pd.notna`.
_NA_VALUES = frozenset({"", "nan", "NaN", "NAN", "-nan", "-NaN", "N/A", "NA", "n/a", "<NA>", "null", "NULL",
                        "None", "#N/A", "#NA", "-1.#IND", "1.#IND", "-1.#QNAN", "1.#QNAN", "#N/A N/A"})
_REQUIRED_COLUMNS = ("model", "performance", "metric")
_MAX_LINE_IN_MESSAGE = 200


class MultipleResultsError(ValueError):
    """A multiple_results CSV that cannot be read as ROCm madengine reads it (a missing column)."""


def extract_performance(log_text: str) -> tuple[float, str] | None:
    """The value and metric of the first performance line, or None."""
    match = PERFORMANCE_RE.search(log_text)
    if match is None:
        return None
    return float(match.group(1)), match.group(2)


def read_multiple_results(csv_text: str, model_name: str) -> list[PerfRow]:
    """The rows of a multiple_results CSV, named `<model_name>_<row model>`.

    The first non-blank line is the header. Raises MultipleResultsError when a required column is missing.
    """
    text = csv_text.lstrip("\ufeff")  # a BOM from a Windows-made CSV would glue onto "model"
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    index: dict[str, int] = {}
    rows: list[PerfRow] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            lowered = [h.lower() for h in header]
            missing = [c for c in _REQUIRED_COLUMNS if c not in lowered]
            if missing:
                raise MultipleResultsError(f"the multiple_results CSV is missing the {missing[0]} column "
                                           f"(header: {','.join(header)})")
            index = {c: lowered.index(c) for c in _REQUIRED_COLUMNS}
            continue
        cells = {c: (record[i].strip() if i < len(record) else "") for c, i in index.items()}
        value = _number(cells["performance"])
        rows.append(PerfRow(model=f"{model_name}_{cells['model']}", performance=value, metric=cells["metric"],
                            status=Status.SUCCESS if value is not None else Status.FAILURE))
    return rows


def _number(cell: str) -> float | None:
    if cell in _NA_VALUES:
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def find_error(log_text: str) -> str | None:
    """The earliest non-benign line holding an error pattern, as `error pattern 'X' at line N: <line>`.

    One `str.find` sweep per pattern (C speed), each stopping at the earliest hit found so far, so a
    50 MB clean log costs a few tens of milliseconds and no per-line Python loop.
    """
    best: tuple[int, str, int, int] | None = None  # (position, pattern, line start, line end)
    for pattern in ERROR_PATTERNS:
        # A hit must start before the best one so far: let it end up to len(pattern) - 1 past it.
        limit = best[0] + len(pattern) - 1 if best is not None else len(log_text)
        start = 0
        while True:
            pos = log_text.find(pattern, start, limit)
            if pos < 0:
                break
            line_start = log_text.rfind("\n", 0, pos) + 1
            line_end = log_text.find("\n", pos)
            if line_end < 0:
                line_end = len(log_text)
            if not _benign(log_text[line_start:line_end], pattern):
                best = (pos, pattern, line_start, line_end)
                break
            start = line_end + 1
    if best is None:
        return None
    pos, pattern, line_start, line_end = best
    line_no = log_text.count("\n", 0, line_start) + 1
    line = log_text[line_start:line_end].strip()
    if len(line) > _MAX_LINE_IN_MESSAGE:
        line = line[:_MAX_LINE_IN_MESSAGE] + "..."
    return f"error pattern {pattern!r} at line {line_no}: {line}"


def _benign(line: str, pattern: str) -> bool:
    # ROCm also skips its own `grep -q <pattern>` / "Found error pattern <pattern>" echo lines.
    if ("grep -q" in line or "Found error pattern" in line) and re.search(
            f"(grep -q.*{re.escape(pattern)}|Found error pattern.*{re.escape(pattern)})", line):
        return True
    if any(s in line for s in BENIGN_SUBSTRINGS):
        return True
    return BENIGN_LINE_RE.search(line) is not None


def judge(log_text: str, exit_code: int | None, multiple_results_csv: str | None,
          model_name: str) -> tuple[Status, tuple[PerfRow, ...], str]:
    """A finished run's status, performance rows and a one-line reason (empty on SUCCESS).

    `multiple_results_csv` is None when the model declares no multiple_results; when it does, pass the
    file's text ("" if the run did not write it): its rows are then the only figures, as in ROCm.
    `exit_code` None means unknown, and the log alone decides.
    Rows found in a run that fails on an error pattern are kept, marked FAILURE (ROCm writes them too).
    """
    if exit_code is not None and exit_code != 0:
        # No figures from a crashed run (ROCm records none); the first error line says why it crashed.
        error = find_error(log_text)
        return Status.FAILURE, (), f"exit code {exit_code}" + (f" ({error})" if error else "")
    rows: tuple[PerfRow, ...]
    if multiple_results_csv is not None:
        try:
            rows = tuple(read_multiple_results(multiple_results_csv, model_name))
        except MultipleResultsError as exc:
            return Status.FAILURE, (), str(exc)
        missing = "no performance in the multiple_results CSV"
    else:
        found = extract_performance(log_text)
        rows = (PerfRow(model=model_name, performance=found[0], metric=found[1]),) if found else ()
        missing = "no performance line in the log"
    error = find_error(log_text)
    if error is not None:
        return Status.FAILURE, tuple(replace(r, status=Status.FAILURE) for r in rows), error
    if not any(r.status is Status.SUCCESS for r in rows):
        return Status.FAILURE, rows, missing
    return Status.SUCCESS, rows, ""
