"""Baseline files (results/baseline.py): stable bytes, reviewed against a golden file; names; projects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.errors import ConfigError, UsageError
from madengine.results import baseline
from madengine.results.gates import Gate, Reference
from madengine.results.resultset import ResultSet, from_apply
from madengine.state.model import ApplyRecord, Attempt, PerfRow, Status
from tests.conftest import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "fixtures" / "baselines" / "main.json"
SERIES = "job:matmul[size=256]@cpu/box"


def results(project: str | None = "nightly", *, values: tuple[float, ...] = (101.5, 99.0, 100.25)) -> ResultSet:
    """Apply 7 of a project: matmul run 3 times (multiple_results rows bs1, bs8), dummy failed once."""
    apply = ApplyRecord(id=7, lock_hash="sha256:" + "ab" * 32, serial=12, started_at="2026-12-01T10:00:00.000Z",
                        ended_at="2026-12-01T10:05:00.000Z", outcome="FAILURE", host="ci-1")
    inputs = {"model": "matmul", "params": {"size": "256"}, "context": "cpu", "target": "box", "repeat": 1,
              "script": {"path": "scripts/matmul/run.sh", "sha256": "sha256:" + "cd" * 32}, "hash": "sha256:x"}
    attempts = [Attempt(id=10 + i, apply_id=7, address=f"{SERIES}#{i + 1}", node_hash=f"h{i}", status=Status.SUCCESS,
                        started_at=f"2026-12-01T10:0{i}:00.000Z", ended_at=f"2026-12-01T10:0{i}:30.000Z",
                        host="box-1", inputs={**inputs, "repeat": i + 1}, log_path=f"logs/{10 + i}.log",
                        perf=(PerfRow("matmul_bs1", v, "gflops"), PerfRow("matmul_bs8", v * 4, "gflops")))
                for i, v in enumerate(values)]
    attempts.append(Attempt(id=20, apply_id=7, address="job:dummy@cpu/box#1", node_hash="d", status=Status.FAILURE,
                            started_at="2026-12-01T10:04:00.000Z", ended_at="2026-12-01T10:04:01.000Z",
                            inputs={"model": "dummy"}, message="exit 1"))
    return from_apply(apply, attempts, project=project)


def test_a_baseline_file_is_the_golden_bytes_and_saving_again_writes_nothing(tmp_path: Path) -> None:
    assert baseline.save(tmp_path, "main", results()) is True
    written = (tmp_path / "baselines" / "main.json").read_bytes()
    assert written == GOLDEN.read_bytes()  # reviewed: sorted, 2-space indent, one newline, nothing of the run
    stat = (tmp_path / "baselines" / "main.json").stat()
    assert baseline.save(tmp_path, "main", results()) is False  # the same results: not even rewritten
    assert (tmp_path / "baselines" / "main.json").stat().st_mtime_ns == stat.st_mtime_ns
    data = json.loads(written)
    assert written.decode() == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert not (tmp_path / "baselines" / "main.json.tmp").exists()


def test_a_baseline_reads_back_as_what_was_saved(tmp_path: Path) -> None:
    baseline.save(tmp_path, "main", results())
    rs = baseline.load(tmp_path, "main", "nightly")
    assert (rs.label, rs.kind, rs.apply_id, rs.project) == ("baseline main", "baseline", 7, "nightly")
    figure = rs.series[SERIES].figures["matmul_bs8", "gflops"]
    assert (figure.values, figure.median) == ((406.0, 396.0, 401.0), 401.0)
    assert [e.to_json() for e in baseline.entries(tmp_path, "nightly")] == [{
        "name": "main", "file": "baselines/main.json", "project": "nightly", "apply_id": 7,
        "created": "2026-12-01T10:00:00.000Z", "lock_hash": "sha256:" + "ab" * 32, "jobs": 2, "figures": 2}]


def test_references_are_the_baselines_medians_per_row(tmp_path: Path) -> None:
    baseline.save(tmp_path, "main", results())
    gates = {f"{SERIES}#{i}": Gate("gflops", tolerance=0.05, baseline="main") for i in (1, 2, 3)}
    gates["job:other@cpu/box#1"] = Gate("gflops", tolerance=0.05, baseline="main")  # not in the baseline
    gates["job:dummy@cpu/box#1"] = Gate("gflops", min=1.0)  # no tolerance: no reference wanted
    loaded = baseline.for_gates(gates, tmp_path, "nightly")
    assert baseline.references(gates, loaded) == {
        (SERIES, "matmul_bs1", "gflops"): Reference(100.25, "baseline main"),
        (SERIES, "matmul_bs8", "gflops"): Reference(401.0, "baseline main")}


@pytest.mark.parametrize(("saved", "ours", "message"), [
    ("other", "nightly", "a baseline of project 'other', not of project 'nightly'"),
    (None, "nightly", "a baseline of an unnamed project (no `name:`), not of project 'nightly'"),
    ("other", None, "a baseline of project 'other', not of this project, which has no `name:`"),
])
def test_a_baseline_of_another_project_is_refused(tmp_path: Path, saved: str | None, ours: str | None,
                                                  message: str) -> None:
    baseline.save(tmp_path, "main", results(saved))
    before = (tmp_path / "baselines" / "main.json").read_bytes()
    with pytest.raises(ConfigError) as info:
        baseline.load(tmp_path, "main", ours)
    (d,) = info.value.diagnostics
    assert (d.file, d.message) == ("baselines/main.json", message)
    with pytest.raises(ConfigError):  # nor replaced by a save of this project
        baseline.save(tmp_path, "main", results(ours))
    assert (tmp_path / "baselines" / "main.json").read_bytes() == before
    assert baseline.load(tmp_path, "main", saved).project == saved  # its own project reads it


@pytest.mark.parametrize(("text", "message"), [
    ("{", "invalid JSON: Expecting property name enclosed in double quotes"),
    ("[1]", "[0]: must be an object (an attempt), not 1"),
    ('{"format": "madengine-results", "version": 2, "series": {}}', "version: version 2 is not 1"),
    ('{"format": "madengine-lock", "version": 1}', "format: must be 'madengine-results'"),
])
def test_a_file_of_the_wrong_shape_or_version_is_a_config_error_naming_it(tmp_path: Path, text: str,
                                                                          message: str) -> None:
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "main.json").write_text(text)
    with pytest.raises(ConfigError) as info:
        baseline.load(tmp_path, "main", None)
    d = info.value.diagnostics[0]
    assert d.file == "baselines/main.json" and message in d.render(), d.render()
    with pytest.raises(ConfigError):
        baseline.save(tmp_path, "main", results(None))
    assert (tmp_path / "baselines" / "main.json").read_text() == text


def test_a_missing_baseline_is_a_usage_error_naming_those_that_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        baseline.load(tmp_path, "main", None)
    assert info.value.diagnostics[0].hint == "save one: `madengine baseline save main`"
    baseline.save(tmp_path, "nightly", results(None))
    with pytest.raises(UsageError) as info:
        baseline.remove(tmp_path, "main")
    assert info.value.diagnostics[0].render() == ("error: no baseline 'main' (baselines/main.json does not exist) "
                                                  "(hint: saved baselines: nightly)")
