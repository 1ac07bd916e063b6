"""The MAD run directory on any host, written once for every backend that runs on a `Session`.

A job runs in a private copy of its script's directory with the context's pre/post scripts beside it
(MAD copies them, so a run cannot touch the package). The copy is made on this machine, in the
workspace's runs directory, then put on the job's host when that is another machine. After the run,
what apply judges (the log and the model's CSV of results) is brought back as `RunArtifacts`.
"""

from __future__ import annotations

import posixpath
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from madengine.backends.base import Cancel, Outcome, RunArtifacts, Workspace, node_file_name, run_steps
from madengine.backends.credentials import CREDENTIAL_FILE
from madengine.backends.session import RemotePath, Session
from madengine.backends.specs import JobSpec
from madengine.compile.ir import run_dir_names
from madengine.state.model import Status


class RunDirConflict(OSError):
    """A pre/post script would replace another file of the run directory (validate reports it first)."""


def fill_run_dir(root: Path, job: JobSpec, run_dir: Path) -> None:
    """A fresh copy of the script's directory, then the pre/post scripts under their own names.

    A script at the project root is copied alone, never the project with its state directory. Nothing
    copied may replace another file: a pre-script named like the model's script would run instead of it
    (RunDirConflict); the same file listed twice (a script of the model's directory, or one script both
    pre and post) is copied once.
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    source = root / job.script
    if source.parent.resolve() == root.resolve():
        run_dir.mkdir(parents=True)
        shutil.copy2(source, run_dir / source.name)
        origins = {source.name: source.resolve()}
    else:
        shutil.copytree(source.parent, run_dir, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        origins = {p.name: p.resolve() for p in source.parent.iterdir()}
    pre, post = run_dir_names(job.pre_scripts, job.post_scripts)
    for call, name in zip((*job.pre_scripts, *job.post_scripts), (*pre, *post), strict=True):
        script = root / call.path
        if name in origins or (run_dir / name).exists():
            if origins.get(name) == script.resolve():
                continue  # the same file: a script of the model's directory, or listed twice
            raise RunDirConflict(f"{call.path} would replace {name} of the run directory (a copy of "
                                 f"{posixpath.dirname(job.script) or '.'}/); rename one of them")
        shutil.copy2(script, run_dir / name)
        origins[name] = script.resolve()


def prepare_run_dir(session: Session, root: Path, job: JobSpec, *, staging: Path, runs: RemotePath) -> RemotePath:
    """The job's run directory on the session's host, under `runs` (an absolute path there): filled in
    `staging` on this machine, then put on the host unless `runs` is that very directory."""
    name = node_file_name(job.address)
    local = staging / name
    fill_run_dir(root, job, local)
    remote = posixpath.join(runs, name)
    if remote != str(local):
        session.put(local, remote)
    return remote


def collect_artifacts(session: Session, job: JobSpec, run_dir: RemotePath, exit_code: int | None,
                      log_lost: str = "") -> RunArtifacts:
    """What apply judges, on this machine: the log (already here: apply chose its path) and a copy of
    the model's CSV of results beside it, kept per attempt (the run directory is replaced by the next run)."""
    assert job.log_path is not None, "apply chooses the log path"
    perf_csv = None
    if job.multiple_results:
        local = job.log_path.with_name(f"{job.log_path.stem}.{posixpath.basename(job.multiple_results)}")
        if session.get(posixpath.join(run_dir, job.multiple_results), local):
            perf_csv = local
    return RunArtifacts(log=job.log_path, run_dir=run_dir, exit_code=exit_code, perf_csv=perf_csv,
                        log_lost=log_lost)


def run_host_steps(session: Session, job: JobSpec, env: dict[str, str], run_dir: RemotePath, log: BinaryIO,
                   cancel: Cancel) -> Outcome:
    """The MAD run protocol as host processes (no container): pre-scripts, the model, post-scripts.

    After a failure the remaining pre/main steps are skipped, post steps still run (they stop what pre
    steps started); the first failure is the outcome, as the docker backend's driver script does. The
    job's timeout covers the whole job. The command is not echoed into the log: an argument reading
    `performance: 1 x` would be taken for the model's result.
    """
    host = session.host.name
    deadline = time.monotonic() + job.timeout if job.timeout > 0 else None
    failed: Outcome | None = None
    for kind, argv in run_steps(job):
        if failed is not None and kind != "post":
            continue
        finished = session.exec(argv, cwd=run_dir, env=env, output=log, cancel=cancel, deadline=deadline)
        if finished.status is Status.TIMEOUT:
            log.write(f"\nmadengine: timed out after {job.timeout} s\n".encode())
            return Outcome(Status.TIMEOUT, exit_code=finished.exit_code, host=host,
                           message=f"timed out after {job.timeout} s")
        if finished.status is Status.INTERRUPTED:
            return Outcome(Status.INTERRUPTED, exit_code=finished.exit_code, host=host, message="interrupted")
        if finished.status is not Status.SUCCESS and failed is None:
            if finished.started:
                message = f"{argv[1]} exited with code {finished.exit_code}"
            else:  # it never ran: the log says why, as a shell would
                message = finished.message
                log.write(f"madengine: {message}\n".encode())
            failed = Outcome(Status.FAILURE, exit_code=finished.exit_code, host=host, message=message)
    return failed or Outcome(Status.SUCCESS, exit_code=0, host=host)


# `madengine generate` marks the directories it writes: one inside the package is not part of the package
# (its first run would otherwise lack the directory a second one has, and no output would ever be stable).
GENERATED_MARKER = ".madengine-generated"


def package_entries(workspace: Workspace, package_dir: str, within: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """The MAD package root's top-level entries a job sees beside its run directory (mounted or copied).
    Not hidden entries (.git, the state dir), never credential.json (a model gets no registry password), not
    what `generate` wrote, nor an entry holding a directory of `within` (where a backend copies the package
    to: a copy into itself would never end)."""
    root = (workspace.root / package_dir).resolve()
    state_dir = workspace.state_dir.resolve()
    targets = [p.resolve() for p in within]
    return [(e.name, e) for e in sorted(root.iterdir())
            if not e.name.startswith(".") and e.name != CREDENTIAL_FILE and e.resolve() != state_dir
            and not (e / GENERATED_MARKER).exists() and not any(p.is_relative_to(e.resolve()) for p in targets)]
