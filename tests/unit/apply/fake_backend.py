"""A protocol-complete fake backend for tests of plan and apply: hosts with GPUs and caps, images per
host, scripted outcomes per address, every call recorded. Type-checked against `Backend` (below), so a
change of the protocol breaks it where mypy sees it, not at some test's run time.

Scripts: `script[address]` is an Outcome, a list of Outcomes (one per call, the last repeated), or a
function `(job, cancel) -> Outcome` for what must happen while the job runs (wait for another job,
raise Ctrl-C...). A job without a script succeeds with one performance line in its log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from madengine.backends.base import Backend, Cancel, OrphanRecord, Outcome
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.errors import Diagnostic
from madengine.facts.model import HostFacts
from madengine.state.model import Status

Script = Outcome | list[Outcome] | Callable[[JobSpec, Cancel], Outcome]


@dataclass
class Ran:
    """One call of `run`: where it ran, on which GPUs, and what else ran beside it on its host."""

    address: str
    host: str | None
    gpu_ids: tuple[int, ...]
    beside: frozenset[str]  # jobs running on the same host when it started
    attempt: str


@dataclass
class FakeBackend:
    hosts_: list[HostInfo] = field(default_factory=lambda: [HostInfo("node1", None)])
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> tag -> image id
    script: dict[str, Script] = field(default_factory=dict)  # by address (jobs) or tag (builds, deliveries)
    # host -> its facts, or the reason it cannot be observed (a host not named: facts all unknown)
    facts: dict[str, HostFacts | str] = field(default_factory=dict)
    name: ClassVar[str] = "fake"
    builds_images: ClassVar[bool] = True  # `FakeHostProcesses` builds none, as `local`
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, address / tag / host)
    ran: list[Ran] = field(default_factory=list)
    orphans: list[Sequence[OrphanRecord] | None] = field(default_factory=list)
    running: dict[str, set[str]] = field(default_factory=dict)  # host -> addresses running there now
    closed: bool = False  # close() was called (the end of the command)
    # (tag, host) -> why a deliver there failed: a job placed there then fails with it (as ssh's `_undelivered`)
    undelivered: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- validate / observe -----------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        return []

    def hosts(self) -> list[HostInfo]:
        return list(self.hosts_)

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        self.calls.append(("observe_images", ",".join(i.tag for i in images)))
        if not self.builds_images:
            return {}
        tags = {i.tag for i in images}
        return {h.name: {t: i for t, i in self.images.get(h.name, {}).items() if t in tags} for h in self.hosts_}

    def observe_registry(self, image: ImageSpec) -> str | None:
        return None

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        self.calls.append(("observe_facts", ",".join(h.name for h in self.hosts_)))
        out: dict[str, HostFacts | HostUnavailable] = {}
        for host in self.hosts_:
            found = self.facts.get(host.name, HostFacts())
            out[host.name] = HostUnavailable(host.name, found) if isinstance(found, str) else found
        return out

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        return None

    # --- images -------------------------------------------------------------------------------------------

    def _scripted(self, key: str, job: JobSpec | None, cancel: Cancel, default: Outcome) -> Outcome:
        found = self.script.get(key)
        if found is None:
            return default
        if isinstance(found, Outcome):
            return found
        if isinstance(found, list):
            return found.pop(0) if len(found) > 1 else found[0]
        assert job is not None, "functions script jobs only"
        return found(job, cancel)

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        self.calls.append(("build", image.address))
        image_id = "sha256:" + image.node_hash.removeprefix("sha256:")[:12]
        outcome = self._scripted(image.address, None, cancel, Outcome(Status.SUCCESS, image_id=image_id))
        if outcome.status is Status.SUCCESS:
            for host in self.hosts_:  # a build puts it on every host of the target
                self.images.setdefault(host.name, {})[image.tag] = image_id
        return outcome

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        self.calls.append(("push", image.address))
        return Outcome(Status.SUCCESS, digest="sha256:pushed")

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        self.calls.append(("pull", image.address))
        return Outcome(Status.FAILURE, message="the fake has no registry")

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        self.calls.append(("deliver", f"{image.address} -> {host}"))
        have = [ids[image.tag] for ids in self.images.values() if image.tag in ids]
        if not have:
            return Outcome(Status.FAILURE, message=f"no host holds {image.tag}")
        outcome = self._scripted(f"deliver {host}", None, cancel, Outcome(Status.SUCCESS, image_id=have[0]))
        with self._lock:
            if outcome.status is Status.SUCCESS:
                self.images.setdefault(host, {})[image.tag] = have[0]
                self.undelivered.pop((image.tag, host), None)
            else:
                self.undelivered[image.tag, host] = outcome.message
        return outcome

    # --- jobs ---------------------------------------------------------------------------------------------

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.log_path is not None and job.host is not None, "apply chooses the log and the host"
        with self._lock:
            here = self.running.setdefault(job.host, set())
            self.ran.append(Ran(job.address, job.host, job.gpu_ids, frozenset(here), job.env["MADENGINE_ATTEMPT"]))
            here.add(job.address)
        try:
            self.calls.append(("run", job.address))
            why = self.undelivered.get((job.image_tag or "", job.host))
            if why is not None:
                return Outcome(Status.FAILURE, message=f"{job.host}: image {job.image_tag} was not delivered here: "
                                                       f"{why}", host=job.host)
            outcome = self._scripted(job.address, job, cancel, Outcome(Status.SUCCESS, exit_code=0))
            if outcome.status is Status.SUCCESS:
                job.log_path.write_text(f"performance: 1 x\nran on {job.host}\n")
            return outcome
        finally:
            with self._lock:
                self.running[job.host].discard(job.address)

    def close(self) -> None:
        self.closed = True

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        self.orphans.append(running)
        return [f"attempt {r.attempt} ({r.handle} on {r.host})" for r in running or ()]

    # --- for tests ----------------------------------------------------------------------------------------

    def started(self, address: str) -> bool:
        return any(r.address == address for r in self.ran)


class FakeHostProcesses(FakeBackend):
    """A fake whose jobs need no image (as `local`)."""

    builds_images: ClassVar[bool] = False


_: type[Backend] = FakeBackend  # mypy checks the fakes against the protocol
__: type[Backend] = FakeHostProcesses
