"""The planner and host facts, on crafted facts: a success whose host's facts moved (in its `rerun_on`)
reruns with old → new; unknown facts, a host gone from its target and facts never recorded rerun
nothing and say so; `skip_gpu_arch` skips a job every host of whose target it excludes, and places it
on the others when it excludes some."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from madengine.facts.model import HostFacts
from madengine.graph.dag import Dag
from madengine.lock.lockfile import Lock
from madengine.plan import planfile
from madengine.plan.model import Action, Change, Plan
from madengine.plan.planner import PlanOptions, plan
from madengine.plan.render import render_text
from madengine.state.model import Attempt, Observed, Status
from tests.unit.compile.conftest import PACKAGE, write_tree
from tests.unit.plan.test_planner import IMAGE, JOB, JOB2, MADFILE, _attempt, _image, _lock_graph

ROCM_62 = HostFacts(hostname="gpu-1", docker="27.3.1", gpu_vendor="AMD", gpu_count=8, gpu_arch="gfx90a",
                    driver="6.8.5", rocm="6.2.0")
ROCM_63 = HostFacts(**{**ROCM_62.to_dict(), "rocm": "6.3.1"})
GFX908 = HostFacts(**{**ROCM_62.to_dict(), "gpu_arch": "gfx908"})
NO_GPU = HostFacts(hostname="box", os="Debian GNU/Linux 12 (bookworm)", kernel="6.1.0", arch="x86_64")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The MAD package's dummies on target `box` (one image, two jobs), in a directory of their own."""
    write_tree(tmp_path / "p", {**PACKAGE, "madfile.yaml": MADFILE})
    return tmp_path / "p"


def _observed(lock: Lock, latest: dict[str, Attempt] | None = None,
              facts: dict[str, HostFacts] | None = None, unknown: dict[str, str] | None = None,
              built: bool = True) -> Observed:
    images = {(IMAGE, "box", ""): _image(lock)} if built else {}
    return Observed(serial=3, images=images, latest=latest or {},
                    facts={("box", h): f for h, f in (facts or {}).items()},
                    facts_unknown={("box", h): why for h, why in (unknown or {}).items()})


def _ran(lock: Lock, address: str = JOB, host: str = "gpu-1", facts: HostFacts | None = ROCM_62,
         **kw: Any) -> Attempt:
    return _attempt(lock, address, host=host, facts=facts.to_dict() if facts is not None else None, **kw)


def _run_plan(lock: Lock, graph: Dag, observed: Observed, **options: Any) -> Plan:
    return plan(lock, "sha256:lock", graph, observed, PlanOptions(**options))


def _of(p: Plan, address: str = JOB) -> Change:
    return next(c for c in p.changes if c.address == address)


# --- rerun_on --------------------------------------------------------------------------------------


def test_a_success_under_other_facts_reruns_with_old_and_new(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-1": ROCM_63}))
    assert (_of(p).action, _of(p).reason) == (Action.RERUN, "gpu-1: rocm 6.2.0 → 6.3.1")
    assert f"~ rerun {JOB} (gpu-1: rocm 6.2.0 → 6.3.1)" in render_text(p).splitlines()
    assert p.summary() == "Plan: 0 to build, 2 to run, 1 unchanged."  # dummy2 never ran


def test_the_same_facts_rerun_nothing(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-1": ROCM_62}))
    assert (_of(p).action, _of(p).reason) == (Action.NOOP, "SUCCESS 2026-11-28, 123 gflops")


def test_several_facts_moved_are_all_named_in_rerun_on_order(project: Path) -> None:
    lock, graph = _lock_graph(project)
    now = HostFacts(**{**ROCM_63.to_dict(), "driver": "6.10.5", "gpu_arch": "gfx942"})
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-1": now}))
    assert _of(p).reason == "gpu-1: gpu_arch gfx90a → gfx942, driver 6.8.5 → 6.10.5, rocm 6.2.0 → 6.3.1"


def test_rerun_on_narrows_and_widens_the_facts_that_count(project: Path) -> None:
    lock, graph = _lock_graph(project)
    docker_moved = HostFacts(**{**ROCM_63.to_dict(), "docker": "28.0.1"})
    observed = _observed(lock, {JOB: _ran(lock)}, {"gpu-1": docker_moved})
    # the default (gpu_arch, driver, rocm, cuda): rocm moved, docker does not count
    assert _of(_run_plan(lock, graph, observed)).reason == "gpu-1: rocm 6.2.0 → 6.3.1"
    # narrowed to gpu_arch: nothing that counts moved
    assert _of(_run_plan(lock, graph, observed, rerun_on={("cpu", "box"): ("gpu_arch",)})).action is Action.NOOP
    # widened to docker too
    wide = _run_plan(lock, graph, observed, rerun_on={("cpu", "box"): ("rocm", "docker")})
    assert _of(wide).reason == "gpu-1: rocm 6.2.0 → 6.3.1, docker 27.3.1 → 28.0.1"
    # none at all
    assert _of(_run_plan(lock, graph, observed, rerun_on={("cpu", "box"): ()})).action is Action.NOOP
    # another pair's rerun_on is not this job's
    assert _of(_run_plan(lock, graph, observed, rerun_on={("gpu", "box"): ()})).action is Action.RERUN


def test_facts_unknown_now_or_then_rerun_nothing(project: Path) -> None:
    lock, graph = _lock_graph(project)
    unknown_rocm = HostFacts(**{**ROCM_62.to_dict(), "rocm": None, "driver": "6.8.5"})
    assert _of(_run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-1": unknown_rocm}))).action \
        is Action.NOOP
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock, facts=unknown_rocm)}, {"gpu-1": ROCM_63}))
    assert _of(p).action is Action.NOOP


