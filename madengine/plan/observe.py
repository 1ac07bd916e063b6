"""Observation: what the state store recorded, checked against the world. Read-only I/O.

An image the store says was built is asked for on its target; if it is gone (removed by hand), the
planner rebuilds it. An image that is not here, with a registry set, is looked for in the registry: if
another machine built and pushed it, the planner pulls it instead of building it. Jobs are not
re-observed: a recorded result is the result; but a job recorded RUNNING is asked about: if the
workspace lock is held by a live process other than this one, an apply is running it now.

After planning, the plan's changes that run something are checked against their targets
(`runnable`, asking `Backend.observe_runnable`): a context that needs a device the engine's host lacks
(AMD's /dev/kfd) is a problem of the plan, said before anything runs, not an engine error at apply.
The plan decides what runs (with `--replace`, `--rerun-failed`...), so it is asked of the plan itself.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from madengine.apply.specs import image_spec
from madengine.backends.base import Backend
from madengine.graph.dag import Dag
from madengine.lock.lockfile import Lock
from madengine.plan.model import Plan
from madengine.state.lock import WorkspaceLock
from madengine.state.model import Holder, ImageRecord, Observed, Status
from madengine.state.store import StateStore


def observe(store: StateStore, graph: Dag, lock: Lock, backends: Mapping[str, Backend],
            registry: str | None) -> Observed:
    base = store.observed()  # serial, images and latest attempts from one snapshot
    images = base.images
    missing = set()
    for (address, target), record in images.items():
        if address not in graph or record.node_hash != lock["images"][address]["hash"]:
            continue  # not planned, or rebuilt anyway: nothing to ask
        backend = backends.get(target)
        if backend is not None and backend.builds_images and \
                not backend.observe_image(image_spec(address, lock, registry), record.image_id):
            missing.add((address, target))
    in_registry = {}
    for address, data in graph.nodes.items():
        if not registry or data["kind"] != "image":
            continue
        node_hash = lock["images"][address]["hash"]
        absent = [t for t in data["targets"]
                  if (address, t) in missing or not _built(images.get((address, t)), node_hash)]
        backend = backends.get(absent[0]) if absent else None  # asked only about images not here
        if backend is not None and backend.builds_images:
            digest = backend.observe_registry(image_spec(address, lock, registry))
            if digest:
                in_registry[address] = digest
    return dataclasses.replace(base, missing_images=frozenset(missing), in_registry=in_registry,
                               live_apply=_live_apply(store, base))


def _live_apply(store: StateStore, base: Observed) -> Holder | None:
    """The holder of the workspace lock, if it is a live apply and not this process; asked only when
    some job is recorded RUNNING. A local holder's liveness is asked of its pid, not of the lock, so a
    plan never makes a concurrent apply's `acquire` fail."""
    if not any(a.status is Status.RUNNING for a in base.latest.values()):
        return None
    holder = WorkspaceLock.for_store(store.path).live_holder()
    if holder is None or holder.pid == os.getpid() or holder.kind != "apply":
        return None  # no one, this very apply, or `state forget` (which runs nothing)
    return holder


def runnable(the_plan: Plan, lock: Lock, backends: Mapping[str, Backend]) -> dict[str, tuple[str, str]]:
    """Of the plan's changes that run something, the jobs their target cannot take now: address ->
    (why, what to do). Asked once per (target, GPU vendor, GPUs or not), and of each target an image is
    built or pulled on: a target whose engine is down is named here (the backend raises), not at apply.
    A plan without changes asks nothing."""
    answers: dict[tuple[str, str, bool], tuple[str, str] | None] = {}

    def ask(target: str, vendor: str, n_gpus: int) -> tuple[str, str] | None:
        backend = backends.get(target)
        key = (target, vendor, n_gpus != 0)
        if backend is None:
            return None
        if key not in answers:
            answers[key] = backend.observe_runnable(vendor, n_gpus)
        return answers[key]

    out = {}
    for change in the_plan.changes:
        if not change.action.changes:
            continue
        if change.kind == "image":
            for target in change.targets:
                ask(target, "NONE", 0)
        elif change.kind == "job":
            entry = lock["jobs"][change.address]
            problem = ask(entry["target"], str(entry["env"].get("MAD_GPU_VENDOR", "NONE")), entry["n_gpus"])
            if problem is not None:
                out[change.address] = problem
    return out


def _built(record: ImageRecord | None, node_hash: str) -> bool:
    return record is not None and record.node_hash == node_hash
