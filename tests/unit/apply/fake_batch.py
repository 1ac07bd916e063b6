"""A protocol-complete fake batch system (as SLURM or Kubernetes are to apply): jobs are submitted,
wait in a queue, run and finish as a script says, one poll at a time. Every call is recorded, so a
test sees how many submissions and queries apply made. Type-checked against `BatchBackend`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from madengine.backends.base import BatchBackend, Cancel, Outcome, QueueState
from madengine.backends.session import HostInfo
from madengine.backends.specs import JobSpec
from madengine.state.model import Status
from tests.unit.apply.fake_backend import FakeHostProcesses

# A job's life in the fake queue, one state per poll; the last is where it stays.
LIFE: tuple[str, ...] = ("PENDING", "RUNNING", "COMPLETED")
FINISHED = {"COMPLETED": Status.SUCCESS, "FAILED": Status.FAILURE, "TIMEOUT": Status.TIMEOUT,
            "CANCELLED": Status.INTERRUPTED}


@dataclass
class Queued:
    handle: str
    job: JobSpec
    life: list[str]  # states still to come, one per poll
    state: str = "SUBMITTED"


@dataclass
class FakeQueue(FakeHostProcesses):
    """A batch target. `lives[address]`: the states a job goes through (default LIFE); `refuse[address]`:
    the Outcome its submission gets instead of a handle."""

    hosts_: list[HostInfo] = field(default_factory=lambda: [HostInfo("queue", None)])
    lives: dict[str, tuple[str, ...]] = field(default_factory=dict)
    refuse: dict[str, Outcome] = field(default_factory=dict)
    die_after: set[str] = field(default_factory=set)  # addresses whose submission is followed by a kill
    queue: dict[str, Queued] = field(default_factory=dict)  # handle -> job, as the system knows it
    submissions: list[list[str]] = field(default_factory=list)  # addresses of each submit call
    polls: list[list[str]] = field(default_factory=list)  # handles of each poll / observe_queue call
    cancelled: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(4242))
    system: ClassVar[str] = "fakeq"
    poll_interval: ClassVar[float] = 0.0

    def submit(self, jobs: Sequence[JobSpec],
               on_handle: Callable[[JobSpec, str], None] | None = None) -> list[str | Outcome]:
        self.submissions.append([j.address for j in jobs])
        out: list[str | Outcome] = []
        for job in jobs:
            if job.address in self.refuse:
                out.append(self.refuse[job.address])
                continue
            handle = str(next(self._ids))
            self.queue[handle] = Queued(handle, job, list(self.lives.get(job.address, LIFE)))
            if on_handle is not None:
                on_handle(job, handle)
            if job.address in self.die_after:  # the apply is killed right after this job was submitted
                raise KeyboardInterrupt
            out.append(handle)
        return out

    def poll(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        self.polls.append(list(handles))
        out = {}
        for handle in handles:
            queued = self.queue.get(handle)
            if queued is None:
                out[handle] = QueueState(handle, "UNKNOWN", Status.FAILURE, reason="no longer known")
                continue
            if queued.life:
                queued.state = queued.life.pop(0) if len(queued.life) > 1 else queued.life[0]
            out[handle] = QueueState(handle, queued.state, FINISHED.get(queued.state), where="n1")
        return out

    def observe_queue(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        return self.poll(handles)

    def collect(self, job: JobSpec, state: QueueState) -> Outcome:
        assert job.log_path is not None
        self.calls.append(("collect", job.address))
        if state.status is Status.SUCCESS:
            job.log_path.write_text("performance: 7 x\n")
            return Outcome(Status.SUCCESS, exit_code=0, host="n1")
        return Outcome(state.status or Status.FAILURE, exit_code=None, message=state.describe(self.system))

    def cancel(self, handles: Sequence[str]) -> None:
        self.cancelled.extend(handles)
        for handle in handles:
            if handle in self.queue:
                self.queue[handle].life = ["CANCELLED"]

    def max_nodes(self) -> int | None:
        return None

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        raise AssertionError("apply submits a batch target's jobs; it never runs them on a worker")


_: type[BatchBackend] = FakeQueue
