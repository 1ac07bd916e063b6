"""The JSON report of `madengine runner ssh|ansible --report-output FILE`. Pure except the writer.

ROCm madengine's runners write `{total_nodes, successful_executions, failed_executions, total_duration,
node_results: [{node_id, model_tag, status, duration, performance_metrics, error_message, stdout,
stderr}]}` (`runners/base.py: DistributedResult`). The same keys, in that order, mean here:

    total_nodes            the inventory's nodes
    successful_executions  jobs whose result is SUCCESS
    failed_executions      every other job (failed, timed out, skipped, interrupted, not started)
    total_duration         seconds this command took (plan and apply)
    node_results           one entry per job of the command, by model then address:
      node_id              the node (inventory `hostname`) it ran on; null if it never started
      model_tag            the model
      status               SUCCESS | FAILURE | TIMEOUT | SKIPPED | INTERRUPTED | NOT_STARTED
      duration             seconds it ran (null if it never started)
      performance_metrics  its first performance figure, {"performance": 42.0, "metric": "samples/s"}; {} if none
      error_message        one line, why it failed (null when it succeeded)
      stdout, stderr       always null: a job's output is in its log (`log_file`), never copied here
    then madengine's own keys, after ROCm's:
      address, context, target   the job's address and where it ran (job:<model>@<context>/<target>)
      performance          every figure it reported: [{model, performance, metric, status}]
      exit_code, log_file  the job's exit code and its log on this machine
      started_at, ended_at UTC, ISO-8601
      this_run             whether this command ran it (false: an earlier result, still current)
    madengine              {version, command, inventory, apply_id, outcome, exit_code}

A job's result is its latest attempt of its current inputs (the lock's hash): a re-run that had nothing to
do reports what is recorded. Nothing of a job's environment, nor the nodes' addresses, users or keys, is
in the report: only names, statuses, figures and the one-line messages the state store keeps.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madengine import __version__
from madengine.state.model import Attempt, Status

NOT_STARTED = "NOT_STARTED"


@dataclass(frozen=True)
class ReportJob:
    """A job of the command, as the graph has it."""

    address: str
    node_hash: str
    model: str
    context: str
    target: str


@dataclass(frozen=True)
class RunInfo:
    """What the command did: its apply (None when there was nothing to do) and how it ended."""

    command: str
    inventory: str
    total_nodes: int
    total_duration: float
    apply_id: int | None
    outcome: str  # SUCCESS, FAILURE, INTERRUPTED, NO CHANGES
    exit_code: int


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _entry(job: ReportJob, attempt: Attempt | None, apply_id: int | None, state_dir: Path) -> dict[str, Any]:
    if attempt is None:
        return {"node_id": None, "model_tag": job.model, "status": NOT_STARTED, "duration": None,
                "performance_metrics": {}, "error_message": "not started", "stdout": None, "stderr": None,
                "address": job.address, "context": job.context, "target": job.target, "performance": [],
                "exit_code": None, "log_file": None, "started_at": None, "ended_at": None, "this_run": False}
    first = next((row for row in attempt.perf if row.performance is not None), None)
    ok = attempt.status is Status.SUCCESS
    return {
        "node_id": attempt.host,
        "model_tag": job.model,
        "status": attempt.status.value,
        "duration": _seconds(attempt.duration),
        "performance_metrics": {"performance": first.performance, "metric": first.metric} if first else {},
        "error_message": None if ok and not attempt.message else (attempt.message or attempt.status.value.lower()),
        "stdout": None,
        "stderr": None,
        "address": job.address,
        "context": job.context,
        "target": job.target,
        "performance": [{"model": row.model, "performance": row.performance, "metric": row.metric,
                         "status": row.status.value} for row in attempt.perf],
        "exit_code": attempt.exit_code,
        "log_file": str(state_dir / attempt.log_path) if attempt.log_path else None,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "this_run": apply_id is not None and attempt.apply_id == apply_id,
    }


def runner_report(jobs: Iterable[ReportJob], latest: Mapping[str, Attempt], info: RunInfo,
                  state_dir: Path) -> dict[str, Any]:
    """The report of `jobs`, from `latest` (address -> latest attempt, as `StateStore.latest_attempts`)."""
    results = []
    for job in sorted(jobs, key=lambda j: (j.model, j.address)):
        attempt = latest.get(job.address)
        if attempt is not None and (attempt.node_hash != job.node_hash or attempt.status is Status.RUNNING):
            attempt = None  # of other inputs (not this command's), or not finished
        results.append(_entry(job, attempt, info.apply_id, state_dir))
    ok = sum(1 for r in results if r["status"] == Status.SUCCESS.value)
    return {
        "total_nodes": info.total_nodes,
        "successful_executions": ok,
        "failed_executions": len(results) - ok,
        "total_duration": _seconds(info.total_duration),
        "node_results": results,
        "madengine": {"version": __version__, "command": info.command, "inventory": info.inventory,
                      "apply_id": info.apply_id, "outcome": info.outcome, "exit_code": info.exit_code},
    }


def write_runner_report(path: str | os.PathLike[str], report: Mapping[str, Any]) -> None:
    """Write it as ROCm does (JSON, 2-space indent), atomically: a reader never sees half a report."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the report unreadable to others
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
