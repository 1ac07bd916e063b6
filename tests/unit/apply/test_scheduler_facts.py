"""Apply and host facts, with the protocol-complete fake backend and a real (temporary) state store:
every attempt records the facts of the host it ran on (observed by apply when no plan of this command
did); a job `skip_gpu_arch` excludes from every host is recorded SKIPPED and never run; one it
excludes from some hosts runs only on the others."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from madengine.apply.engine import Applier, ApplyOptions
from madengine.backends.session import HostInfo
from madengine.errors import ExitCode
from madengine.facts.model import HostFacts
from madengine.pipeline import Realization, make_plan, realization
from madengine.plan.model import Action
from madengine.plan.render import render_text
from madengine.state.model import Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeBackend
from tests.unit.apply.test_engine import Quiet
from tests.unit.apply.test_scheduler import apply
from tests.unit.compile.conftest import PACKAGE, write_tree

GFX90A = HostFacts(hostname="n2", gpu_vendor="AMD", gpu_count=8, gpu_arch="gfx90a", rocm="6.2.0")
GFX908 = HostFacts(hostname="n1", gpu_vendor="AMD", gpu_count=4, gpu_arch="gfx908", rocm="6.2.0")
IMAGE = "image:dummy.ubuntu.none@cpu"


def skipping_project(root: Path, repeat: int = 1) -> Realization:
    """The MAD package's dummies on target `lab`, dummy with models.json's `skip_gpu_arch: gfx908`."""
    models = json.loads(PACKAGE["pkg/models.json"])
    models[0]["skip_gpu_arch"] = "gfx906, gfx908"
    write_tree(root, {**PACKAGE, "pkg/models.json": json.dumps(models),
                      "madfile.yaml": "version: 1\npackage: pkg\nmodels: [{select: dummies}]\n"
                                      "contexts: {cpu: {gpu_vendor: NONE}}\ntargets: {lab: {backend: docker}}\n"
                                      f"runs: [{{models: [dummies], repeat: {repeat}}}]\n"})
    return realization(root / "madfile.yaml", locked=False)


def job(model: str, repeat: int = 1) -> str:
    return f"job:{model}@cpu/lab#{repeat}"


def test_each_attempt_records_the_facts_of_the_host_it_ran_on(tmp_path: Path) -> None:
    r = skipping_project(tmp_path, repeat=3)
    fake = FakeBackend(hosts_=[HostInfo("n1", None), HostInfo("n2", None)],
                       facts={"n1": dataclasses.replace(GFX908, gpu_arch="gfx942"), "n2": GFX90A})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.OK
        jobs = [a for a in store.attempts() if a.address.startswith("job:")]
    assert {a.host for a in jobs} == {"n1", "n2"}
    for a in jobs:
        facts = fake.facts[str(a.host)]
        assert isinstance(facts, HostFacts) and a.facts == facts.to_dict()
    assert [c for c in fake.calls if c[0] == "observe_facts"] == [("observe_facts", "n1,n2")] * 2  # plan, apply


def test_apply_of_a_plan_that_observed_no_facts_observes_them(tmp_path: Path) -> None:
    r = skipping_project(tmp_path)
    planner = FakeBackend(hosts_=[HostInfo("n2", None)], facts={"n2": "unreachable at plan time"})
    the_plan, _ = make_plan(dataclasses.replace(r, backends={"lab": planner}), StateStore.open(r.state_path))
    fake = FakeBackend(hosts_=[HostInfo("n2", None)], facts={"n2": GFX90A})
    with StateStore.open(r.state_path) as store:
        Applier(the_plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace, ApplyOptions(), Quiet()).run()
        assert {a.address: a.facts for a in store.attempts() if a.address.startswith("job:")} == {
            job("dummy"): GFX90A.to_dict(), job("dummy2"): GFX90A.to_dict()}


def test_facts_that_cannot_be_observed_are_recorded_as_none_and_fail_nothing(tmp_path: Path) -> None:
    r = skipping_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("n1", None)], facts={"n1": "connection refused"})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.OK
        assert {a.address: (a.status, a.facts) for a in store.attempts() if a.address.startswith("job:")} == {
            job("dummy"): (Status.SUCCESS, None), job("dummy2"): (Status.SUCCESS, None)}


def test_a_job_excluded_from_every_host_is_recorded_skipped_and_never_run(tmp_path: Path) -> None:
    r = skipping_project(tmp_path)
    fake = FakeBackend(hosts_=[HostInfo("n1", None)], facts={"n1": GFX908})
    with StateStore.open(r.state_path) as store:
        assert apply(r, store, fake).exit_code is ExitCode.OK
        latest = {a.address: a for a in store.attempts()}
        assert (latest[job("dummy")].status, latest[job("dummy")].message) == (Status.SKIPPED,
                                                                                "gfx908 in skip_gpu_arch")
        assert latest[job("dummy2")].status is Status.SUCCESS
        assert [x.address for x in fake.ran] == [job("dummy2")]
        # planned again: nothing to do, and the plan says why the job does not run
        again, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
    assert not again.has_changes
    assert f"- skipped {job('dummy')} (gfx908 in skip_gpu_arch)" in render_text(again).splitlines()


def test_a_job_excluded_from_some_hosts_runs_only_on_the_others(tmp_path: Path) -> None:
    r = skipping_project(tmp_path, repeat=4)
    fake = FakeBackend(hosts_=[HostInfo("n1", None), HostInfo("n2", None)], facts={"n1": GFX908, "n2": GFX90A})
    with StateStore.open(r.state_path) as store:
        the_plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        assert {c.address: c.hosts for c in the_plan.changes if c.kind == "job"} == {
            **{job("dummy", i): ("lab/n2",) for i in range(1, 5)}, **{job("dummy2", i): () for i in range(1, 5)}}
        assert apply(r, store, fake).exit_code is ExitCode.OK
    ran = {x.address: x.host for x in fake.ran}
    assert {ran[job("dummy", i)] for i in range(1, 5)} == {"n2"}
    assert "n1" in {ran[job("dummy2", i)] for i in range(1, 5)}  # the others spread over both hosts


def test_an_image_only_skipped_jobs_need_is_not_built(tmp_path: Path) -> None:
    models = json.loads(PACKAGE["pkg/models.json"])
    for m in models[:2]:
        m["skip_gpu_arch"] = "gfx908"
    write_tree(tmp_path, {**PACKAGE, "pkg/models.json": json.dumps(models),
                          "madfile.yaml": "version: 1\npackage: pkg\nmodels: [{select: dummies}]\n"
                                          "contexts: {cpu: {gpu_vendor: NONE}}\ntargets: {lab: {backend: docker}}\n"})
    r = realization(tmp_path / "madfile.yaml", locked=False)
    fake = FakeBackend(hosts_=[HostInfo("n1", None)], facts={"n1": GFX908})
    with StateStore.open(r.state_path) as store:
        the_plan, _ = make_plan(dataclasses.replace(r, backends={"lab": fake}), store)
        assert {c.address: c.action for c in the_plan.changes} == {
            IMAGE: Action.SKIPPED, job("dummy"): Action.SKIP, job("dummy2"): Action.SKIP}
        assert apply(r, store, fake).exit_code is ExitCode.OK
        assert {a.address: a.status for a in store.attempts()} == {job("dummy"): Status.SKIPPED,
                                                                   job("dummy2"): Status.SKIPPED}
    assert not any(call[0] in ("build", "run") for call in fake.calls)
