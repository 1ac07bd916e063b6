"""Apply and plan with a batch system (the fake queue): one submission for all ready jobs, one query
for all in flight, no worker held per queued job; a killed apply's queued jobs are awaited, not
submitted twice; Ctrl-C cancels through the system; a job cancelled outside madengine is a failure."""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from madengine.apply.engine import Applier, ApplyOptions, ApplyResult
from madengine.backends.base import OrphanRecord, Outcome, QueueState
from madengine.backends.session import HostUnavailable
from madengine.backends.specs import job_spec
from madengine.errors import ExitCode
from madengine.lock.entries import LockEntries
from madengine.pipeline import Realization, make_plan
from madengine.plan.model import Action, Plan
from madengine.plan.render import render_text
from madengine.state.model import Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_batch import LIFE, FakeQueue
from tests.unit.apply.test_engine import Quiet
from tests.unit.apply.test_scheduler import job, jobs_project


def plan_of(r: Realization, store: StateStore, fake: FakeQueue) -> Plan:
    return make_plan(dataclasses.replace(r, backends={"lab": fake}), store)[0]


def apply(r: Realization, store: StateStore, fake: FakeQueue, plan: Plan | None = None,
          parallelism: int = 1) -> ApplyResult:
    plan = plan or plan_of(r, store, fake)
    r = dataclasses.replace(r, backends={"lab": fake})
    return Applier(plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace,
                   ApplyOptions(parallelism=parallelism, retries=0), Quiet()).run()


def test_ready_jobs_go_in_one_submission_and_are_polled_together_without_a_worker_each(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0, "c": 0})
    fake = FakeQueue()
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake, parallelism=1).exit_code is ExitCode.OK  # one worker, three jobs at once
        attempts = {a.address: a for a in store.attempts()}
        assert {a: (x.status, x.handle, [p.performance for p in x.perf]) for a, x in attempts.items()} == {
            job("a"): (Status.SUCCESS, "4242", [7.0]), job("b"): (Status.SUCCESS, "4243", [7.0]),
            job("c"): (Status.SUCCESS, "4244", [7.0])}
    assert fake.submissions == [[job("a"), job("b"), job("c")]]
    assert fake.polls[0] == ["4242", "4243", "4244"]  # one query for every job in flight
    assert len(fake.polls) == len(LIFE)  # one query per state of their life: none per job


def test_a_job_whose_submission_failed_fails_alone(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(refuse={job("a"): Outcome(Status.FAILURE, message="sbatch: invalid partition")})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.RUN_FAILURE
        assert {a.address: (a.status, a.message) for a in store.attempts()} == {
            job("a"): (Status.FAILURE, "sbatch: invalid partition"), job("b"): (Status.SUCCESS, "")}


def kill_apply_after_submit(r: Realization, store: StateStore, fake: FakeQueue, only: Sequence[str] = ()) -> None:
    """An apply SIGKILLed once its jobs (those of `only`, when given) were submitted: attempts RUNNING with their
    handles, as it left them."""
    plan = plan_of(r, store, fake)
    apply_id = store.begin_apply(plan.lock_hash)
    jobs = [c for c in plan.changes if c.kind == "job" and (not only or c.address in only)]
    specs = [job_spec(c.address, LockEntries.of(r.lock), r.compiled()) for c in jobs]
    for change, handle in zip(jobs, fake.submit(specs), strict=True):
        attempt = store.start_attempt(apply_id, change.address, change.node_hash,
                                      LockEntries.of(r.lock).jobs[change.address].to_json(), host=None, log_path=None)
        assert isinstance(handle, str)
        store.set_attempt_handle(attempt, handle)


def test_a_killed_applys_queued_jobs_are_awaited_not_submitted_again(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(lives={job("a"): ("RUNNING", "RUNNING", "COMPLETED"), job("b"): ("COMPLETED",)})
    with StateStore.open(r.state_path) as store:
        kill_apply_after_submit(r, store, fake)
        fake.submissions.clear()
        plan = plan_of(r, store, fake)
        text = render_text(plan)
        assert f"~ wait {job('a')} (fakeq 4242 RUNNING on n1)" in text, text
        assert f"~ wait {job('b')} (fakeq 4243 COMPLETED on n1; its result is collected)" in text, text
        assert "2 to wait for" in text
        result = apply(r, store, fake, plan)
        assert result.exit_code is ExitCode.OK
        assert fake.submissions == []  # nothing submitted twice
        latest = store.latest_attempts()
        assert {a: (x.status, x.handle) for a, x in latest.items()} == {
            job("a"): (Status.SUCCESS, "4242"), job("b"): (Status.SUCCESS, "4243")}
        old = [a for a in store.attempts() if a.apply_id != result.apply_id]
        assert {a.status for a in old} == {Status.INTERRUPTED}
        fake.polls.clear()
        again = plan_of(r, store, fake)
        assert not again.has_changes and fake.polls == []  # a no-op plan asks the queue nothing


def test_a_job_cancelled_outside_while_its_apply_was_gone_is_planned_again_with_why(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0})
    fake = FakeQueue(lives={job("a"): ("CANCELLED",)})
    with StateStore.open(r.state_path) as store:
        kill_apply_after_submit(r, store, fake)
        plan = plan_of(r, store, fake)
        (change,) = [c for c in plan.changes if c.address == job("a")]
        assert (change.action, change.reason) == (Action.RUN, "fakeq 4242 CANCELLED on n1, while its apply was gone")
        fake.lives.clear()
        assert apply(r, store, fake, plan).exit_code is ExitCode.OK
        assert fake.submissions[-1] == [job("a")]
        assert [r.handle for r in fake.orphans[0] or ()] == ["4242"]  # cleaned up, as any orphan


def test_a_job_cancelled_outside_madengine_fails_with_that_reason(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0})
    fake = FakeQueue(lives={job("a"): ("PENDING", "CANCELLED")})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.RUN_FAILURE
        (attempt,) = store.attempts()
        assert (attempt.status, attempt.message) == (Status.FAILURE, "fakeq 4242 CANCELLED on n1: cancelled outside "
                                                                     "madengine")


