"""The front of the pipeline, chained: load -> check -> compile -> lock (DESIGN §1).

Commands call these instead of repeating the chain. Each stage stays a function of its own package;
this module only wires them, and reads and writes nothing but the lockfile it is asked to.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from madengine.errors import ConfigError
from madengine.lock import LOCK_NAME
from madengine.lock.lockfile import Lock, LockDiff, diff_locks

if TYPE_CHECKING:  # the compiler (and pydantic) load only when something is compiled
    from madengine.backends.base import Backend, Workspace
    from madengine.compile.ir import Project
    from madengine.graph.dag import Dag
    from madengine.lock.freshness import Fresh
    from madengine.lock.pins import Resolver
    from madengine.madfile.load import LoadedMadfile
    from madengine.plan.model import Plan
    from madengine.results.gates import Gate
    from madengine.state.location import StateLocation
    from madengine.state.model import Observed
    from madengine.state.store import StateStore


@dataclass(frozen=True)
class Locked:
    """A compiled project with its freshly computed lock and the lock found on disk (if any)."""

    loaded: LoadedMadfile
    project: Project
    lock: Lock
    lock_path: Path
    on_disk: Lock | None
    note: str = ""  # what plan/apply did to the lock file, to say so: `madengine.lock updated: 1 changed (...)`

    @property
    def diff(self) -> LockDiff:
        return diff_locks(self.on_disk, self.lock)

    @property
    def stale(self) -> bool:
        return self.on_disk != self.lock

    def input_dirs(self) -> set[str]:
        """Every directory this lock's inputs were read from, relative to the madfile's directory."""
        p = self.project
        dirs = {p.package_path or "."}
        dirs.update(posixpath.dirname(i.dockerfile) for i in p.images.values())
        dirs.update(i.build_context for i in p.images.values())
        dirs.update(posixpath.dirname(j.script) for j in p.jobs.values())
        return dirs


def load_project(madfile: Path, text: str | None = None) -> tuple[LoadedMadfile, Project]:
    from madengine.compile.compiler import compile_project
    from madengine.madfile.load import load_and_check

    loaded = load_and_check(madfile, text)
    return loaded, compile_project(loaded)


def lock_project(madfile: Path, *, update: Sequence[str] = (), update_all: bool = False,
                 resolve: Resolver | None = None, text: str | None = None) -> Locked:
    """Compile, pin base images, hash; raise a config error if a file that a node needs is missing.

    Pins come from the lock on disk; references new to it (and, with `update`, the ones asked for)
    are resolved against their registries.
    """
    from madengine.lock.lockfile import build_lock, missing_inputs, read_lock
    from madengine.lock.pins import pin_bases, previous_pins

    loaded, project = load_project(madfile, text)
    lock_path = loaded.root / LOCK_NAME
    on_disk = read_lock(lock_path) if text is None else None  # a generated madfile has no lock file
    refs = [image.base for image in project.images.values()]
    pins = pin_bases(refs, previous_pins(on_disk), resolve or _resolve_digest,
                     update=_update_refs(project, update), update_all=update_all)
    lock = build_lock(project, {ref: digest for ref, digest in pins.items() if digest})
    problems = missing_inputs(lock, loaded.display_path)
    if problems:
        raise ConfigError.many(problems)
    return Locked(loaded, project, lock, lock_path, on_disk)


def _update_refs(project: Project, update: Sequence[str]) -> set[str]:
    """`lock --update X`: X is a base image reference or an image address."""
    from madengine.errors import UsageError

    refs = set()
    known = {image.base for image in project.images.values() if image.base}
    for item in update:
        if item in project.images:
            base = project.images[item].base
            if base:
                refs.add(base)
        elif item in known:
            refs.add(item)
        else:
            raise UsageError(f"--update {item!r} is neither an image address nor a base image of this lock",
                             hint="base images: " + (", ".join(sorted(known)) or "none"))
    return refs


def _resolve_digest(ref: str) -> str | None:
    from madengine.backends.registry_client import resolve_digest

    return resolve_digest(ref)


def remember_fresh(locked: Locked, started_ns: int) -> None:
    """Record that the lock on disk is what the inputs give (`lock.freshness`), once it is written."""
    from madengine.lock import freshness

    root = locked.loaded.root
    freshness.record(root / locked.project.madfile_path, locked.lock_path,
                     freshness.outside_dirs(root, locked.input_dirs()), started_ns,
                     images=len(locked.lock["images"]), jobs=len(locked.lock["jobs"]),
                     lock_hash=lock_digest(locked.lock), registry=locked.project.registry,
                     tags=locked.project.model_tags(),
                     gates={a: g.to_json() for a, g in project_gates(locked.project).items()},
                     targets={name: t.model_dump(mode="json") for name, t in locked.project.targets.items()},
                     contexts={name: c.model_dump(mode="json") for name, c in locked.project.contexts.items()},
                     skip_gpu_arch=locked.project.skip_gpu_arch())


def project_gates(project: Project) -> dict[str, Gate]:
    """The `expect:` gate of every gated job, by address."""
    return {address: job.expect for address, job in project.jobs.items() if job.expect is not None}


def current_lock(madfile: Path, *, locked: bool, text: str | None = None) -> Locked:
    """The lock for plan/apply: refreshed and written when stale, unless `--locked` (cargo's rule).

    A madfile given as `text` (the ROCm-style commands' generated one) keeps its lock in memory.
    """
    import time

    from madengine.errors import StaleLockError
    from madengine.lock.lockfile import write_lock

    started = time.time_ns()
    result = lock_project(madfile, text=text)
    if text is not None:
        return result
    if result.stale:
        shown = result.loaded.display_path.rsplit("/", 1)[0] + "/" if "/" in result.loaded.display_path else ""
        if locked:
            what = "does not exist" if result.on_disk is None else f"is stale: {result.diff.summary()}"
            raise StaleLockError(f"{shown}{LOCK_NAME} {what}", hint="run `madengine lock`, or drop --locked")
        if write_lock(result.lock_path, result.lock):
            counts = f"{len(result.lock['images'])} images, {len(result.lock['jobs'])} jobs"
            note = f"written ({counts})" if result.on_disk is None else \
                f"updated: {result.diff.summary() or 'formatting'}"
            result = dataclasses.replace(result, note=f"{shown}{LOCK_NAME} {note}")
    remember_fresh(result, started)
    return result


def lock_digest(lock: Lock) -> str:
    """The hash a saved plan is tied to: of the lock's canonical text."""
    from madengine.lock.hashing import digest
    from madengine.lock.lockfile import render_bytes

    return digest(render_bytes(lock))


@dataclass
class Realization:
    """Everything plan and apply work with: the current lock, its graph, the workspace, the backends."""

    madfile: Path
    display_path: str  # of the madfile, for messages and plan files
    lock: Lock
    lock_hash: str
    registry: str | None
    graph: Dag  # narrowed by --select/--target
    workspace: Workspace
    backends: Mapping[str, Backend]  # for the targets that the graph's jobs use, made on first use
    state_path: StateLocation  # an SQLite file, or a PostgreSQL URL (state/location.py)
    project: Project | None  # None until needed when a fresh lock stood for it (`realization(compile=False)`)
    _loaded: LoadedMadfile | None = field(default=None, repr=False)  # the madfile, once read for either
    _fresh: Fresh | None = field(default=None, repr=False)  # the record of a fresh lock that stood for the project
    lock_note: str = ""  # `madengine.lock updated: ...` when it was rewritten for this command

    def close_backends(self) -> None:
        """The end of the command: the backends made so far release their hosts' connections."""
        close = getattr(self.backends, "close", None)
        if close is not None:
            close()

    def gates(self) -> dict[str, Gate]:
        """The `expect:` gates of the graph's jobs (those --select/--target left), by address: from the
        compiled project, or from the freshness record when a fresh lock stood for it."""
        if self.project is not None:
            every = project_gates(self.project)
        else:
            from madengine.results.gates import Gate

            every = {a: Gate.from_json(g) for a, g in (self._fresh.gates if self._fresh else {}).items()}
        return {a: g for a, g in every.items() if a in self.graph}

    def project_name(self) -> str | None:
        """The madfile's `name:` (what a baseline belongs to): from the compiled project, else the madfile
        read alone (only the gates against a baseline ask, so a no-op plan without them reads nothing)."""
        return self.project.name if self.project is not None else self._madfile().madfile.name

    def rerun_on(self) -> dict[tuple[str, str], tuple[str, ...] | None]:
        """(context, target) -> the facts whose change reruns its jobs (None: the default), for the pairs
        the graph's jobs use: from the compiled project, or from the freshness record when a fresh lock
        stood for it (plain JSON, as `madfile.model.rerun_on` reads the models)."""
        pairs = {(str(e["context"]), str(e["target"])) for a, e in self.lock["jobs"].items() if a in self.graph}
        if self.project is not None:
            from madengine.madfile.model import rerun_on

            p = self.project
            return {(c, t): rerun_on(p.contexts[c], p.targets[t]) for c, t in pairs
                    if c in p.contexts and t in p.targets}
        fresh = self._fresh
        contexts, targets = (fresh.contexts, fresh.targets or {}) if fresh is not None else ({}, {})
        out: dict[tuple[str, str], tuple[str, ...] | None] = {}
        for c, t in pairs:
            chosen = (contexts.get(c) or {}).get("rerun_on")
            if chosen is None:
                chosen = (targets.get(t) or {}).get("rerun_on")
            out[c, t] = tuple(chosen) if chosen is not None else None
        return out

    def skip_gpu_arch(self) -> dict[str, tuple[str, ...]]:
        """Model name -> its models.json `skip_gpu_arch`, for the models that have one: from the compiled
        project, or from the freshness record when a fresh lock stood for it."""
        if self.project is not None:
            return self.project.skip_gpu_arch()
        return dict(self._fresh.skip_gpu_arch) if self._fresh is not None else {}

    def compiled(self) -> Project:
        """The compiled project, which apply needs for the jobs' specs: compiled now if a fresh lock
        stood for it, so that an apply with nothing to do compiles nothing."""
        if self.project is None:
            from madengine.compile.compiler import compile_project

            self.project = compile_project(self._madfile())
        return self.project

    def target_configs(self) -> Mapping[str, Any]:
        """The targets' configuration, for making backends: the madfile's, read alone if not compiled."""
        if self.project is not None:
            return self.project.targets
        if self._loaded is None and self._fresh is not None and self._fresh.targets is not None:
            recorded = _recorded_targets(self._fresh.targets)
            if recorded is not None:
                return recorded
        return self._madfile().madfile.effective_targets()

    def _madfile(self) -> LoadedMadfile:
        if self._loaded is None:
            from madengine.madfile.load import load_and_check

            self._loaded = load_and_check(self.madfile)
        return self._loaded


def _recorded_targets(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The targets as a fresh lock's record has them (None if this code cannot read them), for a docker
    target's no-op plan, which needs its backend, hence its configuration: far cheaper than reading the
    madfile. The record is a dump of validated targets by this very code (its fingerprint covers the
    code), so flat ones are constructed as they are; nested ones are validated again."""
    from typing import get_args

    from madengine.madfile.model import Target

    by_backend = {get_args(cls.model_fields["backend"].annotation)[0]: cls for cls in get_args(get_args(Target)[0])}
    targets = {}
    try:
        for name, config in data.items():
            cls = by_backend[config["backend"]]
            flat = set(config) == set(cls.model_fields) and not any(isinstance(v, dict | list)
                                                                    for v in config.values())
            targets[name] = cls.model_construct(**config) if flat else cls.model_validate(config)
    except (LookupError, TypeError, ValueError):
        return None
    return targets


def realization(madfile: Path, *, locked: bool, select: Sequence[str] = (), targets: Sequence[str] = (),
                state: str | None = None, text: str | None = None, compile: bool = True) -> Realization:
    """The lock (refreshed unless `locked`), its graph narrowed by select/targets, and the backends.

    With `compile=False` a lock that `lock.freshness` knows fresh is taken as it is, and nothing is
    compiled until `Realization.compiled()` is asked for.
    """
    from madengine.backends.base import Workspace, workspace_id
    from madengine.backends.registry import LazyBackends
    from madengine.graph.build import build_graph
    from madengine.graph.build import select as select_nodes
    from madengine.lock import freshness
    from madengine.lock.lockfile import parse_lock
    from madengine.madfile.locate import display_path
    from madengine.state.location import identity, local_dir, locate_store

    root = Path(madfile).absolute().parent
    fresh = None if compile or text is not None else freshness.check(madfile, root / LOCK_NAME)
    project: Project | None
    note = ""
    loaded: LoadedMadfile | None = None
    if fresh is not None:
        lock, lock_hash, project = parse_lock(fresh.lock_text, root / LOCK_NAME, trusted=True), fresh.lock_hash, None
        registry, tags, shown = fresh.registry, fresh.tags, display_path(madfile)
    else:
        current = current_lock(madfile, locked=locked, text=text)
        lock, lock_hash, project = current.lock, lock_digest(current.lock), current.project
        registry, tags, shown = project.registry, project.model_tags(), current.loaded.display_path
        note = current.note
        loaded = current.loaded
    db = locate_store(madfile, state, loaded=loaded)
    graph = select_nodes(build_graph(lock, registry=registry, tags=tags), select, targets)
    workspace = Workspace(root=root, state_dir=local_dir(db), workspace_id=workspace_id(identity(db)))
    used = {t for data in graph.nodes.values()
            for t in ((data["target"],) if data["kind"] == "job" else data.get("targets", ()))}
    r = Realization(madfile, shown, lock, lock_hash, registry, graph, workspace,
                    LazyBackends(used, lambda: r.target_configs(), workspace, registry), db, project,
                    _fresh=fresh, lock_note=note)
    return r


def make_plan(r: Realization, store: StateStore, replace: Sequence[str] = (),
              rerun_failed: bool = False, replace_reason: str | None = None) -> tuple[Plan, Observed]:
    """Observe (read-only), plan (pure), then refuse the plan's jobs whose target cannot run them (asked
    of what the plan runs: a no-op plan asks no backend); what was observed comes back too."""
    from madengine.errors import UsageError
    from madengine.plan.observe import observe, runnable
    from madengine.plan.planner import REPLACED, PlanOptions, plan, refuse_what_cannot_run

    unknown = [a for a in replace if a not in r.graph]
    if unknown:
        raise UsageError(f"--replace {unknown[0]!r} is not a node of this plan",
                         hint="addresses are listed by `madengine plan` and `madengine graph`")
    observed = observe(store, r.graph, r.lock, r.backends, r.registry)
    the_plan = plan(r.lock, r.lock_hash, r.graph, observed,
                    PlanOptions(replace=frozenset(replace), rerun_failed=rerun_failed,
                                replace_reason=replace_reason or REPLACED, rerun_on=r.rerun_on(),
                                skip_gpu_arch=r.skip_gpu_arch()))
    refuse_what_cannot_run(runnable(the_plan, r.lock, r.backends))
    return the_plan, observed
