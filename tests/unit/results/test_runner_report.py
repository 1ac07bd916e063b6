"""The `runner --report-output` JSON: ROCm's keys first, one entry per job, what is current, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from madengine.results.runner_report import ReportJob, RunInfo, runner_report, write_runner_report
from madengine.state.model import Attempt, PerfRow, Status

ROCM_KEYS = ["total_nodes", "successful_executions", "failed_executions", "total_duration", "node_results"]
ROCM_RESULT_KEYS = ["node_id", "model_tag", "status", "duration", "performance_metrics", "error_message",
                    "stdout", "stderr"]


def job(model: str, node_hash: str = "h") -> ReportJob:
    return ReportJob(f"job:{model}@default/ssh", node_hash, model, "default", "ssh")


def attempt(model: str, status: Status, *, apply_id: int = 2, host: str | None = "node1", node_hash: str = "h",
            message: str = "", perf: tuple[PerfRow, ...] = ()) -> Attempt:
    return Attempt(id=apply_id * 10, apply_id=apply_id, address=f"job:{model}@default/ssh", node_hash=node_hash,
                   status=status, started_at="2026-12-05T03:00:00.000Z", ended_at="2026-12-05T03:00:01.500Z",
                   host=host, exit_code=0 if status is Status.SUCCESS else 1, log_path=f"runs/{model}.log",
                   message=message, perf=perf, inputs={"env": {"TOKEN": "s3cret"}})


INFO = RunInfo(command="madengine runner ssh", inventory="nodes.yml", total_nodes=3, total_duration=4.56789,
               apply_id=2, outcome="FAILURE", exit_code=3)


def test_rocm_shape_then_madengine_keys(tmp_path: Path) -> None:
    latest = {
        "job:a@default/ssh": attempt("a", Status.SUCCESS, perf=(PerfRow("a", 42.5, "samples/s"),)),
        "job:b@default/ssh": attempt("b", Status.FAILURE, host="node2", message="node2: connection refused"),
        "job:c@default/ssh": attempt("c", Status.SUCCESS, apply_id=1, host="node3"),  # an earlier, current result
        "job:d@default/ssh": attempt("d", Status.SUCCESS, node_hash="old"),  # of other inputs: not this job's
    }
    report = runner_report([job("d"), job("c"), job("b"), job("a"), job("e")], latest, INFO, tmp_path)
    assert list(report)[:5] == ROCM_KEYS
    assert (report["total_nodes"], report["successful_executions"], report["failed_executions"]) == (3, 2, 3)
    assert report["total_duration"] == 4.568
    results = report["node_results"]
    assert [list(r)[:8] for r in results] == [ROCM_RESULT_KEYS] * 5
    assert [(r["model_tag"], r["node_id"], r["status"], r["this_run"]) for r in results] == [
        ("a", "node1", "SUCCESS", True), ("b", "node2", "FAILURE", True), ("c", "node3", "SUCCESS", False),
        ("d", None, "NOT_STARTED", False), ("e", None, "NOT_STARTED", False)]
    a, b = results[0], results[1]
    assert a["duration"] == 1.5 and a["error_message"] is None and a["exit_code"] == 0
    assert a["performance_metrics"] == {"performance": 42.5, "metric": "samples/s"}
    assert a["performance"] == [{"model": "a", "performance": 42.5, "metric": "samples/s", "status": "SUCCESS"}]
    assert a["log_file"] == str(tmp_path / "runs" / "a.log") and a["stdout"] is None and a["stderr"] is None
    assert b["error_message"] == "node2: connection refused" and b["performance_metrics"] == {}
    assert report["madengine"]["outcome"] == "FAILURE" and report["madengine"]["exit_code"] == 3


def test_written_as_json_and_holds_no_job_environment(tmp_path: Path) -> None:
    latest = {"job:a@default/ssh": attempt("a", Status.SUCCESS)}
    path = tmp_path / "out" / "runner_report.json"
    write_runner_report(path, runner_report([job("a")], latest, INFO, tmp_path))
    text = path.read_text()
    assert json.loads(text)["node_results"][0]["status"] == "SUCCESS"
    assert "s3cret" not in text and "TOKEN" not in text
    assert [p.name for p in path.parent.iterdir()] == ["runner_report.json"]  # no temporary file left


def test_same_inputs_same_report(tmp_path: Path) -> None:
    latest = {"job:a@default/ssh": attempt("a", Status.SUCCESS), "job:b@default/ssh": attempt("b", Status.TIMEOUT)}
    one = json.dumps(runner_report([job("a"), job("b")], latest, INFO, tmp_path))
    two = json.dumps(runner_report([job("b"), job("a")], dict(reversed(latest.items())), INFO, tmp_path))
    assert one == two
