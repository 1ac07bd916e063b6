"""The `ansible` backend: jobs on a target's hosts through a rendered inventory and playbook, run by
ansible-runner (DESIGN §6). The same target keys as `ssh`, plus `playbook_extra_vars` and `forks`.

One playbook run per job: apply hands a backend one job at a time (from its worker threads), so a run
per job keeps each job's outcome, timeout and cancel its own; jobs on different hosts, or several on
one host, run side by side as apply's scheduler places them. ssh connections are shared between the
runs to one host (ControlMaster, ControlPersist), so a job after the first on a host does not log in
again. What a run costs is measured in `bench/bench_ansible.py`: ~2-3 s a job on a loaded 2-CPU machine,
nearly all of it ansible's per-task work (a module's start on the host), so a playbook of many jobs
(measured: 8 jobs as 8 plays of one run, 3.7 s a job) would not be faster, and would share one outcome.

Each run's files (inventory.yml, playbook.yml, ansible.cfg, the run directory as it is copied, what is
fetched back) are under `<state dir>/ansible/<target>/<job>/`, as `madengine generate ansible` writes
them.
ansible-runner's artifacts (which hold the environment it ran ansible with) are removed after each
run; a secret of a job's environment is never written into a playbook: the play looks it up in
ansible's environment (`MADENGINE_SECRET_<NAME>`).

The play's events map back to the job: the run task's `rc` is the model's exit code and its output the
log (apply judges it and the fetched results CSV as for `docker`); a host that cannot be reached, or a
task that fails before the run, fails the job with the host and ansible's reason in one line. Cancel
and timeout stop the run (ansible-runner's cancel callback), then a second, short playbook stops what it
started on the host (the driver's process group, the container) and fetches the log so far.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from madengine.backends import ansible_render as render
from madengine.backends import docker_render
from madengine.backends.base import ATTEMPT_ENV, Cancel, OrphanRecord, Outcome, RunArtifacts, Workspace
from madengine.backends.rundir import fill_run_dir
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.backends.ssh_session import KNOWN_HOSTS_ENV
from madengine.errors import Diagnostic
from madengine.madfile.model import is_secret_name
from madengine.state.model import Status

if TYPE_CHECKING:  # the target's type only: pydantic is not needed to run a job
    from madengine.backends.ssh import SshBackend
    from madengine.facts.model import HostFacts
    from madengine.madfile.model import AnsibleTarget

INSTALL_HINT = "install it with `pip install 'madengine[ansible]'` (ansible-core and ansible-runner)"
POLL = 0.25  # seconds between ansible-runner's looks at cancel and timeout


def missing_requirement() -> str | None:
    """Why this backend cannot work here (ansible-runner or ansible-core not installed), or None."""
    from importlib.util import find_spec

    for module, package in (("ansible_runner", "ansible-runner"), ("ansible", "ansible-core")):
        if find_spec(module) is None:
            return f"{package} is not installed"
    return None


@dataclass(frozen=True)
class AnsibleHost:
    """A host of the target, resolved: its inventory entry and what its jobs get."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key: str | None = None  # absolute, on this machine
    gpus: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def inventory(self) -> render.InventoryHost:
        return render.InventoryHost(self.name, self.address, self.port, self.user, self.key)


def target_hosts(target: AnsibleTarget, root: Path) -> tuple[AnsibleHost, ...]:
    """The target's hosts (its `hosts:`, or its inventory read now), named, keys absolute."""
    from madengine.madfile.inventory import target_hosts as hosts_of

    return tuple(AnsibleHost(name=h.label, address=h.address, port=h.port, user=h.user, key=h.key, gpus=h.gpus,
                             env=dict(h.env)) for h in hosts_of(target, root))


