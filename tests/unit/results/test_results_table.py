"""What `madengine results` selects and prints."""

from __future__ import annotations

from madengine.cli.output import columns as render
from madengine.results.table import HEADER, models_with_results, select, summary, table_rows, to_json
from madengine.state.model import Attempt, Status
from tests.unit.results.conftest import attempt, build_attempt, job_address, job_inputs, perf

A = job_address("a")
B = job_address("b")


def _attempts() -> list[Attempt]:
    return [
        build_attempt(1),
        attempt(2, A, job_inputs("a"), apply_id=1, perf=(perf(100, model="a"),), start="2026-11-20T10:00:00Z",
                end="2026-11-20T10:00:30Z"),
        attempt(3, B, job_inputs("b"), apply_id=1, status=Status.FAILURE, message="exit code 1",
                start="2026-11-20T10:01:00Z", end="2026-11-20T10:01:02Z"),
        attempt(4, A, job_inputs("a"), apply_id=2, perf=(perf(110, model="a"),), start="2026-11-21T10:00:00Z",
                end="2026-11-21T10:02:05Z"),
    ]


def test_select_latest_of_each_job() -> None:
    assert [a.id for a in select(_attempts())] == [4, 3]


def test_select_one_apply() -> None:
    assert [a.id for a in select(_attempts(), apply_id=1)] == [2, 3]


def test_select_history() -> None:
    assert [a.id for a in select(_attempts(), history="a")] == [2, 4]
    assert [a.id for a in select(_attempts(), history="a", apply_id=2)] == [4]
    assert select(_attempts(), history="nope") == []


def test_history_finds_a_multiple_results_row_name() -> None:
    rows = (perf(1, model="m_bs1"), perf(2, model="m_bs8"))
    attempts = [attempt(1, job_address("m"), job_inputs("m"), perf=rows)]
    assert [a.id for a in select(attempts, history="m_bs8")] == [1]


def test_table_rows_and_render() -> None:
    every = _attempts()
    text = render(HEADER, table_rows(select(every), every))
    assert text.splitlines() == [
        "JOB              STATUS   PERFORMANCE  METRIC              CHANGE   FINISHED              DURATION  NOTE",
        "job:a@cpu/box#1  SUCCESS  110          samples_per_second  +10.00%  2026-11-21T10:02:05Z  2m05s",
        "job:b@cpu/box#1  FAILURE                                            2026-11-20T10:01:02Z  2.0s      exit code 1",  # noqa: E501
    ]


def test_multiple_results_get_a_line_each() -> None:
    rows = (perf(1.5, "tps", "m_bs1"), perf(None, "tps", "m_bs8", Status.FAILURE))
    a = attempt(1, job_address("m"), job_inputs("m"), perf=rows, start="2026-11-20T10:00:00Z",
                end="2026-11-20T11:00:01Z")
    assert table_rows([a], [a]) == [
        ("job:m@cpu/box#1", "SUCCESS", "", "", "", "2026-11-20T11:00:01Z", "1h00m01s", ""),
        ("  m_bs1", "SUCCESS", "1.5", "tps", "", "", "", ""),
        ("  m_bs8", "FAILURE", "", "tps", "", "", "", ""),
    ]


def test_history_rows_lead_with_the_apply() -> None:
    every = _attempts()
    rows = table_rows(select(every, history="a"), every, with_apply=True)
    assert [r[:2] + r[3:6] for r in rows] == [("1", "job:a@cpu/box#1", "100", "samples_per_second", ""),
                                              ("2", "job:a@cpu/box#1", "110", "samples_per_second", "+10.00%")]


def test_running_attempt() -> None:
    a = attempt(1, A, job_inputs("a"), status=Status.RUNNING, end=None, message="x" * 200)
    [row] = table_rows([a], [a])
    assert row[1] == "RUNNING" and row[5] == a.started_at and row[6] == ""
    assert len(row[7]) == 80 and row[7].endswith("...")


def test_summary() -> None:
    every = _attempts()
    assert summary(select(every)) == "2 jobs: 1 FAILURE, 1 SUCCESS"
    assert summary(select(every, history="a"), history="a") == "2 attempts of a: 2 SUCCESS"


def test_models_with_results() -> None:
    assert models_with_results(_attempts()) == ["a", "b"]


def test_to_json() -> None:
    every = _attempts()
    data = to_json(select(every), every)
    assert data[0] == {
        "address": A, "model": "a", "apply_id": 2, "attempt_id": 4, "status": "SUCCESS",
        "started_at": "2026-11-21T10:00:00Z", "ended_at": "2026-11-21T10:02:05Z", "duration": 125.0,
        "host": "bench-01", "exit_code": 0, "log_path": None, "message": "", "gate": None, "facts": None,
        "perf": [{"model": "a", "performance": 110.0, "metric": "samples_per_second", "status": "SUCCESS",
                  "relative_change": "+10.00%"}],
    }
    assert data[1]["perf"] == [] and data[1]["message"] == "exit code 1"