def test_ctrl_c_cancels_the_queued_jobs_through_their_system(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(lives={job("a"): ("PENDING",), job("b"): ("RUNNING",)})  # never finish by themselves
    polls = 0
    real_poll = fake.poll

    def poll_then_ctrl_c(handles: list[str]) -> object:
        nonlocal polls
        polls += 1
        if polls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C while both wait in the queue
        return real_poll(handles)

    fake.poll = poll_then_ctrl_c  # type: ignore[method-assign,assignment]
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.INTERRUPTED
        assert sorted(fake.cancelled) == ["4242", "4243"]
        assert {a.status for a in store.attempts()} == {Status.INTERRUPTED}


def test_an_apply_killed_between_two_submissions_recorded_the_first_handle(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(die_after={job("a")}, lives={job("a"): ("RUNNING",)})
    with StateStore.open(r.state_path) as store:
        with pytest.raises(KeyboardInterrupt):  # killed right after the system took `a`, before `b`
            apply(r, store, fake)
        assert {a.address: (a.status, a.handle) for a in store.attempts()} == {
            job("a"): (Status.RUNNING, "4242"), job("b"): (Status.RUNNING, None)}
        fake.die_after.clear()
        plan = plan_of(r, store, fake)
        assert {c.address: c.action for c in plan.changes} == {job("a"): Action.AWAIT, job("b"): Action.RUN}


def test_an_awaited_job_is_adopted_before_anything_can_stop_the_apply(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(die_after={job("a")}, lives={job("a"): ("RUNNING",)})
    with StateStore.open(r.state_path) as store:
        with pytest.raises(KeyboardInterrupt):  # leaves `a` queued (awaited next), `b` an orphan to clean up
            apply(r, store, fake)
        fake.die_after.clear()
        real_cleanup = fake.cleanup_orphans

        def ctrl_c_while_cleaning(running: Sequence[OrphanRecord] | None) -> list[str]:
            if running is not None:  # recovering the killed apply's orphan `b`, before the walk began
                os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C
            return real_cleanup(running)

        fake.cleanup_orphans = ctrl_c_while_cleaning  # type: ignore[method-assign]
        assert apply(r, store, fake).exit_code is ExitCode.INTERRUPTED
        assert fake.cancelled == ["4242"]  # adopted, then stopped through SLURM: never left running unwatched
        assert store.latest_attempts()[job("a")].status is Status.INTERRUPTED


def test_queued_jobs_outside_the_plan_are_left_to_a_later_plan(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})
    fake = FakeQueue(lives={job("a"): ("RUNNING",), job("b"): ("RUNNING", "COMPLETED")})
    with StateStore.open(r.state_path) as store:
        kill_apply_after_submit(r, store, fake)
        full = plan_of(r, store, fake)
        only_b = dataclasses.replace(full, changes=tuple(c for c in full.changes if c.address == job("b")))
        assert apply(r, store, fake, only_b).exit_code is ExitCode.OK  # as `apply --select b`
        assert [r.handle for records in fake.orphans for r in records or ()] == []  # `a` not cleaned up
        latest = store.latest_attempts()
        assert (latest[job("a")].status, latest[job("a")].handle) == (Status.RUNNING, "4242")
        assert plan_of(r, store, fake).changes[0].action is Action.AWAIT


def test_a_cancel_its_system_never_confirms_leaves_the_job_for_the_next_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("madengine.apply.batch.CANCEL_GRACE", 0.2)
    r = jobs_project(tmp_path, {"a": 0})
    fake = FakeQueue(lives={job("a"): ("RUNNING",)})
    fake.cancel = lambda handles: fake.cancelled.extend(handles)  # type: ignore[method-assign]  # never stops
    real_poll = fake.poll

    def poll_then_ctrl_c(handles: Sequence[str]) -> Mapping[str, QueueState]:
        if not fake.cancelled:
            os.kill(os.getpid(), signal.SIGINT)
        return real_poll(handles)

    fake.poll = poll_then_ctrl_c  # type: ignore[method-assign]
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.INTERRUPTED
        assert fake.cancelled == ["4242"]
        (attempt,) = store.attempts()
        assert (attempt.status, attempt.handle) == (Status.RUNNING, "4242")  # what became of it is SLURM's to say


def test_a_queue_that_refuses_to_be_asked_for_good_fails_its_jobs_and_leaves_them_recorded(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0})
    fake = FakeQueue()

    def refused(handles: Sequence[str]) -> Mapping[str, QueueState]:
        raise HostUnavailable("login", "authentication refused", transient=False)

    fake.poll = refused  # type: ignore[method-assign]
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.RUN_FAILURE
        (attempt,) = store.attempts()
        assert (attempt.status, attempt.handle) == (Status.RUNNING, "4242")
