"""`expect:` gates judged on results (results/gates.py): pure, so every case is a value in, a verdict out."""

from __future__ import annotations

import pytest

from madengine.results.gates import (
    Gate,
    Reference,
    Verdict,
    check_gates,
    judge_gate,
    note_lines,
    previous_references,
    summary,
    unmet_lines,
)
from madengine.results.perfcsv import format_number
from madengine.state.model import Attempt, PerfRow, Status

JOB = "job:matmul[size=256]@cpu/here#1"
WHERE = "madfile.yaml:31:7"


def gate(**bounds: float) -> Gate:
    return Gate(metric="gflops", where=WHERE, **bounds)  # type: ignore[arg-type]


def rows(*values: float | None, metric: str = "gflops") -> tuple[PerfRow, ...]:
    return tuple(PerfRow("matmul", v, metric) for v in values)


def test_the_line_names_job_metric_value_bound_and_where() -> None:
    verdict = judge_gate(JOB, gate(min=1e9), Status.SUCCESS, rows(9.1e-3))
    assert not verdict.met and verdict.value == 9.1e-3
    assert verdict.line() == f"{JOB}: gflops 0.0091 is below min 1000000000 (expect in {WHERE})"


@pytest.mark.parametrize(("bounds", "value", "reason"), [
    ({"min": 10.0}, 9.0, "gflops 9 is below min 10"),
    ({"max": 5.0}, 9.0, "gflops 9 is above max 5"),
    ({"min": 1.0, "max": 5.0}, 9.0, "gflops 9 is above max 5"),
    ({"min": 100.0}, 99.9999999, "gflops 99.9999999 is below min 100"),  # never "100 is below min 100"
])
def test_out_of_bounds(bounds: dict[str, float], value: float, reason: str) -> None:
    verdict = judge_gate(JOB, gate(**bounds), Status.SUCCESS, rows(value))
    assert (verdict.met, verdict.reason) == (False, reason)


@pytest.mark.parametrize("bounds", [{}, {"min": 9.0}, {"max": 9.0}, {"min": 1.0, "max": 10.0}])
def test_within_bounds_bounds_are_inclusive(bounds: dict[str, float]) -> None:
    verdict = judge_gate(JOB, gate(**bounds), Status.SUCCESS, rows(9.0))
    assert verdict == Verdict(JOB, gate(**bounds), met=True, value=9.0)


@pytest.mark.parametrize(("status", "perf", "reason"), [
    (Status.SUCCESS, rows(9.0, metric="mflops"), "reported no gflops (it reported mflops)"),
    (Status.SUCCESS, rows(None), "reported no gflops value (not a finite number)"),
    (Status.SUCCESS, rows(float("nan")), "reported no gflops value (not a finite number)"),
    (Status.SUCCESS, (), "reported no gflops"),
    (Status.FAILURE, (), "reported no gflops (its latest attempt is FAILURE)"),
    (Status.SKIPPED, (), "reported no gflops (its latest attempt is SKIPPED)"),
    (None, (), "reported no gflops (it has no result: it never ran)"),
])
def test_a_missing_metric_is_unmet_never_passed(status: Status | None, perf: tuple[PerfRow, ...],
                                                reason: str) -> None:
    verdict = judge_gate(JOB, gate(), status, perf)
    assert (verdict.met, verdict.value, verdict.reason) == (False, None, reason)


def test_every_row_of_multiple_results_is_checked_and_the_failing_one_named() -> None:
    perf = (PerfRow("m_bs1", 50.0, "gflops"), PerfRow("m_bs8", 5.0, "gflops"), PerfRow("m_x", 1.0, "tps"))
    verdict = judge_gate(JOB, gate(min=10.0), Status.SUCCESS, perf)
    assert (verdict.met, verdict.reason) == (False, "gflops of m_bs8 5 is below min 10")
    # Met: the verdict keeps the worst figure, by the gate's direction.
    assert judge_gate(JOB, gate(min=1.0), Status.SUCCESS, perf).value == 5.0
    lower = Gate(metric="gflops", better="lower", max=100.0)
    assert judge_gate(JOB, lower, Status.SUCCESS, perf).value == 50.0


def test_check_gates_covers_every_gated_job_with_or_without_a_result() -> None:
    attempt = Attempt(id=1, apply_id=1, address=JOB, node_hash="h", status=Status.SUCCESS,
                      started_at="2026-12-01T00:00:00Z", perf=rows(20.0))
    other = "job:matmul[size=512]@cpu/here#1"
    verdicts = check_gates({other: gate(min=10.0), JOB: gate(min=10.0)}, {JOB: attempt})
    assert [(v.address, v.met) for v in verdicts] == [(JOB, True), (other, False)]


def test_verdicts_round_trip_through_json() -> None:
    verdict = judge_gate(JOB, Gate("gflops", "lower", 1.0, 2.0, WHERE), Status.SUCCESS, rows(3.0))
    assert Verdict.from_json(JOB, verdict.to_json()) == verdict


