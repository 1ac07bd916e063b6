"""Jobs a target cannot run are refused at plan, decided on the plan's own changes: whatever makes a job
run (never run, changed, `--replace`, `--rerun-failed`) gets it checked, and a no-op plan asks no backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from madengine.backends.specs import ImageSpec
from madengine.errors import ConfigError
from madengine.pipeline import make_plan
from madengine.plan.model import Action
from madengine.state.model import Status
from madengine.state.store import StateStore
from tests.unit.plan.test_planner import IMAGE, JOB, JOB2, _image, _lock_graph, project_dir  # noqa: F401

WHY = ("target box cannot run AMD containers: /dev/kfd does not exist on this host", "run it elsewhere")


class DevicelessTarget:
    """A target whose host lacks every device: it answers `observe_runnable` with WHY, and records each ask."""

    name = "deviceless"
    builds_images = True

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        return {"box": {image.tag: "sha256:img" for image in images}}  # every image, as `_image` records it

    def observe_registry(self, image: ImageSpec) -> str | None:
        return None

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        self.asked.append((gpu_vendor, n_gpus))
        return WHY


def _realization(root: Path) -> Any:
    lock, graph = _lock_graph(root)
    return SimpleNamespace(lock=lock, lock_hash="sha256:lock", graph=graph, registry=None,
                           backends={"box": DevicelessTarget()}, rerun_on=dict, skip_gpu_arch=dict)


def _record(store: StateStore, r: Any, statuses: dict[str, Status]) -> None:
    apply_id = store.begin_apply(r.lock_hash)
    store.record_image(_image(r.lock), apply_id)
    for address, status in statuses.items():
        entry = r.lock["jobs"][address]
        attempt = store.start_attempt(apply_id, address, entry["hash"], dict(entry), "box", "log")
        store.finish_attempt(attempt, status, exit_code=0 if status is Status.SUCCESS else 1,
                             message="" if status is Status.SUCCESS else "exit code 1")
    store.finish_apply(apply_id, "SUCCESS")


def test_a_job_to_run_on_a_target_that_cannot_is_refused_naming_each(project_dir: Path) -> None:  # noqa: F811
    r = _realization(project_dir)
    with StateStore.open(project_dir / "state.db") as store, pytest.raises(ConfigError) as refused:
        make_plan(r, store)
    [diagnostic] = refused.value.diagnostics  # one line per reason, naming the jobs
    assert diagnostic.message == f"{JOB2}, {JOB}: {WHY[0]}" and diagnostic.hint == WHY[1]


@pytest.mark.parametrize("how", ["replace", "rerun_failed"])
def test_a_done_job_rerun_by_request_is_refused_too(project_dir: Path, how: str) -> None:  # noqa: F811
    r = _realization(project_dir)
    with StateStore.open(project_dir / "state.db") as store:
        _record(store, r, {JOB: Status.SUCCESS if how == "replace" else Status.FAILURE, JOB2: Status.SUCCESS})
        the_plan, _ = make_plan(r, store)  # nothing runs: nothing is asked, nothing refused
        assert {c.action for c in the_plan.changes} <= {Action.NOOP, Action.FAILED}
        assert r.backends["box"].asked == []
        with pytest.raises(ConfigError) as refused:
            make_plan(r, store, replace=[JOB]) if how == "replace" else make_plan(r, store, rerun_failed=True)
    [diagnostic] = refused.value.diagnostics
    assert diagnostic.message == f"{JOB}: {WHY[0]}"
