"""Apply: walk the plan's graph in dependency order and realize each changed node (DESIGN §5).

The only stage with side effects, together with the backends it drives. Work runs on a thread pool
of `parallelism` workers; this module's loop, on the calling thread, is the only writer of the state
store, and it commits every node the moment it finishes, so an apply killed at any point resumes
where it stopped and never reruns a job that already succeeded.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from madengine.apply.batch import InFlight
from madengine.backends.base import (
    ATTEMPT_ENV,
    Backend,
    Cancel,
    OrphanRecord,
    Outcome,
    QueueState,
    Workspace,
    node_file_name,
)
from madengine.backends.session import HostUnavailable
from madengine.backends.slots import NODES_HINT, Slot, Slots, nodes_problem
from madengine.backends.specs import ImageSpec, JobSpec, image_spec, job_metadata, job_spec
from madengine.compile.ir import Project
from madengine.errors import ConfigError, Diagnostic, ExitCode, FileSystemError, MadengineError
from madengine.facts.model import HostFacts
from madengine.graph.build import image_address
from madengine.lock.entries import LockEntries, NodeKind
from madengine.lock.lockfile import Lock
from madengine.plan.model import Action, Change, Plan
from madengine.plan.observe import observe_facts
from madengine.results.gates import judge_gate
from madengine.state.model import Attempt, ImageRecord, PerfRow, Status, utc_now
from madengine.state.store import StateStore

MAX_LOADS = 4  # hosts an image is streamed to at once by one LOAD (each a whole image over the network)


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 1
    keep_going: bool = False
    timeout: int | None = None  # overrides every job's timeout; 0 = none
    keep_alive: bool = False
    retries: int = 2  # extra attempts for failures a backend marks transient
    retry_delay: float = 1.0
    no_cache: bool = False  # builds reuse no cached layer (ROCm's --clean-docker-cache)


class Reporter(Protocol):
    """What apply tells the user as it goes. Called from the apply loop's thread only."""

    def begin(self, total: int) -> None: ...
    def started(self, change: Change, where: str, log_path: Path) -> None: ...
    def finished(self, change: Change, status: Status, message: str, seconds: float,
                 perf: tuple[PerfRow, ...]) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class ApplyResult:
    apply_id: int
    statuses: dict[str, Status] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def exit_code(self) -> ExitCode:
        if self.interrupted or Status.INTERRUPTED in self.statuses.values():
            return ExitCode.INTERRUPTED
        failed = [a for a, s in self.statuses.items() if s.failed]
        if any(not a.startswith("job:") for a in failed):
            return ExitCode.BUILD_FAILURE
        if failed:
            return ExitCode.RUN_FAILURE
        return ExitCode.OK

    @property
    def outcome(self) -> str:
        return {ExitCode.OK: "SUCCESS", ExitCode.INTERRUPTED: "INTERRUPTED"}.get(self.exit_code, "FAILURE")


@dataclass
class _Running:
    change: Change
    attempt_id: int
    started: float
    log_path: Path
    slot: Slot | None
    job: JobSpec | None
    delivered: list[tuple[str, str, Outcome]] = field(default_factory=list)  # a LOAD's (target, host) done