@pytest.mark.parametrize(("value", "bound", "reason"), [
    (123456.789, 1e9, "gflops 123456.789 is below min 1000000000"),
    (9.1e-5, 1.0, "gflops 9.1e-05 is below min 1"),
    (99.99999999, 100.0, "gflops 99.99999999 is below min 100")])  # never rounded to read as its bound
def test_a_figure_reads_as_results_shows_it_exactly(value: float, bound: float, reason: str) -> None:
    verdict = judge_gate(JOB, gate(min=bound), Status.SUCCESS, rows(value))
    assert verdict.reason == reason and format_number(value) in reason


def test_gate_counts_read_the_same_everywhere() -> None:
    met = judge_gate(JOB, gate(min=1.0), Status.SUCCESS, rows(3.0))
    unmet = judge_gate(JOB, gate(min=10.0), Status.SUCCESS, rows(3.0))
    assert (summary([met, met]), summary([met, unmet, unmet])) == ("gates: 2 met", "gates: 1 met, 2 unmet")


# --- tolerance ---------------------------------------------------------------------------------------

SERIES = "job:matmul[size=256]@cpu/here"


def tol(percent: float, better: str = "higher", baseline: str | None = None, **bounds: float) -> Gate:
    return Gate(metric="gflops", better=better, where=WHERE, tolerance=percent / 100,  # type: ignore[arg-type]
                baseline=baseline, **bounds)


def attempt(repeat: int, value: float | None, *, apply_id: int = 2, status: Status = Status.SUCCESS,
            ident: int = 0, metric: str = "gflops") -> Attempt:
    perf = () if value is None else (PerfRow("matmul", value, metric),)
    return Attempt(id=ident or apply_id * 100 + repeat, apply_id=apply_id, address=f"{SERIES}#{repeat}",
                   node_hash="h", status=status, started_at=f"2026-12-0{apply_id}T00:00:0{repeat}Z", perf=perf)


def judged(gate: Gate, values: list[float], ref: float | None, source: str = "baseline main") -> list[Verdict]:
    """The verdicts of `gate` on one job's repeats with these values, against a reference median `ref`."""
    latest = {a.address: a for a in (attempt(i + 1, v) for i, v in enumerate(values))}
    refs = {} if ref is None else {(SERIES, "matmul", "gflops"): Reference(ref, source)}
    return check_gates(dict.fromkeys(latest, gate), latest, refs)


@pytest.mark.parametrize(("better", "value", "reason"), [
    ("higher", 91.2, "gflops 91.2 is below 95 = baseline main's 100 - 5%"),
    ("lower", 105.5, "gflops 105.5 is above 105 = baseline main's 100 + 5%"),
])
def test_worse_than_the_reference_by_more_than_the_tolerance_is_unmet(better: str, value: float,
                                                                      reason: str) -> None:
    (verdict,) = judged(tol(5, better, "main"), [value], 100.0)
    assert (verdict.met, verdict.value, verdict.bound, verdict.reason) == (False, value, verdict.bound, reason)
    assert verdict.line() == f"{SERIES}#1: {reason} (expect in {WHERE})"


@pytest.mark.parametrize(("better", "value"), [("higher", 95.0), ("higher", 300.0), ("lower", 105.0),
                                               ("lower", 1.0)])
def test_within_the_tolerance_or_better_is_met_bounds_inclusive(better: str, value: float) -> None:
    (verdict,) = judged(tol(5, better, "main"), [value], 100.0)
    assert (verdict.met, verdict.reason, verdict.reference) == (True, "", Reference(100.0, "baseline main"))


def test_the_median_of_the_repeats_is_judged_once_for_the_job() -> None:
    # One slow repeat is not a regression: the median (99) is within 5% of 100; the mean (79.7) is not.
    assert all(v.met and v.value == 99.0 and v.repeats == 3 for v in judged(tol(5), [99.0, 41.0, 99.1], 100.0))
    verdicts = judged(tol(5), [90.0, 91.0, 120.0], 100.0, "apply 3")
    assert [v.met for v in verdicts] == [False, False, False]
    reason = "gflops 91 (median of 3 repeats) is below 95 = apply 3's 100 - 5%"
    assert unmet_lines(verdicts) == [f"{SERIES}: {reason} (expect in {WHERE})"]  # one line for the job


def test_no_reference_is_met_with_a_note_but_absolute_bounds_still_apply() -> None:
    (verdict,) = judged(tol(5, baseline="main"), [91.0], None)
    assert (verdict.met, verdict.reason) == (True, "")
    assert verdict.note == "no reference for the tolerance: baseline main has no gflops of this job (met)"
    assert note_lines([verdict]) == [f"{SERIES}#1: {verdict.note} (expect in {WHERE})"]
    (verdict,) = judged(tol(5), [91.0], None)
    assert verdict.note == "no reference for the tolerance: no earlier result of this job has gflops (met)"
    (verdict,) = judged(tol(5, min=95.0), [91.0], None)
    assert (verdict.met, verdict.reason) == (False, "gflops 91 is below min 95")


def test_a_job_that_reported_nothing_is_unmet_not_excused_by_a_missing_reference() -> None:
    latest = {f"{SERIES}#1": attempt(1, None, status=Status.FAILURE)}
    (verdict,) = check_gates(dict.fromkeys(latest, tol(5)), latest, {})
    assert (verdict.met, verdict.reason) == (False, "reported no gflops (its latest attempt is FAILURE)")


