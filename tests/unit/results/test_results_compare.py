"""compare on crafted result sets: noise against regression, directions, repeats, new/missing/failed,
and which inputs changed."""

from __future__ import annotations

from typing import Any

import pytest

from madengine.results.compare import (
    Better,
    GateHint,
    Policy,
    changed_inputs,
    compare,
    default_direction,
    metric_direction,
)
from madengine.results.resultset import Figure, ResultSet, SeriesResult
from madengine.state.model import Status

KEY = "job:dummy@cpu/box"
JOB: dict[str, Any] = {"args": ["--steps", "5"], "env": {"MAD_MODEL_NAME": "dummy", "OMP": "4"},
                       "script": {"path": "run.sh", "sha256": "s1", "dir_sha256": "d1"}, "context_sha256": "c1",
                       "target_sha256": "t1", "image_hash": "i1", "model": "dummy", "n_gpus": 1}
IMAGE: dict[str, Any] = {"dockerfile": {"path": "docker/d.Dockerfile", "sha256": "f1"},
                         "base": {"ref": "ubuntu:22.04", "digest": "sha256:b1"}, "build_args": {"A": "1"},
                         "context": {"path": "docker", "sha256": "x1"}}
FACTS = {"hostname": "n1", "gpu_vendor": "AMD", "gpu_count": 8, "gpu_arch": "gfx942", "rocm": "6.2.0",
         "driver": "6.8.5"}


def series(values: dict[tuple[str, str], list[float]] | list[float], *, key: str = KEY, model: str = "dummy",
           status: Status = Status.SUCCESS, ids: tuple[int, ...] = (), metric: str = "samples_per_second",
           **kw: Any) -> SeriesResult:
    if isinstance(values, list):
        values = {(model, metric): values} if values else {}
    figures = {k: Figure.of(k[0], k[1], v) for k, v in values.items()}
    kw.setdefault("inputs", dict(JOB))
    kw.setdefault("image_inputs", dict(IMAGE))
    kw.setdefault("facts", dict(FACTS))
    kw.setdefault("host", "n1")
    return SeriesResult(key=key, model=model, status=status, figures=figures, attempt_ids=ids, **kw)


def rset(*items: SeriesResult, label: str = "x") -> ResultSet:
    return ResultSet(label=label, kind="apply", project=None, lock_hash=None, apply_id=None, created=None,
                     series={s.key: s for s in items})


def one(a: SeriesResult, b: SeriesResult, policy: Policy | None = None) -> Any:
    rows = compare(rset(a, label="A"), rset(b, label="B"), policy).rows
    assert len(rows) == 1
    return rows[0]


def test_a_change_within_the_noise_floor_is_noise_and_beyond_it_a_regression() -> None:
    row = one(series([100.0]), series([98.5]))
    assert (row.verdict, row.change, row.band) == ("within noise", pytest.approx(-0.015), 0.02)
    row = one(series([100.0]), series([90.0]))
    assert (row.verdict, row.change, row.better) == ("regressed", pytest.approx(-0.10), "higher")
    assert row.changed == ()  # same inputs: a regression nobody's input explains
    # a wider floor makes it noise
    assert one(series([100.0]), series([90.0]), Policy(noise=0.15)).verdict == "within noise"


def test_both_directions() -> None:
    assert one(series([100.0]), series([110.0])).verdict == "improved"
    lat = "latency_ms"
    row = one(series([10.0], metric=lat), series([12.0], metric=lat))
    assert (row.verdict, row.better, row.direction_from) == ("regressed", "lower", "name")
    assert one(series([10.0], metric=lat), series([8.0], metric=lat)).verdict == "improved"


def test_repeats_use_medians_and_their_spread_widens_the_band() -> None:
    # medians 100 -> 110 (+10%), but A's repeats scatter 40%: not evidence of a change
    row = one(series([80.0, 100.0, 120.0]), series([110.0, 109.0, 111.0]))
    assert (row.a.median, row.b.median, row.verdict) == (100.0, 110.0, "within noise")
    assert row.band == pytest.approx(0.2)
    # tight repeats: the same +10% is an improvement; an outlier does not move a median
    row = one(series([99.0, 100.0, 101.0]), series([110.0, 110.5, 109.5]))
    assert (row.verdict, row.band) == ("improved", 0.02)
    assert one(series([100.0, 100.0, 100.0]), series([100.0, 100.0, 1000.0])).b.median == 100.0


@pytest.mark.parametrize(("a", "b"), [([100.0, 100.0, 100.0], [10.0, 10.0, 100.0]),
                                      ([100.0, 101.0, 99.0, 100.0, 250.0], [60.0, 61.0, 59.0, 60.0, 60.0])])
def test_one_outlier_repeat_does_not_hide_a_regression(a: list[float], b: list[float]) -> None:
    row = one(series(a), series(b))
    assert row.verdict == "regressed", row
    assert row.band < 0.05


