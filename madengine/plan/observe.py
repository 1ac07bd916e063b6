"""Observation: what the state store recorded, checked against the world. Read-only I/O.

The images the store says were built are asked for on their target, all at once, per host (one
batched query per host): an image gone from every host (removed by hand) is rebuilt; one that some
hosts of a many-host target lack is loaded onto them. A target none of whose hosts answers is not
observed (its images are planned as the store records them; its jobs fail at apply with the hosts'
reasons): it never fails the plan of the other targets. An image that is not here, with a registry set,
is looked for in the registry: if
another machine built and pushed it, the planner pulls it instead of building it. Jobs are not
re-observed: a recorded result is the result; but a job recorded RUNNING is asked about: if the
workspace lock is held by a live process other than this one, an apply is running it now.

After planning, the plan's changes that run something are checked against their targets
(`runnable`, asking `Backend.observe_runnable`): a context that needs a device the engine's host lacks
(AMD's /dev/kfd) is a problem of the plan, said before anything runs, not an engine error at apply.
The plan decides what runs (with `--replace`, `--rerun-failed`...), so it is asked of the plan itself.

The facts of every host of every target that has jobs (`Backend.observe_facts`, cached per command)
are observed while the rest is: each target in a thread of its own. A host or a target whose facts
cannot be observed is recorded as unknown, with why; it never fails the plan.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from madengine.backends.base import Backend, BatchBackend, is_batch
from madengine.backends.session import HostUnavailable
from madengine.backends.specs import image_spec_of
from madengine.facts.model import HostFacts
from madengine.graph.dag import Dag
from madengine.lock.entries import LockEntries, NodeKind
from madengine.lock.lockfile import Lock
from madengine.plan.model import Plan
from madengine.state.lock import WorkspaceLock
from madengine.state.model import Holder, ImageRecord, Observed, Status
from madengine.state.store import StateStore


def observe(store: StateStore, graph: Dag, lock: Lock, backends: Mapping[str, Backend],
            registry: str | None) -> Observed:
    job_targets = {d["target"] for d in graph.nodes.values() if d["kind"] == "job"}
    with ThreadPoolExecutor(max_workers=max(1, len(job_targets)), thread_name_prefix="facts") as pool:
        pending = _submit(pool, backends, job_targets)
        observed = _observe(store, graph, lock, backends, registry)
        facts, unknown = gather_facts(pending)
    return dataclasses.replace(observed, facts=facts, facts_unknown=unknown)


def _submit(pool: ThreadPoolExecutor, backends: Mapping[str, Backend], targets: Iterable[str]) \
        -> dict[str, Future[Mapping[str, HostFacts | Exception]]]:
    """Each target's facts observed on the pool. Backends are made here, on this thread (they are made
    on first use, which is not thread-safe); one that cannot be made has its error for facts."""
    pending: dict[str, Future[Mapping[str, HostFacts | Exception]]] = {}
    for target in sorted(set(targets)):
        try:
            backend = backends.get(target)
        except Exception as e:  # a backend that is not installed...: said where it matters, not here
            failed: Future[Mapping[str, HostFacts | Exception]] = Future()
            failed.set_exception(e)
            pending[target] = failed
            continue
        pending[target] = pool.submit(_target_facts, backend)
    return pending


def _target_facts(backend: Backend | None) -> Mapping[str, HostFacts | Exception]:
    return dict(backend.observe_facts()) if backend is not None else {}


def gather_facts(pending: Mapping[str, Future[Mapping[str, HostFacts | Exception]]]) \
        -> tuple[dict[tuple[str, str], HostFacts], dict[tuple[str, str], str]]:
    """The facts per (target, host), and why those that could not be observed are unknown: a target
    whose backend failed to answer at all is unknown as a whole (host "")."""
    facts: dict[tuple[str, str], HostFacts] = {}
    unknown: dict[tuple[str, str], str] = {}
    for target, future in pending.items():
        error = future.exception()
        if error is not None and not isinstance(error, Exception):
            raise error  # Ctrl-C
        if error is not None:
            unknown[target, ""] = _one_line(error)
            continue
        for host, found in future.result().items():
            if isinstance(found, HostFacts):
                facts[target, host] = found
            else:
                unknown[target, host] = _one_line(found)
    return facts, unknown


def observe_facts(backends: Mapping[str, Backend], targets: Iterable[str]) \
        -> tuple[dict[tuple[str, str], HostFacts], dict[tuple[str, str], str]]:
    """The facts of these targets' hosts, targets in parallel (see `gather_facts`)."""
    wanted = set(targets)
    if not wanted:
        return {}, {}
    with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="facts") as pool:
        pending = _submit(pool, backends, wanted)
    return gather_facts(pending)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(getattr(error, "reason", None) or error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def _observe(store: StateStore, graph: Dag, lock: Lock, backends: Mapping[str, Backend],
             registry: str | None) -> Observed:
    base = store.observed()  # serial, images and latest attempts from one snapshot
    entries = LockEntries.of(lock)
    # The images recorded as built from the lock's inputs, per target: asked of each target at once.
    recorded: dict[str, dict[str, list[ImageRecord]]] = {}
    for (address, target, _), record in base.images.items():
        if address in graph and record.node_hash == entries.images[address].hash:
            recorded.setdefault(target, {}).setdefault(address, []).append(record)
    missing: set[tuple[str, str]] = set()
    lacking: dict[tuple[str, str], tuple[str, ...]] = {}
    hosts: dict[str, tuple[str, ...]] = {}
    unobserved: dict[str, str] = {}
    for target, by_address in recorded.items():
        backend = backends.get(target)
        if backend is None or not backend.builds_images:
            continue
        try:
            seen = backend.observe_images([image_spec_of(a, entries.images[a], registry) for a in by_address])
        except (HostUnavailable, OSError) as e:  # no host answered: not observed, never a failed plan
            unobserved[target] = _one_line(e)
            continue
        hosts[target] = tuple(seen)
        for address, records in by_address.items():
            have = [host for host, tags in seen.items() if _holds(tags, entries.images[address].tag, records)]
            if not have:
                missing.add((address, target))  # gone from every host: rebuilt
            elif len(have) < len(seen):
                lacking[address, target] = tuple(h for h in seen if h not in have)
    in_registry = {}
    for address, data in graph.nodes.items():
        if not registry or data["kind"] != "image":
            continue
        absent = [t for t in data["targets"]
                  if (address, t) in missing or address not in recorded.get(t, {})]
        backend = backends.get(absent[0]) if absent else None  # asked only about images not here
        if backend is not None and backend.builds_images:
            digest = backend.observe_registry(image_spec_of(address, entries.images[address], registry))
            if digest:
                in_registry[address] = digest
    live = _live_apply(store, base)
    return dataclasses.replace(base, missing_images=frozenset(missing), in_registry=in_registry,
                               live_apply=live, lacking=lacking, hosts=hosts, images_unknown=unobserved,
                               queued={} if live is not None else _queued(base, backends))


def _holds(tags: Mapping[str, str], tag: str, records: list[ImageRecord]) -> bool:
    """Does a host hold the recorded build: its tag names the image id recorded (any id, when a record
    has none). A tag moved to another image is not this build: that is not what runs."""
    image_id = tags.get(tag)
    if image_id is None:
        return False
    return any(r.image_id is None or r.image_id == image_id for r in records)


def _queued(base: Observed, backends: Mapping[str, Backend]) -> dict[str, tuple[str, Status | None]]:
    """The jobs a killed apply left RUNNING on a batch target, as its system says now: one query per target,
    and none at all when no such job is recorded (a no-op plan asks no queue anything). A queue that
    cannot be asked is said so, and its jobs are awaited rather than submitted twice."""
    by_target: dict[str, dict[str, str]] = {}  # target -> handle -> address
    for address, attempt in base.latest.items():
        target = attempt.inputs.get("target")
        backend = backends.get(target) if isinstance(target, str) else None
        if attempt.status is Status.RUNNING and attempt.handle and backend is not None and is_batch(backend):
            by_target.setdefault(str(target), {})[attempt.handle] = address
    out: dict[str, tuple[str, Status | None]] = {}
    for target, addresses in by_target.items():
        backend = backends[target]
        if not is_batch(backend):
            continue
        try:
            states = backend.observe_queue(sorted(addresses))
        except (HostUnavailable, OSError) as e:
            for handle, address in addresses.items():
                out[address] = (f"{backend.system} {handle}: its queue cannot be asked now ({_one_line(e)})", None)
            continue
        for handle, address in addresses.items():
            state = states.get(handle)
            out[address] = (state.describe(backend.system), state.status) if state is not None else \
                (f"{backend.system} {handle} not in its answer", None)
    return out


def _live_apply(store: StateStore, base: Observed) -> Holder | None:
    """The holder of the workspace lock, if it is a live apply and not this process; asked only when
    some job is recorded RUNNING. A local holder's liveness is asked of its pid, not of the lock, so a
    plan never makes a concurrent apply's `acquire` fail."""
    if not any(a.status is Status.RUNNING for a in base.latest.values()):
        return None
    holder = WorkspaceLock.for_store(store.location).live_holder()
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
    jobs = LockEntries.of(lock).jobs
    for change in the_plan.changes:
        if not change.action.changes:
            continue
        if change.kind == NodeKind.IMAGE:
            for target in change.targets:
                ask(target, "NONE", 0)
        elif change.kind == NodeKind.JOB:
            entry = jobs[change.address]
            backend = backends.get(entry.target)
            if entry.nnodes > 1 and backend is not None:
                nodes = _batch_nodes_problem(backend, entry.target, entry.nnodes) if is_batch(backend) else \
                    _nodes_problem(backend, entry.target, entry.nnodes, entry.n_gpus, change.hosts_of(entry.target))
                if nodes is not None:
                    out[change.address] = nodes
                    continue
            problem = ask(entry.target, str(entry.env.get("MAD_GPU_VENDOR", "NONE")), entry.n_gpus)
            if problem is not None:
                out[change.address] = problem
    return out


def _batch_nodes_problem(backend: BatchBackend, target: str, nnodes: int) -> tuple[str, str] | None:
    most = backend.max_nodes()
    if most is None or nnodes <= most:
        return None
    return (f"needs {nnodes} nodes; target {target!r} has {most} (max_nodes)",
            "lower the model's nnodes, or raise the target's max_nodes if the cluster has more")


def _nodes_problem(backend: Backend, target: str, nnodes: int, n_gpus: int,
                   allowed: tuple[str, ...]) -> tuple[str, str] | None:
    """Why a job of `nnodes` > 1 never runs on this (not batch) target, or None: a target that runs a
    job on one host refuses it; one whose jobs span hosts (`spans_hosts`: ssh) needs that many hosts
    that could take it (what apply's scheduler will look for, all at once)."""
    from madengine.backends.slots import NODES_HINT, Slots, nodes_problem

    if not getattr(backend, "spans_hosts", False):
        article = "an" if backend.name[:1] in ("a", "e", "i", "o", "u") else "a"
        return (f"needs {nnodes} nodes, and {article} {backend.name} target runs a job on one host",
                "run multi-node models (nnodes > 1) on an ssh, slurm or kubernetes target, or set the model's "
                "nnodes to 1")
    hosts = Slots({target: backend.hosts()}).hosts_ever(target, n_gpus, allowed)
    if hosts >= nnodes:
        return None
    among = f" of {', '.join(allowed)} (the hosts skip_gpu_arch leaves it)" if allowed else ""
    return nodes_problem(nnodes, n_gpus, target, hosts, among), NODES_HINT
