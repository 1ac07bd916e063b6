"""The backend protocol (DESIGN §6): `validate` (no I/O), `observe` (read-only), `apply` (mutation).

A backend realizes nodes on one target. It is constructed once per target per command with the
target's configuration and a `Workspace` (where run directories, logs and the state live), and found
by name through `madengine.backends.registry` (entry-point group `madengine.backends`).

Rendering what a backend submits (docker run arguments, scripts, manifests) is a pure function kept
apart from submitting it, so it is tested without the real thing.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeGuard, runtime_checkable

from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.compile.ir import run_dir_names
from madengine.errors import Diagnostic
from madengine.facts.probe import FactsCache
from madengine.state.model import PerfRow, Status

if TYPE_CHECKING:
    from madengine.facts.model import HostFacts

ATTEMPT_ENV = "MADENGINE_ATTEMPT"  # apply puts the attempt id in every job's env: proves a process is ours


def interpreter(script: str) -> str:
    """How MAD runs a model script: python3 for `.py`, bash for the rest."""
    return "python3" if script.endswith(".py") else "bash"


def node_file_name(address: str) -> str:
    """A node address as one readable, collision-free file name (for run directories and logs)."""
    import hashlib

    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in address)[:80]
    return f"{readable}-{hashlib.sha256(address.encode()).hexdigest()[:8]}"


def workspace_id(state_db: Path) -> str:
    """A workspace's stable id (in container labels, remote directory names): its state store on this
    machine. The machine counts: two checkouts at one path on two machines (CI runners, colleagues) must
    not take each other's containers or remote files for their own on a shared engine or host."""
    import hashlib
    import socket

    try:
        machine = Path("/etc/machine-id").read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        machine = ""
    key = f"{machine}\0{socket.gethostname()}\0{state_db.resolve()}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Workspace:
    """Where a command works: the project root and its `.madengine/` directory."""

    root: Path  # the madfile's directory
    state_dir: Path  # `.madengine/` beside the madfile (overridable)
    workspace_id: str  # stable id of this workspace, put in container labels
    # Host facts observed in this command, shared by its backends: `local` and `docker` targets
    # observe this machine once between them (a Workspace is made once per command).
    facts: FactsCache = field(default_factory=FactsCache, compare=False, repr=False)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def runs(self) -> Path:
        return self.state_dir / "runs"


@dataclass(frozen=True)
class RunArtifacts:
    """What a run left for apply to judge, on this machine whichever host ran it."""

    log: Path  # the run's log (apply chose its path; the backend wrote or streamed it there)
    run_dir: str  # where the run directory is on its host (a POSIX path there)
    exit_code: int | None  # the model's (None: it never ran to an end)
    perf_csv: Path | None = None  # a copy of the model's `multiple_results` CSV; None: none was written
    log_lost: str = ""  # why the log is incomplete, when part of it was lost


@dataclass(frozen=True)
class Outcome:
    """What happened when a backend applied one node."""

    status: Status
    exit_code: int | None = None
    message: str = ""  # one line
    host: str | None = None
    image_id: str | None = None  # builds: the engine's id
    digest: str | None = None  # builds/pushes: the registry digest
    transient: bool = False  # a failure worth retrying (network, engine hiccup)
    host_unreachable: bool = False  # the host could not be reached: no more jobs go there while another can take them
    perf: tuple[PerfRow, ...] = ()
    artifacts: RunArtifacts | None = None  # a job's run, once it had a run directory
    details: dict[str, Any] = field(default_factory=dict)  # informational: container id, duration...


@dataclass
class Cancel:
    """Per node: `event` is set by apply on Ctrl-C (backends stop what they run and report
    INTERRUPTED); `started(handle)` tells apply what to clean up if apply itself is killed
    (a process group id, a container id), so that it is recorded before the node finishes."""

    event: threading.Event = field(default_factory=threading.Event)
    on_start: Callable[[str], None] | None = None

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, timeout: float) -> bool:
        return self.event.wait(timeout)

    def started(self, handle: str) -> None:
        if self.on_start is not None:
            self.on_start(handle)


def run_steps(job: JobSpec) -> list[tuple[str, tuple[str, ...]]]:
    """The MAD run protocol in the run directory, for every backend: pre-scripts, the (wrapped) model,
    post-scripts, each step with its kind (`pre`, `main` or `post`). Pre/post scripts are copied into
    the run directory under the names `run_dir_names` gives them."""
    pre, post = run_dir_names(job.pre_scripts, job.post_scripts)
    return [*(("pre", ("bash", name, *c.args)) for c, name in zip(job.pre_scripts, pre, strict=True)),
            ("main", (*job.cmd_prefix, interpreter(job.script), posixpath.basename(job.script), *job.args)),
            *(("post", ("bash", name, *c.args)) for c, name in zip(job.post_scripts, post, strict=True))]


@dataclass(frozen=True)
class OrphanRecord:
    """A RUNNING attempt of a killed apply, as `cleanup_orphans` is told of it: the attempt id (in every
    job's env and container labels), the handle `Cancel.started` gave for it (a process group id, a
    container id, later a SLURM or Kubernetes id; None when none was recorded) and the host it ran on."""

    attempt: int
    handle: str | None
    host: str | None


