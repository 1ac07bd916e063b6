"""The apply scheduler with the protocol-complete fake backend: GPU slots and max_parallel per host,
backfill, skip on a failed dependency, transient retries, Ctrl-C, handles as text, orphan records, and
an image loaded onto the one host of a two-host target that lacks it.

The engine records as it goes, so these run it against a real (temporary) SQLite state store."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

from madengine.apply.engine import Applier, ApplyOptions, ApplyResult
from madengine.backends.base import Backend, Cancel, Outcome
from madengine.backends.session import HostInfo
from madengine.backends.specs import JobSpec
from madengine.errors import ExitCode
from madengine.pipeline import Realization, make_plan, realization
from madengine.plan.model import Action
from madengine.plan.render import render_text
from madengine.state.model import ImageRecord, Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeBackend, FakeHostProcesses
from tests.unit.apply.test_engine import Quiet
from tests.unit.compile.conftest import PACKAGE, write_tree

IMAGE = "image:dummy.ubuntu.none@cpu"
DUMMY, DUMMY2 = "job:dummy@cpu/lab#1", "job:dummy2@cpu/lab#1"


def jobs_project(root: Path, gpus: dict[str, int]) -> Realization:
    """Host-process jobs (no image) named by `gpus` (name -> n_gpus) on target `lab`."""
    (root / "run.sh").write_text("true\n")
    models = ", ".join(f"{{name: {name}, scripts: run.sh, n_gpus: {n}}}" for name, n in gpus.items())
    (root / "madfile.yaml").write_text(f"version: 1\nmodels: [{models}]\ntargets: {{lab: {{backend: local}}}}\n")
    return realization(root / "madfile.yaml", locked=False)


def image_project(root: Path) -> Realization:
    """The MAD package's two dummies on a docker-built image, on target `lab`."""
    write_tree(root, {**PACKAGE, "madfile.yaml": "version: 1\npackage: pkg\nmodels: [{select: dummies}]\n"
                                                 "contexts: {cpu: {gpu_vendor: NONE}}\n"
                                                 "targets: {lab: {backend: docker}}\n"})
    return realization(root / "madfile.yaml", locked=False)


def job(name: str) -> str:
    return f"job:{name}@default/lab#1"


def apply(r: Realization, store: StateStore, fake: Backend, *, parallelism: int = 8, retries: int = 0,
          durations: dict[str, float] | None = None, keep_going: bool = False) -> ApplyResult:
    r = dataclasses.replace(r, backends={"lab": fake})
    plan, _ = make_plan(r, store)
    return Applier(plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace,
                   ApplyOptions(parallelism=parallelism, retries=retries, retry_delay=0.01, keep_going=keep_going),
                   Quiet(), durations=durations).run()


def until(fake: FakeBackend, address: str, cancel: Cancel, *, ok: bool = True) -> Outcome:
    """A job that runs until `address` has started (or 20 s, or a cancel): what ran beside it is recorded."""
    deadline = time.monotonic() + 20
    while not fake.started(address) and time.monotonic() < deadline and not cancel.is_set():
        cancel.wait(0.01)
    return Outcome(Status.SUCCESS if ok else Status.FAILURE, exit_code=0 if ok else 1)


def test_jobs_get_gpus_of_one_host_never_shared_and_max_parallel_caps_a_host(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {f"m{i}": 2 for i in range(6)})
    fake = FakeHostProcesses(hosts_=[HostInfo("n1", 4, max_parallel=1), HostInfo("n2", 4)])
    # m0 (on n1, the best fit first) holds n1 until the last job started: the others all go to n2; m1
    # (on n2) runs until m2 started beside it.
    fake.script[job("m0")] = lambda j, c: until(fake, job("m5"), c)
    fake.script[job("m1")] = lambda j, c: until(fake, job("m2"), c)
    with StateStore.open(r.state_path) as store:
        result = apply(r, store, fake)
        assert result.exit_code is ExitCode.OK
        assert {a.address: a.host for a in store.attempts()} == {x.address: x.host for x in fake.ran}
    assert len(fake.ran) == 6
    assert all(len(x.gpu_ids) == 2 for x in fake.ran)
    for x in fake.ran:  # n1 runs one job at a time; n2 two (its 4 GPUs), and never one GPU twice
        beside = [y for y in fake.ran if y.address in x.beside]
        assert x.host != "n1" or not beside
        assert len(beside) <= 1 and all(not set(x.gpu_ids) & set(y.gpu_ids) for y in beside)
    assert {x.address: x.host for x in fake.ran} == {job(f"m{i}"): "n1" if i == 0 else "n2" for i in range(6)}
    assert max(len(x.beside) for x in fake.ran if x.host == "n2") == 1  # n2 did run two at once


def test_a_job_that_fits_runs_while_a_larger_one_waits_for_gpus(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"big": 4, "first": 2, "small": 2})
    fake = FakeHostProcesses(hosts_=[HostInfo("n1", 4)])
    fake.script[job("first")] = lambda j, c: until(fake, job("small"), c)  # holds 2 GPUs until small starts
    durations = {job("first"): 30.0, job("big"): 20.0, job("small"): 1.0}  # longest first: first, big, small
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake, durations=durations).exit_code is ExitCode.OK
    # big comes before small in line, but small filled the 2 GPUs big could not use, while first held
    # the others (first runs until small started: without backfill, big would run before small).
    assert {x.address for x in fake.ran[:2]} == {job("first"), job("small")} and fake.ran[2].address == job("big")