def test_a_host_whose_facts_cannot_be_observed_keeps_its_results_and_says_why(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, unknown={"gpu-1": "connection refused"}))
    assert (_of(p).action, _of(p).reason) == (
        Action.NOOP, "SUCCESS 2026-11-28, 123 gflops; facts of box/gpu-1 not compared: unknown now "
                     "(connection refused)")
    # a target that could not even name its hosts
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, unknown={"": "engine down"}))
    assert _of(p).reason.endswith("facts of box/gpu-1 not compared: unknown now (engine down)")
    assert _of(p).action is Action.NOOP


def test_a_host_gone_from_its_target_keeps_its_results_and_says_so(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-2": ROCM_63}))
    assert (_of(p).action, _of(p).reason) == (
        Action.NOOP, "SUCCESS 2026-11-28, 123 gflops; facts not compared: gpu-1 is no longer a host of box")


def test_a_success_recorded_without_facts_or_a_target_not_observed_compares_nothing(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock, facts=None)}, {"gpu-1": ROCM_63}))
    assert (_of(p).action, _of(p).reason) == (Action.NOOP, "SUCCESS 2026-11-28, 123 gflops")
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}))
    assert (_of(p).action, _of(p).reason) == (Action.NOOP, "SUCCESS 2026-11-28, 123 gflops")


def test_a_machine_without_gpus_never_reruns_for_its_facts(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock, host="box", facts=NO_GPU)}, {"box": NO_GPU}),
                  skip_gpu_arch={"dummy": ("gfx908", "none", "NONE")})
    assert _of(p).action is Action.NOOP
    p = _run_plan(lock, graph, _observed(lock, {}, {"box": NO_GPU}), skip_gpu_arch={"dummy": ("gfx908",)})
    assert _of(p).action is Action.RUN and _of(p).hosts == ()


def test_a_failed_job_is_not_rerun_for_facts(project: Path) -> None:
    lock, graph = _lock_graph(project)
    failed = _ran(lock, status=Status.FAILURE, exit_code=1, message="exit code 1", perf=())
    assert _of(_run_plan(lock, graph, _observed(lock, {JOB: failed}, {"gpu-1": ROCM_63}))).action is Action.FAILED


# --- skip_gpu_arch -----------------------------------------------------------------------------------


def test_a_job_every_host_of_which_is_excluded_is_skipped_and_so_is_its_image(project: Path) -> None:
    lock, graph = _lock_graph(project)
    observed = _observed(lock, {}, {"gpu-1": GFX908}, built=False)
    p = _run_plan(lock, graph, observed, skip_gpu_arch={"dummy": ("gfx906", "gfx908")})
    assert (_of(p).action, _of(p).reason, _of(p).hosts) == (Action.SKIP, "gfx908 in skip_gpu_arch", ())
    assert _of(p, JOB2).action is Action.RUN  # dummy2 has no skip_gpu_arch: its image is built for it
    assert _of(p, IMAGE).action is Action.BUILD
    text = render_text(p)
    assert f"- skip {JOB} (gfx908 in skip_gpu_arch)" in text.splitlines()
    assert text.splitlines()[-1] == "Plan: 1 to build, 1 to run, 0 unchanged, 1 to skip."
    # both jobs skipped: the image they alone need is not built
    both = _run_plan(lock, graph, observed, skip_gpu_arch={"dummy": ("gfx908",), "dummy2": ("gfx908",)})
    image = _of(both, IMAGE)
    assert (image.action, image.reason) == (Action.SKIPPED, "only skipped jobs use it (gfx908 in skip_gpu_arch)")
    assert {c.address for c in both.changes if c.action.changes} == {JOB, JOB2}