@dataclass(frozen=True)
class QueueState:
    """A job in a batch system (SLURM, Kubernetes), as the system last said. `state` is the system's own
    word (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY... for SLURM;
    Pending, Running, Succeeded, Failed for Kubernetes); `status` says what it means to madengine once
    the job is finished (None while it is queued or running)."""

    handle: str  # the system's id: a SLURM job id (`4242`, `4242_3` in an array), a Kubernetes Job name
    state: str
    status: Status | None = None  # set once finished: SUCCESS, FAILURE, TIMEOUT or INTERRUPTED (cancelled)
    where: str = ""  # the node(s) it runs or ran on, when known
    reason: str = ""  # one line: why it waits (SLURM's Reason), why it failed
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.status is not None

    def describe(self, system: str) -> str:
        """`slurm 4242 RUNNING on node2`, `slurm 4242 PENDING (Resources)`."""
        return (f"{system} {self.handle} {self.state}" + (f" on {self.where}" if self.where else "")
                + (f" ({self.reason})" if self.reason else ""))


@runtime_checkable
class Backend(Protocol):
    """A backend for one target."""

    name: ClassVar[str]
    builds_images: ClassVar[bool]  # False for `local`: its jobs need no image

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        """Problems this backend can see without I/O (a job needs more GPUs than a host has...)."""
        ...

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        """Read-only, at plan: per host of this target, which of these images' tags are present there,
        with the image id each names (host -> tag -> id). One batched query per host, never one per
        image; a host that has none of them maps to an empty mapping, and a backend that builds no
        images returns {}. Raises when a host cannot be reached."""
        ...

    def observe_registry(self, image: ImageSpec) -> str | None:
        """Read-only: the digest of this image in `image.registry`, if some machine pushed it there.

        Tags are content-addressed, so a registry is a cache of builds (as Nix's binary caches are)."""
        ...

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        """Read-only, at plan: why this target cannot take a job of this GPU vendor now, with what to do
        ((why, hint): a device the vendor needs is missing), or None. Raises when it cannot be reached."""
        ...

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        ...

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        ...

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Fetch the image from `image.registry` instead of building it; refuse one not built from this node."""
        ...

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        """Bring an image this target already holds (built from the same inputs) to one more of its
        hosts: by a registry pull when `image.registry` is set, else by streaming it from a host that
        has it. Planned (`Action.LOAD`) only for targets of more than one host."""
        ...

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        """Run the job to completion, timeout or cancellation; write its log to job.log_path."""
        ...

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        """Read-only: the facts of each host `hosts()` names (host name -> facts), observed once per
        command (through `Workspace.facts`), hosts in parallel. A host that cannot be reached maps to its
        HostUnavailable instead of raising (the other hosts are not held up by it); raises only when the
        target cannot even name its hosts (all its facts are then unknown); {} for a backend that has no
        way to observe them (nothing is compared). Facts never fail a plan by themselves, and a missing
        tool is no error (the facts say what is unknown)."""
        ...

    def hosts(self) -> list[HostInfo]:
        """The target's machines (name, GPU count or None when not scheduled by GPUs, a cap on
        concurrent jobs) for apply's scheduler, and for placing images per host."""
        ...

    def close(self) -> None:
        """The end of a command (Terraform's provider `Close()`): release connections to hosts and
        engines. The backend may be used again after (it connects again)."""
        ...

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """Stop what killed applies left behind; say what was removed.

        `running`: the RUNNING attempts of a killed apply. None: sweep
        everything of this workspace that is not kept alive; apply calls that, holding the workspace
        lock, when nothing of its own runs (at its end), for what a dying apply was still creating.
        """
        ...


@runtime_checkable
class BatchBackend(Backend, Protocol):
    """A backend that hands jobs to a batch system (SLURM, Kubernetes), as ReFrame's `JobScheduler`:
    apply submits, polls every job of the target in one query, collects the finished ones, and never
    holds a thread per queued job. `run` is not called for its jobs.

    A job's handle is recorded with its attempt the moment `submit` returns, so an apply that is killed
    leaves jobs a later plan finds (`observe_queue`) and a later apply waits for (`poll`, `collect`)
    rather than submit again."""

    system: ClassVar[str]  # how plans and messages name the system: "slurm", "kubernetes"
    poll_interval: ClassVar[float]  # seconds between two polls of one target while it has jobs in flight

    def submit(self, jobs: Sequence[JobSpec],
               on_handle: Callable[[JobSpec, str], None] | None = None) -> list[str | Outcome]:
        """Prepare each job's run directory where the system's nodes see it and hand the jobs to the system
        in as few submissions as it allows (one SLURM array per image and shape); images are already where
        the system pulls them from. Per job, in order: its handle, or the Outcome of a submission that
        failed (the others are still submitted). `on_handle(job, handle)` is called the moment the system
        has a job, before the next submission: apply records the handle then, so an apply killed between two
        submissions leaves none unrecorded. Called on the apply's main thread: quick, no waiting."""
        ...

    def poll(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        """Read-only, one query for all: the state of each handle. A handle the system no longer knows
        maps to a finished state saying so (status FAILURE, or whatever its accounting remembers).
        Raises HostUnavailable when the system cannot be asked (apply asks again later)."""
        ...

    def observe_queue(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        """Read-only, at plan: `poll`, for the handles of attempts a killed apply left RUNNING (never
        called when there are none, so a no-op plan asks the system nothing)."""
        ...

    def collect(self, job: JobSpec, state: QueueState) -> Outcome:
        """A finished job: its log into `job.log_path`, its artifacts and performance, the status its
        state says. Called on a worker thread."""
        ...

    def cancel(self, handles: Sequence[str]) -> None:
        """Ask the system to stop these (scancel, delete the Job); a later `poll` says when they have."""
        ...

    def max_nodes(self) -> int | None:
        """The most nodes one job may span here, when the target says (a larger multi-node job is refused
        at plan rather than left pending); None: not known before the system is asked."""
        ...


def is_batch(backend: Backend) -> TypeGuard[BatchBackend]:
    """Does apply submit and poll this backend's jobs, rather than `run` each one on a worker?"""
    return isinstance(backend, BatchBackend)
