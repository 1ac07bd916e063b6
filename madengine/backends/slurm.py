"""The `slurm` backend: jobs handed to a SLURM cluster as sbatch scripts, never scheduled by madengine.

The cluster is reached through one session: this machine (`LocalSession`) when the target has no `login:`,
else the login node over SSH (`FabricSession`, host keys checked as for `ssh` targets). Everything a job
needs is written into the target's shared directory (see `slurm_render` for its layout): the MAD package
(sent once per command, only when it changed), each job's run directory (rundir.prepare_run_dir), the
scripts. Jobs of one image and shape are one job array; a multi-node job is one job of N nodes whose
script srun starts once per node.

Submission is `sbatch --parsable` (a secret of a job's environment reaches the script through sbatch's
environment, never a file); observation is one `squeue -t all` for every handle in flight (it lists
finished jobs too while the controller keeps them, MinJobAge), and `sacct -P` for the ones it no longer
knows when the cluster keeps accounting (detected once; without it such a job is a FAILURE saying so).
A handle is taken for this workspace's only if its job name says so: job ids restart when a cluster's
state is wiped, and another user's job must never be reported, nor cancelled, as ours.

Images for `container: docker|apptainer` are built by this machine's engine and pushed to the madfile's
registry; each node pulls the content-addressed tag (docker) or the shared directory gets one `.sif` per
image (apptainer). Performance is judged from the job's output exactly as for `docker` (by apply's
`judge_job`, from the log and CSV `collect` brings back).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from madengine.backends import slurm_render as render
from madengine.backends.base import Cancel, OrphanRecord, Outcome, QueueState, RunArtifacts, Workspace, node_file_name
from madengine.backends.builder import BuildsHere
from madengine.backends.credentials import job_environ
from madengine.backends.local_session import LocalSession
from madengine.backends.multinode import LAUNCHER
from madengine.backends.rundir import collect_artifacts, fill_run_dir, package_entries, prepare_run_dir
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.errors import Diagnostic
from madengine.state.model import Status

if TYPE_CHECKING:
    from madengine.backends.docker import DockerBackend
    from madengine.backends.ssh_session import FabricSession
    from madengine.facts import HostFacts
    from madengine.madfile.model import SlurmTarget

COMMAND_TIMEOUT = 120.0  # seconds a SLURM client command may take (a busy controller answers slowly)
# States after which a job changes no more, and what each means to madengine.
FINISHED: Mapping[str, Status] = {
    "COMPLETED": Status.SUCCESS, "TIMEOUT": Status.TIMEOUT, "CANCELLED": Status.INTERRUPTED,
    **dict.fromkeys(("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT",
                     "REVOKED"), Status.FAILURE)}
_SQUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,NodeList:|,exit_code:|,Name:|"
_HANDLE = re.compile(r"\d+(?:_\d+)?\Z")
UNKNOWN = "no longer known to SLURM"


class SlurmBackend(BuildsHere):
    name: ClassVar[str] = "slurm"
    system: ClassVar[str] = "slurm"
    poll_interval: ClassVar[float] = 0.5  # a job takes about a second on an idle cluster; a squeue, milliseconds
    # Images are built here and pushed (container docker/apptainer); a `container: none` target's jobs have no
    # image node at all (madfile.model.runs_in_image), so it is never asked to build one.
    builds_images: ClassVar[bool] = True

    def __init__(self, target_name: str, target: SlurmTarget, workspace: Workspace, *,
                 known_hosts: Sequence[Path] | None = None, registry: str | None = None) -> None:
        """`registry`: where the nodes pull images from (the madfile's); also learnt from the images this
        backend is asked about."""
        self.target_name = target_name
        self.target = target
        self.workspace = workspace
        self.registry = registry
        self.container: str = target.container
        self._known_hosts = known_hosts
        self._lock = threading.Lock()
        self._session: LocalSession | FabricSession | None = None
        self._cluster: render.Cluster | None = None
        self._packages: dict[str, tuple[str, ...]] = {}  # package_dir -> its entries, in place this command
        self._builder: DockerBackend | None = None
        self._accounting: bool | None = None
        self._runnable: tuple[str, str] | bool | None = False  # False: not asked yet

    # --- the cluster ----------------------------------------------------------------------------------

    def session(self) -> LocalSession | FabricSession:
        """This machine, or the login node (opened by its first command)."""
        with self._lock:
            if self._session is None:
                login = self.target.login
                host = HostInfo(self.target_name, None)
                if login is None:
                    self._session = LocalSession(host)
                else:
                    from madengine.backends.ssh_session import FabricSession, SshEndpoint, known_hosts_files

                    # as ssh hosts' keys: relative to the madfile, `~` expanded (inventory.target_hosts)
                    key = None if login.key is None else os.path.normpath(
                        os.path.join(self.workspace.root, os.path.expanduser(login.key)))
                    self._session = FabricSession(
                        host, SshEndpoint(login.address, login.port, login.user, key),
                        known_hosts=tuple(self._known_hosts) if self._known_hosts is not None else known_hosts_files(),
                        remember=self.workspace.state_dir / "ssh" / "known_hosts",
                        host_key_check=self.target.host_key_check)
            return self._session

    def _where(self) -> str:
        return f"the login node {self.target.login.address}" if self.target.login else "this machine"

    def _command(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> tuple[int, str, str]:
        """A SLURM client command (an argument list) on this machine or the login node: (code, stdout,
        stderr); 127 when the command is not there. Raises HostUnavailable when it cannot be asked."""
        session = self.session()
        if isinstance(session, LocalSession):
            try:
                done = subprocess.run(list(argv), env={**job_environ(), **(env or {})}, capture_output=True, text=True,
                                      timeout=timeout, stdin=subprocess.DEVNULL, check=False)
            except FileNotFoundError:
                return 127, "", f"{argv[0]}: command not found"
            except subprocess.TimeoutExpired:
                raise HostUnavailable(self.target_name, f"{argv[0]} did not answer within {timeout:g} s",
                                      transient=True, hint="is slurmctld up? (`scontrol ping`)") from None
            return done.returncode, done.stdout, done.stderr
        if env:  # values never on a command line: the session sends them on stdin
            with tempfile.TemporaryFile() as buffer:
                finished = session.exec(list(argv), env=env, output=buffer, reap=False,
                                        deadline=time.monotonic() + timeout)
                buffer.seek(0)
                text = buffer.read().decode(errors="replace")
            if not finished.started:
                return 127, "", finished.message
            code = finished.exit_code if finished.exit_code is not None else 1
            return code, text, "" if code == 0 else text
        code, out, err = session.run_simple(shlex.join(argv), timeout=timeout)
        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def cluster(self) -> render.Cluster:
        """The target's settings with its directory in the shared directory (made on first use)."""
        with self._lock:
            known = self._cluster
        if known is not None:
            return known
        cluster = self.settings(self.session().expand(self.target.shared_dir))
        self._mkdirs([cluster.jobs, cluster.logs, cluster.runs])
        with self._lock:
            self._cluster = cluster
        return cluster

    def settings(self, shared_dir: str) -> render.Cluster:
        """The target's settings, its directory under `shared_dir` (absolute on the cluster)."""
        t = self.target
        base = posixpath.join(shared_dir, _safe(f"{self.workspace.workspace_id}-{self.target_name}"))
        return render.Cluster(
            target=self.target_name, workspace_id=self.workspace.workspace_id, base=base, container=t.container,
            partition=t.partition, account=t.account, qos=t.qos, time_limit=t.time_limit, exclusive=t.exclusive,
            constraint=t.constraint, modules=tuple(t.modules), extra_sbatch=tuple(t.extra_sbatch),
            gpus_per_node=t.gpus_per_node, array=t.array)

    def _mkdirs(self, paths: Sequence[str]) -> None:
        session = self.session()
        if isinstance(session, LocalSession):
            for path in paths:
                Path(path).mkdir(parents=True, exist_ok=True)
            return
        code, _, err = session.run_simple(shlex.join(["mkdir", "-p", "--", *paths]), timeout=COMMAND_TIMEOUT)
        if code != 0:
            raise OSError(f"cannot make {paths[0]} on {self._where()}: {_one_line(err.decode(errors='replace'))}")

    # --- validate / observe -----------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        t = self.target
        problems = []

        def problem(message: str, hint: str) -> None:
            problems.append(Diagnostic(None, None, None, f"{job.address}: {message}", hint=hint))

        if job.n_gpus > 0 and t.gpus_per_node is None:
            problem(f"needs {job.n_gpus} GPUs, and target {self.target_name!r} asks SLURM for none",
                    "set the target's `gpus_per_node` (its nodes' GPUs), so that jobs ask for theirs")
        elif t.gpus_per_node is not None and job.n_gpus > t.gpus_per_node:
            problem(f"needs {job.n_gpus} GPUs; a node of target {self.target_name!r} has {t.gpus_per_node}",
                    "lower n_gpus, or run it on more nodes (nnodes)")
        if t.max_nodes is not None and job.nnodes > t.max_nodes:
            problem(f"asks for {job.nnodes} nodes; target {self.target_name!r} has {t.max_nodes} (max_nodes)",
                    "lower the model's nnodes, or use a partition with more nodes")
        if self.container != "none" and job.image_tag is None:
            problem("has no image to run in", "set `container: none` to run host processes")
        problems += [Diagnostic(None, None, None, f"{job.address}: {p}")
                     for p in render.validate(job, self._plain_cluster())]
        return problems

    def _plain_cluster(self) -> render.Cluster:
        """The settings without the shared directory resolved (for checks that need no I/O)."""
        t = self.target
        return render.Cluster(target=self.target_name, workspace_id=self.workspace.workspace_id, base="/",
                              container=t.container, gpus_per_node=t.gpus_per_node)

    def hosts(self) -> list[HostInfo]:
        return [HostInfo(self.target_name, None, None)]  # SLURM places jobs, not madengine

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        """Whether sbatch is there (asked once per command): on this machine, or on the login node."""
        with self._lock:
            known = self._runnable
        if known is not False:
            return known  # type: ignore[return-value]
        if self.target.login is None:
            found = shutil.which("sbatch") is not None
        else:
            code, _, _ = self._command(["sh", "-c", "command -v sbatch"], timeout=60)
            found = code == 0
        answer = None if found else (
            f"target {self.target_name}: sbatch is not installed on {self._where()}",
            "install SLURM's client commands there (Debian: slurm-client)" if self.target.login else
            "install SLURM's client commands (Debian: slurm-client), or give the target a `login:` node")
        with self._lock:
            self._runnable = answer
        return answer

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        return {}  # a compute node is known only once a job runs there: no facts to compare before

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        """The images this machine's engine holds (they are built here, then pushed for the nodes to pull),
        as the target's one host."""
        if self.container == "none" or not images:
            return {}
        self._learn_registry(images)
        seen = self.builder().observe_images(images)
        return {self.target_name: {tag: image_id for tags in seen.values() for tag, image_id in tags.items()}}

    def observe_registry(self, image: ImageSpec) -> str | None:
        self._learn_registry([image])
        return self.builder().observe_registry(image) if self.container != "none" else None

    def _learn_registry(self, images: Sequence[ImageSpec]) -> None:
        for image in images:
            if image.registry and self.registry is None:
                self.registry = image.registry

    # --- images -----------------------------------------------------------------------------------------

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        if self.container == "none":
            return Outcome(Status.FAILURE, message=f"target {self.target_name} runs host processes (container: none)")
        self._learn_registry([image])
        return self.builder().build(image, log_path, cancel)

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        self._learn_registry([image])
        return self.builder().push(image, log_path, cancel)

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Built elsewhere, in the registry: pulled here too, where the target's images are observed."""
        self._learn_registry([image])
        return self.builder().pull(image, log_path, cancel)

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message=f"target {self.target_name} has one host: its nodes pull images "
                                               "from the registry")

    def image_ref(self, job: JobSpec) -> str:
        """What the nodes pull: the job's image in the registry, as it was pushed."""
        if job.image_tag is None:
            raise ValueError(f"{job.address} has no image")
        if not self.registry:
            raise ValueError(f"no registry is known to pull {job.image_tag} from (the madfile's `registry:`)")
        spec = ImageSpec(address=job.address, node_hash="", tag=job.image_tag, dockerfile="", build_context="",
                         build_args={}, base=None, base_digest=None, registry=self.registry)
        repository, tag = self.builder().push_reference(spec)
        return f"{repository}:{tag}"

    # --- the package and run directories ----------------------------------------------------------------

    def _package(self, job: JobSpec, cluster: render.Cluster) -> tuple[str, ...]:
        """The job's MAD package in the shared directory (sent once per command, when it changed), linked
        into runs/ so that `../scripts/...` from a run directory means what it means in ROCm madengine."""
        with self._lock:
            known = self._packages.get(job.package_dir)
        if known is not None:
            return known
        from madengine.backends.ssh import _LINK, _package_id

        session = self.session()
        entries = self.package_entries(job, [Path(cluster.base)] if isinstance(session, LocalSession) else [])
        ident = _package_id(entries)
        id_file = posixpath.join(cluster.base, "package.id")
        if isinstance(session, LocalSession):
            there = Path(id_file).read_text(encoding="utf-8").strip() if Path(id_file).is_file() else ""
            if there != ident:
                shutil.rmtree(cluster.package, ignore_errors=True)
                for name, path in entries:
                    session.put(path, posixpath.join(cluster.package, name))
                for name, _ in entries:
                    link = Path(cluster.runs) / name
                    if link.is_symlink() or link.is_file():
                        link.unlink()
                    elif link.is_dir():
                        shutil.rmtree(link)
                    link.symlink_to(posixpath.join("..", "package", name))
                Path(id_file).write_text(ident + "\n", encoding="utf-8")
        else:
            code, out, _ = session.run_simple(f"cat -- {shlex.quote(id_file)} 2>/dev/null", timeout=COMMAND_TIMEOUT)
            if out.decode(errors="replace").strip() != ident:
                session.put_many(entries, cluster.package, replace_all=True)
                code, _, err = session.run_simple(shlex.join(["sh", "-c", _LINK, "madengine-link", cluster.base, ident,
                                                              *(n for n, _ in entries)]), timeout=COMMAND_TIMEOUT)
                if code != 0:
                    raise OSError(f"cannot link the package into {cluster.runs}: {_one_line(err.decode())}")
        names = tuple(n for n, _ in entries)
        with self._lock:
            self._packages[job.package_dir] = names
        return names

    def package_entries(self, job: JobSpec, within: Sequence[Path] = ()) -> list[tuple[str, Path]]:
        """The MAD package root's top-level entries the nodes see: those the docker backend mounts, nor one
        holding a directory of `within` (where they are copied to)."""
        return package_entries(self.workspace, job.package_dir, within)

    def _task(self, job: JobSpec, cluster: render.Cluster) -> render.Task:
        entries = self._package(job, cluster)
        ref = self.image_ref(job) if self.container != "none" else None
        run_dir = prepare_run_dir(self.session(), self.workspace.root, job,
                                  staging=self.workspace.runs / "slurm" / _safe(self.target_name), runs=cluster.runs)
        return render.Task(job=job, run_dir=run_dir, image_ref=ref, package_entries=entries)

    def generate(self, jobs: Sequence[JobSpec], directory: Path) -> list[Path]:
        """What `submit` hands SLURM, for all `jobs`, in `directory` (nothing is sent to the cluster): the
        scripts (`jobs/<name>.sbatch`, exactly as submitted), the run directories (`runs/<job>/`) and the MAD
        package (`package/`) staged to be copied into the shared directory, and `submit.sh`, which copies them
        there and submits the scripts in order. A secret of a job's environment is read by the scripts from
        sbatch's environment (their header says which)."""
        cluster = self.settings(self.session().expand(self.target.shared_dir))
        for stale in ("runs", "package", "jobs"):  # ours: what jobs gone since left
            shutil.rmtree(directory / stale, ignore_errors=True)
        tasks = {}
        for job in jobs:
            name = node_file_name(job.address)
            fill_run_dir(self.workspace.root, job, directory / "runs" / name)
            entries = self.package_entries(job, [directory])
            for entry, path in entries:
                if not (directory / "package" / entry).exists():
                    LocalSession().put(path, str(directory / "package" / entry))
            ref = self.image_ref(job) if self.container != "none" else None
            tasks[job.address] = render.Task(job, posixpath.join(cluster.runs, name), ref,
                                             tuple(n for n, _ in entries))
        written: list[tuple[str, render.Script]] = []
        (directory / "jobs").mkdir(parents=True, exist_ok=True)
        for group in render.group(list(jobs), cluster):
            script = render.render([tasks[j.address] for j in group], cluster)
            local = f"jobs/{script.name}.sbatch"
            (directory / local).write_text(script.text, encoding="utf-8")
            written.append((local, script))
        submit = directory / "submit.sh"
        submit.write_text(render.render_submit(written, cluster), encoding="utf-8")
        submit.chmod(0o755)
        return [directory / local for local, _ in written] + [submit]

    # --- submit / poll / collect / cancel ----------------------------------------------------------------

    def submit(self, jobs: Sequence[JobSpec],
               on_handle: Callable[[JobSpec, str], None] | None = None) -> list[str | Outcome]:
        results: dict[str, str | Outcome] = {}
        try:
            cluster = self.cluster()
        except HostUnavailable as e:  # the login node: unreachable, key refused or unknown...
            return [self._failed(j, f"{self._where()}: {e.reason}", transient=e.transient) for j in jobs]
        except (OSError, ValueError) as e:
            return [self._failed(j, f"cannot prepare {self.target.shared_dir} on {self._where()}: {_message(e)}")
                    for j in jobs]
        tasks: dict[str, render.Task] = {}
        for job in jobs:
            try:
                tasks[job.address] = self._task(job, cluster)
            except HostUnavailable as e:
                results[job.address] = self._failed(job, f"{self._where()}: {e.reason}", transient=e.transient)
            except (OSError, ValueError) as e:  # RunDirConflict included; a full shared disk; no registry
                results[job.address] = self._failed(job, f"cannot prepare the job: {_message(e)}")
        ready = [j for j in jobs if j.address in tasks]
        for group in render.group(ready, cluster):
            try:
                script = render.render([tasks[j.address] for j in group], cluster)
                job_id = self._sbatch(script, cluster)
            except HostUnavailable as e:
                for job in group:
                    results[job.address] = self._failed(job, f"{self._where()}: {e.reason}", transient=e.transient)
                continue
            except (OSError, ValueError) as e:
                for job in group:
                    results[job.address] = self._failed(job, f"sbatch: {_message(e)}")
                continue
            for index, job in enumerate(group):
                handle = results[job.address] = script.handle(job_id, index)
                if on_handle is not None:
                    on_handle(job, handle)
        return [results[j.address] for j in jobs]

    def _sbatch(self, script: render.Script, cluster: render.Cluster) -> str:
        """Write the script into the shared directory and submit it: its job id."""
        path = script.path(cluster)
        staging = self.workspace.runs / "slurm" / _safe(self.target_name) / "jobs"
        staging.mkdir(parents=True, exist_ok=True)
        local = staging / posixpath.basename(path)
        local.write_text(script.text, encoding="utf-8")
        self.session().put(local, path)
        code, out, err = self._command(["sbatch", "--parsable", path], env=script.secrets)
        lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
        found = re.fullmatch(r"(\d+)(?:;\S+)?", lines[-1]) if lines else None
        if code != 0 or found is None:
            raise OSError(_one_line(err or out) or f"exit {code}")
        return found.group(1)

    def poll(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        """One `squeue -t all` for every handle; `sacct -P` for those it no longer lists, when the cluster
        keeps accounting."""
        if not handles:
            return {}
        valid = [h for h in handles if _HANDLE.match(h)]
        seen: dict[str, QueueState] = {}
        if valid:
            code, out, err = self._command(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(valid),
                                            "-O", _SQUEUE_FORMAT])
            if code != 0 and "Invalid job id" not in err:
                raise HostUnavailable(self.target_name, f"squeue: {_one_line(err or out) or f'exit {code}'}",
                                      transient=True, hint="is slurmctld up? (`scontrol ping`)")
            if code == 0:
                seen = parse_squeue(out, self._job_prefix())
        missing = [h for h in valid if h not in seen]
        if missing and self.accounting():
            seen.update(self._sacct(missing))
        missing = [h for h in valid if h not in seen]
        if missing:
            seen.update(self._exit_files(missing))
        return {h: seen.get(h) or QueueState(h, "UNKNOWN", Status.FAILURE, reason=UNKNOWN) for h in handles}

    def _exit_files(self, handles: Sequence[str]) -> dict[str, QueueState]:
        """Jobs SLURM no longer lists (MinJobAge passed, no accounting) that left their exit status beside
        their log: finished, with it. One command for all of them."""
        code, out, _ = self._command(["sh", "-c", _EXIT_FILES, "sh", self.cluster().logs, *handles])
        found: dict[str, QueueState] = {}
        for line in out.splitlines() if code == 0 else ():
            handle, _, status = line.strip().partition(" ")
            if handle in handles and status.lstrip("-").isdigit():
                exit_code = int(status)
                found[handle] = QueueState(handle, "COMPLETED" if exit_code == 0 else "FAILED",
                                           Status.SUCCESS if exit_code == 0 else Status.FAILURE, exit_code=exit_code,
                                           reason="" if exit_code == 0 else f"exit code {exit_code}")
        return found

    def observe_queue(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        return self.poll(handles)

    def _job_prefix(self) -> str:
        """How this workspace's job names begin (slurm_render.submission_name)."""
        return "madengine-" + re.sub(r"[^A-Za-z0-9_.-]", "_", self.workspace.workspace_id)[:24] + "-"

    def accounting(self) -> bool:
        """Does the cluster keep accounting (so `sacct` knows jobs the controller forgot)? Asked once."""
        with self._lock:
            known = self._accounting
        if known is None:
            code, out, _ = self._command(["scontrol", "show", "config"])
            found = re.search(r"^AccountingStorageType\s*=\s*(\S+)", out, re.MULTILINE)
            known = code == 0 and found is not None and found.group(1) != "accounting_storage/none"
            with self._lock:
                self._accounting = known
        return known

    def _sacct(self, handles: Sequence[str]) -> dict[str, QueueState]:
        code, out, _ = self._command(["sacct", "-P", "-n", "-X", "-j", ",".join(handles),
                                      "-o", "JobID,State,Reason,NodeList,ExitCode,JobName"])
        return parse_sacct(out, self._job_prefix()) if code == 0 else {}

    def collect(self, job: JobSpec, state: QueueState) -> Outcome:
        """The job's output (its log) into job.log_path, its results CSV, and its status (apply judges the
        log and CSV for performance and errors, as for every backend)."""
        assert job.log_path is not None, "apply chooses the log path"
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        lost = ""
        try:
            cluster = self.cluster()
            output = render.output(cluster, state.handle)
            if not self.session().get(output, job.log_path):
                lost = f"the job's output {output} is missing"
                _log(job.log_path, f"madengine: {lost}\n")
            run_dir = posixpath.join(cluster.runs, node_file_name(job.address))
        except (HostUnavailable, OSError) as e:
            lost = f"the results could not be fetched: {_message(e)}"
            _log(job.log_path, f"madengine: {lost}\n")
            run_dir = ""
        outcome = self.outcome(job, state)
        if run_dir:
            try:
                artifacts = collect_artifacts(self.session(), job, run_dir, outcome.exit_code, lost)
            except (HostUnavailable, OSError) as e:
                lost = lost or f"the results could not be fetched: {_message(e)}"
                artifacts = RunArtifacts(log=job.log_path, run_dir=run_dir, exit_code=outcome.exit_code, log_lost=lost)
        else:
            artifacts = RunArtifacts(log=job.log_path, run_dir=run_dir, exit_code=outcome.exit_code, log_lost=lost)
        return replace(outcome, artifacts=artifacts)

    def outcome(self, job: JobSpec, state: QueueState) -> Outcome:
        """What a finished job's state says, before its log is judged."""
        details: dict[str, Any] = {"slurm_job": state.handle, "state": state.state, "nodes": state.where,
                                   "nnodes": job.nnodes, "gpus_per_node": render.gpus(job, self._plain_cluster()),
                                   "launcher": LAUNCHER if job.nnodes > 1 else ""}
        said = state.describe(self.system)
        if state.status is Status.SUCCESS:
            return Outcome(Status.SUCCESS, exit_code=0, host=self.target_name, details=details)
        if state.status is Status.TIMEOUT:
            return Outcome(Status.TIMEOUT, exit_code=None, host=self.target_name, details=details,
                           message=f"timed out after {job.timeout} s ({said})")
        if state.status is Status.INTERRUPTED:
            return Outcome(Status.INTERRUPTED, exit_code=None, host=self.target_name, details=details,
                           message=f"cancelled ({said})")
        # FAILED is the script's own exit code (judged from the log as for docker); the rest never ran to an end
        code = state.exit_code if state.state == "FAILED" else None
        return Outcome(Status.FAILURE, exit_code=code, host=self.target_name, details=details, message=said)

    def max_nodes(self) -> int | None:
        return self.target.max_nodes

    def cancel(self, handles: Sequence[str]) -> None:
        """One scancel for all (one already finished is no error)."""
        valid = [h for h in handles if _HANDLE.match(h)]
        if valid:
            self._command(["scancel", *valid])

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        """Submit one job and wait for it (the batch protocol, for one job)."""
        (submitted,) = self.submit([job])
        if isinstance(submitted, Outcome):
            return submitted
        cancel.started(submitted)
        cancelled = False
        while True:
            try:
                state = self.poll([submitted])[submitted]
            except HostUnavailable:
                state = QueueState(submitted, "UNKNOWN")  # asked again at the next poll
            if state.finished:
                return self.collect(job, state)
            if cancel.is_set() and not cancelled:
                self.cancel([submitted])
                cancelled = True
            cancel.wait(self.poll_interval)

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """scancel the jobs of the given attempts still queued or running (checked to be this workspace's by
        their job names). A sweep (None) cancels nothing: what is in the queue is found by its recorded
        handle, and a later plan may wait for it."""
        records = {r.handle: r for r in running or () if r.handle and _HANDLE.match(r.handle)
                   and r.host in (None, self.target_name)}
        if not records:
            return []
        live = {h: s for h, s in self.poll(list(records)).items() if not s.finished and s.reason != UNKNOWN}
        if not live:
            return []
        self.cancel(list(live))
        return [f"slurm job {h} ({s.state}) of attempt {records[h].attempt}" for h, s in sorted(live.items())]

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            self._cluster = None
            self._packages.clear()
            self._runnable = False
        if session is not None:
            session.close()

    def _failed(self, job: JobSpec, message: str, *, transient: bool = False) -> Outcome:
        if job.log_path is not None:
            _log(job.log_path, f"madengine: {message}\n")
        return Outcome(Status.FAILURE, message=message, host=self.target_name, transient=transient)


# --- parsing ------------------------------------------------------------------------------------------------


def exit_code(raw: str) -> int | None:
    """squeue's exit_code is a wait status: the code in its high byte, a signal in its low bits (128 + it)."""
    if not raw.strip().isdigit():
        return None
    status = int(raw)
    return 128 + (status & 0x7F) if status & 0x7F else status >> 8


def queue_state(handle: str, state: str, reason: str, nodes: str, code: int | None) -> QueueState:
    """One job as madengine reads it: finished or not, and why."""
    state = state.strip().split()[0] if state.strip() else "UNKNOWN"  # `CANCELLED by 0` in sacct
    reason = "" if reason.strip() in ("None", "(null)") else reason.strip()
    status = FINISHED.get(state)
    if status is Status.FAILURE and state == "FAILED" and code not in (None, 0):
        reason = f"exit code {code}" if reason in ("", "NonZeroExitCode") else f"{reason}, exit code {code}"
    return QueueState(handle, state, status, where=nodes.strip() if nodes.strip() not in ("(null)", "None") else "",
                      reason=reason, exit_code=code if status is not None else None)


def parse_squeue(text: str, prefix: str) -> dict[str, QueueState]:
    """`squeue -h -r -t all -O JobArrayID:|,State:|,Reason:|,NodeList:|,exit_code:|,Name:|` by handle; jobs
    whose name is not this workspace's (`prefix`) are left out (a job id another user's job now has)."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|", 5)
        if len(parts) < 6:
            continue
        handle, state, reason, nodes, code, name = parts
        if not name.rstrip("|").startswith(prefix):
            continue
        out[handle.strip()] = queue_state(handle.strip(), state, reason, nodes, exit_code(code))
    return out


# `sh -c` with the logs directory and the handles as arguments: "<handle> <status>" per exit file found.
_EXIT_FILES = ('cd "$1" 2>/dev/null || exit 0; shift; '
               'for h in "$@"; do [ -f "$h.exit" ] && printf "%s %s\\n" "$h" "$(cat "$h.exit")"; done; exit 0')


def parse_sacct(text: str, prefix: str) -> dict[str, QueueState]:
    """`sacct -P -n -X -o JobID,State,Reason,NodeList,ExitCode,JobName` by handle (ExitCode is `code:signal`)."""
    out = {}
    for line in text.splitlines():
        parts = line.split("|", 5)
        if len(parts) < 6 or not parts[5].startswith(prefix):
            continue
        handle, state, reason, nodes, code_text, _ = parts
        code_part, _, signal = code_text.partition(":")
        code = (128 + int(signal) if signal.isdigit() and int(signal) else int(code_part)) \
            if code_part.isdigit() else None
        out[handle] = queue_state(handle, state, reason, nodes, code)
    return out


# --- helpers ------------------------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "_"


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _message(e: BaseException) -> str:
    return _one_line(str(e)) or type(e).__name__


def _log(path: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
