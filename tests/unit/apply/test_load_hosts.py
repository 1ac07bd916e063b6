"""A LOAD onto the hosts of a many-host target that lack an image: every host is tried, in parallel; a
host that cannot get the image fails only its own jobs (with the reason), the others' jobs run, and each
host that got the image is recorded. The LOAD fails only when no host got it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from madengine.apply.engine import Applier, ApplyOptions, ApplyResult
from madengine.backends.base import Outcome
from madengine.backends.session import HostInfo
from madengine.pipeline import Realization, make_plan
from madengine.plan.model import Action, Plan
from madengine.state.model import Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeBackend
from tests.unit.apply.test_engine import Quiet
from tests.unit.apply.test_scheduler import DUMMY, DUMMY2, IMAGE, apply, image_project


def rerun_failed(r: Realization, store: StateStore, fake: FakeBackend, plan: Plan | None = None) -> ApplyResult:
    """An apply with --rerun-failed and --keep-going."""
    if plan is None:
        plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store, rerun_failed=True)
    return Applier(plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace,
                   ApplyOptions(parallelism=8, keep_going=True, retries=0), Quiet()).run()


def test_a_host_that_cannot_get_the_image_does_not_stop_the_other_hosts_loads(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("node1", None), HostInfo("node2", None), HostInfo("node3", None)])
    with StateStore.open(r.state_path) as store:
        apply(r, store, fake)
        tag = r.lock["images"][IMAGE]["tag"]
        del fake.images["node2"][tag], fake.images["node3"][tag]  # removed by hand on node2 and node3
        plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        assert [c.action for c in plan.changes if c.action.changes] == [Action.LOAD]
        fake.script["deliver node2"] = Outcome(Status.FAILURE, message="node2: disk full")
        result = apply(r, store, fake)
        assert ("deliver", f"{IMAGE} -> node3") in fake.calls  # tried although node2 failed
        assert result.statuses[IMAGE] is Status.SUCCESS  # node1 and node3 hold it
        assert {h for (a, _, h) in store.placements() if a == IMAGE} >= {"node3"}
        assert "node2" not in {h for (a, _, h) in store.placements() if a == IMAGE}
        (attempt,) = [a for a in store.attempts(IMAGE) if a.apply_id == result.apply_id]
        assert attempt.message == "loaded on lab/node3; not on lab/node2: disk full"
        assert [x.address for x in fake.ran[2:]] == []  # the jobs had succeeded: not rerun


def test_the_jobs_run_on_the_hosts_that_hold_the_image_and_fail_on_the_one_that_does_not(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    # one job per host at a time: the two jobs are placed on both hosts
    fake = FakeBackend(hosts_=[HostInfo("node1", None, max_parallel=1), HostInfo("node2", None, max_parallel=1)])
    fake.script[DUMMY] = fake.script[DUMMY2] = Outcome(Status.FAILURE, exit_code=1, message="exit code 1")
    with StateStore.open(r.state_path) as store:
        apply(r, store, fake)  # built on both hosts; both jobs failed: they rerun next time
        del fake.script[DUMMY], fake.script[DUMMY2]
        tag = r.lock["images"][IMAGE]["tag"]
        del fake.images["node2"][tag]  # node2 lost the image and cannot get it again
        fake.script["deliver node2"] = Outcome(Status.FAILURE, message="node2: no space left on device")
        result = rerun_failed(r, store, fake)
        assert result.statuses[IMAGE] is Status.SUCCESS  # node1 holds it
        (load,) = [a for a in store.attempts(IMAGE) if a.apply_id == result.apply_id]
        assert load.message == "not loaded on lab/node2: no space left on device"
        ran = {x.address: x.host for x in fake.ran[2:]}
        assert set(ran) == {DUMMY, DUMMY2} and set(ran.values()) == {"node1", "node2"}  # neither skipped
        for address, host in ran.items():
            (attempt,) = [a for a in store.attempts(address) if a.apply_id == result.apply_id]
            if host == "node1":
                assert result.statuses[address] is Status.SUCCESS
            else:
                assert result.statuses[address] is Status.FAILURE
                assert attempt.message.startswith("node2: image ") and "no space left on device" in attempt.message


def test_a_load_after_which_no_host_holds_the_image_fails_and_its_jobs_are_skipped(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("node1", None), HostInfo("node2", None), HostInfo("node3", None)])
    fake.script[DUMMY] = Outcome(Status.FAILURE, exit_code=1, message="exit code 1")
    with StateStore.open(r.state_path) as store:
        apply(r, store, fake)
        del fake.script[DUMMY]
        tag = r.lock["images"][IMAGE]["tag"]
        del fake.images["node2"][tag], fake.images["node3"][tag]
        plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store, rerun_failed=True)
        fake.hosts_ = fake.hosts_[1:]  # node1 (which held it) is gone from the inventory at apply
        fake.script["deliver node2"] = Outcome(Status.FAILURE, message="node2: disk full")
        fake.script["deliver node3"] = Outcome(Status.FAILURE, message="node3: connection refused", transient=True)
        result = rerun_failed(r, store, fake, plan)
        assert result.statuses[IMAGE] is Status.FAILURE
        (attempt,) = [a for a in store.attempts(IMAGE) if a.apply_id == result.apply_id]
        assert attempt.message == "lab/node2: disk full; lab/node3: connection refused"
        assert result.statuses[DUMMY] is Status.SKIPPED