def test_new_missing_and_failed_jobs() -> None:
    a = rset(series([1.0]), series([2.0], key="job:gone@cpu/box", model="gone"),
             series([3.0], key="job:broke@cpu/box", model="broke"))
    b = rset(series([1.0]), series([5.0], key="job:added@cpu/box", model="added"),
             series([], key="job:broke@cpu/box", model="broke", status=Status.FAILURE, message="exit code 2"))
    verdicts = {r.key: r.verdict for r in compare(a, b).rows}
    assert verdicts == {KEY: "within noise", "job:gone@cpu/box": "missing", "job:added@cpu/box": "new",
                        "job:broke@cpu/box": "failed"}
    broke = next(r for r in compare(a, b).rows if r.verdict == "failed")
    assert broke.message == "exit code 2" and "FAILURE (exit code 2)" in broke.describe()
    # a metric only one side reports is new / missing within a job
    row_a = series({("dummy", "gflops"): [1.0]})
    row_b = series({("dummy", "tflops"): [1.0]})
    assert sorted((r.metric, r.verdict) for r in compare(rset(row_a), rset(row_b)).rows) == \
        [("gflops", "missing"), ("tflops", "new")]
    # a failed repeat fails the whole series, even with figures from the others
    assert one(series([100.0]), series([100.0], status=Status.TIMEOUT)).verdict == "failed"


def test_the_same_attempts_are_unchanged() -> None:
    assert one(series([1.0], ids=(4, 5)), series([1.0], ids=(4, 5))).verdict == "unchanged"
    # a job that failed and was not rerun is still failing, not unchanged
    failing = series([], ids=(6,), status=Status.FAILURE, message="exit code 2")
    assert one(failing, failing).verdict == "failed"


def test_unknown_metrics_are_assumed_higher_and_the_madfile_overrides_directions() -> None:
    row = one(series([10.0], metric="score"), series([12.0], metric="score"))
    assert (row.better, row.direction_from, row.verdict) == ("higher", "assumed", "improved")
    results = Policy(better={"score": "lower"})
    row = one(series([10.0], metric="score"), series([12.0], metric="score"), results)
    assert (row.better, row.direction_from, row.verdict) == ("lower", "results", "regressed")
    # an expect: gate's direction wins for its model, by name or by `name[k=v]`
    gate = Policy(better={"score": "lower"}, by_model={("dummy", "score"): GateHint("higher")})
    assert one(series([10.0], metric="score"), series([12.0], metric="score"), gate).direction_from == "expect"
    key = "job:dummy[bs=8]@cpu/box"
    params = Policy(by_model={("dummy[bs=8]", "score"): GateHint("lower")})
    assert one(series([10.0], key=key, metric="score"), series([12.0], key=key, metric="score"),
               params).verdict == "regressed"


@pytest.mark.parametrize(("gate", "results", "metric", "expected"), [
    (GateHint(None, low=True, high=True), {}, "latency_ms", ("lower", "name")),  # a range says nothing
    (GateHint(None, low=False, high=True), {}, "score", ("lower", "bounds")),  # only a max: a ceiling
    (GateHint(None, low=True, high=False), {}, "score", ("higher", "bounds")),
    (GateHint(None, low=True, high=False), {"score": "lower"}, "score", ("lower", "results")),
    (GateHint(None, low=False, high=True), {}, "samples_per_second", ("higher", "name")),
    (GateHint("lower"), {"score": "higher"}, "score", ("lower", "expect")),
    (GateHint(None, low=True, high=True), {}, "score", ("higher", "assumed")),
])
def test_one_rule_for_a_gates_direction(gate: GateHint, results: dict[str, Better], metric: str,
                                        expected: tuple[str, str]) -> None:
    """`expect: {metric: latency_ms, min: 1, max: 50}` judged higher latency as better: the gate's bounds
    come after the madfile's `results.better` and the metric's name."""
    assert metric_direction(metric, better=gate.better, results=results, low=gate.low, high=gate.high) == expected
    policy = Policy(better=results, by_model={("dummy", metric): gate})
    row = one(series([30.0], metric=metric), series([50.0], metric=metric), policy)
    assert (row.better, row.direction_from) == expected


# Metric names of MAD's models and ROCm madengine's perf.csv files, and their look-alikes.
@pytest.mark.parametrize(("metric", "better"), [
    # rates and amounts of work: higher is better
    ("samples_per_second", "higher"), ("tokens_per_second", "higher"), ("images_per_second", "higher"),
    ("sequences_per_second", "higher"), ("img_per_sec", "higher"), ("samples/sec", "higher"), ("tokens/s", "higher"),
    ("it/s", "higher"), ("throughput", "higher"), ("throughput_tot", "higher"), ("request_throughput", "higher"),
    ("output_token_throughput", "higher"), ("gflops", "higher"), ("TFLOPS", "higher"), ("mflops", "higher"),
    ("bandwidth_GBps", "higher"), ("fps", "higher"), ("speedup", "higher"), ("requests_per_min", "higher"),
    # times, whatever they count: lower is better
    ("latency", "lower"), ("p99_latency_ms", "lower"), ("avg_latency", "lower"), ("samples_latency_ms", "lower"),
    ("images_time_s", "lower"), ("items_latency", "lower"), ("tokens_per_second_latency", "lower"),
    ("ms_per_step", "lower"), ("ms_per_iter", "lower"), ("sec_per_iteration", "lower"),
    ("seconds_per_sample", "lower"), ("time", "lower"), ("train_time_s", "lower"), ("step_seconds", "lower"),
    ("ttft_ms", "lower"), ("tpot", "lower"), ("e2e_latency_ms", "lower"), ("duration", "lower"),
    ("elapsed_s", "lower"), ("total_time", "lower"), ("time_per_step", "lower"),
    # nothing said
    ("accuracy", None), ("score", None), ("samples", None), ("tokens", None), ("loss", None)])
