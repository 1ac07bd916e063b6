"""The apply scheduler with multi-node jobs (nnodes > 1) on a fake target whose jobs span hosts (as `ssh`):
every node's GPUs are held together for the job's whole run, never shared, jobs of too many nodes are refused
before anything runs."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from madengine.apply.engine import Applier, ApplyOptions
from madengine.backends.base import Cancel, Outcome
from madengine.backends.session import HostInfo
from madengine.backends.specs import JobSpec
from madengine.errors import ConfigError, ExitCode
from madengine.pipeline import Realization, make_plan, realization
from madengine.state.model import Status
from madengine.state.store import StateStore
from tests.unit.apply.fake_backend import FakeHostProcesses
from tests.unit.apply.test_engine import Quiet


class FakeSpanning(FakeHostProcesses):
    """Its jobs span hosts, as the ssh backend's do."""

    spans_hosts: ClassVar[bool] = True


def project(root: Path, models: dict[str, tuple[int, int]]) -> Realization:
    """Host-process jobs named by `models` (name -> (n_gpus, nnodes)) on target `lab`."""
    (root / "run.sh").write_text("true\n")
    listed = ", ".join(f"{{name: {name}, scripts: run.sh, n_gpus: {g}, nnodes: {n}}}"
                       for name, (g, n) in models.items())
    (root / "madfile.yaml").write_text(f"version: 1\nmodels: [{listed}]\ntargets: {{lab: {{backend: local}}}}\n")
    return realization(root / "madfile.yaml", locked=False)


def job(name: str) -> str:
    return f"job:{name}@default/lab#1"


def test_the_nodes_of_multi_node_jobs_hold_their_gpus_together_and_never_share_them(tmp_path: Path) -> None:
    # 3 hosts of 2 GPUs: two jobs of 2 nodes x 2 GPUs cannot run at once (4 whole hosts), singles fill in.
    r = project(tmp_path, {"a": (2, 2), "b": (2, 2), "s1": (1, 1), "s2": (1, 1), "s3": (1, 1)})
    fake = FakeSpanning(hosts_=[HostInfo(n, 2) for n in ("n1", "n2", "n3")])
    lock = threading.Lock()
    used: dict[tuple[str, int], str] = {}  # (host, GPU) -> the job using it now
    clashes: list[str] = []
    nodes: dict[str, list[tuple[str, tuple[int, ...]]]] = {}

    def hold(j: JobSpec, cancel: Cancel) -> Outcome:
        mine = [(j.host or "", j.gpu_ids), *j.peers]
        with lock:
            nodes[j.address] = mine
            for host, ids in mine:
                for g in ids:
                    if (host, g) in used:
                        clashes.append(f"{j.address} and {used[host, g]} on {host} GPU {g}")
                    used[host, g] = j.address
        cancel.wait(0.1)  # long enough for the others to be dispatched beside it
        with lock:
            for host, ids in mine:
                for g in ids:
                    used.pop((host, g), None)
        return Outcome(Status.SUCCESS, exit_code=0)

    for name in ("a", "b", "s1", "s2", "s3"):
        fake.script[job(name)] = hold
    with StateStore.open(r.state_path) as store:
        r = dataclasses.replace(r, backends={"lab": fake})
        plan, _ = make_plan(r, store)
        result = Applier(plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace, ApplyOptions(parallelism=8),
                         Quiet()).run()
        assert result.exit_code is ExitCode.OK, result.statuses
        assert clashes == []
        for name in ("a", "b"):
            hosts = [h for h, _ in nodes[job(name)]]
            assert len(set(hosts)) == 2 and all(len(ids) == 2 for _, ids in nodes[job(name)]), nodes
            recorded = next(a for a in store.attempts() if a.address == job(name))
            assert recorded.host == hosts[0]  # the attempt is recorded on rank 0's host


def test_a_saved_plan_whose_target_lost_hosts_is_refused_before_anything_runs(tmp_path: Path) -> None:
    r = project(tmp_path, {"wide": (1, 3), "one": (1, 1)})
    fake = FakeSpanning(hosts_=[HostInfo(n, 1) for n in ("n1", "n2", "n3")])
    with StateStore.open(r.state_path) as store:
        r = dataclasses.replace(r, backends={"lab": fake})
        plan, _ = make_plan(r, store)  # three hosts: it can run
        fake.hosts_ = fake.hosts_[:2]  # then one host left the target
        applier = Applier(plan, r.lock, r.compiled(), store, {"lab": fake}, r.workspace, ApplyOptions(), Quiet())
        with pytest.raises(ConfigError) as raised:
            applier.run()
        (problem,) = raised.value.diagnostics
        assert problem.message == f"{job('wide')}: needs 3 nodes; target 'lab' has 2 hosts that could take it " \
                                  "(with 1 GPU free)", problem
        assert fake.ran == [] and store.attempts() == []