def test_jobs_of_a_failed_build_are_skipped_and_never_run(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("n1", None)], script={IMAGE: Outcome(Status.FAILURE, message="no base")})
    with StateStore.open(r.state_path) as store:
        result = apply(r, store, fake, keep_going=True)
        assert result.exit_code is ExitCode.BUILD_FAILURE
        assert {a.address: (a.status, a.message) for a in store.attempts()} == {
            IMAGE: (Status.FAILURE, "no base"), DUMMY: (Status.SKIPPED, f"{IMAGE} did not succeed"),
            DUMMY2: (Status.SKIPPED, f"{IMAGE} did not succeed")}
    assert fake.ran == []


def test_a_transient_failure_is_retried_on_the_fake(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"m": 0})
    fake = FakeHostProcesses(script={job("m"): [Outcome(Status.FAILURE, message="hiccup", transient=True),
                                                Outcome(Status.SUCCESS, exit_code=0)]})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake, retries=1).exit_code is ExitCode.OK
        assert [(a.status, a.message) for a in store.attempts()] == [
            (Status.FAILURE, "hiccup (transient; retrying)"), (Status.SUCCESS, "")]


def test_ctrl_c_stops_the_running_job_and_starts_no_other(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"a": 0, "b": 0})

    def interrupted(j: JobSpec, cancel: Cancel) -> Outcome:
        os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, while this job runs
        assert cancel.wait(20), "apply did not tell the job to stop"
        return Outcome(Status.INTERRUPTED, message="stopped")

    fake = FakeHostProcesses(script={job("a"): interrupted, job("b"): interrupted})
    with StateStore.open(r.state_path) as store:
        result = apply(r, store, fake, parallelism=1)
        assert result.interrupted and result.exit_code is ExitCode.INTERRUPTED
        assert [(a.address, a.status) for a in store.attempts()] == [(job("a"), Status.INTERRUPTED)]
        assert [a.outcome for a in store.applies()] == ["INTERRUPTED"]
    assert [x.address for x in fake.ran] == [job("a")]


def test_every_handle_is_recorded_as_text_and_handed_back_to_clean_up(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"m": 0})

    def started(j: JobSpec, cancel: Cancel) -> Outcome:
        cancel.started("c0ffee42-container")  # not digits: a container id, a SLURM or Kubernetes id
        return Outcome(Status.SUCCESS, exit_code=0)

    fake = FakeHostProcesses(hosts_=[HostInfo("n1", None)], script={job("m"): started})
    with StateStore.open(r.state_path) as store:
        apply(r, store, fake)
        (done,) = store.attempts()
        assert done.handle == "c0ffee42-container"
        # An apply killed while a job ran: the next one hands its record to the backend, typed.
        killed = store.begin_apply(r.lock_hash)
        left = store.start_attempt(killed, job("m"), "sha256:x", {}, "n1", None, handle="4242")
        fake.orphans.clear()
        apply(r, store, fake)
        assert fake.orphans[0] is not None
        assert [(o.attempt, o.handle, o.host) for o in fake.orphans[0]] == [(left, "4242", "n1")]


def test_a_two_host_target_loads_the_image_onto_the_host_that_lacks_it(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("node1", None), HostInfo("node2", None)])
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.OK  # built: on both hosts
        tag = r.lock["images"][IMAGE]["tag"]
        del fake.images["node2"][tag]  # removed by hand on node2
        plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        (load,) = [c for c in plan.changes if c.action.changes]
        assert (load.address, load.action, load.hosts) == (IMAGE, Action.LOAD, ("lab/node2",))
        assert f"+ load {IMAGE} → lab/node2 (built " in render_text(plan)
        assert plan.summary() == "Plan: 0 to build, 1 to load, 0 to run, 2 unchanged."
        assert apply(r, store, fake).exit_code is ExitCode.OK
        assert ("deliver", f"{IMAGE} -> node2") in fake.calls and len(fake.ran) == 2  # the jobs did not rerun
        assert {h for (a, _, h) in store.placements() if a == IMAGE} >= {"node2"}
        again, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        assert not again.has_changes
        # Gone from every host: rebuilt, as on a one-host target.
        fake.images.clear()
        gone, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        assert [(c.action, c.reason) for c in gone.changes if c.action.changes] == [
            (Action.REBUILD, "image gone from lab (removed outside madengine)")]


def test_a_one_host_target_never_loads_and_its_plan_names_no_host(tmp_path: Path) -> None:
    r = image_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("only", None)])
    with StateStore.open(r.state_path) as store:
        apply(r, store, fake)
        assert set(store.placements()) == {(IMAGE, "lab", "")}  # the target's only host
        record = store.placements()[IMAGE, "lab", ""]
        assert isinstance(record, ImageRecord) and record.image_id
        fake.images["only"].clear()
        plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        (rebuild,) = [c for c in plan.changes if c.action.changes]
        assert rebuild.action is Action.REBUILD and rebuild.hosts == () and "→" not in render_text(plan)


def test_the_retry_of_a_job_whose_host_was_unreachable_runs_on_another_host(tmp_path: Path) -> None:
    r = jobs_project(tmp_path, {"m": 0})
    fake = FakeHostProcesses(hosts_=[HostInfo("n1", None), HostInfo("n2", None)])

    def n1_down(j: JobSpec, cancel: Cancel) -> Outcome:
        if j.host == "n1":
            return Outcome(Status.FAILURE, message="n1: connection refused", transient=True, host_unreachable=True)
        return Outcome(Status.SUCCESS, exit_code=0)

    fake.script[job("m")] = n1_down
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake, retries=2).exit_code is ExitCode.OK
        assert [(a.status, a.host) for a in store.attempts()] == [(Status.FAILURE, "n1"), (Status.SUCCESS, "n2")]
