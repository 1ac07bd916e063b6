"""Typed records of the state store (DESIGN §5, §7): what was realized, and what happened.

Plain frozen dataclasses: the planner reads them (pure), the apply stage writes them through
`StateStore`. Times are UTC ISO-8601 strings with milliseconds (`2026-11-28T10:15:00.123Z`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from madengine.facts.model import HostFacts


def utc_now() -> str:
    """Now, in the store's time format: UTC, ISO-8601, milliseconds, `Z` (`2026-11-28T10:15:00.123Z`).

    Milliseconds: durations of short jobs feed the scheduler's longest-first order."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instant(text: str) -> datetime | None:
    """A recorded time (`2026-11-28T10:15:00.123Z`; one without a zone is UTC) as a comparable value:
    strings would put `...:00Z` after `...:00.123Z`."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class Status(str, enum.Enum):
    RUNNING = "RUNNING"  # started, not finished: after a kill, the next apply marks it INTERRUPTED
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    TIMEOUT = "TIMEOUT"
    SKIPPED = "SKIPPED"  # not run because something it depends on failed
    INTERRUPTED = "INTERRUPTED"  # stopped by Ctrl-C, or its apply was killed

    @property
    def failed(self) -> bool:
        return self in (Status.FAILURE, Status.TIMEOUT)


@dataclass(frozen=True)
class ImageRecord:
    """An image realized for a target: built (and perhaps pushed) from the lock entry `inputs`."""

    address: str
    target: str
    node_hash: str
    tag: str
    image_id: str | None  # the engine's image id (sha256:...)
    digest: str | None  # the registry digest after a push, else None
    inputs: dict[str, Any]  # the lock entry it was built from, to explain a later rebuild
    built_at: str
    status: Status = Status.SUCCESS
    host: str = ""  # which host of the target holds it; "": the target's only host


@dataclass(frozen=True)
class PerfRow:
    """One performance figure of one attempt (a `multiple_results` CSV gives several)."""

    model: str  # `<model>` or `<model>_<row model>` for multiple_results rows
    performance: float | None
    metric: str
    status: Status = Status.SUCCESS


@dataclass(frozen=True)
class Attempt:
    """One attempt at one job (or image build), as recorded."""

    id: int
    apply_id: int
    address: str
    node_hash: str
    status: Status
    started_at: str
    ended_at: str | None = None
    host: str | None = None
    exit_code: int | None = None
    log_path: str | None = None  # relative to the state directory
    image_digest: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # the lock entry it ran from
    handle: str | None = None  # what to stop after a killed apply: a process group id, a container id...
    message: str = ""  # one line: why it failed, timed out or was skipped
    perf: tuple[PerfRow, ...] = ()
    gate: dict[str, Any] | None = None  # its `expect:` gate's verdict when recorded (`results.gates.Verdict`)
    facts: dict[str, Any] | None = None  # the host facts it ran under, when known

    @property
    def chronology(self) -> tuple[str, int]:
        """The order attempts happened in: by start, ties broken by id."""
        return (self.started_at, self.id)

    @property
    def duration(self) -> float | None:
        from datetime import datetime

        if self.ended_at is None:
            return None
        start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        end = datetime.fromisoformat(self.ended_at.replace("Z", "+00:00"))
        return (end - start).total_seconds()


@dataclass(frozen=True)
class ApplyRecord:
    id: int
    lock_hash: str
    serial: int  # the state serial this apply produced
    started_at: str
    ended_at: str | None
    outcome: str | None  # SUCCESS, FAILURE, INTERRUPTED; None while running (or killed)
    host: str


@dataclass(frozen=True)
class Holder:
    """Who holds the workspace lock: named in the error a second apply gets."""

    pid: int
    host: str
    since: str
    command: str = ""
    kind: str = "apply"  # what holds it: "apply" (apply, run, build) or "forget" (which runs nothing)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}" + (f" ({self.command})" if self.command else "")


@dataclass(frozen=True)
class Observed:
    """What the planner knows of the world: the store's records plus the backends' answers."""

    serial: int
    images: dict[tuple[str, str, str], ImageRecord]  # (address, target, host) -> latest successful record
    latest: dict[str, Attempt]  # address -> latest finished (or running) attempt of a job
    missing_images: frozenset[tuple[str, str]] = frozenset()  # (address, target): recorded, gone from every host
    # (address, target) -> the hosts of a many-host target that lack an image others of them hold
    lacking: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target -> its hosts, where observed
    in_registry: dict[str, str] = field(default_factory=dict)  # image address -> digest, for images not here
    live_apply: Holder | None = None  # another process's apply, holding the workspace lock now
    # (target, host) -> the host's facts now, for the targets observed
    facts: dict[tuple[str, str], HostFacts] = field(default_factory=dict)
    # (target, host) -> why its facts are unknown now (unreachable...); host "" when the target could not
    # even name its hosts. A target in neither mapping was not observed: its facts are not compared.
    facts_unknown: dict[tuple[str, str], str] = field(default_factory=dict)
    # target -> why its images could not be observed (no host answered): planned as the store records them
    images_unknown: dict[str, str] = field(default_factory=dict)
    # address -> a job a killed apply left in a batch system's queue, as the system says now: (how the plan
    # says it, e.g. "slurm 4242 RUNNING on node2"; its status when finished, None while queued or running)
    queued: dict[str, tuple[str, Status | None]] = field(default_factory=dict)
