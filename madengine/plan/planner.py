"""The planner: (lock, graph, observed state) -> Plan. A pure function, like DVC's `plan_repro`.

Each node gets one action and the reason for it. A node's hash says whether its inputs changed; the
inputs recorded with the last realization say which ones, for the reason (`~ rebuild (Dockerfile
changed)`). Drift found by observation (an image deleted by hand) rebuilds without rerunning: the
jobs' results are still valid for the same content.

Host facts (`madengine.facts`), observed per (target, host):
- A job whose last success ran under facts that differ now on the host it ran on, in the facts its
  `rerun_on` names (the context's, else the target's, else `DEFAULT_RERUN_ON`), reruns:
  `~ rerun job:… (gpu-1: rocm 6.2.0 → 6.3.1)`. A fact unknown then or now is no change
  (`facts.changed`). When the host is no longer one of its target's, or its facts cannot be observed
  now, the result stands (nothing says it is wrong, and a host that is down must not rerun its jobs
  elsewhere by surprise) and the reason says the facts were not compared and why. A success recorded
  without facts (before they were recorded) is not compared either.
- A model's `skip_gpu_arch` is matched against each host's architecture (`facts.skip_reason`): a job
  every host of whose target is excluded is planned `- skip (gfx908 in skip_gpu_arch)` instead of run
  (once recorded so, `- skipped`, which changes nothing); excluded from some hosts only, it is placed
  on the others (`Change.hosts`). A host whose architecture is unknown is not excluded. An image
  only skipped jobs need is not built (`- skipped`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from madengine.errors import ConfigError, Diagnostic
from madengine.facts.compare import DEFAULT_RERUN_ON, change_note, changed, skip_reason
from madengine.facts.model import HostFacts
from madengine.graph.build import topological_order
from madengine.graph.dag import Dag
from madengine.lock.entries import ImageEntry, JobEntry, LockEntries, NodeKind
from madengine.lock.lockfile import Lock
from madengine.plan.model import Action, Change, Plan
from madengine.state.model import Attempt, ImageRecord, Observed, Status

# Lock-entry keys -> how a change of them reads in a reason.
IMAGE_INPUTS = {"dockerfile": "Dockerfile", "context": "build context", "build_args": "build args",
                "base": "base image"}
JOB_INPUTS = {"image_hash": "image", "script": "script", "args": "args", "params": "params", "env": "environment",
              "context_sha256": "context", "target_sha256": "target", "n_gpus": "n_gpus", "timeout": "timeout",
              "multiple_results": "multiple_results", "data": "data", "model": "model"}


REPLACED = "replaced (--replace)"
_MAX_WHY = 160  # characters of a failure's message in a plan line


@dataclass(frozen=True)
class PlanOptions:
    replace: frozenset[str] = frozenset()  # addresses to redo whatever their state
    rerun_failed: bool = False
    replace_reason: str = REPLACED  # why they are redone, as the command that asked says it
    # (context, target) -> the facts whose change reruns their jobs (`madfile.model.rerun_on`); a pair
    # not here, or None, is DEFAULT_RERUN_ON
    rerun_on: Mapping[tuple[str, str], tuple[str, ...] | None] = field(default_factory=dict)
    # model name -> its models.json `skip_gpu_arch` (not in the lock: where a job must not run is not
    # an input of it); models not here have none
    skip_gpu_arch: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def plan(lock: Lock, lock_hash: str, graph: Dag, observed: Observed,
         options: PlanOptions = PlanOptions()) -> Plan:
    changes = []
    entries = LockEntries.of(lock)
    placed = _placements(observed)
    hosts = _fact_hosts(observed)
    for address in topological_order(graph):
        kind = graph.nodes[address]["kind"]
        deps = tuple(sorted(graph.predecessors(address)))
        if kind == NodeKind.IMAGE:
            changes.append(_image_change(address, entries.images[address], graph.nodes[address]["targets"],
                                         observed, placed, options))
        elif kind == NodeKind.PUSH:
            image = graph.nodes[address]["image"]
            changes.append(_push_change(address, image, entries.images[image], graph.nodes[image]["targets"],
                                        observed, options, deps))
        else:
            changes.append(_job_change(address, entries.jobs[address], observed, options, deps, hosts))
    if any(c.action in (Action.SKIP, Action.SKIPPED) for c in changes):
        changes = _skip_unneeded_images(changes, graph)
    return Plan(lock_hash=lock_hash, serial=observed.serial, changes=tuple(changes),
                options={"replace": sorted(options.replace), "rerun_failed": options.rerun_failed})


def refuse_what_cannot_run(cannot_run: Mapping[str, tuple[str, str]]) -> None:
    """Jobs of a plan that their target cannot run (an AMD context where the engine's host has no
    /dev/kfd; `observe.runnable` finds them) are refused, with why and what to do, rather than failing
    at apply as an engine error. One line per reason."""
    blocked: dict[tuple[str, str], list[str]] = {}
    for address, problem in cannot_run.items():
        blocked.setdefault(problem, []).append(address)
    if not blocked:
        return
    problems = []
    for (why, hint), addresses in blocked.items():
        addresses.sort()
        shown = ", ".join(addresses[:3]) + (f" (+{len(addresses) - 3} more)" if len(addresses) > 3 else "")
        problems.append(Diagnostic(None, None, None, f"{shown}: {why}", hint=hint))
    raise ConfigError.many(problems)


def _placements(observed: Observed) -> dict[tuple[str, str], dict[str, ImageRecord]]:
    """The recorded images by (address, target), then by host ('' for a target's only host)."""
    out: dict[tuple[str, str], dict[str, ImageRecord]] = {}
    for (address, target, host), record in observed.images.items():
        out.setdefault((address, target), {})[host] = record
    return out


def _latest(records: Mapping[str, ImageRecord] | None) -> ImageRecord | None:
    """The latest record of an image on a target, on whichever host."""
    if not records:
        return None
    return max(records.values(), key=lambda r: r.built_at)


def _image_change(address: str, entry: ImageEntry, targets: tuple[str, ...], observed: Observed,
                  placed: Mapping[tuple[str, str], Mapping[str, ImageRecord]], options: PlanOptions) -> Change:
    node_hash = entry.hash
    todo: list[tuple[str, Action, str]] = []
    loads: list[str] = []  # "target/host" placements lacking an image built for their target
    built_at = ""
    for target in targets:
        records = placed.get((address, target))
        built = [r for r in (records or {}).values() if r.node_hash == node_hash]
        record = max(built, key=lambda r: r.built_at) if built else _latest(records)
        if address in options.replace:
            todo.append((target, Action.REBUILD, options.replace_reason))
        elif record is None:
            todo.append((target, Action.BUILD, "never built" if len(targets) == 1 else f"never built on {target}"))
        elif record.node_hash != node_hash:
            todo.append((target, Action.REBUILD, _why(record.inputs, entry.to_json(), IMAGE_INPUTS)))
        elif (address, target) in observed.missing_images:
            todo.append((target, Action.REBUILD, f"image gone from {target} (removed outside madengine)"))
        else:
            built_at = built_at or record.built_at
            loads += [f"{target}/{host}" for host in observed.lacking.get((address, target), ())]
    if not todo and loads:
        return Change(address, NodeKind.IMAGE, Action.LOAD, f"built {_day(built_at)}; not on "
                      f"{', '.join(h.split('/', 1)[1] for h in loads)}", node_hash,
                      tuple(dict.fromkeys(h.split("/", 1)[0] for h in loads)), hosts=tuple(loads))
    if not todo:
        return Change(address, NodeKind.IMAGE, Action.NOOP, f"built {_day(built_at)}", node_hash, targets)
    action = Action.REBUILD if any(a is Action.REBUILD for _, a, _ in todo) else Action.BUILD
    reasons = list(dict.fromkeys(r for _, _, r in todo))
    digest = observed.in_registry.get(address)
    if digest and address not in options.replace:  # built elsewhere from the same inputs: fetch it
        action = Action.PULL
        reasons.append(f"in the registry as {digest}")
    # Hosts are named for targets of many hosts only; the loads of other targets wait for the next plan.
    hosts = tuple(f"{t}/{h}" for t, _, _ in todo for h in observed.hosts.get(t, ()) if len(observed.hosts[t]) > 1)
    return Change(address, NodeKind.IMAGE, action, "; ".join(reasons), node_hash, tuple(t for t, _, _ in todo),
                  hosts=hosts)


def _push_change(address: str, image: str, entry: ImageEntry, targets: tuple[str, ...], observed: Observed,
                 options: PlanOptions, deps: tuple[str, ...]) -> Change:
    """A push is done from where the image was built: its first target's engine."""
    node_hash = entry.hash
    pushed = [r.digest for (a, _, _), r in observed.images.items() if a == image and r.node_hash == node_hash
              and r.digest]
    if image in observed.in_registry:
        pushed.append(observed.in_registry[image])
    if pushed and address not in options.replace and image not in options.replace:
        return Change(address, NodeKind.PUSH, Action.NOOP, f"pushed {pushed[0]}", node_hash, targets[:1], deps)
    return Change(address, NodeKind.PUSH, Action.PUSH, "not in the registry" if not pushed else options.replace_reason,
                  node_hash, targets[:1], deps)


def _job_change(address: str, entry: JobEntry, observed: Observed, options: PlanOptions,
                deps: tuple[str, ...], hosts: Mapping[str, tuple[str, ...]]) -> Change:
    """The job's change from its record, then narrowed by `skip_gpu_arch` where it would run."""
    planned = _job_record_change(address, entry, observed, options, deps, hosts)
    skip_gpu_arch = options.skip_gpu_arch.get(entry.model)
    if not skip_gpu_arch or planned.action in (Action.NOOP, Action.WAIT):
        return planned
    skipped: dict[str, str] = {}  # host -> why the model must not run there
    for host in hosts.get(entry.target, ()):
        facts = observed.facts.get((entry.target, host))
        why = skip_reason(facts, skip_gpu_arch) if facts is not None else None
        if why is not None:
            skipped[host] = why
    if not skipped:
        return planned
    every = hosts[entry.target]
    if len(skipped) == len(every):
        reason = ", ".join(dict.fromkeys(skipped.values()))
        last = observed.latest.get(planned.address)
        done = (last is not None and last.status is Status.SKIPPED and last.node_hash == entry.hash
                and last.message == reason and planned.address not in options.replace)
        return replace(planned, action=Action.SKIPPED if done else Action.SKIP, reason=reason)
    if planned.action is Action.FAILED:
        return planned
    shown = "; ".join(f"not on {', '.join(h for h, w in skipped.items() if w == why)} ({why})"
                      for why in dict.fromkeys(skipped.values()))
    return replace(planned, reason=f"{planned.reason}; {shown}",
                   hosts=tuple(f"{entry.target}/{h}" for h in every if h not in skipped))


def _fact_hosts(observed: Observed) -> dict[str, tuple[str, ...]]:
    """Each observed target's hosts, as its backend named them when asked for facts."""
    out: dict[str, list[str]] = {}
    for target, host in [*observed.facts, *observed.facts_unknown]:
        out.setdefault(target, []).append(host)
    return {t: tuple(sorted(set(h))) for t, h in out.items()}


def _facts_moved(entry: JobEntry, last: Attempt, observed: Observed, options: PlanOptions,
                 hosts: Mapping[str, tuple[str, ...]]) -> tuple[str | None, str]:
    """(why the job's last success must be rerun, a note for its reason when the facts it ran under
    could not be compared with the host's now)."""
    keys = options.rerun_on.get((entry.context, entry.target))
    keys = DEFAULT_RERUN_ON if keys is None else keys
    if not keys or last.facts is None or entry.target not in hosts:
        return None, ""
    host = last.host or ""
    where = f"{entry.target}/{host}" if host else entry.target
    unknown = observed.facts_unknown.get((entry.target, host), observed.facts_unknown.get((entry.target, "")))
    if unknown is not None:
        return None, f"facts of {where} not compared: unknown now ({unknown})"
    now = observed.facts.get((entry.target, host))
    if now is None:
        return None, f"facts not compared: {host or 'its host'} is no longer a host of {entry.target}"
    if last.facts == _as_dict(now):  # the common case, answered without reading the record
        return None, ""
    try:
        before = HostFacts.from_dict(last.facts)
    except ValueError:  # a record this version cannot read is no evidence of a change
        return None, ""
    moved = changed(before, now, keys)
    return (change_note(host, moved) if moved else None), ""


@functools.lru_cache(maxsize=256)
def _as_dict(facts: HostFacts) -> dict[str, Any]:
    """A host's facts as attempts record them, made once per host (not once per job of a no-op plan).
    Read only."""
    return facts.to_dict()


def _job_record_change(address: str, entry: JobEntry, observed: Observed, options: PlanOptions,
                       deps: tuple[str, ...], hosts: Mapping[str, tuple[str, ...]]) -> Change:
    node_hash = entry.hash
    target = (entry.target,)
    last = observed.latest.get(address)

    def change(action: Action, reason: str) -> Change:
        return Change(address, NodeKind.JOB, action, reason, node_hash, target, deps)

    if last is None:
        return change(Action.RUN, "never run")
    if address in options.replace:
        return change(Action.RERUN, options.replace_reason)
    if last.node_hash != node_hash:
        return change(Action.RERUN, _why(last.inputs, entry.to_json(), JOB_INPUTS))
    if last.status is Status.SUCCESS:
        moved, note = _facts_moved(entry, last, observed, options, hosts)
        if moved is not None:
            return change(Action.RERUN, moved)
        return change(Action.NOOP, describe_result(last) + (f"; {note}" if note else ""))
    if last.status.failed:
        if options.rerun_failed:
            return change(Action.RERUN, f"{describe_failure(last)}; --rerun-failed")
        # Not rerun by default (a result is a result, as cargo and terraform keep one), but never
        # shown as up to date: the plan says it failed and how to run it again.
        return change(Action.FAILED, f"{describe_failure(last)}; rerun with --rerun-failed")
    if last.status is Status.RUNNING and observed.live_apply is not None:
        holder = observed.live_apply  # `madengine run` and `build` apply too: named as the user typed them
        verb = holder.command.removeprefix("madengine ").split(" ", 1)[0] or "apply"
        return change(Action.WAIT, f"{verb} pid {holder.pid} on {holder.host} since {holder.since}")
    queued = observed.queued.get(address) if last.status is Status.RUNNING else None
    if queued is not None:  # its apply was killed; the batch system still has it
        said, status = queued
        if status in (None, Status.SUCCESS):
            return change(Action.AWAIT, said + ("; its result is collected" if status else ""))
        return change(Action.RUN, f"{said}, while its apply was gone")
    # RUNNING (its apply was killed), INTERRUPTED or SKIPPED: it never finished, so it runs.
    return change(Action.RUN, {Status.SKIPPED: "skipped last time", Status.INTERRUPTED: "interrupted",
                               Status.RUNNING: "interrupted (its apply was killed)"}[last.status])


def _skip_unneeded_images(changes: list[Change], graph: Dag) -> list[Change]:
    """An image (and its push) that only skipped jobs need is not built or fetched: SKIPPED, with why.
    Planned again, it is built as soon as one of its jobs can run somewhere."""
    by_address = {c.address: c for c in changes}
    skipped = {"job": {a for a, c in by_address.items() if c.action in (Action.SKIP, Action.SKIPPED)}}
    out = []
    for c in changes:
        if c.kind == NodeKind.IMAGE and c.action.changes:
            jobs = [s for s in graph.successors(c.address) if graph.nodes[s]["kind"] == NodeKind.JOB]
            if jobs and all(j in skipped["job"] for j in jobs):
                why = ", ".join(dict.fromkeys(by_address[j].reason for j in jobs))
                c = replace(c, action=Action.SKIPPED, reason=f"only skipped jobs use it ({why})", hosts=())
                skipped.setdefault("image", set()).add(c.address)
        elif c.kind == NodeKind.PUSH and c.action.changes and skipped.get("image", set()) & set(c.depends_on):
            c = replace(c, action=Action.SKIPPED, reason="its image is not built: only skipped jobs use it")
        out.append(c)
    return out


def describe_result(attempt: Attempt) -> str:
    """`SUCCESS 2026-11-28, 123 gflops` or `FAILURE 2026-11-28: exit code 2`."""
    text = f"{attempt.status.value} {_day(attempt.ended_at or attempt.started_at)}"
    if attempt.status is Status.SUCCESS and attempt.perf:
        first = attempt.perf[0]
        more = f" (+{len(attempt.perf) - 1} more)" if len(attempt.perf) > 1 else ""
        return f"{text}, {_number(first.performance)} {first.metric}{more}"
    return f"{text}: {attempt.message}" if attempt.message else text


def describe_failure(attempt: Attempt) -> str:
    """`FAILURE 2026-11-28, exit 1` or `TIMEOUT 2026-11-28: timed out after 60s`: what ended it."""
    text = f"{attempt.status.value} {_day(attempt.ended_at or attempt.started_at)}"
    message = attempt.message
    if attempt.exit_code is not None:
        text += f", exit {attempt.exit_code}"
        if message.startswith(f"exit code {attempt.exit_code}"):  # said already: keep what it adds
            message = message[len(f"exit code {attempt.exit_code}"):].strip(" :;")
            if message.startswith("(") and message.endswith(")"):
                message = message[1:-1]
    if len(message) > _MAX_WHY:  # the whole of it is in `madengine state show`
        message = message[:_MAX_WHY - 1] + "…"
    return f"{text}: {message}" if message else text


def _why(before: Mapping[str, Any], after: Mapping[str, Any], names: Mapping[str, str]) -> str:
    changed = [label for key, label in names.items() if before.get(key) != after.get(key)]
    if not changed:
        return "inputs changed"
    if len(changed) > 3:
        changed = [*changed[:3], "more"]
    return ", ".join(changed) + " changed"


def _day(timestamp: str) -> str:
    return timestamp[:10] if timestamp else "earlier"


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"