def test_default_directions_by_metric_name(metric: str, better: str | None) -> None:
    assert default_direction(metric) == better


def changed(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    return changed_inputs(series([1.0], **a), series([1.0], **b))


def test_changed_inputs_are_named_for_humans() -> None:
    assert changed({}, {}) == ()
    assert changed({}, {"inputs": {**JOB, "env": {**JOB["env"], "OMP": "8"}}}) == ("env var OMP",)
    assert changed({}, {"inputs": {**JOB, "args": ["--steps", "10"]}}) == ("args",)
    assert changed({}, {"inputs": {**JOB, "script": {**JOB["script"], "sha256": "s2"}}}) == ("script",)
    assert changed({}, {"inputs": {**JOB, "script": {**JOB["script"], "dir_sha256": "d2"}}}) == ("script directory",)
    assert changed({}, {"inputs": {**JOB, "context_sha256": "c2", "target_sha256": "t2"}}) == ("context", "target")
    assert changed({}, {"image_inputs": {**IMAGE, "dockerfile": {"path": "docker/d.Dockerfile", "sha256": "f2"}}}) \
        == ("Dockerfile",)
    assert changed({}, {"image_inputs": {**IMAGE, "base": {"ref": "ubuntu:22.04", "digest": "sha256:b2"}}}) == \
        ("base image digest",)
    assert changed({}, {"image_inputs": {**IMAGE, "build_args": {"A": "2", "B": "1"}}}) == \
        ("build arg A", "build arg B")
    # the same image inputs built another image: its digest says so
    assert changed({"image_digest": "sha256:1"}, {"image_digest": "sha256:2"}) == ("image digest",)
    assert changed({}, {"host": "n2", "facts": {**FACTS, "hostname": "n2"}}) == ("host n1 → n2",)
    assert changed({}, {"facts": {**FACTS, "rocm": "6.3.1"}}) == ("rocm 6.2.0 → 6.3.1",)
    # a side that does not know an input (a perf.csv, results --json) does not make it a change
    assert changed({"inputs": {}, "image_inputs": None, "facts": None, "host": None},
                   {"inputs": {**JOB, "env": {}}}) == ()


def test_improved_and_regressed_rows_carry_what_changed() -> None:
    row = one(series([100.0]), series([80.0], inputs={**JOB, "args": ["--steps", "1"]}))
    assert (row.verdict, row.changed) == ("regressed", ("args",))
    assert row.describe() == "job:dummy@cpu/box samples_per_second 100 -> 80 (-20.00%, higher is better): " \
                             "args changed"
    assert one(series([100.0]), series([101.0], inputs={**JOB, "args": ["x"]})).changed == ()  # noise: no blame


def test_a_perf_csv_side_is_matched_by_row_model() -> None:
    csv_side = ResultSet(label="perf.csv", kind="file", project=None, lock_hash=None, apply_id=None, created=None,
                         series={"dummy": series([100.0], key="dummy", inputs={}, image_inputs=None, facts=None)})
    rows = compare(csv_side, rset(series([80.0]))).rows
    assert [(r.key, r.verdict) for r in rows] == [(KEY, "regressed")]
    # two jobs of one model (two contexts): ambiguous by model alone, so never mismatched
    two = rset(series([80.0]), series([90.0], key="job:dummy@gpu/box"))
    assert sorted(r.verdict for r in compare(csv_side, two).rows) == ["missing", "new", "new"]


def test_metric_and_select_filter_rows() -> None:
    a = rset(series({("dummy", "gflops"): [1.0], ("dummy", "latency"): [1.0]}),
             series([1.0], key="job:other@cpu/box", model="other"))
    b = rset(series({("dummy", "gflops"): [2.0], ("dummy", "latency"): [1.0]}),
             series([1.0], key="job:other@cpu/box", model="other"))
    assert [(r.key, r.metric) for r in compare(a, b, metric="gflops").rows] == [(KEY, "gflops")]
    assert {r.key for r in compare(a, b, select=["other"]).rows} == {"job:other@cpu/box"}
    assert {r.key for r in compare(a, b, select=["job:*@cpu/*"]).rows} == {KEY, "job:other@cpu/box"}
    comparison = compare(a, b)
    assert comparison.counts()["improved"] == 1 and comparison.summary().startswith("x -> x: 1 improved")
