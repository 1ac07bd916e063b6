"""Jobs handed to batch systems (SLURM, Kubernetes): polled, never held by a thread (ReFrame's
`JobScheduler.poll(*jobs)`). Apply's loop submits them, records each handle at once, and asks each
target about all of its jobs in flight in one query every `poll_interval` seconds; a finished one
goes to a worker to be collected. On Ctrl-C they are cancelled through their system, and polled
until it says they stopped. A job whose fate cannot be learnt (its stop not confirmed within a grace
period, its system refusing to be asked for good) is released: this apply stops waiting for it, but its
attempt stays RUNNING with its handle, so the next plan asks the system again rather than guess."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from madengine.backends.base import Backend, BatchBackend, QueueState, is_batch
from madengine.backends.session import HostUnavailable
from madengine.state.model import Status

T = TypeVar("T")

CANCEL_GRACE = 60.0  # seconds a cancelled job may take to be confirmed stopped before apply stops asking
SAID_ONE_BY_ONE = 20  # a target with more jobs in flight has their states counted, not said one by one


@dataclass
class _Target(Generic[T]):
    backend: BatchBackend
    jobs: dict[str, T] = field(default_factory=dict)  # handle -> what apply keeps for it
    said: dict[str, str] = field(default_factory=dict)  # handle -> the state last reported
    next_poll: float = 0.0


class InFlight(Generic[T]):
    """The jobs of this apply that are in batch systems now, per target."""

    def __init__(self, backends: Mapping[str, Backend], note: Callable[[str], None]) -> None:
        self._targets: dict[str, _Target[T]] = {
            name: _Target(backend) for name, backend in backends.items() if is_batch(backend)}
        self._note = note
        self._cancelled_at: float | None = None
        self._unreachable: dict[str, str] = {}  # target -> why its last poll failed (said once)
        self._released: list[tuple[T, Status, str]] = []  # no longer waited for; their attempts stay RUNNING

    def takes(self, target: str) -> bool:
        """Are this target's jobs submitted and polled (not run on a worker)?"""
        return target in self._targets

    def takes_any(self) -> bool:
        return bool(self._targets)

    def backend(self, target: str) -> BatchBackend:
        return self._targets[target].backend

    def add(self, target: str, handle: str, job: T) -> None:
        self._targets[target].jobs[handle] = job

    def __len__(self) -> int:
        return sum(len(t.jobs) for t in self._targets.values())

    def items(self) -> list[tuple[str, str, T]]:
        return [(name, h, j) for name, t in self._targets.items() for h, j in t.jobs.items()]

    def poll(self, describe: Callable[[T], str]) -> list[tuple[T, QueueState]]:
        """Ask each target whose poll is due about all its jobs at once; return the finished ones (no
        longer in flight). A state that changed is said once (`describe` names the job)."""
        now = time.monotonic()
        finished: list[tuple[T, QueueState]] = []
        changed: set[str] = set()
        for name, target in self._targets.items():
            if not target.jobs or now < target.next_poll:
                continue
            target.next_poll = now + target.backend.poll_interval
            try:
                states = target.backend.poll(sorted(target.jobs))
            except (HostUnavailable, OSError) as e:
                why = " ".join(str(getattr(e, "reason", None) or e).split())
                if isinstance(e, HostUnavailable) and not e.transient:  # asking again cannot help
                    self._release(target, Status.FAILURE, f"cannot ask {target.backend.system} about it: {why}; "
                                  "the job may still run: the next plan asks again")
                elif self._unreachable.get(name) != why:
                    self._note(f"{name}: cannot ask {target.backend.system} about its jobs ({why}); asking again")
                    self._unreachable[name] = why
                continue
            self._unreachable.pop(name, None)
            for handle, state in states.items():
                job = target.jobs.get(handle)
                if job is None:
                    continue
                if state.finished:
                    del target.jobs[handle]
                    target.said.pop(handle, None)
                    finished.append((job, state))
                elif target.said.get(handle) != state.state:
                    target.said[handle] = state.state
                    if len(target.jobs) <= SAID_ONE_BY_ONE:
                        self._note(f"{describe(job)}: {state.describe(target.backend.system)}")
                    else:
                        changed.add(name)
            if name in changed:  # many jobs: their states counted, one line per change of the counts
                counts = Counter(target.said.values())
                self._note(f"{name}: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        return finished

    def cancel(self) -> None:
        """Cancel every job in flight through its system (once); `poll` then sees them stop."""
        if self._cancelled_at is not None:
            return
        self._cancelled_at = time.monotonic()
        for name, target in self._targets.items():
            if target.jobs:
                try:
                    target.backend.cancel(sorted(target.jobs))
                except Exception as e:  # the jobs are still recorded with their handles: the next apply finds them
                    self._note(f"{name}: could not cancel its jobs in {target.backend.system}: {e}")
                target.next_poll = 0.0

    def released(self) -> list[tuple[T, Status, str]]:
        """The jobs this apply stopped waiting for since the last call, with the status and message it
        reports for them (their attempts stay RUNNING: the next plan asks their system again)."""
        if self._cancelled_at is not None and time.monotonic() - self._cancelled_at >= CANCEL_GRACE:
            for target in self._targets.values():
                self._release(target, Status.INTERRUPTED, f"cancelled; {target.backend.system} did not confirm it "
                              "stopped: the next plan asks again")
        out, self._released = self._released, []
        return out

    def _release(self, target: _Target[T], status: Status, message: str) -> None:
        self._released += [(job, status, message) for job in target.jobs.values()]
        target.jobs.clear()
        target.said.clear()