def test_a_tolerance_of_zero_fails_any_worsening() -> None:
    assert [v.met for v in judged(tol(0), [99.999], 100.0)] == [False]
    assert [v.met for v in judged(tol(0), [100.0], 100.0)] == [True]


def test_a_negative_reference_is_worse_further_from_zero_in_the_gates_direction() -> None:
    # A higher-is-better figure of -100 (a score): 5% worse is -105, not -95.
    assert [v.met for v in judged(tol(5), [-104.0], -100.0)] == [True]
    assert [v.reason for v in judged(tol(5), [-106.0], -100.0)] == [
        "gflops -106 is below -105 = baseline main's -100 - 5%"]


def test_every_row_of_multiple_results_is_judged_against_its_own_reference() -> None:
    gate = tol(10)
    latest = {f"{SERIES}#1": Attempt(id=1, apply_id=2, address=f"{SERIES}#1", node_hash="h", status=Status.SUCCESS,
                                     started_at="2026-12-02T00:00:00Z",
                                     perf=(PerfRow("m_bs1", 100.0, "gflops"), PerfRow("m_bs8", 50.0, "gflops")))}
    refs = {(SERIES, "m_bs1", "gflops"): Reference(100.0, "apply 1"), (SERIES, "m_bs8", "gflops"): Reference(80.0,
                                                                                                           "apply 1")}
    (verdict,) = check_gates(dict.fromkeys(latest, gate), latest, refs)
    assert verdict.reason == "gflops of m_bs8 50 is below 72 = apply 1's 80 - 10%"
    del refs[(SERIES, "m_bs8", "gflops")]
    (verdict,) = check_gates(dict.fromkeys(latest, gate), latest, refs)
    assert (verdict.met, verdict.note) == (True, "no reference for m_bs8 in apply 1")


def test_a_bound_reads_short_but_never_as_the_value() -> None:
    (verdict,) = judged(tol(7), [93.0], 100.0)
    assert (verdict.met, verdict.reason) == (True, "")  # 100 - 7% = 93 exactly: inclusive
    (verdict,) = judged(tol(7), [92.99999999], 100.0)
    assert verdict.reason == "gflops 92.99999999 is below 93 = baseline main's 100 - 7%"
    # Six digits would put the bound on the value's other side (1.23456 < 1.2345649): then it is exact.
    (verdict,) = judged(tol(0), [1.2345649], 1.23456499)
    assert verdict.reason == "gflops 1.2345649 is below 1.23456499 = baseline main's 1.23456499 - 0%"


def test_the_previous_result_is_the_jobs_latest_apply_before_its_current_results() -> None:
    gates = {f"{SERIES}#{i}": tol(5) for i in (1, 2)}
    history = [attempt(1, 50.0, apply_id=1), attempt(2, 52.0, apply_id=1),  # apply 1: median 51
               attempt(1, 100.0, apply_id=2), attempt(2, 101.0, apply_id=2),  # apply 2: median 100.5
               attempt(1, None, apply_id=3, status=Status.FAILURE),  # apply 3 failed: no figure to compare with
               attempt(1, 90.0, apply_id=4), attempt(2, 92.0, apply_id=4)]  # the current results
    latest = {a.address: a for a in history}
    assert previous_references(gates, latest, history) == {(SERIES, "matmul", "gflops"): Reference(100.5, "apply 2")}
    # A partial rerun (only #2 in apply 5) is measured against what came before the oldest current result.
    rerun = attempt(2, 95.0, apply_id=5)
    latest[rerun.address] = rerun
    assert previous_references(gates, latest, [*history, rerun])[SERIES, "matmul", "gflops"].source == "apply 2"
    # Gates against a baseline, and jobs with no tolerance, need no history.
    assert previous_references({a: tol(5, baseline="main") for a in gates}, latest, history) == {}
    assert previous_references({a: gate(min=1.0) for a in gates}, latest, history) == {}


def test_tolerance_verdicts_round_trip_through_json() -> None:
    (verdict,) = judged(tol(5, "lower", "main"), [110.0], 100.0)
    assert Verdict.from_json(verdict.address, verdict.to_json()) == verdict
    assert Gate.from_json(tol(2.5).to_json()) == tol(2.5)


def test_a_failed_repeats_numbers_are_not_in_the_median() -> None:
    failed = attempt(3, 1.0, status=Status.FAILURE)  # printed a figure, then failed
    latest = {a.address: a for a in (attempt(1, 99.0), attempt(2, 98.0), failed)}
    refs = {(SERIES, "matmul", "gflops"): Reference(100.0, "apply 1")}
    verdicts = check_gates(dict.fromkeys(latest, tol(5)), latest, refs)
    assert [(v.met, v.value, v.repeats) for v in verdicts[:2]] == [(True, 98.5, 2), (True, 98.5, 2)]
    history = [attempt(1, 1.0, apply_id=1, status=Status.FAILURE), *latest.values()]
    assert previous_references(dict.fromkeys(latest, tol(5)), latest, history) == {}