class Applier:
    """One apply of one plan. Construct, then call `run()` once."""

    def __init__(self, plan: Plan, lock: Lock, project: Project, store: StateStore,
                 backends: Mapping[str, Backend], workspace: Workspace, options: ApplyOptions,
                 reporter: Reporter, judge: Callable[[JobSpec, Outcome], Outcome] | None = None,
                 durations: Mapping[str, float] | None = None) -> None:
        self.plan, self.lock, self.project, self.store = plan, lock, project, store
        self.entries = LockEntries.of(lock)
        self.backends, self.workspace, self.options, self.reporter = backends, workspace, options, reporter
        self.judge = judge or judge_job
        self.durations = durations or {}
        self.todo = {c.address: c for c in plan.changes if c.action.changes}
        self.order = {c.address: i for i, c in enumerate(plan.changes)}
        self.slots = Slots({name: b.hosts() for name, b in backends.items()})
        self.cancel_event = threading.Event()
        self.started_handles: queue.Queue[tuple[int, str]] = queue.Queue()
        self.done: set[str] = set()  # addresses finished in this apply, whatever their status
        self.tries: dict[str, int] = {}  # retries used, per address
        # address -> when a batch job's retry may be submitted (a worker's retry backs off on its worker)
        self.retry_at: dict[str, float] = {}
        self.apply_id = 0
        self.running: dict[Future[Outcome], _Running] = {}  # nodes on a worker now
        self.inflight: InFlight[_Running] = InFlight(backends, reporter.note)  # jobs in a batch system's queue
        self.facts: dict[tuple[str, str], HostFacts] = {}  # (target, host) -> facts, recorded with each attempt
        self.adopted: dict[str, Attempt] = {}  # address -> the RUNNING attempt of a killed apply this one awaits

    # --- before anything runs -------------------------------------------------------------------

    def check(self) -> dict[str, JobSpec]:
        """Everything that can be known wrong before a node runs, all at once (no state is written)."""
        problems: list[Diagnostic] = []
        jobs: dict[str, JobSpec] = {}
        for change in self.todo.values():
            if change.kind != NodeKind.JOB or change.action is Action.SKIP:
                continue
            try:
                job = job_spec(change.address, self.entries, self.project, timeout_override=self.options.timeout,
                               keep_alive=self.options.keep_alive)
            except ConfigError as exc:
                problems.extend(exc.diagnostics)
                continue
            found = self.backends[job.target].validate(job)
            problems.extend(found)
            # The scheduler's own check, so that a job no host can take never waits forever; said only
            # when the backend did not already say what is wrong with the job.
            allowed = change.hosts_of(job.target)
            among = f" of {', '.join(allowed)} (the hosts skip_gpu_arch leaves it)" if allowed else ""
            if not found and not self.slots.fits_ever(job.target, job.n_gpus, allowed):
                problems.append(Diagnostic(None, None, None, f"{job.address} needs {job.n_gpus} GPUs; no host "
                                           f"of target {job.target!r}{among} has that many",
                                           hint="set the hosts' `gpus`, or lower the model's n_gpus"))
            elif not found and not self.slots.fits_ever(job.target, job.n_gpus, allowed, self._nodes(job)):
                hosts = self.slots.hosts_ever(job.target, job.n_gpus, allowed)
                problems.append(Diagnostic(None, None, None, f"{job.address}: "
                                           f"{nodes_problem(job.nnodes, job.n_gpus, job.target, hosts, among)}",
                                           hint=NODES_HINT))
            jobs[change.address] = job
        if problems:
            raise ConfigError.many(problems)
        return jobs

    def _nodes(self, job: JobSpec) -> int:
        """The hosts of its target the scheduler gives a job: a multi-node job's nnodes, at once; one for a
        job of a batch system (which places the nodes itself, on the target's one entry here)."""
        return 1 if self.inflight.takes(job.target) else job.nnodes

    def recover(self) -> None:
        """Attempts left RUNNING by a killed apply: stop what they left behind, mark them INTERRUPTED.

        Not those still in a batch system's queue that this plan awaits (adopted as soon as the apply
        begins), nor those of a batch target this plan does not touch (`--select`, `--target`): a later
        plan finds them there and waits for them."""
        self.store.close_abandoned_applies()
        running = self.store.running_attempts()
        awaited = {c.address for c in self.todo.values() if c.action is Action.AWAIT}
        self.adopted = {a.address: a for a in running if a.address in awaited and a.handle}
        planned = {c.address for c in self.plan.changes}
        running = [a for a in running if a.address not in self.adopted
                   and (a.address in planned or not self._queued_elsewhere(a))]
        if not running:
            return
        entries = [OrphanRecord(attempt=a.id, handle=a.handle, host=a.host) for a in running]
        for backend in self.backends.values():
            for what in backend.cleanup_orphans(entries):
                self.reporter.note(f"cleaned up {what}")
        self.store.mark_interrupted([a.id for a in running], "its apply was stopped before it finished")
        self.reporter.note(f"{len(running)} node(s) of an earlier apply were interrupted; they run again")

    def _queued_elsewhere(self, attempt: Attempt) -> bool:
        """Was this attempt handed to a batch system (a target of this apply's that is one)?"""
        target = attempt.inputs.get("target")
        return bool(attempt.handle) and isinstance(target, str) and self.inflight.takes(target)

    def _adopt_awaited(self, waiting: dict[str, Change], jobs: Mapping[str, JobSpec]) -> None:
        """The jobs this plan awaits, adopted before anything else happens: each gets an attempt of this
        apply with the handle of the killed apply's (marked INTERRUPTED now, not before: an apply stopped
        earlier leaves it RUNNING for the next plan to find again)."""
        for address, old in self.adopted.items():
            change, job = waiting.pop(address), jobs[address]
            slot = self.slots.take(job.target, job.n_gpus, change.hosts_of(job.target))
            entry = self._start(change, job, slot)
            assert old.handle is not None, "only attempts with a handle are adopted"
            self.store.set_attempt_handle(entry.attempt_id, old.handle)
            self.store.mark_interrupted([old.id], f"its apply was killed; apply {self.apply_id} waited for the job")
            self.inflight.add(job.target, old.handle, entry)

    def _sweep(self) -> None:
        """Nothing of this apply runs now: remove what a killed apply was still creating when it died
        (a container the engine finished creating after its client was gone)."""
        for backend in self.backends.values():
            try:
                for what in backend.cleanup_orphans(None):
                    self.reporter.note(f"cleaned up {what}")
            except Exception as exc:  # a sweep that fails must not turn a finished apply into a crash
                self.reporter.note(f"could not clean up on {backend.name}: {exc}")

    # --- the walk -------------------------------------------------------------------------------

    def run(self) -> ApplyResult:
        # Signals are caught from the start: a SIGTERM or Ctrl-C before the walk is an apply that
        # stops at once and is recorded INTERRUPTED, as one during it is.
        with stop_on_signals(self.cancel_event):
            try:
                return self._run()
            except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM: the nodes are stopped; say so, then out
                self.inflight.cancel()
                if self.apply_id:
                    with contextlib.suppress(MadengineError):
                        stopped = [*self.running.values(), *(e for _, _, e in self.inflight.items())]
                        self.store.mark_interrupted([e.attempt_id for e in stopped], "interrupted")
                        self.store.finish_apply(self.apply_id, "INTERRUPTED")
                raise

    def _run(self) -> ApplyResult:
        jobs = self.check()
        self.recover()
        self._sweep()
        # The facts each job runs under, recorded with its attempt: those this command's plan observed
        # (cached per command), observed now for a saved plan. Unknown facts are recorded as none.
        self.facts, _ = observe_facts(self.backends, {j.target for j in jobs.values()})
        apply_id = self.apply_id = self.store.begin_apply(self.plan.lock_hash)
        result = ApplyResult(apply_id)
        self.reporter.begin(len(self.todo))
        waiting = dict(self.todo)
        self._adopt_awaited(waiting, jobs)
        running = self.running
        stopping = False
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallelism),
                                thread_name_prefix="madengine-apply") as pool, self._stop_nodes_on_error():
            while waiting or running or self.inflight:
                if self.cancel_event.is_set() and not result.interrupted:
                    result.interrupted = stopping = True
                    self.reporter.note("interrupted: stopping the running nodes")
                if self.cancel_event.is_set():
                    self.inflight.cancel()
                if not stopping:
                    self._dispatch(pool, waiting, running, jobs, result)
                if not running and not self.inflight:
                    if waiting and not stopping:
                        if any(self.retry_at.get(a, 0.0) > time.monotonic() for a in waiting):
                            self.cancel_event.wait(0.2)  # a batch job's retry, backing off
                            continue
                        raise RuntimeError(f"apply cannot make progress; waiting: {', '.join(sorted(waiting)[:3])}")
                    break
                if running:
                    done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                else:  # only jobs in batch queues: wait for their next poll (or a Ctrl-C)
                    done = set()
                    self.cancel_event.wait(0.2)
                self._record_handles()
                self._poll(pool, running, result)
                for future in done:
                    entry = running[future]
                    if entry.slot is not None:
                        self.slots.give_back(entry.slot)
                    retry = self._finish(entry, future, result)
                    # Only once recorded: a second Ctrl-C inside `_finish` rolls its transaction back,
                    # and `run` marks what is still in `running` INTERRUPTED rather than leave it RUNNING.
                    del running[future]
                    if retry is not None:
                        waiting[retry.address] = retry
                    elif result.statuses[entry.change.address].failed and not self.options.keep_going:
                        stopping = True
        # A signal can land while the last node finishes, after the loop's last look at the event.
        result.interrupted = result.interrupted or self.cancel_event.is_set()
        self._sweep()
        self.store.finish_apply(apply_id, result.outcome)
        return result

    @contextlib.contextmanager
    def _stop_nodes_on_error(self) -> Iterator[None]:
        """Leaving the pool waits for its workers: on an exception (a second Ctrl-C, a state store that
        can no longer be written) their nodes are stopped first, rather than waited for to the end."""
        try:
            yield
        except BaseException:
            self.cancel_event.set()
            raise

    def _ready(self, waiting: Mapping[str, Change]) -> list[Change]:
        """Waiting nodes whose dependencies in this plan have all finished, best first."""
        ready = [c for c in waiting.values() if all(d not in self.todo or d in self.done for d in c.depends_on)]

        def priority(c: Change) -> tuple[int, float, int, int]:
            # Builds first (they unblock jobs). Then the longest jobs by their last recorded duration
            # (LPT: the tail of the schedule is left to short jobs), then the ones needing most GPUs.
            gpus = self.entries.jobs[c.address].n_gpus if c.kind == NodeKind.JOB else 0
            return (0 if c.kind != NodeKind.JOB else 1, -self.durations.get(c.address, 0.0),
                    -(1 << 16 if gpus < 0 else gpus), self.order[c.address])

        return sorted(ready, key=priority)

    def _dispatch(self, pool: ThreadPoolExecutor, waiting: dict[str, Change], running: dict[Future[Outcome], _Running],
                  jobs: Mapping[str, JobSpec], result: ApplyResult) -> None:
        """Start what is ready: on a worker (up to `parallelism` at once), or, for a job of a batch target,
        into its system's queue (all of a target's ready jobs in one `submit`: no worker is held)."""
        workers_full = len(running) >= max(1, self.options.parallelism)
        if workers_full and not self.inflight.takes_any():
            return  # every worker is busy and no job goes to a queue: nothing to look at
        submit: dict[str, list[_Running]] = {}
        for change in self._ready(waiting):
            job = jobs.get(change.address)
            queued = job is not None and self.inflight.takes(job.target)
            if not queued and len(running) >= max(1, self.options.parallelism):
                continue
            if queued and self.retry_at.get(change.address, 0.0) > time.monotonic():
                continue  # a failed submission, retried after its back-off
            if change.action is Action.SKIP:  # never run: recorded SKIPPED with the plan's reason
                self._skip(change, change.reason, result, waiting)
                continue
            failed_dep = next((d for d in change.depends_on if result.statuses.get(d) not in (None, Status.SUCCESS)
                               and d in self.todo), None)
            if failed_dep is not None:
                self._skip(change, f"{failed_dep} did not succeed", result, waiting)
                continue
            slot = None
            if job is not None:
                slot = self.slots.take(job.target, job.n_gpus, change.hosts_of(job.target), self._nodes(job))
                if slot is None:
                    continue  # not enough free GPUs (or hosts) now: a smaller job may fit (backfill)
            del waiting[change.address]
            running_entry = self._start(change, job, slot)
            if job is not None and queued:
                submit.setdefault(job.target, []).append(running_entry)
                continue
            future = pool.submit(self._work, running_entry)
            running[future] = running_entry
        for target, entries in submit.items():
            self._submit(target, entries, running)

    def _submit(self, target: str, entries: list[_Running], running: dict[Future[Outcome], _Running]) -> None:
        """Hand a target's ready jobs to its batch system; record each handle at once. A job whose
        submission failed finishes as a worker's job does (so a transient failure is retried)."""
        jobs = [e.job for e in entries if e.job is not None]
        attempts = {e.change.address: e.attempt_id for e in entries}
        recorded: dict[str, str] = {}

        def record(job: JobSpec, handle: str) -> None:  # committed before the next submission
            self.store.set_attempt_handle(attempts[job.address], handle)
            recorded[job.address] = handle

        try:
            answers: list[str | Outcome] = list(self.inflight.backend(target).submit(jobs, record))
        except HostUnavailable as exc:  # the login node: these jobs fail (retried when that is transient)
            lost = Outcome(Status.FAILURE, message=f"{exc.host}: {exc.reason}", transient=exc.transient)
            answers = [recorded.get(e.change.address, lost) for e in entries]
        except Exception as exc:  # a backend bug: these jobs fail, nothing else does (the submitted ones are polled)
            bug = Outcome(Status.FAILURE, message=f"submit: {type(exc).__name__}: {exc}")
            answers = [recorded.get(e.change.address, bug) for e in entries]
        if len(answers) != len(entries):
            answers = [Outcome(Status.FAILURE, message=f"{target}: submit answered {len(answers)} handles for "
                               f"{len(entries)} jobs")] * len(entries)
        for entry, answer in zip(entries, answers, strict=True):
            if isinstance(answer, Outcome):
                failed: Future[Outcome] = Future()
                failed.set_result(answer)
                running[failed] = entry
                continue
            if recorded.get(entry.change.address) != answer:
                self.store.set_attempt_handle(entry.attempt_id, answer)
            self.inflight.add(target, answer, entry)

    def _release(self, entry: _Running, status: Status, message: str, result: ApplyResult) -> None:
        """A batch job this apply stops waiting for: reported with `status`, its attempt left RUNNING with
        its handle (not recorded: what became of it is the system's to say, to the next plan)."""
        if entry.slot is not None:
            self.slots.give_back(entry.slot)
        result.statuses[entry.change.address] = status
        self.done.add(entry.change.address)
        self.reporter.finished(entry.change, status, message, time.monotonic() - entry.started, ())

    def _poll(self, pool: ThreadPoolExecutor, running: dict[Future[Outcome], _Running],
              result: ApplyResult) -> None:
        """Poll the batch targets that are due; each finished job is collected on a worker."""
        if not self.inflight:
            return
        for entry, state in self.inflight.poll(lambda e: e.change.address):
            running[pool.submit(self._collect, entry, state)] = entry
        for entry, status, message in self.inflight.released():
            self._release(entry, status, message, result)

    def _collect(self, entry: _Running, state: QueueState) -> Outcome:
        """On a worker: a finished batch job's log, artifacts and result."""
        assert entry.job is not None
        backend = self.inflight.backend(entry.job.target)
        outcome = backend.collect(entry.job, state)
        if state.status is Status.INTERRUPTED and not self.cancel_event.is_set():
            outcome = replace(outcome, status=Status.FAILURE,
                              message=f"{state.describe(backend.system)}: cancelled outside madengine")
        return self.judge(entry.job, outcome)

    def _start(self, change: Change, job: JobSpec | None, slot: Slot | None) -> _Running:
        log_path = self.workspace.logs / str(self.apply_id) / f"{node_file_name(change.address)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        inputs = self._inputs(change)
        facts = self.facts.get((slot.target, slot.host)) if slot else None
        attempt_id = self.store.start_attempt(self.apply_id, change.address, change.node_hash, inputs,
                                              host=slot.host if slot else None,
                                              log_path=str(log_path.relative_to(self.workspace.state_dir)),
                                              facts=facts.to_dict() if facts is not None else None)
        if job is not None:
            job = replace(job, log_path=log_path, host=slot.host if slot else None,
                          gpu_ids=slot.gpu_ids if slot else (), peers=slot.peers if slot else (),
                          env={**job.env, ATTEMPT_ENV: str(attempt_id)})
        where = " + ".join(host + (f" GPUs {','.join(map(str, ids))}" if ids else "") for host, ids in slot.hosts) \
            if slot else ", ".join(change.hosts or change.targets)
        self.reporter.started(change, where, log_path)
        return _Running(change, attempt_id, time.monotonic(), log_path, slot, job)

    def _inputs(self, change: Change) -> dict[str, Any]:
        if change.kind == NodeKind.JOB:
            entry = self.entries.jobs[change.address]
            meta = job_metadata(change.address, self.entries, self.project, self.project.targets[entry.target].backend)
            return {**entry.to_json(), "meta": meta}
        return self.entries.images[image_address(change.address)].to_json()

    def _work(self, entry: _Running) -> Outcome:
        """On a worker thread: one node, start to finish. Never touches the state store."""
        change = entry.change
        retries = self.tries.get(change.address, 0)
        if retries and self.cancel_event.wait(self.options.retry_delay * retries):
            return Outcome(Status.INTERRUPTED, message="interrupted")  # backing off, on this worker
        cancel = Cancel(event=self.cancel_event,
                        on_start=lambda handle: self.started_handles.put((entry.attempt_id, handle)))
        if change.kind == NodeKind.JOB:
            assert entry.job is not None
            outcome = self.backends[entry.job.target].run(entry.job, cancel)
            return self.judge(entry.job, outcome)
        registry = self.project.registry
        if change.kind == NodeKind.PUSH:
            image = image_spec(image_address(change.address), self.entries, registry)
            return self.backends[change.targets[0]].push(image, entry.log_path, cancel)
        image = image_spec(change.address, self.entries, registry, no_cache=self.options.no_cache)
        outcome = Outcome(Status.SUCCESS)
        if change.action is Action.LOAD:
            return self._load(image, entry, cancel)
        for target in change.targets:
            backend = self.backends[target]
            realize = backend.pull if change.action is Action.PULL else backend.build
            outcome = realize(image, entry.log_path, cancel)
            if outcome.status is not Status.SUCCESS:
                return outcome
        return outcome

    def _load(self, image: ImageSpec, entry: _Running, cancel: Cancel) -> Outcome:
        """A LOAD: to every host of a many-host target that lacks the image, hosts in parallel. A host
        that cannot get it fails only its own jobs (the backend fails a job placed where its image is
        not); the LOAD fails only when no host holds it now. Each host that got it is in `entry.delivered`."""
        places = [(t, h) for t in entry.change.targets for h in entry.change.hosts_of(t)]

        def one(place: tuple[str, str]) -> Outcome:
            target, host = place
            try:
                return self.backends[target].deliver(image, host, entry.log_path, cancel)
            except Exception as exc:  # a backend bug on one host must not lose the others' deliveries
                return Outcome(Status.FAILURE, message=f"{type(exc).__name__}: {exc}", host=host)

        with ThreadPoolExecutor(max_workers=max(1, min(len(places), MAX_LOADS)),
                                thread_name_prefix="load") as pool:
            outcomes = list(pool.map(one, places))
        failed = []
        for (target, host), outcome in zip(places, outcomes, strict=True):
            if outcome.status is Status.SUCCESS:
                entry.delivered.append((target, host, outcome))
            else:
                failed.append((target, host, outcome))
        if not failed:
            return outcomes[-1] if outcomes else Outcome(Status.SUCCESS)
        if cancel.is_set():
            return Outcome(Status.INTERRUPTED, message="interrupted")
        why = "; ".join(f"{t}/{h}: {o.message.removeprefix(h + ': ')}" for t, h, o in failed)
        # The hosts a LOAD does not name held the image when planned: its jobs can run there.
        held = [(t, h) for t in entry.change.targets for h in self.slots.names(t)
                if h not in entry.change.hosts_of(t)]
        if not entry.delivered and not held:
            return Outcome(Status.FAILURE, message=why, transient=all(o.transient for _, _, o in failed))
        got = ", ".join(f"{t}/{h}" for t, h, _ in entry.delivered)
        return Outcome(Status.SUCCESS, message=f"loaded on {got}; not on {why}" if got else f"not loaded on {why}",
                       image_id=entry.delivered[-1][2].image_id if entry.delivered else None)

    def _record_handles(self) -> None:
        while True:
            try:
                attempt_id, handle = self.started_handles.get_nowait()
            except queue.Empty:
                return
            if handle:  # a pid, a container id, a SLURM or Kubernetes id: whatever stops it later
                self.store.set_attempt_handle(attempt_id, handle)

    def _finish(self, entry: _Running, future: Future[Outcome], result: ApplyResult) -> Change | None:
        """Commit one finished node; return it again when a transient failure earns a retry."""
        change = entry.change
        try:
            outcome = future.result()
        except Exception as exc:  # a backend bug must not lose what is already recorded
            full = FileSystemError.of(exc) if isinstance(exc, OSError) else None  # a full disk: said as such
            outcome = Outcome(Status.FAILURE, message=full.diagnostics[0].message if full
                              else f"{type(exc).__name__}: {exc}")
        if self.cancel_event.is_set() and outcome.status is not Status.SUCCESS:
            outcome = replace(outcome, status=Status.INTERRUPTED, message=outcome.message or "interrupted")
        tries = self.tries.get(change.address, 0)
        retry = outcome.transient and outcome.status.failed and tries < self.options.retries \
            and not self.cancel_event.is_set()
        message = outcome.message + (" (transient; retrying)" if retry else "")
        self.store.finish_attempt(entry.attempt_id, outcome.status, exit_code=outcome.exit_code, message=message,
                                  perf=outcome.perf, image_digest=outcome.digest,
                                  gate=self._verdict(change, outcome.status, outcome.perf))
        if outcome.host_unreachable and entry.slot is not None:  # of a multi-node job: the node that was lost
            hosts = [h for h, _ in entry.slot.hosts]
            self.slots.unreachable(entry.slot.target, outcome.host if outcome.host in hosts else entry.slot.host)
        if change.action is Action.LOAD:  # each host that got it is recorded, even if a later one failed
            self._record_loads(change, entry)
        elif outcome.status is Status.SUCCESS and change.kind != NodeKind.JOB:
            self._record_image(change, outcome)
        seconds = time.monotonic() - entry.started
        self.reporter.finished(change, outcome.status, message, seconds, outcome.perf)
        if retry:
            self.tries[change.address] = tries + 1
            if entry.job is not None and self.inflight.takes(entry.job.target):
                self.retry_at[change.address] = time.monotonic() + self.options.retry_delay * (tries + 1)
            return change
        result.statuses[change.address] = outcome.status
        self.done.add(change.address)
        return None

    def _verdict(self, change: Change, status: Status, perf: tuple[PerfRow, ...]) -> dict[str, Any] | None:
        """The job's `expect:` gate judged on this result, recorded with it (None: no gate)."""
        node = self.project.jobs.get(change.address) if change.kind == NodeKind.JOB else None
        if node is None or node.expect is None:
            return None
        return judge_gate(change.address, node.expect, status, perf).to_json()

    def _record_image(self, change: Change, outcome: Outcome) -> None:
        image = image_address(change.address)
        node_hash = self.entries.images[image].hash
        previous: dict[tuple[str, str], ImageRecord] = {}
        if change.kind == NodeKind.IMAGE:
            # Where it was put: each named host of a many-host target, else the target's only host ('').
            placements = [(t, h) for t in change.targets for h in (change.hosts_of(t) or ("",))]
        else:  # a push: the same build, now with its registry digest, on every host that has it
            previous = {(t, h): r for (a, t, h), r in self.store.placements().items()
                        if a == image and r.node_hash == node_hash}
            placements = list(previous)
        for target, host in placements:
            image_id = outcome.image_id if change.kind == NodeKind.IMAGE else previous[target, host].image_id
            self._record(image, target, host, image_id, outcome.digest)

    def _record_loads(self, change: Change, running: _Running) -> None:
        """An image delivered to hosts of its target: the build recorded for the target, now on them too
        (each host that got it, even when a later one failed)."""
        image = image_address(change.address)
        node_hash = self.entries.images[image].hash
        built: dict[str, ImageRecord] = {}
        for (a, t, _), r in self.store.placements().items():
            if a == image and r.node_hash == node_hash:
                built.setdefault(t, r)
        for target, host, outcome in running.delivered:
            known = built.get(target)
            self._record(image, target, host, outcome.image_id or (known.image_id if known else None),
                         outcome.digest or (known.digest if known else None))

    def _record(self, image: str, target: str, host: str, image_id: str | None, digest: str | None) -> None:
        entry = self.entries.images[image]
        self.store.record_image(ImageRecord(address=image, target=target, node_hash=entry.hash, tag=entry.tag,
                                            image_id=image_id, digest=digest, inputs=entry.to_json(),
                                            built_at=utc_now(), host=host), self.apply_id)

    def _skip(self, change: Change, message: str, result: ApplyResult, waiting: dict[str, Change]) -> None:
        """Record a node that does not run: what it needs did not succeed, or skip_gpu_arch excludes it."""
        del waiting[change.address]
        attempt = self.store.start_attempt(self.apply_id, change.address, change.node_hash, self._inputs(change),
                                           host=None, log_path=None)
        self.store.finish_attempt(attempt, Status.SKIPPED, message=message,
                                  gate=self._verdict(change, Status.SKIPPED, ()))
        result.statuses[change.address] = Status.SKIPPED
        self.done.add(change.address)
        self.reporter.finished(change, Status.SKIPPED, message, 0.0, ())


