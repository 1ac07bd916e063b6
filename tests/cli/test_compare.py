"""`madengine compare` through the real entry point, on two real applies of the local backend whose inputs
changed between them (a script edited, an env var changed, args changed), and on results files."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.conftest import CliResult, RunCli, run_cli

MADFILE = """\
version: 1
name: demo
models:
  - {name: ms, scripts: s.sh, n_gpus: 0}
  - {name: me, scripts: run.sh, n_gpus: 0, env_vars: {PERF: "100"}}
  - {name: ma, scripts: run.sh, n_gpus: 0, args: "100"}
  - {name: same, scripts: run.sh, n_gpus: 0, args: "7"}
contexts: {cpu: {gpu_vendor: NONE}}
targets: {here: {backend: local}}
runs:
  - models: [ms, me, ma, same]
    repeat: 2
"""
REGRESSED = [
    "regressed: job:ma@cpu/here samples_per_second 100 -> 50 (-50.00%, higher is better): args changed",
    "regressed: job:ms@cpu/here samples_per_second 100 -> 80 (-20.00%, higher is better): script changed",
]


def _apply(root: Path) -> None:
    code, _, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, err


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two applies: between them s.sh reports less, me's PERF env var and ma's args changed."""
    root = tmp_path_factory.mktemp("compare")
    (root / "madfile.yaml").write_text(MADFILE)
    (root / "s.sh").write_text('#!/usr/bin/env bash\necho "performance: 100 samples_per_second"\n')
    (root / "run.sh").write_text('#!/usr/bin/env bash\necho "performance: ${1:-$PERF} samples_per_second"\n')
    _apply(root)
    (root / "s.sh").write_text('#!/usr/bin/env bash\necho "performance: 80 samples_per_second"\n')
    (root / "madfile.yaml").write_text(MADFILE.replace('PERF: "100"', 'PERF: "120"').replace('args: "100"',
                                                                                              'args: "50"'))
    _apply(root)
    return root


def lines(result: CliResult) -> list[str]:
    return [line.rstrip() for line in result.stdout.splitlines()]


def test_previous_against_latest_names_the_inputs_that_changed(run_cli: RunCli, project: Path) -> None:
    result = run_cli("compare", cwd=project)
    assert (result.code, result.stderr) == (0, "")
    assert lines(result) == [
        "apply 1 -> apply 2: 2 regressed, 1 improved, 1 unchanged",
        "JOB              METRIC              apply 1    apply 2    CHANGE   BETTER  VERDICT    CHANGED INPUTS",
        "job:ma@cpu/here  samples_per_second  100 (n=2)  50 (n=2)   -50.00%  higher  regressed  args",
        "job:ms@cpu/here  samples_per_second  100 (n=2)  80 (n=2)   -20.00%  higher  regressed  script",
        "job:me@cpu/here  samples_per_second  100 (n=2)  120 (n=2)  +20.00%  higher  improved   env var PERF",
        "1 more within noise or unchanged (--all shows them)",
    ]
    assert run_cli("compare", "previous", "latest", cwd=project) == result
    assert run_cli("compare", "1", cwd=project) == result  # one argument: against latest
    everything = lines(run_cli("compare", "--all", cwd=project))
    # a job the second apply found up to date: the very same result on both sides
    assert everything[-1].split() == ["job:same@cpu/here", "samples_per_second", "7", "(n=2)", "7", "(n=2)", "+0.00%",
                                      "higher", "unchanged"]


def test_fail_on_regression_exits_6_naming_each_regressed_row(run_cli: RunCli, project: Path) -> None:
    result = run_cli("compare", "--fail-on-regression", cwd=project)
    assert result.code == 6
    assert "2 regressed" in result.stdout  # the comparison is printed first
    assert result.stderr.splitlines() == REGRESSED
    # nothing regressed the other way round... but what improved now regressed
    back = run_cli("compare", "2", "1", "--fail-on-regression", cwd=project)
    assert back.code == 6 and back.stderr.splitlines() == [
        "regressed: job:me@cpu/here samples_per_second 120 -> 100 (-16.67%, higher is better): env var PERF changed"]
    assert run_cli("compare", "1", "1", "--fail-on-regression", cwd=project).code == 0
    # a wide enough noise floor: nothing is a regression
    assert run_cli("compare", "--noise", "60%", "--fail-on-regression", cwd=project).code == 0


