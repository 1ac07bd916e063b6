"""A plan is plain data: one change per node, with an action and the reason for it (DESIGN §5).

Rendered by `plan/render.py`, saved and loaded by `plan/planfile.py`, executed by `apply/`.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from madengine.lock.entries import NodeKind


class Action(str, enum.Enum):
    BUILD = "build"
    REBUILD = "rebuild"
    PULL = "pull"  # an image another machine built and pushed: fetched instead of built
    LOAD = "load"  # an image built for this target that some of its hosts lack: delivered to them
    PUSH = "push"
    RUN = "run"
    RERUN = "rerun"
    NOOP = "noop"
    # Nothing is done to these either, but they are not "up to date": a job whose last run failed
    # (rerun with --rerun-failed), and one that a live apply is running now.
    FAILED = "failed"
    WAIT = "wait"
    # A job a killed apply left in a batch system's queue (SLURM, Kubernetes), still queued or running
    # there, or finished with a result: apply waits for it and collects it instead of submitting it again.
    AWAIT = "await"
    # A job that must not run where its target's hosts are (models.json's `skip_gpu_arch` against their
    # observed GPU architecture): apply records it SKIPPED with the reason and runs nothing. Once so
    # recorded it is SKIPPED here, which changes nothing (a plan of only those is up to date); an
    # image only such jobs need is SKIPPED too (not built).
    SKIP = "skip"
    SKIPPED = "skipped"

    @property
    def symbol(self) -> str:
        return {"build": "+", "pull": "+", "load": "+", "push": "+", "run": "+", "rebuild": "~", "rerun": "~",
                "noop": "=", "failed": "!", "wait": "*", "await": "~", "skip": "-", "skipped": "-"}[self.value]

    @property
    def changes(self) -> bool:
        return self not in (Action.NOOP, Action.FAILED, Action.WAIT, Action.SKIPPED)


@dataclass(frozen=True)
class Change:
    """What apply will do to one node, and why. `targets` are where (images may serve several);
    `hosts` the "target/host" placements an image change acts on, named only for targets of more
    than one host (a one-host target's image is simply on that target); for a job, the hosts it may
    run on when `skip_gpu_arch` excludes the others (empty: any host of its target)."""

    address: str
    kind: NodeKind
    action: Action
    reason: str  # "Dockerfile changed", "never run", "SUCCESS 2026-11-28, 123 gflops", ...
    node_hash: str
    targets: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {"address": self.address, "kind": self.kind.value, "action": self.action.value,
               "reason": self.reason, "hash": self.node_hash, "targets": list(self.targets),
               "depends_on": list(self.depends_on)}
        if self.hosts:  # absent for one-host targets: their saved plans read as before
            out["hosts"] = list(self.hosts)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(address=data["address"], kind=NodeKind(data["kind"]), action=Action(data["action"]),
                   reason=data["reason"], node_hash=data["hash"], targets=tuple(data["targets"]),
                   depends_on=tuple(data.get("depends_on", ())), hosts=tuple(data.get("hosts", ())))

    def hosts_of(self, target: str) -> tuple[str, ...]:
        """The hosts of `target` this change acts on (empty: the target as a whole)."""
        prefix = target + "/"
        return tuple(h[len(prefix):] for h in self.hosts if h.startswith(prefix))


# How a change is counted in a plan's summary (any other action: "unchanged").
_COUNTED_AS = {Action.BUILD: "build", Action.REBUILD: "build", Action.PULL: "pull", Action.LOAD: "load",
               Action.PUSH: "push", Action.RUN: "run", Action.RERUN: "run", Action.AWAIT: "wait for",
               Action.FAILED: "failed", Action.WAIT: "running", Action.SKIP: "skip", Action.SKIPPED: "skipped"}


@dataclass(frozen=True)
class Plan:
    """Every change of one plan, in dependency order, with what it was computed against."""

    lock_hash: str  # sha256 of the lock text the plan was made from
    serial: int  # the state serial it observed: a saved plan is stale once this moves
    changes: tuple[Change, ...]
    options: dict[str, Any] = field(default_factory=dict)  # --replace, --rerun-failed, ... (for show)

    @property
    def has_changes(self) -> bool:
        return any(c.action.changes for c in self.changes)

    def counts(self) -> Counter[str]:
        return Counter(_COUNTED_AS.get(c.action, "unchanged") for c in self.changes)

    def summary(self) -> str:
        n = self.counts()
        parts = [f"{n['build']} to build", *(f"{n[k]} to {k}" for k in ("pull", "load", "push") if n[k]),
                 f"{n['run']} to run", *(f"{n[k]} to {k}" for k in ("wait for",) if n[k]),
                 f"{n['unchanged']} unchanged",
                 *(f"{n[k]} to {k}" for k in ("skip",) if n[k]),
                 *(f"{n[k]} {k}" for k in ("skipped", "failed", "running") if n[k])]
        return "Plan: " + ", ".join(parts) + "."
