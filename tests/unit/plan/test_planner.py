"""The planner is a pure function: every action and reason from (lock, graph, observed state)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from madengine.graph.build import build_graph
from madengine.graph.dag import Dag
from madengine.lock.lockfile import Lock, build_lock
from madengine.plan import planfile
from madengine.plan.model import Action, Plan
from madengine.plan.planner import PlanOptions, plan
from madengine.plan.render import render_text
from madengine.state.model import Attempt, Holder, ImageRecord, Observed, PerfRow, Status
from tests.unit.compile.conftest import PACKAGE, compile_file, write_tree

MADFILE = """\
version: 1
package: pkg
models: [{select: dummies}]
contexts: {cpu: {gpu_vendor: NONE}}
targets: {box: {backend: docker}}
"""
IMAGE = "image:dummy.ubuntu.none@cpu"
JOB = "job:dummy@cpu/box#1"
JOB2 = "job:dummy2@cpu/box#1"


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    write_tree(tmp_path, {**PACKAGE, "madfile.yaml": MADFILE})
    return tmp_path


def _lock_graph(root: Path, registry: str | None = None) -> tuple[Lock, Dag]:
    if registry:
        text = (root / "madfile.yaml").read_text()
        (root / "madfile.yaml").write_text(text.replace("version: 1\n", f"version: 1\nregistry: {registry}\n"))
    project = compile_file(root / "madfile.yaml")
    lock = build_lock(project)
    return lock, build_graph(lock, registry=project.registry, tags=project.model_tags())


def _image(lock: Lock, address: str = IMAGE, **kw: Any) -> ImageRecord:
    entry = lock["images"][address]
    fields: dict[str, Any] = dict(address=address, target="box", node_hash=entry["hash"], tag=entry["tag"],
                                  image_id="sha256:img", digest=None, inputs=dict(entry),
                                  built_at="2026-11-28T10:00:00Z")
    fields.update(kw)
    return ImageRecord(**fields)


def _attempt(lock: Lock, address: str, status: Status = Status.SUCCESS, **kw: Any) -> Attempt:
    entry = lock["jobs"][address]
    fields: dict[str, Any] = dict(id=1, apply_id=1, address=address, node_hash=entry["hash"], status=status,
                                  started_at="2026-11-28T10:00:00Z", ended_at="2026-11-28T10:01:00Z",
                                  inputs=dict(entry), perf=(PerfRow(address, 123.0, "gflops"),))
    fields.update(kw)
    return Attempt(**fields)


def _plan(lock: Lock, graph: Dag, images: dict[tuple[str, str], ImageRecord] | None = None,
          latest: dict[str, Attempt] | None = None, missing: frozenset[tuple[str, str]] = frozenset(),
          in_registry: dict[str, str] | None = None, live_apply: Holder | None = None, **options: Any) -> Plan:
    placed = {(address, target, ""): r for (address, target), r in (images or {}).items()}  # on the only host
    observed = Observed(serial=3, images=placed, latest=latest or {}, missing_images=missing,
                        in_registry=in_registry or {}, live_apply=live_apply)
    return plan(lock, "sha256:lock", graph, observed, PlanOptions(**options))


def _actions(p: Plan) -> dict[str, tuple[Action, str]]:
    return {c.address: (c.action, c.reason) for c in p.changes}


def test_empty_state_builds_and_runs_everything(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph)
    assert _actions(p) == {IMAGE: (Action.BUILD, "never built"), JOB: (Action.RUN, "never run"),
                           JOB2: (Action.RUN, "never run")}
    assert p.changes[0].address == IMAGE  # dependencies first
    assert p.summary() == "Plan: 1 to build, 2 to run, 0 unchanged."
    assert p.serial == 3 and p.lock_hash == "sha256:lock"


def test_everything_recorded_means_no_changes(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)},
              {JOB: _attempt(lock, JOB), JOB2: _attempt(lock, JOB2)})
    assert not p.has_changes
    assert _actions(p)[JOB] == (Action.NOOP, "SUCCESS 2026-11-28, 123 gflops")
    assert _actions(p)[IMAGE] == (Action.NOOP, "built 2026-11-28")


def test_changed_dockerfile_rebuilds_and_reruns_with_reasons(project_dir: Path) -> None:
    old_lock, _ = _lock_graph(project_dir)
    dockerfile = project_dir / "pkg/docker/dummy.ubuntu.none.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL x=1\n")
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(old_lock)},
              {JOB: _attempt(old_lock, JOB), JOB2: _attempt(old_lock, JOB2)})
    assert _actions(p) == {IMAGE: (Action.REBUILD, "Dockerfile changed"), JOB: (Action.RERUN, "image changed"),
                           JOB2: (Action.RERUN, "image changed")}


def test_an_image_removed_by_hand_is_rebuilt_without_rerunning(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)},
              {JOB: _attempt(lock, JOB), JOB2: _attempt(lock, JOB2)}, missing=frozenset({(IMAGE, "box")}))
    assert _actions(p)[IMAGE] == (Action.REBUILD, "image gone from box (removed outside madengine)")
    assert _actions(p)[JOB][0] is Action.NOOP


def test_failed_jobs_wait_for_rerun_failed(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    failed = _attempt(lock, JOB, Status.FAILURE, message="exit code 2", perf=())
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)}, {JOB: failed, JOB2: _attempt(lock, JOB2)})
    assert _actions(p)[JOB] == (Action.FAILED, "FAILURE 2026-11-28: exit code 2; rerun with --rerun-failed")
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)}, {JOB: failed, JOB2: _attempt(lock, JOB2)},
              rerun_failed=True)
    assert _actions(p)[JOB][0] is Action.RERUN


def test_a_failed_job_rerun_reads_as_its_failed_line(project_dir: Path) -> None:
    """`--rerun-failed` says why it failed as the FAILED line does: exit code once, long messages cut."""
    lock, graph = _lock_graph(project_dir)
    failed = _attempt(lock, JOB, Status.FAILURE, exit_code=2, message="exit code 2 (" + "x" * 500 + ")", perf=())
    latest = {JOB: failed, JOB2: _attempt(lock, JOB2)}
    shown = _actions(_plan(lock, graph, {(IMAGE, "box"): _image(lock)}, latest))[JOB][1]
    rerun = _actions(_plan(lock, graph, {(IMAGE, "box"): _image(lock)}, latest, rerun_failed=True))[JOB]
    assert rerun == (Action.RERUN, shown.replace("; rerun with --rerun-failed", "; --rerun-failed"))
    assert rerun[1].startswith("FAILURE 2026-11-28, exit 2: xxx") and rerun[1].endswith("x…; --rerun-failed")


@pytest.mark.parametrize(("status", "shown"), [
    (Status.FAILURE, "! failed job:dummy@cpu/box#1 (FAILURE 2026-11-28, exit 1; rerun with --rerun-failed)"),
    (Status.TIMEOUT, "! failed job:dummy@cpu/box#1 (TIMEOUT 2026-11-28: timed out after 5s; rerun with "
                     "--rerun-failed)")])
def test_a_failed_job_is_shown_failed_and_counted_never_up_to_date(project_dir: Path, status: Status,
                                                                    shown: str) -> None:
    lock, graph = _lock_graph(project_dir)
    ended: dict[str, Any] = {"exit_code": 1, "message": "exit code 1"} if status is Status.FAILURE \
        else {"message": "timed out after 5s"}
    failed = _attempt(lock, JOB, status, perf=(), **ended)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)}, {JOB: failed, JOB2: _attempt(lock, JOB2)})
    assert not p.has_changes  # apply leaves it failed (a result is a result) ...
    text = render_text(p)
    assert shown in text.splitlines()  # ... but never calls it up to date
    assert "up to date job:dummy@" not in text and "everything is up to date" not in text
    assert "1 failed job(s) stay failed until rerun with --rerun-failed" in text
    assert p.summary() == "Plan: 0 to build, 0 to run, 2 unchanged, 1 failed."


def test_a_job_a_live_apply_is_running_is_shown_running_not_interrupted(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    running = _attempt(lock, JOB, Status.RUNNING, ended_at=None, perf=())
    holder = Holder(pid=4242, host="box1", since="2026-11-28T10:00:00.000Z", command="madengine apply")
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)}, {JOB: running, JOB2: _attempt(lock, JOB2)},
              live_apply=holder)
    assert _actions(p)[JOB] == (Action.WAIT, "apply pid 4242 on box1 since 2026-11-28T10:00:00.000Z")
    assert "* running job:dummy@cpu/box#1 (apply pid 4242 on box1" in render_text(p)
    assert p.summary() == "Plan: 0 to build, 0 to run, 2 unchanged, 1 running." and not p.has_changes


@pytest.mark.parametrize(("status", "reason"), [(Status.INTERRUPTED, "interrupted"),
                                                (Status.RUNNING, "interrupted (its apply was killed)"),
                                                (Status.SKIPPED, "skipped last time")])
def test_unfinished_jobs_run_again(project_dir: Path, status: Status, reason: str) -> None:
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)},
              {JOB: _attempt(lock, JOB, status), JOB2: _attempt(lock, JOB2)})
    assert _actions(p)[JOB] == (Action.RUN, reason)


def test_replace_forces_one_node(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    p = _plan(lock, graph, {(IMAGE, "box"): _image(lock)},
              {JOB: _attempt(lock, JOB), JOB2: _attempt(lock, JOB2)}, replace=frozenset({JOB2}))
    assert _actions(p)[JOB2] == (Action.RERUN, "replaced (--replace)")
    assert _actions(p)[JOB][0] is Action.NOOP and _actions(p)[IMAGE][0] is Action.NOOP


def test_registry_adds_push_nodes(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir, registry="localhost:5000")
    push = "push:dummy.ubuntu.none@cpu"
    assert _actions(_plan(lock, graph))[push] == (Action.PUSH, "not in the registry")
    pushed = _image(lock, digest="sha256:abc")
    p = _plan(lock, graph, {(IMAGE, "box"): pushed}, {JOB: _attempt(lock, JOB), JOB2: _attempt(lock, JOB2)})
    assert _actions(p)[push] == (Action.NOOP, "pushed sha256:abc")
    assert not p.has_changes


def test_an_image_in_the_registry_is_pulled_not_built(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir, registry="localhost:5000")
    push = "push:dummy.ubuntu.none@cpu"
    found = {IMAGE: "sha256:" + "cd" * 32}
    p = _plan(lock, graph, in_registry=found)
    assert _actions(p)[IMAGE] == (Action.PULL, f"never built; in the registry as {found[IMAGE]}")
    assert _actions(p)[push] == (Action.NOOP, f"pushed {found[IMAGE]}")
    assert p.summary() == "Plan: 0 to build, 1 to pull, 2 to run, 1 unchanged."
    gone = _plan(lock, graph, {(IMAGE, "box"): _image(lock)}, missing=frozenset({(IMAGE, "box")}), in_registry=found)
    assert _actions(gone)[IMAGE][0] is Action.PULL
    forced = _plan(lock, graph, in_registry=found, replace=frozenset({IMAGE}))
    assert _actions(forced)[IMAGE] == (Action.REBUILD, "replaced (--replace)")
    assert _actions(forced)[push][0] is Action.PUSH


def test_plan_is_pure(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    images = {(IMAGE, "box"): _image(lock)}
    before = (dict(images), graph.edges, {n: dict(d) for n, d in graph.nodes.items()})
    assert _plan(lock, graph, images) == _plan(lock, graph, images)
    assert (images, graph.edges, graph.nodes) == before


def test_an_image_some_hosts_of_a_target_lack_is_loaded_onto_them_only(project_dir: Path, tmp_path: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    latest = {JOB: _attempt(lock, JOB), JOB2: _attempt(lock, JOB2)}
    observed = Observed(serial=3, images={(IMAGE, "box", "gpu-1"): _image(lock, host="gpu-1")}, latest=latest,
                        lacking={(IMAGE, "box"): ("gpu-2", "gpu-3")}, hosts={"box": ("gpu-1", "gpu-2", "gpu-3")})
    p = plan(lock, "sha256:lock", graph, observed)
    (load,) = [c for c in p.changes if c.action.changes]
    assert (load.action, load.targets, load.hosts) == (Action.LOAD, ("box",), ("box/gpu-2", "box/gpu-3"))
    assert load.hosts_of("box") == ("gpu-2", "gpu-3") and load.hosts_of("other") == ()
    assert render_text(p).splitlines()[0] == \
        f"+ load {IMAGE} → box/gpu-2, box/gpu-3 (built 2026-11-28; not on gpu-2, gpu-3)"
    assert p.summary() == "Plan: 0 to build, 1 to load, 0 to run, 2 unchanged."
    # Saved and read back as it was; a plan saved before hosts existed reads with none.
    saved = tmp_path / "plan.json"
    planfile.save(saved, p, "madfile.yaml")
    assert planfile.load(saved)[0] == p
    data = json.loads(saved.read_text())
    for change in data["changes"]:
        change.pop("hosts", None)
        change["action"] = "noop"
    saved.write_text(json.dumps(data))
    assert all(c.hosts == () for c in planfile.load(saved)[0].changes)


def test_a_one_host_target_names_no_host_and_plans_no_load(project_dir: Path) -> None:
    lock, graph = _lock_graph(project_dir)
    observed = Observed(serial=3, images={(IMAGE, "box", ""): _image(lock)}, latest={}, hosts={"box": ("me",)},
                        missing_images=frozenset({(IMAGE, "box")}))
    (image,) = [c for c in plan(lock, "sha256:lock", graph, observed).changes if c.address == IMAGE]
    assert (image.action, image.hosts) == (Action.REBUILD, ())
    assert "hosts" not in image.to_json() and image.to_json()["kind"] == "image"