@contextlib.contextmanager
def stop_on_signals(event: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set `event` instead of raising mid-commit: apply then stops its running
    nodes (the backends see the event), records them INTERRUPTED, and returns."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if event.is_set():  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        event.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def judge_job(job: JobSpec, outcome: Outcome) -> Outcome:
    """Turn a finished run into a MAD result: performance from the log, errors in it, CSV rows."""
    from madengine.results.extract import judge

    if outcome.status in (Status.TIMEOUT, Status.INTERRUPTED) or job.log_path is None:
        return outcome
    if outcome.exit_code is None:  # the script never ran to an end (an engine error): its message says why
        return outcome
    log_text = job.log_path.read_text(encoding="utf-8", errors="replace") if job.log_path.exists() else ""
    artifacts = outcome.artifacts
    csv_text = None
    if job.multiple_results:  # written or not: a missing CSV is judged as an empty one
        csv = artifacts.perf_csv if artifacts is not None else None
        csv_text = csv.read_text(encoding="utf-8", errors="replace") if csv is not None and csv.exists() else ""
    status, perf, message = judge(log_text, outcome.exit_code, csv_text, job.model)
    if outcome.status is Status.FAILURE and (not message or outcome.details.get("failed_node")):
        message = outcome.message  # the log gave no reason; or a multi-node job's: which node failed, and why
    lost = artifacts.log_lost if artifacts is not None else ""  # why the log may lack a result
    if lost and status is not Status.SUCCESS and lost not in message:
        message = f"{message}; {lost}" if message else lost
    return replace(outcome, status=status, perf=perf, message=message or outcome.message)