def test_a_job_once_recorded_skipped_for_the_same_reason_changes_nothing(project: Path) -> None:
    lock, graph = _lock_graph(project)
    skipped = _ran(lock, status=Status.SKIPPED, message="gfx908 in skip_gpu_arch", perf=(), facts=None)
    options: dict[str, Any] = {"skip_gpu_arch": {"dummy": ("gfx908",), "dummy2": ("gfx908",)}}
    latest = {JOB: skipped, JOB2: _ran(lock, JOB2, status=Status.SKIPPED, message="gfx908 in skip_gpu_arch",
                                       perf=(), facts=None)}
    p = _run_plan(lock, graph, _observed(lock, latest, {"gpu-1": GFX908}, built=False), **options)
    assert (_of(p).action, _of(p).reason) == (Action.SKIPPED, "gfx908 in skip_gpu_arch")
    assert not p.has_changes
    assert render_text(p).splitlines()[-2:] == [
        "No changes: everything is up to date; 3 skipped (skip_gpu_arch).",
        "Plan: 0 to build, 0 to run, 0 unchanged, 3 skipped."]
    # --replace records it again; a host that is no longer excluded runs it
    assert _of(_run_plan(lock, graph, _observed(lock, latest, {"gpu-1": GFX908}), replace=frozenset({JOB}),
                         **options)).action is Action.SKIP
    p = _run_plan(lock, graph, _observed(lock, latest, {"gpu-1": ROCM_62}), **options)
    assert (_of(p).action, _of(p).reason) == (Action.RUN, "skipped last time")


def test_a_job_excluded_from_some_hosts_is_placed_on_the_others(project: Path) -> None:
    lock, graph = _lock_graph(project)
    observed = _observed(lock, {}, {"gpu-1": GFX908, "gpu-2": ROCM_62, "gpu-3": GFX908})
    p = _run_plan(lock, graph, observed, skip_gpu_arch={"dummy": ("gfx908",)})
    c = _of(p)
    assert (c.action, c.hosts) == (Action.RUN, ("box/gpu-2",))
    assert c.reason == "never run; not on gpu-1, gpu-3 (gfx908 in skip_gpu_arch)"
    assert f"+ run {JOB} → box/gpu-2 (never run; not on gpu-1, gpu-3 (gfx908 in skip_gpu_arch))" in render_text(p)
    assert c.hosts_of("box") == ("gpu-2",)
    assert Change.from_json(c.to_json()) == c  # a saved plan keeps where it may run


def test_a_host_of_unknown_arch_is_not_excluded(project: Path) -> None:
    lock, graph = _lock_graph(project)
    unknown_arch = HostFacts(**{**ROCM_62.to_dict(), "gpu_arch": None})
    observed = _observed(lock, {}, {"gpu-1": GFX908, "gpu-2": unknown_arch}, {"gpu-3": "unreachable"})
    c = _of(_run_plan(lock, graph, observed, skip_gpu_arch={"dummy": ("gfx908",)}))
    assert (c.action, c.hosts) == (Action.RUN, ("box/gpu-2", "box/gpu-3"))


def test_a_valid_result_stays_whatever_skip_gpu_arch_says_now(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock, facts=GFX908)}, {"gpu-1": GFX908}),
                  skip_gpu_arch={"dummy": ("gfx908",)})
    assert _of(p).action is Action.NOOP


def test_a_success_whose_host_moved_to_an_excluded_arch_is_skipped_not_rerun(project: Path) -> None:
    lock, graph = _lock_graph(project)
    p = _run_plan(lock, graph, _observed(lock, {JOB: _ran(lock)}, {"gpu-1": GFX908}),
                  skip_gpu_arch={"dummy": ("gfx908",)})
    assert (_of(p).action, _of(p).reason) == (Action.SKIP, "gfx908 in skip_gpu_arch")


def test_saved_plans_keep_skips_and_placements(project: Path, tmp_path: Path) -> None:
    lock, graph = _lock_graph(project)
    observed = _observed(lock, {}, {"gpu-1": GFX908, "gpu-2": ROCM_62})
    p = _run_plan(lock, graph, observed, skip_gpu_arch={"dummy": ("gfx908",), "dummy2": ("gfx90a",)})
    planfile.save(tmp_path / "plan.json", p, "madfile.yaml")
    loaded, _ = planfile.load(tmp_path / "plan.json")
    assert loaded.changes == p.changes
    assert {c.address: (c.action, c.hosts) for c in loaded.changes if c.kind == "job"} == {
        JOB: (Action.RUN, ("box/gpu-2",)), JOB2: (Action.RUN, ("box/gpu-1",))}

