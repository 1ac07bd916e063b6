"""A target none of whose hosts answers when its images are observed (every host down) does not fail
the plan: its images are not observed (planned as the store records them), said in one stderr note,
and the other targets are planned as usual."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from madengine.apply.engine import Applier, ApplyOptions
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec
from madengine.pipeline import make_plan, realization
from madengine.plan.model import Action
from madengine.plan.render import facts_notes
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeBackend
from tests.unit.apply.test_engine import Quiet
from tests.unit.compile.conftest import PACKAGE, write_tree


class Down(FakeBackend):
    """What `SshBackend.observe_images` does when no host answers: the first host's reason is raised."""

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        raise HostUnavailable("gpu-box", "connection refused at 10.0.0.5:22", transient=True)


def test_a_target_whose_hosts_are_all_down_is_not_observed_and_the_others_are_planned(tmp_path: Path) -> None:
    write_tree(tmp_path, {**PACKAGE, "madfile.yaml": "version: 1\npackage: pkg\nmodels: [{select: dummies}]\n"
                                                     "contexts: {cpu: {gpu_vendor: NONE}}\n"
                                                     "targets: {lab: {backend: docker}, box: {backend: docker}}\n"})
    r = realization(tmp_path / "madfile.yaml", locked=False)
    lab, box = FakeBackend(hosts_=[HostInfo("node1", None)]), FakeBackend(hosts_=[HostInfo("gpu-box", None)])
    with StateStore.open(r.state_path) as store:
        both = dataclasses.replace(r, backends={"lab": lab, "box": box})
        plan, _ = make_plan(both, store)
        Applier(plan, r.lock, r.compiled(), store, {"lab": lab, "box": box}, r.workspace,
                ApplyOptions(parallelism=4, retries=0), Quiet()).run()
        lab.images.clear()  # removed by hand on lab: rebuilt
        down = Down(hosts_=box.hosts_, images=box.images)
        plan, observed = make_plan(dataclasses.replace(r, backends={"lab": lab, "box": down}), store)
        changed = {(c.address, c.action) for c in plan.changes if c.action.changes}
        assert changed and all("lab" in c.targets for c in plan.changes if c.action.changes), changed
        assert not [c for c in plan.changes if c.action.changes and "box" in c.targets]  # as recorded
        assert observed.images_unknown == {"box": "connection refused at 10.0.0.5:22"}
        assert facts_notes(observed)[0] == (
            "images of box not observed (connection refused at 10.0.0.5:22): planned as recorded; "
            "its jobs fail at apply if its hosts still do not answer")
        assert Action.REBUILD in {a for _, a in changed}