def test_json(run_cli: RunCli, project: Path) -> None:
    result = run_cli("compare", "--json", cwd=project)
    assert (result.code, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    assert set(data) == {"a", "b", "noise", "summary", "rows"}
    assert (data["a"]["label"], data["b"]["apply_id"], data["noise"]) == ("apply 1", 2, 0.02)
    assert data["summary"]["regressed"] == 2 and data["summary"]["unchanged"] == 1
    ma = next(r for r in data["rows"] if r["series"] == "job:ma@cpu/here")
    assert ma == {"series": "job:ma@cpu/here", "model": "ma", "metric": "samples_per_second",
                  "a": {"median": 100.0, "spread": 0.0, "values": [100.0, 100.0]},
                  "b": {"median": 50.0, "spread": 0.0, "values": [50.0, 50.0]}, "change": -0.5,
                  "verdict": "regressed", "better": "higher", "direction_from": "name", "band": 0.02,
                  "changed": ["args"], "a_status": "SUCCESS", "b_status": "SUCCESS", "message": ""}


def test_markdown_is_a_pull_request_comment(run_cli: RunCli, project: Path) -> None:
    result = run_cli("compare", "--markdown", cwd=project)
    assert result.code == 0
    text = result.stdout
    assert text.startswith("**madengine compare** apply 1 -> apply 2: 2 regressed, 1 improved, 1 unchanged "
                           "(noise floor 2%)\n")
    assert "| `job:ms@cpu/here` | samples_per_second | 100 (n=2) | 80 (n=2) | -20.00% | higher | **regressed** | " \
           "script |" in text
    details = text[text.index("<details>"):]
    assert details.startswith("<details><summary>1 more: 1 unchanged</summary>") and "job:same" in details
    assert "job:same" not in text[:text.index("<details>")]


def test_metric_and_select(run_cli: RunCli, project: Path) -> None:
    result = run_cli("compare", "--select", "me", "--all", cwd=project)
    assert [line.split()[0] for line in lines(result)[2:]] == ["job:me@cpu/here"]
    code, out, err = run_cli("compare", "--metric", "gflops", cwd=project)
    assert (code, out) == (4, "")
    assert err == "error: --metric gflops: neither apply 1 nor apply 2 reports it (hint: metrics: samples_per_second)\n"


@pytest.mark.parametrize(("args", "message"), [
    (("99",), "error: apply 99: no such apply (applies are 1..2)"),
    (("nightly",), "error: 'nightly' is not an apply, a baseline or a results file (no baseline saved)"),
    (("@{2001-01-01}",), "error: @{2001-01-01}: no apply with results started at or before 2001-01-01T23:59:59.999Z"),
    (("--noise", "2"), "error: --noise: `2` is not a percentage such as `2%`"),
    (("gone.csv",), "error: gone.csv: no such file"),
])
def test_a_bad_reference_is_a_usage_error_in_one_line(run_cli: RunCli, project: Path, args: tuple[str, ...],
                                                      message: str) -> None:
    code, out, err = run_cli("compare", *args, cwd=project)
    assert (code, out) == (4, "")
    assert len(err.splitlines()) == 1 and err.startswith(message), err


def test_no_applies_yet(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "madfile.yaml").write_text(MADFILE)
    code, out, err = run_cli("compare", cwd=tmp_path)
    assert (code, out) == (4, "")
    assert err == "error: previous: no apply has recorded results yet (hint: run `madengine apply`)\n"
    assert not (tmp_path / ".madengine").exists()  # comparing creates no state


def test_a_results_file_of_the_wrong_shape_is_a_config_error_naming_it(run_cli: RunCli, project: Path) -> None:
    (project / "bad.json").write_text('{"format": "madengine-results", "version": 1, "series": 3}')
    code, out, err = run_cli("compare", "bad.json", cwd=project)
    assert (code, out) == (5, "")
    assert err.startswith("bad.json: error: series: must be an object of job series, not 3")
    (project / "bad.csv").write_text("model,performance,metric\nx,fast,gflops\n")
    code, _, err = run_cli("compare", "bad.csv", cwd=project)
    assert code == 5 and err.startswith("bad.csv:2:2: error: performance 'fast' is not a finite number")


def test_two_files_need_no_madfile(run_cli: RunCli, project: Path, tmp_path: Path) -> None:
    """perf.csv (ROCm's columns) and `results --json` exported from the project, compared elsewhere."""
    assert run_cli("results", "--apply", "1", "--csv", tmp_path / "before.csv", cwd=project).code == 0
    code, out, _ = run_cli("results", "--json", cwd=project)
    (tmp_path / "after.json").write_text(out)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    result = run_cli("compare", "../before.csv", "../after.json", "--json", cwd=lonely)
    assert (result.code, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    assert {(r["series"], r["verdict"]) for r in data["rows"]} == {
        ("job:ma@cpu/here", "regressed"), ("job:ms@cpu/here", "regressed"), ("job:me@cpu/here", "improved"),
        ("job:same@cpu/here", "within noise")}
    assert not (lonely / ".madengine").exists()
    # a directory without a madfile or a store: applies cannot be named
    code, _, err = run_cli("compare", "latest", "../after.json", cwd=lonely)
    assert code == 4 and "'latest' names an apply, and there is no state store here" in err


def test_the_madfile_sets_the_noise_floor_and_directions(run_cli: RunCli, project: Path,
                                                          tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    text = (copy / "madfile.yaml").read_text()
    (copy / "madfile.yaml").write_text(text + textwrap.dedent("""\
        results:
          noise: 30%
          better: {samples_per_second: lower}
        """))
    result = run_cli("compare", "--all", cwd=copy)
    assert result.code == 0, result.stderr
    verdicts = {line.split()[0]: line.split()[-2:] for line in lines(result)[2:]}
    # lower is better now: -50% improved; -20% and +20% within the 30% floor
    assert lines(result)[0] == "apply 1 -> apply 2: 1 improved, 2 within noise, 1 unchanged"
    assert verdicts["job:ma@cpu/here"] == ["improved", "args"]
    # --noise wins over the madfile
    narrow = run_cli("compare", "--noise", "1%", cwd=copy).stdout
    assert narrow.startswith("apply 1 -> apply 2: 1 regressed, 2 improved")


def test_history_names_the_inputs_that_changed_at_each_step(run_cli: RunCli, project: Path) -> None:
    result = run_cli("results", "--history", "ms", cwd=project)
    assert result.code == 0, result.stderr
    rows = [line.split() for line in lines(result)[1:-1]]
    assert [(r[0], r[4], r[-2:]) for r in rows] == [("1", "100", ["(n=2)", "first"]),
                                                    ("2", "80", ["regressed", "script"])]
    data = json.loads(run_cli("results", "--history", "me", "--json", cwd=project).stdout)
    assert [(s["apply_id"], s["verdict"], s["changed"]) for s in data] == [(1, "first", []),
                                                                           (2, "improved", ["env var PERF"])]
    # a job the second apply did not rerun has one step
    assert [s["apply_id"] for s in json.loads(run_cli("results", "--history", "same", "--json", cwd=project).stdout)] \
        == [1]


def test_a_baseline_by_name(run_cli: RunCli, project: Path, tmp_path: Path) -> None:
    """A result set saved under baselines/ (what `baseline save` writes) is named by its name."""
    from madengine.results.resultset import resolve
    from madengine.state.store import StateStore

    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    with StateStore.open(copy / ".madengine" / "state.db", readonly=True) as store:
        text = resolve("1", store, project="demo").to_text()
    (copy / "baselines").mkdir()
    (copy / "baselines" / "main.json").write_text(text)
    result = run_cli("compare", "main", "--fail-on-regression", cwd=copy)
    assert result.code == 6 and result.stdout.startswith("baseline main -> apply 2: 2 regressed, 1 improved, "
                                                          "1 within noise")
    assert result.stderr.splitlines() == REGRESSED
    (copy / "baselines" / "other.json").write_text(text.replace('"project": "demo"', '"project": "elsewhere"'))
    code, out, err = run_cli("compare", "other", cwd=copy)
    assert (code, out) == (5, "")
    assert err.startswith("baselines/other.json: error: a baseline of project 'elsewhere', not of project 'demo'")


FAILING = """\
version: 1
name: demo
models:
  - {name: good, scripts: good.sh, n_gpus: 0}
  - {name: bad, scripts: bad.sh, n_gpus: 0}
contexts: {cpu: {gpu_vendor: NONE}}
targets: {here: {backend: local}}
runs:
  - models: [good, bad]
"""


def test_a_job_still_failing_is_failed_and_fails_the_regression_check(run_cli: RunCli, tmp_path: Path) -> None:
    """`bad` failed in apply 1 and is not rerun by apply 2: the same failed attempt on both sides is no
    less a failure, and a job with no figure cannot pass a regression check."""
    (tmp_path / "madfile.yaml").write_text(FAILING)
    (tmp_path / "good.sh").write_text('#!/usr/bin/env bash\necho "performance: 100 samples_per_second"\n')
    (tmp_path / "bad.sh").write_text("#!/usr/bin/env bash\nexit 2\n")
    assert run_cli("apply", "--yes", cwd=tmp_path).code == 3
    (tmp_path / "good.sh").write_text('#!/usr/bin/env bash\necho "performance: 101 samples_per_second"\n')
    assert run_cli("apply", "--yes", cwd=tmp_path).code == 0
    result = run_cli("compare", "--fail-on-regression", cwd=tmp_path)
    assert result.code == 6 and result.stdout.startswith("apply 1 -> apply 2: 1 failed,")
    assert [line.split(":")[:2] for line in result.stderr.splitlines()] == [["failed", " job"]]
    assert "job:bad@cpu/here" in result.stderr
    markdown = run_cli("compare", "--markdown", cwd=tmp_path).stdout
    assert "| `job:bad@cpu/here` |" in markdown.split("<details>")[0]


def test_a_job_removed_from_the_madfile_is_missing_not_carried_forward(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "madfile.yaml").write_text(FAILING.replace("bad.sh", "good.sh"))
    (tmp_path / "good.sh").write_text('#!/usr/bin/env bash\necho "performance: 100 samples_per_second"\n')
    assert run_cli("apply", "--yes", cwd=tmp_path).code == 0
    (tmp_path / "madfile.yaml").write_text(FAILING.replace("  - {name: bad, scripts: bad.sh, n_gpus: 0}\n", "")
                                           .replace("[good, bad]", "[good]"))
    (tmp_path / "good.sh").write_text('#!/usr/bin/env bash\necho "performance: 101 samples_per_second"\n')
    assert run_cli("apply", "--yes", cwd=tmp_path).code == 0
    data = json.loads(run_cli("compare", "--json", cwd=tmp_path).stdout)
    assert {r["series"]: r["verdict"] for r in data["rows"]} == {"job:good@cpu/here": "within noise",
                                                                  "job:bad@cpu/here": "missing"}
    assert run_cli("baseline", "save", "now", cwd=tmp_path).code == 0
    saved = json.loads((tmp_path / "baselines" / "now.json").read_text())
    assert "job:bad@cpu/here" not in json.dumps(saved) and "job:good@cpu/here" in json.dumps(saved)
