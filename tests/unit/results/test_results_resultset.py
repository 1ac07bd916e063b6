"""Result sets: series of repeats from a real state store, perf.csv and JSON files, references, the JSON form."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from madengine.errors import ConfigError, UsageError
from madengine.results import resultset as rs
from madengine.results import table
from madengine.results.perfcsv import perf_rows, write_perf_csv
from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.unit.results.conftest import IMAGE, IMAGE_HASH, image_record, job_address, job_inputs

FACTS = {"hostname": "bench-01", "gpu_vendor": "NONE", "gpu_count": 0, "rocm": None}


def run(store: StateStore, apply_id: int, address: str, inputs: dict[str, Any], *,
        status: Status = Status.SUCCESS, perf: tuple[PerfRow, ...] = (), host: str = "bench-01",
        message: str = "") -> int:
    attempt = store.start_attempt(apply_id, address, "sha256:h", inputs, host=host, log_path="logs/x.log",
                                  facts=FACTS)
    store.finish_attempt(attempt, status, perf=perf, message=message, image_digest="sha256:d1")
    return attempt


def row(value: float | None, metric: str = "samples_per_second", model: str = "dummy") -> tuple[PerfRow, ...]:
    return (PerfRow(model, value, metric),)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with StateStore.open(tmp_path / ".madengine" / "state.db") as s:
        yield s


def test_figure_median_and_relative_spread() -> None:
    f = rs.Figure.of("dummy", "gflops", [10.0, 12.0, 11.0])
    assert (f.median, f.values) == (11.0, (10.0, 12.0, 11.0))
    assert f.spread == pytest.approx(1 / 11)  # the median absolute deviation, relative to the median
    assert rs.Figure.of("dummy", "gflops", [5.0]).spread == 0
    assert rs.Figure.of("dummy", "gflops", [90.0, 110.0]).spread == pytest.approx(0.1)  # two: half the range
    # one outlier repeat does not widen it (the range would: 150% here)
    assert rs.Figure.of("dummy", "gflops", [100.0, 101.0, 99.0, 100.0, 250.0]).spread == pytest.approx(0.01)
    assert rs.Figure.of("dummy", "gflops", [100.0, 101.0, 99.0, 100.0, 250.0]).spread_text() == "±1.0%"
    assert rs.Figure.of("dummy", "gflops", [4.0, 6.0]).median == 5.0
    # as every view prints it: the mean of the middle two without binary floating point's tail
    assert rs.Figure.of("dummy", "gflops", [24.191, 24.21]).median == 24.2005


def test_repeats_are_one_series_and_retries_keep_the_final_attempt(store: StateStore) -> None:
    store.record_image(image_record(), apply_id=store.begin_apply("sha256:lock1"))
    a = 1
    for repeat, value in ((1, 100.0), (2, 104.0), (3, 96.0)):
        run(store, a, job_address(repeat=repeat), job_inputs(repeat=repeat), perf=row(value))
    # a job retried within the apply: the final attempt is its result
    other = job_address("other")
    run(store, a, other, job_inputs("other"), status=Status.FAILURE, message="exit code 1")
    run(store, a, other, job_inputs("other"), perf=row(7.0, model="other"))
    store.finish_apply(a, "SUCCESS")
    result = rs.resolve("latest", store, project="demo")
    assert (result.label, result.kind, result.apply_id, result.project, result.lock_hash) == \
        ("apply 1", "apply", 1, "demo", "sha256:lock1")
    dummy = result.series["job:dummy@cpu/box"]
    figure = dummy.figures[("dummy", "samples_per_second")]
    assert (figure.values, figure.median) == ((100.0, 104.0, 96.0), 100.0)
    assert figure.spread == pytest.approx(0.04)
    assert dummy.status is Status.SUCCESS and len(dummy.attempt_ids) == 3
    assert "repeat" not in dummy.inputs and "hash" not in dummy.inputs and "meta" not in dummy.inputs
    assert dummy.inputs["script"] == {"path": "scripts/dummy/run.sh", "sha256": "sha256:b93e"}
    assert dummy.image_inputs is not None and dummy.image_inputs["dockerfile"]["sha256"] == "sha256:3815"
    assert "hash" not in dummy.image_inputs
    assert (dummy.host, dummy.facts, dummy.image_digest) == ("bench-01", FACTS, "sha256:d1")
    assert result.series["job:other@cpu/box"].status is Status.SUCCESS


def test_a_failed_repeat_fails_the_series_and_its_numbers_are_not_results(store: StateStore) -> None:
    a = store.begin_apply("sha256:lock1")
    run(store, a, job_address(repeat=1), job_inputs(repeat=1), perf=row(100.0))
    run(store, a, job_address(repeat=2), job_inputs(repeat=2), status=Status.TIMEOUT, perf=row(1.0),
        message="timed out after 60s")
    series = rs.resolve("latest", store).series["job:dummy@cpu/box"]
    assert series.status is Status.TIMEOUT and series.message == "timed out after 60s"
    assert series.figures[("dummy", "samples_per_second")].values == (100.0,)


def test_latest_previous_id_and_date_name_applies_with_results(store: StateStore) -> None:
    first = store.begin_apply("sha256:l1")
    run(store, first, job_address(), job_inputs(), perf=row(1.0))
    empty = store.begin_apply("sha256:l2")  # built nothing, ran nothing: no results
    third = store.begin_apply("sha256:l3")
    run(store, third, job_address(), job_inputs(), perf=row(2.0))
    assert rs.resolve("latest", store).apply_id == third
    assert rs.resolve("previous", store).apply_id == first
    assert rs.resolve(str(first), store).apply_id == first
    assert rs.resolve("@{2999-01-01}", store).apply_id == third
    with pytest.raises(UsageError, match=r"apply 99: no such apply \(applies are 1\.\.3\)"):
        rs.resolve("99", store)
    with pytest.raises(UsageError, match=f"apply {empty} recorded no results"):
        rs.resolve(str(empty), store)
    with pytest.raises(UsageError, match=r"no apply with results started at or before 2000-01-01T23:59:59.999Z"):
        rs.resolve("@{2000-01-01}", store)
    with pytest.raises(UsageError, match="is not a date"):
        rs.resolve("@{yesterday}", store)


def test_an_apply_carries_the_results_of_the_jobs_it_found_up_to_date(store: StateStore) -> None:
    first = store.begin_apply("sha256:l1")
    kept = run(store, first, job_address("kept"), job_inputs("kept"), perf=row(5.0, model="kept"))
    run(store, first, job_address(), job_inputs(), perf=row(1.0))
    second = store.begin_apply("sha256:l2")  # reran dummy only: kept was up to date
    run(store, second, job_address(), job_inputs(), perf=row(2.0))
    later = store.begin_apply("sha256:l3")
    run(store, later, job_address(), job_inputs(), perf=row(3.0))
    latest, previous = rs.resolve("latest", store), rs.resolve("previous", store)
    assert (latest.apply_id, previous.apply_id) == (later, second)
    assert previous.series["job:kept@cpu/box"].attempt_ids == latest.series["job:kept@cpu/box"].attempt_ids == (kept,)
    assert previous.series["job:kept@cpu/box"].apply_id == first  # where it was measured
    assert previous.series["job:dummy@cpu/box"].figures[("dummy", "samples_per_second")].values == (2.0,)
    # what apply 2 ran, and nothing else
    only = rs.from_apply(store.applies()[1], store.attempts(), only_ran=True)
    assert list(only.series) == ["job:dummy@cpu/box"]


def test_a_job_no_longer_in_the_lock_is_not_carried_forward(store: StateStore, tmp_path: Path) -> None:
    first = store.begin_apply("sha256:l1")
    run(store, first, job_address("gone"), job_inputs("gone"), perf=row(5.0, model="gone"))
    run(store, first, job_address("kept"), job_inputs("kept"), perf=row(6.0, model="kept"))
    run(store, first, job_address(), job_inputs(), perf=row(1.0))
    second = store.begin_apply("sha256:l2")  # `gone` was removed from the madfile, `kept` was up to date
    run(store, second, job_address(), job_inputs(), perf=row(2.0))
    root = tmp_path / "project"
    root.mkdir()
    assert rs.current_series(root) is None  # no lock: every earlier result is carried, as the store has it
    assert set(rs.resolve("latest", store, current=rs.current_series(root)).series) == {
        "job:gone@cpu/box", "job:kept@cpu/box", "job:dummy@cpu/box"}
    lock: dict[str, Any] = {"images": {}, "jobs": {job_address(): {}, job_address("kept"): {}}}
    (root / "madengine.lock").write_text(json.dumps(lock))
    current = rs.current_series(root)
    assert current == frozenset({"job:dummy@cpu/box", "job:kept@cpu/box"})
    assert set(rs.resolve("latest", store, current=current).series) == {"job:kept@cpu/box", "job:dummy@cpu/box"}
    # what an apply ran itself is kept, in the lock or not: it is what that apply measured
    assert set(rs.resolve("1", store, current={"job:kept@cpu/box"}).series) == {
        "job:gone@cpu/box", "job:kept@cpu/box", "job:dummy@cpu/box"}
    assert set(rs.resolve("2", store, current={"job:kept@cpu/box"}).series) == {"job:kept@cpu/box",
                                                                                 "job:dummy@cpu/box"}


def test_previous_needs_two_applies_with_results(store: StateStore) -> None:
    with pytest.raises(UsageError, match="latest: no apply has recorded results yet"):
        rs.resolve("latest", store)
    run(store, store.begin_apply("sha256:l1"), job_address(), job_inputs(), perf=row(1.0))
    with pytest.raises(UsageError, match="previous: only apply 1 has recorded results"):
        rs.resolve("previous", store)


def test_a_bad_reference_names_what_exists(tmp_path: Path, store: StateStore) -> None:
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "main.json").write_text("{}")
    with pytest.raises(UsageError, match=r"'nightly' is not an apply, a baseline or a results file \(baselines: "
                                         r"main\)"):
        rs.resolve("nightly", store, root=tmp_path)
    with pytest.raises(UsageError, match=r"no\.csv: no such file"):
        rs.resolve("no.csv", store, cwd=tmp_path)
    with pytest.raises(UsageError, match="there is no state store here"):
        rs.resolve("latest", None)


def test_json_form_round_trips_with_stable_bytes_and_no_run_noise(store: StateStore, tmp_path: Path) -> None:
    store.record_image(image_record(), apply_id=store.begin_apply("sha256:lock1"))
    for repeat, value in ((1, 10.5), (2, 11.0)):
        run(store, 1, job_address(repeat=repeat), job_inputs(repeat=repeat), perf=row(value))
    result = rs.resolve("1", store, project="demo")
    text = result.to_text()
    data = json.loads(text)
    assert list(data) == sorted(data) and text.endswith("}\n")
    series = data["series"]["job:dummy@cpu/box"]
    assert set(series) == {"model", "status", "figures", "inputs", "image_inputs", "host", "facts", "image_digest"}
    assert "attempt" not in text and "logs/" not in text and "meta" not in series["inputs"]
    assert series["figures"] == [{"metric": "samples_per_second", "model": "dummy", "values": [10.5, 11.0]}]
    again = rs.ResultSet.from_json(json.loads(text), "b.json", label="baseline b", kind="baseline")
    assert again.to_text() == text
    assert again.series["job:dummy@cpu/box"].figures[("dummy", "samples_per_second")].median == 10.75
    # saved to a file and named by path, or by name under baselines/
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "main.json").write_text(text)
    assert rs.resolve("main", store, root=tmp_path, project="demo").label == "baseline main"
    assert rs.resolve("baselines/main.json", None, cwd=tmp_path).to_text() == text
    with pytest.raises(ConfigError, match=r"a baseline of project 'demo', not of project 'other'"):
        rs.resolve("main", store, root=tmp_path, project="other")


@pytest.mark.parametrize(("data", "message"), [
    ([1], r"\[0\]: must be an object \(an attempt\), not 1"),
    ("x", "the top level must be a JSON object"),
    ({"format": "other"}, "format: must be 'madengine-results'"),
    ({"format": "madengine-results", "version": 2, "series": {}}, "version: version 2 is not 1"),
    ({"format": "madengine-results", "version": 1, "series": []}, "series: must be an object of job series"),
    ({"format": "madengine-results", "version": 1, "series": {"job:a@c/t": {"model": "a", "status": "WON",
                                                                              "figures": []}}},
     "series.job:a@c/t.status: status 'WON' is not one of"),
    ({"format": "madengine-results", "version": 1, "series": {"job:a@c/t": {
        "model": "a", "status": "SUCCESS", "figures": [{"model": "a", "metric": "m", "values": ["1"]}]}}},
     r"figures\[0\].values: must be finite numbers"),
    ({"format": "madengine-results", "version": 1, "extra": 1, "series": {}}, "extra: unknown key"),
])
def test_a_json_file_of_the_wrong_shape_is_a_config_error_naming_it(tmp_path: Path, data: Any, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        rs.load_file(path, "r.json")
    line = caught.value.diagnostics[0].render()
    assert line.startswith("r.json: error: ") and re.search(message, line), line


def test_invalid_json_is_named_at_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{\n  "format": ,\n}')
    with pytest.raises(ConfigError) as caught:
        rs.load_file(path, "r.json")
    d = caught.value.diagnostics[0]
    assert (d.file, d.line, d.column) == ("r.json", 2, 13)


def test_results_json_output_loads_as_series(store: StateStore, tmp_path: Path) -> None:
    a = store.begin_apply("sha256:l1")
    for repeat, value in ((1, 3.0), (2, 5.0)):
        run(store, a, job_address(repeat=repeat), job_inputs(repeat=repeat), perf=row(value))
    every = store.attempts()
    path = tmp_path / "results.json"
    path.write_text(json.dumps(table.to_json(table.select(every), every)))
    loaded = rs.load_file(path, "results.json")
    assert loaded.apply_id == a and loaded.kind == "file"
    assert loaded.series["job:dummy@cpu/box"].figures[("dummy", "samples_per_second")].median == 4.0


def test_perf_csv_rows_of_one_model_are_its_repeats(store: StateStore, tmp_path: Path) -> None:
    store.record_image(image_record(), apply_id=store.begin_apply("sha256:l1"))
    for repeat, value in ((1, 3.0), (2, 5.0), (3, 4.0)):
        run(store, 1, job_address(repeat=repeat), job_inputs(repeat=repeat), perf=row(value))
    path = tmp_path / "perf.csv"
    write_perf_csv(path, perf_rows(store.attempts(), store.images()))
    loaded = rs.load_file(path, "perf.csv")
    assert not loaded.addressed and loaded.label == "perf.csv"
    dummy = loaded.series["dummy"]
    assert dummy.figures[("dummy", "samples_per_second")].values == (3.0, 5.0, 4.0)
    assert dummy.inputs == {"args": ["--steps", "5"]}
    assert dummy.image_inputs == {"dockerfile": {"path": "docker/dummy.ubuntu.none.Dockerfile"},
                                  "base": {"ref": "localhost:5000/madengine/busybox:1", "digest": "sha256:9c1e00"}}
    assert IMAGE and IMAGE_HASH  # the image the rows name is the recorded one


@pytest.mark.parametrize(("text", "message", "line"), [
    ("", "empty: no header row", 1),
    ("name,value\nx,1\n", "not a perf.csv: no model, performance, metric columns", 1),
    ("model,performance,metric,status\nx,fast,gflops,SUCCESS\n", "performance 'fast' is not a finite number", 2),
    ("model,performance,metric,status\nx,1,gflops,WON\n", "status 'WON' is not one of", 2),
    ("model,performance,metric\nx,1\n", "2 fields where the header has 3", 2),
])
def test_a_csv_of_the_wrong_shape_is_named_at_its_line(tmp_path: Path, text: str, message: str, line: int) -> None:
    path = tmp_path / "perf.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        rs.load_file(path, "perf.csv")
    assert (caught.value.diagnostics[0].file, caught.value.diagnostics[0].line) == ("perf.csv", line)


def test_attempts_as_of_an_apply_read_only_what_they_must_and_agree_with_the_whole_history(
        store: StateStore) -> None:
    """Jobs rerun in some applies, retried, added late, never rerun: as of every apply, the final attempt
    of each job in it or before it, whether read from the store, through a Snapshot, or from everything."""
    import random

    rng = random.Random(7)
    for n in range(1, 9):
        a = store.begin_apply(f"sha256:l{n}")
        for j in range(12):
            if j >= 4 + n or (n > 1 and rng.random() < 0.5):  # jobs 4+n.. not yet; others rerun at random
                continue
            for _ in range(rng.choice((1, 1, 2))):  # a retry now and then
                run(store, a, job_address(f"j{j}"), job_inputs(f"j{j}"), perf=row(float(n), model=f"j{j}"))
    every = store.attempts()
    for n in range(1, 9):
        expected: dict[str, int] = {}
        for attempt in every:
            if attempt.apply_id <= n:
                expected[attempt.address] = max(expected.get(attempt.address, 0), attempt.id)
        for reader in (store, rs.Snapshot(store)):
            got = {a.address: a.id for a in rs.attempts_as_of(reader, n)}
            assert got == expected, n
