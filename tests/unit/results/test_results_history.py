"""A model's history across applies: each step against the job's previous successful result."""

from __future__ import annotations

from typing import Any

from madengine.results.history import history, result_sets, summary
from madengine.state.model import ApplyRecord, Attempt, PerfRow, Status

KEY = "job:m@cpu/box"


def apply(n: int) -> ApplyRecord:
    return ApplyRecord(id=n, lock_hash=f"sha256:l{n}", serial=n, started_at=f"2026-12-0{n}T10:00:00.000Z",
                       ended_at=None, outcome="SUCCESS", host="ci")


def attempt(n: int, apply_id: int, *, status: Status = Status.SUCCESS, args: str = "1", repeat: int = 1,
            perf: tuple[PerfRow, ...] | None = None, message: str = "") -> Attempt:
    inputs: dict[str, Any] = {"model": "m", "args": [args], "env": {}, "script": {"path": "run.sh", "sha256": "s"}}
    return Attempt(id=n, apply_id=apply_id, address=f"{KEY}#{repeat}", node_hash="h", status=status,
                   started_at=f"2026-12-0{apply_id}T10:00:0{n % 10}.000Z", inputs=inputs, message=message,
                   perf=perf if perf is not None else (PerfRow("m", 100.0, "samples_per_second"),))


def test_each_step_against_the_previous_success_with_what_changed() -> None:
    attempts = [
        attempt(1, 1),
        attempt(2, 2, status=Status.FAILURE, perf=(), message="exit code 1"),
        attempt(3, 3, args="2", perf=(PerfRow("m", 80.0, "samples_per_second"),)),
        attempt(4, 4, args="2", perf=(PerfRow("m", 80.5, "samples_per_second"),)),
    ]
    steps = history(result_sets([apply(n) for n in (1, 2, 3, 4, 5)], attempts), "m")
    assert [(s.apply_id, s.verdict, s.row.changed) for s in steps] == [
        (1, "first", ()), (2, "failed", ()), (3, "regressed", ("args",)), (4, "within noise", ())]
    # the failed step is judged against apply 1; apply 3 too (the last success), not against the failure
    assert steps[2].row.a is not None and steps[2].row.a.median == 100.0
    assert steps[1].cells()[-2:] == ("failed", "FAILURE: exit code 1")
    assert summary(steps, "m") == "4 applies of m, 1 change beyond noise, 1 failed"


def test_repeats_are_one_step_and_a_multiple_results_row_is_its_own_history() -> None:
    rows = (PerfRow("m_bs1", 1.0, "tps"), PerfRow("m_bs8", 8.0, "tps"))
    attempts = [attempt(1, 1, perf=rows), attempt(2, 1, repeat=2, perf=rows)]
    steps = history(result_sets([apply(1)], attempts), "m_bs8")
    assert [(s.row.model, s.row.b.values if s.row.b else None) for s in steps] == [("m_bs8", (8.0, 8.0))]
    assert steps[0].cells()[3] == "m_bs8 tps"
    assert [s.row.model for s in history(result_sets([apply(1)], attempts), "m")] == ["m_bs1", "m_bs8"]
    assert history(result_sets([apply(1)], attempts), "m", metric="gflops") == []


def test_a_step_of_repeats_shows_their_spread() -> None:
    attempts = [attempt(1, 1, perf=(PerfRow("m", 90.0, "samples_per_second"),)),
                attempt(2, 1, repeat=2, perf=(PerfRow("m", 110.0, "samples_per_second"),))]
    (step,) = history(result_sets([apply(1)], attempts), "m")
    assert step.cells()[4] == "100 ±10.0% (n=2)"  # the median absolute deviation, relative to the median
