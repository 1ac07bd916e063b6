"""The apply engine with a scripted backend (the unit layer): retries of transient failures."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from madengine.apply.engine import Applier, ApplyOptions
from madengine.backends.base import Cancel, Outcome
from madengine.backends.session import HostInfo
from madengine.backends.specs import JobSpec
from madengine.errors import ExitCode
from madengine.pipeline import Realization, make_plan, realization
from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeHostProcesses


class Flaky(FakeHostProcesses):
    """Fails each job transiently `failures` times, then succeeds."""

    def __init__(self, failures: int) -> None:
        super().__init__(hosts_=[HostInfo("h", None)])
        self.failures = failures
        self.tries: dict[str, int] = {}

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.log_path is not None
        n = self.tries[job.address] = self.tries.get(job.address, 0) + 1
        if n <= self.failures:
            return Outcome(Status.FAILURE, message="engine hiccup", transient=True)
        job.log_path.write_text("performance: 2 x\n")
        return Outcome(Status.SUCCESS, exit_code=0)


class Quiet:
    def begin(self, total: int) -> None: ...
    def started(self, change: Any, where: str, log_path: Path) -> None: ...
    def finished(self, change: Any, status: Status, message: str, seconds: float, perf: Any) -> None: ...
    def note(self, text: str) -> None: ...


def one_job(tmp_path: Path) -> Realization:
    """A project of one job, `m` on local target `t`, realized (its lock written)."""
    (tmp_path / "run.sh").write_text("true\n")
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: 0}]\n"
                                           "targets: {t: {backend: local}}\n")
    r = realization(tmp_path / "madfile.yaml", locked=False)
    return r


def _apply(tmp_path: Path, backend: Flaky, retries: int) -> tuple[ExitCode, list[tuple[str, str]]]:
    r = one_job(tmp_path)
    with StateStore.open(r.state_path) as store:
        plan, _ = make_plan(r, store)
        result = Applier(plan, r.lock, r.compiled(), store, {"t": backend}, r.workspace,
                         ApplyOptions(retries=retries, retry_delay=0.01), Quiet()).run()
        return result.exit_code, [(a.status.value, a.message) for a in store.attempts()]


def test_a_transient_failure_is_retried_and_both_attempts_are_recorded(tmp_path: Path) -> None:
    code, attempts = _apply(tmp_path, Flaky(failures=1), retries=2)
    assert code is ExitCode.OK
    assert attempts == [("FAILURE", "engine hiccup (transient; retrying)"), ("SUCCESS", "")]


def test_retries_run_out(tmp_path: Path) -> None:
    code, attempts = _apply(tmp_path, Flaky(failures=5), retries=1)
    assert code is ExitCode.RUN_FAILURE
    assert [s for s, _ in attempts] == ["FAILURE", "FAILURE"]


class SecondSignalWhileRecorded(tuple[PerfRow, ...]):
    """A result's perf rows that, read while the store records them (inside its transaction, on the main
    thread), bring two real SIGINTs: the first stops the apply, the second is the user wanting out now."""

    sent = False

    def __iter__(self) -> Iterator[PerfRow]:
        if not SecondSignalWhileRecorded.sent:
            SecondSignalWhileRecorded.sent = True
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return super().__iter__()


def test_a_second_signal_while_a_result_is_recorded_leaves_no_attempt_running(tmp_path: Path) -> None:
    r = one_job(tmp_path)
    with StateStore.open(r.state_path) as store:
        plan, _ = make_plan(r, store)
        applier = Applier(plan, r.lock, r.compiled(), store, {"t": Flaky(failures=0)}, r.workspace, ApplyOptions(),
                          Quiet(), judge=lambda job, outcome: replace(outcome, perf=SecondSignalWhileRecorded()))
        with pytest.raises(KeyboardInterrupt):
            applier.run()
        # The transaction that was recording the result was rolled back: the attempt is not left RUNNING
        # (as if its apply were still alive) but INTERRUPTED, and so is the apply.
        assert [(a.status, a.message) for a in store.attempts()] == [(Status.INTERRUPTED, "interrupted")]
        assert [a.outcome for a in store.applies()] == ["INTERRUPTED"]