@dataclass
class _Events:
    """What one playbook run said about its one job, from ansible-runner's event stream."""

    failed: str = ""  # the first task that failed or could not reach the host, as one line
    unreachable: bool = False
    run_started: bool = False
    run_started_at: float = 0.0  # time.monotonic() when the run task started
    run_result: dict[str, Any] | None = None  # the run task's result
    run_dir: str = ""  # the run directory on the host, once made
    log: str = ""  # the run's log, as the driver printed it back

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        task = str(data.get("task") or "")
        res = data.get("res") or {}
        if kind == "runner_on_start" and task == "run":
            self.run_started = True
            self.run_started_at = time.monotonic()
        elif kind == "runner_on_ok" and task == "run":
            self.run_result = dict(res)
            # The driver prints the run directory, then the log (ansible strips the last line break).
            first, _, rest = str(res.get("stdout") or "").partition("\n")
            self.run_dir, self.log = first.strip(), rest + "\n" if rest else ""
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not self.failed:
            self.unreachable = kind == "runner_on_unreachable"
            text = str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "failed")
            self.failed = f"unreachable: {ssh_reason(text)}" if self.unreachable else f"{task}: {_one_line(text)}"
        return False  # nothing of it is kept on disk: what counts is taken here


def ssh_reason(text: str) -> str:
    """Why ssh could not reach a host, in one line, from what ansible says (its message quotes ssh's)."""
    low = text.lower()
    if "identification has changed" in low:
        return ("its host key has changed: refused (if the change is expected, remove the old key from "
                "known_hosts; else someone may be in the middle)")
    if "host key verification failed" in low or "host key is known" in low:
        return ("its host key is not in known_hosts: refused (add it: ssh-keyscan -p PORT HOST >> known_hosts, "
                "or set host_key_check: accept-new)")
    if "permission denied" in low:
        return "authentication refused (" + _one_line(text[low.index("permission denied"):], 120) + ")"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:  # ssh's own line: "ssh: connect to host 10.0.0.5 port 22: Connection refused"
        if "ssh:" in line:
            return _one_line(line[line.rindex("ssh:") + 4:])
    return _one_line(text)


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = " ".join(lines[:3]) if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


