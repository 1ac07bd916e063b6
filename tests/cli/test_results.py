"""`madengine results` through the real entry point, over a state database written by the real StateStore."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from madengine.results.perfcsv import PERF_CSV_COLUMNS
from madengine.state.location import PgLocation, StateLocation
from madengine.state.model import ImageRecord, PerfRow, Status
from madengine.state.store import StateStore
from tests.conftest import RunCli
from tests.infra.postgres import run_sql
from tests.unit.results.conftest import IMAGE, IMAGE_HASH, IMAGE_INPUTS, TAG, job_address, job_inputs

USAGE = 4
NO_RESULTS = "no results yet; run `madengine apply`\n"
A = job_address("a")
B = job_address("b")
M = job_address("m")


def _job(store: StateStore, apply_id: int, address: str, model: str, status: Status, *, exit_code: int = 0,
         message: str = "", perf: tuple[PerfRow, ...] = ()) -> int:
    attempt_id = store.start_attempt(apply_id, address, "sha256:a00d", job_inputs(model), "bench-01", None)
    store.finish_attempt(attempt_id, status, exit_code=exit_code, message=message, perf=perf)
    return attempt_id


@pytest.fixture
def workspace(tmp_path: Path, state_location: StateLocation) -> Path:
    """Two applies: a built image, jobs a (twice), b (failed) and m (multiple_results); in SQLite, or in
    PostgreSQL (named by $MADENGINE_STATE_URL for the test)."""
    db = state_location
    with StateStore.open(db) as store:
        first = store.begin_apply("sha256:lock1")
        build = store.start_attempt(first, IMAGE, IMAGE_HASH, dict(IMAGE_INPUTS), "bench-01", "logs/build.log")
        store.finish_attempt(build, Status.SUCCESS)
        store.record_image(ImageRecord(address=IMAGE, target="box", node_hash=IMAGE_HASH, tag=TAG, image_id="sha256:1",
                                       digest=None, inputs=dict(IMAGE_INPUTS), built_at="2026-11-20T09:59:00Z"),
                           first)
        _job(store, first, A, "a", Status.SUCCESS, perf=(PerfRow("a", 100.0, "samples_per_second"),))
        _job(store, first, B, "b", Status.FAILURE, exit_code=1, message="exit code 1")
        store.finish_apply(first, "FAILURE")
        second = store.begin_apply("sha256:lock1")
        _job(store, second, A, "a", Status.SUCCESS, perf=(PerfRow("a", 110.0, "samples_per_second"),))
        _job(store, second, M, "m", Status.SUCCESS, perf=(PerfRow("m_bs1", 1.5, "tps"),
                                                          PerfRow("m_bs8", None, "tps", Status.FAILURE)))
        store.finish_apply(second, "SUCCESS")
    # Fixed times, so durations and the table are exact: attempt n started on day 20+n, ran 30 s (builds 60 s).
    for (attempt_id,) in run_sql(db, "SELECT id FROM attempts"):
        day = f"2026-11-{20 + int(str(attempt_id))}"
        end = "10:01:00" if attempt_id == 1 else "10:00:30"
        run_sql(db, "UPDATE attempts SET started_at = ?, ended_at = ? WHERE id = ?",
                (f"{day}T10:00:00Z", f"{day}T{end}Z", attempt_id))
    run_sql(db, "UPDATE applies SET started_at = '2026-11-21T09:00:00Z' WHERE id = 1")
    run_sql(db, "UPDATE applies SET started_at = '2026-11-24T09:00:00Z' WHERE id = 2")
    return tmp_path


def test_no_state_yet(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("results", cwd=tmp_path) == (0, "", NO_RESULTS)
    assert run_cli("results", "--json", cwd=tmp_path) == (0, "[]\n", "")
    assert not (tmp_path / ".madengine").exists()  # reading results creates no state


def test_no_state_yet_csv_is_a_header(run_cli: RunCli, tmp_path: Path) -> None:
    code, _, err = run_cli("results", "--csv", "perf.csv", cwd=tmp_path)
    assert (code, err) == (0, NO_RESULTS)
    assert (tmp_path / "perf.csv").read_text() == ",".join(PERF_CSV_COLUMNS) + "\n"


def test_latest_result_of_every_job(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("results", cwd=workspace)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "JOB              STATUS   PERFORMANCE  METRIC              CHANGE   FINISHED              DURATION  NOTE",
        "job:a@cpu/box#1  SUCCESS  110          samples_per_second  +10.00%  2026-11-24T10:00:30Z  30.0s",
        "job:b@cpu/box#1  FAILURE                                            2026-11-23T10:00:30Z  30.0s     exit code 1",  # noqa: E501
        "job:m@cpu/box#1  SUCCESS                                            2026-11-25T10:00:30Z  30.0s",
        "  m_bs1          SUCCESS  1.5          tps",
        "  m_bs8          FAILURE               tps",
        "3 jobs: 1 FAILURE, 2 SUCCESS",
    ]


def test_history(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("results", "--history", "a", cwd=workspace)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "APPLY  STARTED     JOB            METRIC              MEDIAN  CHANGE   VERDICT   CHANGED INPUTS",
        "1      2026-11-21  job:a@cpu/box  samples_per_second  100              first",
        "2      2026-11-24  job:a@cpu/box  samples_per_second  110     +10.00%  improved",
        "2 applies of a, 1 change beyond noise",
    ]
    assert run_cli("results", "--history", "a", "--metric", "samples_per_second", cwd=workspace)[1] == out
    code, out, err = run_cli("results", "--history", "a", "--json", cwd=workspace)
    steps = json.loads(out)
    assert [(s["apply_id"], s["median"], s["change"], s["verdict"]) for s in steps] == [
        (1, 100.0, None, "first"), (2, 110.0, pytest.approx(0.1), "improved")]
    assert steps[1]["changed"] == [] and steps[1]["series"] == "job:a@cpu/box"


def test_history_of_a_failed_job_and_of_a_multiple_results_row(run_cli: RunCli, workspace: Path) -> None:
    out = run_cli("results", "--history", "b", cwd=workspace)[1]
    assert out.splitlines()[1].split() == ["1", "2026-11-21", "job:b@cpu/box", "(no", "result)", "-", "failed",
                                           "FAILURE:", "exit", "code", "1"]
    out = run_cli("results", "--history", "m_bs1", cwd=workspace)[1]
    assert out.splitlines()[1].split() == ["2", "2026-11-24", "job:m@cpu/box", "m_bs1", "tps", "1.5", "first"]


def test_history_of_an_unknown_metric_or_without_history(run_cli: RunCli, workspace: Path) -> None:
    assert run_cli("results", "--history", "a", "--metric", "gflops", cwd=workspace) == (
        USAGE, "", "error: --metric gflops: a reported no gflops (hint: its metrics: samples_per_second)\n")
    assert run_cli("results", "--metric", "gflops", cwd=workspace)[0] == USAGE


def test_history_of_an_unknown_model_is_a_usage_error(run_cli: RunCli, workspace: Path) -> None:
    """As an unknown --metric is: a typo must not pass for "no results" in CI."""
    assert run_cli("results", "--history", "nope", "--csv", "nope.csv", cwd=workspace) == (
        USAGE, "", "error: --history nope: no results for model 'nope' (hint: models with results: a, b, m)\n")
    assert not (workspace / "nope.csv").exists()
    assert run_cli("results", "--history", "m", "--apply", "1", cwd=workspace) == (
        0, "", "no results for model 'm' in apply 1\n")


def test_history_before_anything_ran_is_no_error(run_cli: RunCli, tmp_path: Path,
                                                 state_location: StateLocation) -> None:
    with StateStore.open(state_location) as store:
        store.finish_apply(store.begin_apply("sha256:lock1"), "SUCCESS")  # an apply that ran no job
    assert run_cli("results", "--history", "a", cwd=tmp_path) == (0, "", "no results for model 'a'; run "
                                                                         "`madengine apply`\n")


def csv_rows(path: Path) -> list[tuple[str, str, str, str]]:
    with path.open(newline="") as f:
        return [(r["model"], r["performance"], r["metric"], r["status"]) for r in csv.DictReader(f)]


def test_history_csv_is_the_models_attempts_of_its_metric(run_cli: RunCli, workspace: Path,
                                                          state_location: StateLocation) -> None:
    with StateStore.open(state_location) as store:
        third = store.begin_apply("sha256:lock1")
        _job(store, third, A, "a", Status.SUCCESS, perf=(PerfRow("a", 120.0, "samples_per_second"),
                                                         PerfRow("a", 5.0, "latency_ms")))
        _job(store, third, B, "b", Status.SUCCESS, perf=(PerfRow("b", 1.0, "latency_ms"),))
        store.finish_apply(third, "SUCCESS")
    assert run_cli("results", "--history", "a", "--csv", "a.csv", cwd=workspace).code == 0
    assert csv_rows(workspace / "a.csv") == [
        ("a", "100", "samples_per_second", "SUCCESS"), ("a", "110", "samples_per_second", "SUCCESS"),
        ("a", "120", "samples_per_second", "SUCCESS"), ("a", "5", "latency_ms", "SUCCESS")]
    code, out, _ = run_cli("results", "--history", "a", "--metric", "latency_ms", "--csv", "a.csv", cwd=workspace)
    assert code == 0 and out.splitlines()[-1] == "a.csv: 1 row written"
    assert csv_rows(workspace / "a.csv") == [("a", "5", "latency_ms", "SUCCESS")]
    # a multiple_results row's history: that row only, not its job's other rows
    assert run_cli("results", "--history", "m_bs1", "--csv", "m.csv", cwd=workspace).code == 0
    assert csv_rows(workspace / "m.csv") == [("m_bs1", "1.5", "tps", "SUCCESS")]
    # a failure reported no figure: its row stays in the history
    assert run_cli("results", "--history", "b", "--csv", "b.csv", cwd=workspace).code == 0
    assert csv_rows(workspace / "b.csv") == [("b", "", "", "FAILURE"), ("b", "1", "latency_ms", "SUCCESS")]


def test_one_apply(run_cli: RunCli, workspace: Path) -> None:
    code, out, _ = run_cli("results", "--apply", "1", cwd=workspace)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == [A, B]
    assert "100" in out.splitlines()[1]


def test_an_unknown_apply(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("results", "--apply", "9", cwd=workspace)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: --apply 9: no such apply (applies are 1..2)")


def test_json(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("results", "--json", cwd=workspace)
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert [(d["address"], d["status"], d["apply_id"]) for d in data] == [(A, "SUCCESS", 2), (B, "FAILURE", 1),
                                                                          (M, "SUCCESS", 2)]
    assert data[0]["perf"] == [{"model": "a", "performance": 110.0, "metric": "samples_per_second",
                                "status": "SUCCESS", "relative_change": "+10.00%"}]
    assert data[0]["duration"] == 30.0


def test_csv(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("results", "--csv", "out/perf.csv", "--json", cwd=workspace)
    assert (code, err) == (0, "")
    json.loads(out)  # stdout stays pure JSON
    with (workspace / "out" / "perf.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["performance"], r["status"], r["relative_change"]) for r in rows] == [
        ("a", "110", "SUCCESS", "+10.00%"), ("b", "", "FAILURE", ""), ("m_bs1", "1.5", "SUCCESS", ""),
        ("m_bs8", "", "FAILURE", "")]
    assert {r["docker_image"] for r in rows} == {TAG}
    assert {r["build_duration"] for r in rows} == {"60"}
    assert {r["test_duration"] for r in rows} == {"30"}


def test_csv_onto_a_directory_is_a_usage_error(run_cli: RunCli, workspace: Path) -> None:
    (workspace / "perf.csv").mkdir()
    assert run_cli("results", "--csv", "perf.csv", cwd=workspace) == (
        USAGE, "", "error: --csv perf.csv: a directory (hint: name a file, e.g. --csv perf.csv)\n")
    assert sorted(p.name for p in (workspace / "perf.csv").parent.iterdir() if p.name.startswith(".perf")) == []


def test_csv_with_chdir_and_table(run_cli: RunCli, workspace: Path) -> None:
    code, out, _ = run_cli("results", "-C", workspace.name, "--history", "a", "--csv", "a.csv", cwd=workspace.parent)
    assert code == 0
    assert out.splitlines()[-1] == f"{workspace.name}/a.csv: 2 rows written"
    assert len((workspace / "a.csv").read_text().splitlines()) == 3


def test_state_override(run_cli: RunCli, workspace: Path, tmp_path_factory: pytest.TempPathFactory,
                        state_location: StateLocation) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    if isinstance(state_location, PgLocation):
        assert "3 jobs" in run_cli("results", cwd=workspace)[1]  # $MADENGINE_STATE_URL
        typo = elsewhere / "typo.db"
        assert run_cli("results", "--state", typo, cwd=workspace) == (  # the command line wins
            0, "", f"no results yet ({typo} does not exist); run `madengine apply`\n")
        assert "3 jobs" in run_cli("results", "--state", state_location.url, cwd=workspace,
                                   env={"MADENGINE_STATE_URL": None})[1]
        return
    (workspace / ".madengine" / "state.db").rename(elsewhere / "s.db")
    assert run_cli("results", cwd=workspace)[2] == NO_RESULTS
    assert run_cli("results", "--state", elsewhere / "s.db", cwd=workspace)[0] == 0
    assert run_cli("results", "--state", elsewhere / "typo.db", cwd=workspace) == (
        0, "", f"no results yet ({elsewhere / 'typo.db'} does not exist); run `madengine apply`\n")
    assert "3 jobs" in run_cli("results", cwd=workspace, env={"MADENGINE_STATE": str(elsewhere / "s.db")})[1]
