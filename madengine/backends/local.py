"""The `local` backend, the embedded default: a model's script as a host process, no container.

The MAD run protocol without Docker: the script's directory is copied into a private run directory,
the context's pre-scripts run there, then `bash <script> <args>` with the MAD environment, then the
post-scripts (after a failure too, as in the docker backend). Each job is a process group of its own,
so a timeout or Ctrl-C stops all it started, and an apply killed with SIGKILL leaves a group that the
next apply can find and stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from madengine.backends.base import ATTEMPT_ENV, Cancel, OrphanRecord, Outcome, Workspace
from madengine.backends.credentials import job_environ
from madengine.backends.local_session import LocalSession, process_env, this_machine_facts
from madengine.backends.rundir import collect_artifacts, prepare_run_dir, run_host_steps
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.errors import Diagnostic
from madengine.facts.model import HostFacts
from madengine.state.model import Status

if TYPE_CHECKING:  # the target's type only: pydantic is not needed to run a job
    from madengine.madfile.model import LocalTarget

class LocalBackend:
    name: ClassVar[str] = "local"
    builds_images: ClassVar[bool] = False

    def __init__(self, target_name: str, target: LocalTarget, workspace: Workspace) -> None:
        self.target_name = target_name
        self.target = target
        self.workspace = workspace
        self.session = LocalSession(HostInfo(socket.gethostname(), target.gpus))
        self.host = self.session.host.name

    # --- protocol -------------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        gpus = self.target.gpus
        if gpus is not None and job.n_gpus > gpus:
            return [Diagnostic(None, None, None, f"{job.address} needs {job.n_gpus} GPUs; target "
                               f"{self.target_name!r} has {gpus}", hint="lower n_gpus, or set the target's gpus")]
        return []

    def hosts(self) -> list[HostInfo]:
        return [HostInfo(self.host, self.target.gpus)]

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        return {}  # nothing to observe: local jobs need no image

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        return {self.host: this_machine_facts(self.workspace.facts, self.host)}

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message="the local backend builds no images")

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message="the local backend pushes no images")

    def observe_registry(self, image: ImageSpec) -> str | None:
        return None

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        return None  # a host process is given no devices: what it finds on the host is the model's business

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message="the local backend pulls no images")

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message="the local backend has one host and no images to deliver")

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.log_path is not None, "apply chooses the log path"
        runs = self.runs_dir()
        try:
            _mirror(self.workspace.root / job.package_dir, runs)
            run_dir = prepare_run_dir(self.session, self.workspace.root, job, staging=runs, runs=str(runs))
        except OSError as e:  # RunDirConflict included: a script would replace another
            return Outcome(Status.FAILURE, message=f"cannot prepare the run directory: {e}", host=self.host)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with job.log_path.open("ab") as log:
            outcome = run_host_steps(self.session, job, self.environment(job), run_dir, log, cancel)
        return replace(outcome, artifacts=collect_artifacts(self.session, job, run_dir, outcome.exit_code))

    def close(self) -> None:
        pass  # no connection

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """Stop the process groups that RUNNING attempts of a killed apply left on this host.

        Each record's handle is the group id (as text). A group is stopped only if its leader's
        environment names that attempt, so a recycled pid is never hit. A sweep (None) has nothing
        to find: a process group is only known through its attempt.
        """
        stopped: list[str] = []
        for entry in running or ():
            handle, attempt = entry.handle, entry.attempt
            if entry.host != self.host or not handle or not handle.isdigit():
                continue
            pgid = int(handle)
            if process_env(pgid).get(ATTEMPT_ENV) == str(attempt):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
                    stopped.append(f"process group {pgid} of attempt {attempt}")
        return stopped

    # --- parts ----------------------------------------------------------------------------------

    def runs_dir(self) -> Path:
        """Where run directories go: the target's `workdir` (relative to the madfile's directory, `~`
        expanded), else `.madengine/runs`."""
        workdir = self.target.workdir
        if workdir is None:
            return self.workspace.runs
        return self.workspace.root / Path(workdir).expanduser()

    def environment(self, job: JobSpec) -> dict[str, str]:
        homes = [str(self.workspace.root / m.host_path) if m.in_project else m.host_path for m in job.data_mounts]
        return {**job_environ(), **host_environment(job, self.target.gpus, homes)}


def host_environment(job: JobSpec, host_gpus: int | None, data_homes: list[str]) -> dict[str, str]:
    """The MAD variables of a job run as host processes (no container), under the job's own env, for
    every host-process backend (`local` adds this machine's environment, `ssh` the host's `env:`).
    `data_homes`: the data mounts' paths on the job's host (no container: the data is where it is)."""
    gpus = host_gpus or 0
    runtime = gpus if job.n_gpus == -1 else max(job.n_gpus, 0)
    # The MAD variables from the spec (as the docker backend sets them), under the job's own env.
    mad = {"MAD_MODEL_NAME": job.model, "MAD_GPU_VENDOR": job.gpu_vendor, "MAD_GUEST_OS": job.guest_os}
    if job.multiple_results:
        mad["MAD_OUTPUT_CSV"] = job.multiple_results
    env = {**mad, **job.env}
    if data_homes:
        env["MAD_DATAHOME"] = ",".join(data_homes)
    env.update({
        "MAD_SYSTEM_NGPUS": str(gpus),
        "MAD_RUNTIME_NGPUS": str(runtime),
        ATTEMPT_ENV: job.env.get(ATTEMPT_ENV, ""),
    })
    if job.gpu_ids:
        visible = ",".join(map(str, job.gpu_ids))
        env["HIP_VISIBLE_DEVICES" if job.gpu_vendor == "AMD" else "CUDA_VISIBLE_DEVICES"] = visible
    return env


def _mirror(package_root: Path, runs: Path) -> None:
    """Links in `runs/` to the package root's entries (not replacing anything that is there)."""
    runs.mkdir(parents=True, exist_ok=True)
    for entry in package_root.iterdir():
        if entry.name.startswith("."):
            continue
        link = runs / entry.name
        if not link.exists() and not link.is_symlink():
            with contextlib.suppress(FileExistsError):
                link.symlink_to(entry.resolve())