class AnsibleBackend:
    name: ClassVar[str] = "ansible"
    builds_images: ClassVar[bool] = True

    def __init__(self, target_name: str, target: AnsibleTarget, workspace: Workspace) -> None:
        self.target_name = target_name
        self.target = target
        self.workspace = workspace
        self.container: str = target.container
        self.hosts_by_name = {h.name: h for h in target_hosts(target, workspace.root)}
        self._lock = threading.Lock()
        self._hosts_ssh: SshBackend | None = None  # the ssh backend that reaches the same hosts (facts, images)


    # --- configuration --------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        return str(self.target.workdir)

    @property
    def extra_vars(self) -> dict[str, Any]:
        return dict(self.target.playbook_extra_vars)

    def config(self, home: Path | None) -> render.Config:
        """ansible.cfg's settings; `home` None for a hand-off (ansible's own directories)."""
        forks = self.target.forks or max(1, len(self.hosts_by_name))
        known = os.environ.get(KNOWN_HOSTS_ENV) or os.path.expanduser("~/.ssh/known_hosts")  # ssh takes one file
        return render.Config(known_hosts=known, home=None if home is None else str(home),
                             control_path_dir=None if home is None else _control_path_dir(home, known),
                             host_key_check=self.target.host_key_check, forks=forks)

    @property
    def base_dir(self) -> Path:
        """Where this target's playbook runs keep their files."""
        return self.workspace.state_dir / "ansible" / self.target_name

    # --- protocol -------------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        problems: list[tuple[str, str]] = []
        why = missing_requirement()
        if why:
            problems.append((f"the ansible backend cannot run: {why}", INSTALL_HINT))
        most = max((h.gpus for h in self.hosts_by_name.values() if h.gpus is not None), default=None)
        if most is not None and all(h.gpus is not None for h in self.hosts_by_name.values()) and job.n_gpus > most:
            problems.append((f"needs {job.n_gpus} GPUs but no host of target {self.target_name} has more than {most}",
                             f"lower the model's n_gpus, or set the gpus of targets.{self.target_name}'s hosts"))
        if self.container == "docker":
            problems += [(p, "") for p in docker_render.validate_options(job)]
        taken = sorted(k for k in self.extra_vars if k.startswith("madengine_"))
        if taken:
            problems.append((f"playbook_extra_vars {', '.join(taken)}: names beginning with madengine_ are the "
                             "playbook's own", "rename them"))
        return [Diagnostic(None, None, None, f"{job.address}: {msg}", hint=hint) for msg, hint in problems]

    def hosts(self) -> list[HostInfo]:
        cap = self.target.max_parallel_per_host
        return [HostInfo(h.name, h.gpus, cap) for h in self.hosts_by_name.values()]

    # --- images and facts ----------------------------------------------------------------------
    #
    # As the `ssh` backend does them, through it (the same hosts, keys and host key checking; one SSH
    # connection a host): images are built on this machine's engine and brought to the hosts that lack
    # them (a registry pull with the label checked, else `docker save` streamed into `docker load`),
    # observed with one `docker image ls` a host; host facts are probed the same way. A playbook run a
    # host would take seconds for what is one command.

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        return self._ssh().observe_images(images)

    def observe_registry(self, image: ImageSpec) -> str | None:
        return self._ssh().observe_registry(image)

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        return self._ssh().observe_runnable(gpu_vendor, n_gpus)

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return self._ssh().build(image, log_path, cancel)

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return self._ssh().push(image, log_path, cancel)

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return self._ssh().pull(image, log_path, cancel)

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        return self._ssh().deliver(image, host, log_path, cancel)

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        """Every host's facts, as the `ssh` backend observes them (one SSH connection a host, the same
        hosts, keys and host key checking): a playbook run a host would take seconds, for a few commands."""
        return self._ssh().observe_facts()

    def _ssh(self) -> SshBackend:
        from madengine.backends.ssh import SshBackend
        from madengine.backends.ssh_session import known_hosts_files
        from madengine.madfile.model import SshTarget

        with self._lock:
            if self._hosts_ssh is None:
                config = SshTarget.model_validate({**self.target.model_dump(exclude={"backend", "playbook_extra_vars",
                                                                                     "forks"}), "backend": "ssh"})
                self._hosts_ssh = SshBackend(self.target_name, config, self.workspace, known_hosts=known_hosts_files())
            return self._hosts_ssh

    def close(self) -> None:
        """The end of a command: the `ssh` backend's connections (images, facts) are let go; ssh
        connections of playbook runs close themselves, ControlPersist seconds after their last use."""
        with self._lock:
            made, self._hosts_ssh = self._hosts_ssh, None
        if made is not None:
            made.close()

    # --- run ------------------------------------------------------------------------------------

    def play_job(self, job: JobSpec, host: AnsibleHost, staging: Path, *, staged_as: str | None = None,
                 fetch_dir: str, token: str) -> render.PlayJob:
        """The job as a play: its run directory filled in `staging` (named `staged_as` in the playbook,
        default its absolute path), its log and results CSV fetched back to `fetch_dir`."""
        name = render.job_name(job.address)
        fill_run_dir(self.workspace.root, job, staging)
        attempt = job.env.get(ATTEMPT_ENV, "")
        container = None
        if self.container == "docker":
            container = render.container_name(self.workspace.workspace_id, attempt, name)
            # The host's env (ROCR_VISIBLE_DEVICES splitting a machine...) goes into the container, over the job's.
            command, env = render.docker_steps(replace(job, env={**job.env, **host.env}), container=container,
                                               workspace_id=self.workspace.workspace_id, system_gpus=host.gpus)
        else:
            command, env = render.host_steps(job), self.environment(job, host)
        secret = tuple(sorted(k for k in env if is_secret_name(k)))
        return render.PlayJob(address=job.address, host=host.name, name=name, token=token,
                              staging=staged_as or str(staging.resolve()), fetch_dir=fetch_dir, command=command,
                              env=tuple((k, v) for k, v in env.items() if k not in secret), secret_env=secret,
                              results_csv=job.multiple_results, container=container)

    def environment(self, job: JobSpec, host: AnsibleHost) -> dict[str, str]:
        """A host process's MAD variables (as `local` sets them), under the job's env, under the host's."""
        system = host.gpus or 0
        env = {"MAD_MODEL_NAME": job.model, "MAD_GPU_VENDOR": job.gpu_vendor, "MAD_GUEST_OS": job.guest_os,
               "MAD_SYSTEM_NGPUS": str(system),
               "MAD_RUNTIME_NGPUS": str(len(job.gpu_ids) if job.gpu_ids else system if job.n_gpus < 0 else job.n_gpus)}
        if job.multiple_results:
            env["MAD_OUTPUT_CSV"] = job.multiple_results
        if job.gpu_ids:
            env["HIP_VISIBLE_DEVICES" if job.gpu_vendor == "AMD" else "CUDA_VISIBLE_DEVICES"] = \
                ",".join(map(str, job.gpu_ids))
        return {**env, **job.env, **host.env}

    def write_files(self, directory: Path, plays: Sequence[render.PlayJob], hosts: Sequence[AnsibleHost], *,
                    home: Path | None, fetch_log: bool = False) -> list[Path]:
        """inventory.yml, playbook.yml and ansible.cfg in `directory` (what a run, or `generate`, gives
        ansible); `home`: where ansible keeps its own files (None: its default)."""
        directory.mkdir(parents=True, exist_ok=True)
        unique = list({h.name: h for h in hosts}.values())
        files = {"inventory.yml": render.render_inventory([h.inventory() for h in unique]),
                 "playbook.yml": render.render_playbook(plays, workdir=self.workdir, extra_vars=self.extra_vars,
                                                        fetch_log=fetch_log),
                 "ansible.cfg": render.render_config(self.config(home))}
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        return [directory / name for name in files]

    def place(self, jobs: Sequence[JobSpec]) -> list[tuple[JobSpec, AnsibleHost]]:
        """Hosts for a hand-off, where apply's scheduler is not there to place jobs as GPUs free up: in
        turn over the hosts that have the GPUs a job needs (all of them when none says)."""
        hosts = list(self.hosts_by_name.values())
        placed = []
        for i, job in enumerate(jobs):
            fits = [h for h in hosts if h.gpus is None or job.n_gpus <= h.gpus] or hosts
            placed.append((job, fits[i % len(fits)]))
        return placed

    def generate(self, jobs: Sequence[JobSpec], directory: Path) -> list[Path]:
        """What `run` gives ansible, for all `jobs` at once, in `directory`: inventory.yml, playbook.yml
        (one play per job), ansible.cfg and the run directories (`runs/<job>/`); paths in the playbook are
        relative to it (the directory can be moved), logs and results come back to `results/<job>/`."""
        plays = []
        shutil.rmtree(directory / "runs", ignore_errors=True)  # ours: run directories of jobs gone since
        for job, host in self.place(jobs):
            name = render.job_name(job.address)
            plays.append(self.play_job(job, host, directory / "runs" / name, staged_as=f"runs/{name}",
                                       fetch_dir=f"results/{name}", token="handoff"))
        hosts = list(self.hosts_by_name.values())
        return self.write_files(directory, plays, hosts, home=None, fetch_log=True)

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.log_path is not None, "apply chooses the log path"
        host = self.hosts_by_name.get(job.host or "") or next(iter(self.hosts_by_name.values()))
        job_dir = self.base_dir / render.job_name(job.address)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            images = self._hosts_ssh  # the ssh backend that delivered this command's images, if any did
        why = images.not_delivered(job, host.name) if images is not None else None
        if why is not None:  # a delivery to this host failed: its jobs fail here, saying why
            return self._failed(job, host, why)
        try:
            if job_dir.exists():
                shutil.rmtree(job_dir)
            play = self.play_job(job, host, job_dir / "run", fetch_dir=str((job_dir / "fetch").resolve()),
                                 token=uuid.uuid4().hex[:12])
            self.write_files(job_dir, [play], [host], home=self.base_dir / "home")
        except (OSError, ValueError) as e:  # RunDirConflict included
            return self._failed(job, host, f"cannot prepare the playbook: {e}")
        cancel.started(play.name)  # what a later apply stops on this host, should this one be killed
        # The job's timeout counts from its run task's start (as a container's from its start), not
        # from the connection and the copy of its run directory.
        events = _Events()

        def deadline() -> float | None:
            return events.run_started_at + job.timeout if job.timeout > 0 and events.run_started_at else None

        started = time.monotonic()
        status, rc, stopped = self._run_playbook(job_dir, events, cancel, deadline, env=self._secrets(job, play))
        duration = round(time.monotonic() - started, 3)
        if stopped is not None:  # cancelled or timed out: stop it on the host, keep the log so far
            self._stop(host, play, job_dir)
        lost = self._append_log(job, job_dir, events.log)
        run_dir = events.run_dir
        details = {"duration": duration, "playbook": str(job_dir / "playbook.yml")}
        if stopped is not None:
            message = "interrupted" if stopped is Status.INTERRUPTED else f"timed out after {job.timeout} s"
            _note(job.log_path, f"madengine: {message}; stopped on {host.name}")
            return Outcome(stopped, host=host.name, message=message, details=details,
                           artifacts=self._artifacts(job, job_dir, run_dir, None, lost))
        if events.failed:
            message = f"{host.name}: {events.failed}"
            _note(job.log_path, f"madengine: {message}")
            return Outcome(Status.FAILURE, host=host.name, message=message, details=details)
        result = events.run_result
        if result is None or result.get("rc") is None:
            why = _one_line(str((result or {}).get("msg") or "")) or f"ansible-playbook ended {status} (rc {rc})"
            if rc == 127 and not events.run_started:
                why = "ansible-playbook could not be started (is it on PATH?)"
            message = f"{host.name}: {why}"
            _note(job.log_path, f"madengine: {message}")
            return Outcome(Status.FAILURE, host=host.name, message=message, details=details)
        code = int(result["rc"])
        return Outcome(Status.SUCCESS if code == 0 else Status.FAILURE, exit_code=code, host=host.name,
                       message="" if code == 0 else f"exit code {code}", details=details,
                       artifacts=self._artifacts(job, job_dir, run_dir, code, lost))

    def _secrets(self, job: JobSpec, play: render.PlayJob) -> dict[str, str]:
        """The secrets of a job's environment, for ansible's environment only (never a file of ours)."""
        env = {**job.env}
        return {render.SECRET_ENV_PREFIX + name: env.get(name, "") for name in play.secret_env}

    def _run_playbook(self, job_dir: Path, events: Callable[[Mapping[str, Any]], bool], cancel: Cancel,
                      deadline: Callable[[], float | None] | float | None, *, env: Mapping[str, str] | None = None,
                      playbook: str = "playbook.yml") -> tuple[str, int | None, Status | None]:
        """ansible-playbook on `job_dir`'s files, to its end or until cancelled or past `deadline`:
        (runner's status, its rc, INTERRUPTED or TIMEOUT when it was stopped)."""
        import ansible_runner

        stopped: list[Status] = []

        def stop() -> bool:
            if cancel.is_set():
                stopped.append(Status.INTERRUPTED)
            elif (limit := deadline() if callable(deadline) else deadline) is not None and time.monotonic() >= limit:
                stopped.append(Status.TIMEOUT)
            return bool(stopped)

        bin_dir = os.path.dirname(sys.executable)  # ansible-playbook beside this Python (a virtualenv's bin)
        envvars = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                   "ANSIBLE_CONFIG": str(job_dir / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
                   # ansible-runner turns host key checking off unless told: ansible.cfg's is what counts
                   "ANSIBLE_HOST_KEY_CHECKING": "True", **(env or {})}
        artifacts = Path(tempfile.mkdtemp(prefix="artifacts-", dir=job_dir))
        try:
            runner = ansible_runner.run(private_data_dir=str(job_dir), playbook=str(job_dir / playbook),
                                        inventory=str(job_dir / "inventory.yml"), envvars=envvars,
                                        artifact_dir=str(artifacts), quiet=True, event_handler=events,
                                        cancel_callback=stop, settings={"pexpect_timeout": POLL,
                                                                        "suppress_ansible_output": True})
        finally:  # runner's artifacts hold the environment it ran ansible with
            shutil.rmtree(artifacts, ignore_errors=True)
            shutil.rmtree(job_dir / "env", ignore_errors=True)
        return str(runner.status), runner.rc, stopped[0] if stopped else None

    def _stop(self, host: AnsibleHost, play: render.PlayJob, job_dir: Path) -> None:
        """Stop what the job started on its host (a short playbook of its own) and fetch its log so far."""
        stop = render.Stop(host.name, play.name, play.container, play.fetch_dir)
        (job_dir / "stop.yml").write_text(render.render_stop([stop], workdir=self.workdir))
        self._run_playbook(job_dir, _Events(), Cancel(), time.monotonic() + 60, playbook="stop.yml")

    def _append_log(self, job: JobSpec, job_dir: Path, printed: str) -> str:
        """The run's log appended to the job's log (apply owns that file): as the driver printed it back,
        or as a stop fetched it. Returns why it is incomplete, if it is."""
        assert job.log_path is not None
        fetched = job_dir / "fetch" / render.LOG_NAME
        if printed:
            with job.log_path.open("a", encoding="utf-8", errors="replace") as log:
                log.write(printed)
        elif fetched.is_file():
            with job.log_path.open("ab") as log, fetched.open("rb") as src:
                shutil.copyfileobj(src, log)
        fetched.unlink(missing_ok=True)  # kept once, as the job's log
        return ""

    def _artifacts(self, job: JobSpec, job_dir: Path, run_dir: str, code: int | None, lost: str) -> RunArtifacts:
        assert job.log_path is not None
        perf_csv = None
        fetched = job_dir / "fetch" / render.CSV_NAME
        if job.multiple_results and fetched.is_file():
            perf_csv = job.log_path.with_name(f"{job.log_path.stem}.{os.path.basename(job.multiple_results)}")
            shutil.move(fetched, perf_csv)
        return RunArtifacts(log=job.log_path, run_dir=run_dir, exit_code=code, perf_csv=perf_csv, log_lost=lost)

    def _failed(self, job: JobSpec, host: AnsibleHost, message: str) -> Outcome:
        assert job.log_path is not None
        _note(job.log_path, f"madengine: {message}")
        return Outcome(Status.FAILURE, host=host.name, message=message)

    # --- clean-up -------------------------------------------------------------------------------

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """Stop what RUNNING attempts of a killed apply left on this target's hosts: each one's handle
        names the job's run directory there; its driver's process group and its container are stopped.
        A sweep (None) has nothing to find: a job is known by its attempt."""
        stops = []
        for entry in running or ():
            if entry.host not in self.hosts_by_name or not entry.handle or not entry.handle.startswith("job_"):
                continue
            container = render.container_name(self.workspace.workspace_id, str(entry.attempt), entry.handle) \
                if self.container == "docker" else None
            stops.append(render.Stop(entry.host, entry.handle, container))
        if not stops:
            return []
        job_dir = self.base_dir / "cleanup"
        job_dir.mkdir(parents=True, exist_ok=True)
        self.write_files(job_dir, [], [self.hosts_by_name[s.host] for s in stops], home=self.base_dir / "home")
        (job_dir / "stop.yml").write_text(render.render_stop(stops, workdir=self.workdir))
        self._run_playbook(job_dir, _Events(), Cancel(), time.monotonic() + 120, playbook="stop.yml")
        return [f"{s.name} on {s.host}" for s in stops]


def _note(log_path: Path, line: str) -> None:
    with contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as log:
        log.write(line + "\n")


def _control_path_dir(home: Path, known_hosts: str) -> str:
    """ssh's shared connections of one target: a short private directory (a unix socket's path holds ~100
    characters), one per target and known_hosts file, so that no connection checked against another
    known_hosts file is ever reused."""
    import hashlib

    base = Path(tempfile.gettempdir()) / f"madengine-ansible-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    path = base / hashlib.sha256(f"{home.resolve()}\0{known_hosts}".encode()).hexdigest()[:12]
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)

