"""The `ssh` backend: jobs on a target's hosts over SSH, one connection per host per command.

Each host is a `FabricSession`, opened on first use and shared by every job placed there (one channel
per command); `close()` ends them all at the end of the command. A host that cannot be reached, refuses
the key, shows an unknown or changed host key, has a full disk or no Docker fails the jobs placed on it,
each with `<host>: <reason>` in one line; the other hosts go on.

On each host, under the target's `workdir` (default `~/.madengine`), a directory per workspace and target
(two targets naming one host never share, nor replace, each other's package copy):

    <workdir>/<workspace id>-<target>/package/        the MAD package's top-level entries (scripts/, ...), sent
                                             once per command as one tar stream, only when they changed
                                             (`package.id` beside it says which copy is there)
    <workdir>/<workspace id>-<target>/runs/<job>/     a job's run directory (rundir.prepare_run_dir, put per job)
    <workdir>/<workspace id>-<target>/runs/<entry>    -> ../package/<entry>: so `../scripts/...` from a run
                                             directory means what it means in ROCm madengine

`container: none`: the job's steps run as host processes (rundir.run_host_steps), with the MAD
environment `local` builds (local.host_environment) under the host's `env:`. `container: docker`: the
job runs in its image in the host's engine, `docker run` in the foreground (docker_cli.run_argv, the
docker backend's labels, mounts and driver script), the run directory bind-mounted from the host.

A job of `nnodes: N` (N > 1) runs on the N hosts apply's scheduler gave it at once (`_run_nodes`): one
run per node, each told its NODE_RANK, NNODES and the first node's address (MASTER_ADDR), as MAD's
launchers expect (multinode.node_env); containers use the host's network.

Images are built by this machine's engine (a `DockerBackend`), then delivered to the hosts: by a pull
of the content-addressed tag from the registry when there is one (its `madengine.node` label checked),
else by `docker save` here streamed into `docker load` there, once per image and host.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from madengine.backends import docker_cli, multinode
from madengine.backends import docker_render as render
from madengine.backends.base import Cancel, OrphanRecord, Outcome, RunArtifacts, Workspace
from madengine.backends.builder import BuildsHere
from madengine.backends.local import host_environment
from madengine.backends.rundir import collect_artifacts, package_entries, prepare_run_dir, run_host_steps
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.backends.ssh_session import (
    MAX_COMMANDS,
    Cancelled,
    FabricSession,
    HostKeyCheck,
    SshEndpoint,
    known_hosts_files,
)
from madengine.errors import Diagnostic
from madengine.state.model import Status

if TYPE_CHECKING:  # the target's type only: pydantic is not needed to run a job
    from madengine.backends.docker import DockerBackend
    from madengine.facts import HostFacts
    from madengine.madfile.model import SshTarget

WORKSPACE_ENV = "MADENGINE_WORKSPACE"  # in every host-process job's env: a sweep finds this workspace's
OPEN_HOSTS_AT_ONCE = 16
DELIVERY_IDLE = 3600.0  # seconds an image transfer may go without a byte moved (not in all: 30 GB take long)


@dataclass(frozen=True)
class SshHost:
    """One host of an ssh target, resolved: its name, how to reach it, its GPUs and environment."""

    name: str
    endpoint: SshEndpoint
    gpus: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    gpu_vendor: str | None = None


def target_hosts(target: SshTarget, root: Path) -> tuple[SshHost, ...]:
    """The target's hosts (its `hosts:`, or its inventory read now), each with its name and its key as an
    absolute path of this machine."""
    from madengine.madfile.inventory import target_hosts as resolve

    return tuple(SshHost(h.label, SshEndpoint(h.address, h.port, h.user, h.key), h.gpus, dict(h.env), h.gpu_vendor)
                 for h in resolve(target, root))


@dataclass
class _Place:
    """What is known of one host during this command: where its workspace directory is, and what was
    sent there."""

    base: str = ""  # <workdir>/<workspace id>, absolute on the host
    bridge: bool | None = None  # does its engine have a `bridge` network
    packages: dict[str, str] = field(default_factory=dict)  # package_dir -> remote package root, once sent
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def runs(self) -> str:
        return posixpath.join(self.base, "runs")

    @property
    def package(self) -> str:
        return posixpath.join(self.base, "package")


# Run on a host at its first use: where the workspace directory is, which package copy it holds, and
# (for docker jobs) whether its engine has a bridge network. $1: workdir ('' for the home directory,
# relative: under it), $2: workspace id, $3: docker or none.
_PREPARE = """\
case $1 in /*) base=$1 ;; '') base=$HOME ;; *) base=$HOME/$1 ;; esac
base=$base/$2
mkdir -p -- "$base/runs" || exit
printf '%s\\n' "$base"
cat -- "$base/package.id" 2>/dev/null || echo
if [ "$3" = docker ]; then
  if docker network inspect bridge >/dev/null 2>&1; then echo yes; else echo no; fi
fi
"""

# Links each package entry into runs/, writes the package id. $1: base, $2: id, then the entry names.
_LINK = """\
base=$1 id=$2
shift 2
cd -- "$base/runs" || exit
for e do rm -rf -- "./$e" && ln -s "../package/$e" "./$e" || exit; done
printf '%s\\n' "$id" > "$base/package.id"
"""

# Stops this workspace's host-process jobs: $1 the workspace marker; then pairs <pgid> <attempt> (only
# those groups, if their leader has that attempt and this workspace), or none: every group led by a
# process of this workspace.
_ORPHANS = """\
mark=$1
shift
kill_group() { kill -s KILL -- "-$1" 2>/dev/null && printf '%s\\n' "$1"; }
leads() { tr '\\0' '\\n' < "/proc/$1/environ" 2>/dev/null | grep -qxF "$2"; }
if [ "$#" -eq 0 ]; then
  for f in $(grep -lxzF -- "$mark" /proc/[0-9]*/environ 2>/dev/null); do
    pid=${f#/proc/}; pid=${pid%/environ}
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    rest=${stat##*) }
    set -- $rest
    [ "$3" = "$pid" ] && kill_group "$pid"
  done
  exit 0
fi
while [ "$#" -ge 2 ]; do
  if leads "$1" "$mark" && leads "$1" "MADENGINE_ATTEMPT=$2"; then kill_group "$1"; fi
  shift 2
done
exit 0
"""


class SshBackend(BuildsHere):
    name: ClassVar[str] = "ssh"
    builds_images: ClassVar[bool] = True
    spans_hosts: ClassVar[bool] = True  # a job of `nnodes` > 1 runs on that many of its hosts at once

    def __init__(self, target_name: str, target: SshTarget, workspace: Workspace, *,
                 known_hosts: Sequence[Path] | None = None) -> None:
        """`known_hosts`: the files host keys are trusted from (default: the user's, as ssh reads them);
        madengine's own (`<state dir>/ssh/known_hosts`, where `accept-new` remembers keys) is read too."""
        self.target_name = target_name
        self.target = target
        self.workspace = workspace
        self.ssh_hosts = target_hosts(target, workspace.root)
        self.by_name = {h.name: h for h in self.ssh_hosts}
        self.container: str = target.container
        self.host_key_check: HostKeyCheck = target.host_key_check
        self.workdir: str = target.workdir
        self.max_parallel: int | None = target.max_parallel_per_host
        self.known_hosts = tuple(known_hosts) if known_hosts is not None else known_hosts_files()
        self._lock = threading.Lock()
        self._sessions: dict[str, FabricSession] = {}
        self._places: dict[str, _Place] = {}
        self._listings: dict[str, tuple[list[tuple[str, Path]], str]] = {}  # package_dir -> (entries, id)
        self._builder: DockerBackend | None = None
        self._undelivered: dict[tuple[str, str], str] = {}  # (tag, host) -> why it is not there
        self.unreachable: dict[str, str] = {}  # host -> why, as plan's observation found
        self._ports: dict[str, set[int]] = {}  # host -> MASTER_PORTs of the multi-node jobs it is the master of now

    # --- hosts and sessions ---------------------------------------------------------------------------

    def hosts(self) -> list[HostInfo]:
        # No more jobs at once than one connection runs: one queued in the session would spend its timeout there.
        cap = min(self.max_parallel or MAX_COMMANDS, MAX_COMMANDS)
        return [HostInfo(h.name, h.gpus, cap) for h in self.ssh_hosts]

    def session(self, host: str) -> FabricSession:
        """The host's session (created on first use, opened by its first command)."""
        with self._lock:
            if host not in self._sessions:
                h = self.by_name[host]
                self._sessions[host] = FabricSession(
                    HostInfo(h.name, h.gpus, self.max_parallel), h.endpoint, known_hosts=self.known_hosts,
                    remember=self.workspace.state_dir / "ssh" / "known_hosts", host_key_check=self.host_key_check)
            return self._sessions[host]

    def close(self) -> None:
        """End every host's connection (the end of a command: Terraform's provider Close())."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            self._places.clear()
            self._listings.clear()  # what this command knew of the hosts: the next one looks again
            self._undelivered.clear()
            self.unreachable.clear()
        for s in sessions:
            s.close()

    def _each_host(self, work: Any, hosts: Iterable[str] | None = None) -> dict[str, Any]:
        """`work(host)` on every host at once: host -> its result, or the exception it raised."""
        names = list(hosts if hosts is not None else self.by_name)
        results: dict[str, Any] = {}

        def one(name: str) -> None:
            try:
                results[name] = work(name)
            except Exception as e:  # the caller says what a failed host means
                results[name] = e

        with ThreadPoolExecutor(max(1, min(OPEN_HOSTS_AT_ONCE, len(names)))) as pool:
            list(pool.map(one, names))
        return results

    def _place(self, host: str) -> _Place:
        """The host's workspace directory, found (and made) on its first use in this command."""
        with self._lock:
            place = self._places.setdefault(host, _Place())
        with place.lock:
            if place.base:
                return place
            session = self.session(host)
            workdir = self.workdir
            relative = workdir[2:] if workdir.startswith("~/") else "" if workdir == "~" else workdir
            command = shlex.join(["sh", "-c", _PREPARE, "madengine-prepare", relative,
                                  _safe(f"{self.workspace.workspace_id}-{self.target_name}"), self.container])
            code, out, err = session.run_simple(command, timeout=120)
            lines = out.decode(errors="replace").splitlines()
            if code != 0 or not lines or not lines[0].startswith("/"):
                raise OSError(f"cannot make the work directory {workdir} there: {_one_line(err) or f'exit {code}'}")
            place.base = lines[0]
            place.packages["@id"] = lines[1] if len(lines) > 1 else ""
            if self.container == "docker":
                place.bridge = len(lines) > 2 and lines[2] == "yes"
            return place

    def _package(self, host: str, job: JobSpec) -> _Place:
        """The host's place with the job's MAD package there (sent once per command, if it changed)."""
        place = self._place(host)
        with place.lock:
            if job.package_dir in place.packages:
                return place
            entries, ident = self._package_listing(job.package_dir)
            if place.packages.get("@id") != ident:
                session = self.session(host)
                session.put_many([(name, path) for name, path in entries], place.package, replace_all=True)
                code, _, err = session.run_simple(shlex.join(["sh", "-c", _LINK, "madengine-link", place.base, ident,
                                                              *(name for name, _ in entries)]), timeout=120)
                if code != 0:
                    raise OSError(f"cannot link the package into {place.runs}: {_one_line(err)}")
                place.packages["@id"] = ident
            place.packages[job.package_dir] = place.package
            return place

    def _package_listing(self, package_dir: str) -> tuple[list[tuple[str, Path]], str]:
        """The package's entries and their id, listed once per command (not once per host)."""
        with self._lock:
            known = self._listings.get(package_dir)
        if known is None:
            entries = self._entries(package_dir)
            known = (entries, _package_id(entries))
            with self._lock:
                self._listings[package_dir] = known
        return known

    def package_entries(self, job: JobSpec) -> list[tuple[str, Path]]:
        return self._package_listing(job.package_dir)[0]

    def _entries(self, package_dir: str) -> list[tuple[str, Path]]:
        """The MAD package root's top-level entries sent to the hosts: those the docker backend mounts."""
        return package_entries(self.workspace, package_dir)

    # --- validate / observe -----------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        problems = []
        most = [h.gpus for h in self.ssh_hosts if h.gpus is not None]
        if len(most) == len(self.ssh_hosts) and most and job.n_gpus > max(most):
            problems.append(Diagnostic(None, None, None, f"{job.address} needs {job.n_gpus} GPUs; no host of "
                                       f"target {self.target_name!r} has more than {max(most)}",
                                       hint="lower n_gpus, or give the hosts' gpus"))
        if self.container == "docker":
            problems += [Diagnostic(None, None, None, f"{job.address}: {p}") for p in render.validate_options(job)]
        return problems

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        vendors = {h.gpu_vendor for h in self.ssh_hosts}
        vendor = gpu_vendor.upper()
        if vendor not in ("NONE", "") and None not in vendors and vendor not in vendors:
            return (f"no host of target {self.target_name} has {vendor} GPUs (they have "
                    f"{', '.join(sorted(str(v) for v in vendors))})",
                    "run these contexts on another target, or leave these jobs out (--select or --target)")
        return None

    def observe_images(self, images: Sequence[ImageSpec]) -> dict[str, dict[str, str]]:
        """One `docker image ls` per host, all hosts at once: host -> {tag: image id} for these images'
        tags. A host that cannot be asked is left out (said in `unreachable`; its jobs fail at apply with
        its reason) so that the plan still shows the rest; when no host answers, the first one's reason
        is raised."""
        if self.container != "docker":  # host processes: no image is ever placed there
            return {h.name: {} for h in self.ssh_hosts}
        if not images:
            return {}
        wanted = {i.tag for i in images}
        answers = self._each_host(self._image_ids)
        out: dict[str, dict[str, str]] = {}
        for host, answer in answers.items():
            if isinstance(answer, BaseException):
                self.unreachable[host] = _one_line(str(answer))
                continue
            out[host] = {tag: image_id for tag, image_id in answer.items() if tag in wanted}
        if not out and answers:
            raise next(a for _, a in sorted(answers.items()) if isinstance(a, BaseException))
        return out

    def _image_ids(self, host: str) -> dict[str, str]:
        code, out, err = self.session(host).run_simple(
            "docker image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'", timeout=60)
        if code != 0:  # no docker there, or its engine is down
            raise HostUnavailable(host, f"docker image ls: {_one_line(err) or f'exit {code}'}")
        pairs = (line.split(" ", 1) for line in out.decode(errors="replace").splitlines() if " " in line)
        return {tag: image_id for tag, image_id in pairs}

    def observe_registry(self, image: ImageSpec) -> str | None:
        return self.builder().observe_registry(image) if self.container == "docker" else None

    def observe_facts(self) -> dict[str, HostFacts | HostUnavailable]:
        """Read-only: every host's facts (facts.probe through its session), all hosts at once and each
        once per command; a host that cannot be reached has its HostUnavailable in place of facts."""
        from madengine.facts import probe_session

        def observer(host: str) -> Callable[[], HostFacts]:
            return lambda: probe_session(self.session(host))

        out: dict[str, HostFacts | HostUnavailable] = {}
        key = f"ssh:{self.target_name}/"  # the command's cache, which every target shares
        got = self.workspace.facts.get_all({key + h: observer(h) for h in self.by_name})
        for host, facts in ((k.removeprefix(key), f) for k, f in got.items()):
            if isinstance(facts, Exception) and not isinstance(facts, HostUnavailable):
                facts = HostUnavailable(host, _one_line(str(facts)) or type(facts).__name__)
            out[host] = facts
        return out

    # --- images -----------------------------------------------------------------------------------------

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Built here, then delivered to every host. A host that could not get it (unreachable, disk
        full...) does not fail the build, which other hosts' jobs wait for: the jobs placed on that host
        fail, each saying why; the next plan finds the host lacking the image and loads it there."""
        if self.container != "docker":
            return Outcome(Status.FAILURE, message=f"target {self.target_name} runs host processes (container: none)")
        built = self.builder().build(image, log_path, cancel)
        if built.status is not Status.SUCCESS:
            return built
        return self._deliver_everywhere(image, log_path, cancel, built)

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Built elsewhere and in the registry: every host pulls it (its label checked)."""
        return self._deliver_everywhere(image, log_path, cancel, Outcome(Status.SUCCESS, message=f"pulled {image.tag}"))

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return self.builder().push(image, log_path, cancel)

    def _deliver_everywhere(self, image: ImageSpec, log_path: Path, cancel: Cancel, built: Outcome) -> Outcome:
        results = self._each_host(lambda host: self._ensure_on(image, host, log_path, cancel, built.image_id))
        delivered = {h: r for h, r in results.items() if isinstance(r, Outcome) and r.status is Status.SUCCESS}
        failed = {h: (r.message if isinstance(r, Outcome) else _one_line(str(r))) for h, r in results.items()
                  if h not in delivered}
        for host, why in failed.items():
            self._undelivered[image.tag, host] = why
        if cancel.is_set():
            return Outcome(Status.INTERRUPTED, message="interrupted")
        ids = {r.image_id for r in delivered.values() if r.image_id}
        message = built.message if not failed else f"{built.message}; not delivered to " + "; ".join(
            why for _, why in sorted(failed.items()))  # each `host: reason`
        return replace(built, message=message, image_id=built.image_id or (ids.pop() if len(ids) == 1 else None))

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        """The image, built from the same inputs, onto one host: a registry pull when `image.registry`
        is set, else `docker save` (here, or on a host that has it) streamed into `docker load` there."""
        try:
            if image.registry:
                outcome = self._pull_on(image, host, log_path, cancel)
            else:
                outcome = self._stream_to(image, host, log_path, cancel)
        except Cancelled:
            outcome = Outcome(Status.INTERRUPTED, message=f"{host}: interrupted", host=host)
        except (HostUnavailable, OSError) as e:
            outcome = Outcome(Status.FAILURE, message=_host_message(host, e), host=host,
                              transient=getattr(e, "transient", False))
        _log(log_path, f"{host}: {outcome.message}\n")
        with self._lock:  # a LOAD delivers to hosts in parallel
            if outcome.status is Status.SUCCESS:
                self._undelivered.pop((image.tag, host), None)
            else:  # a job placed on this host then fails there, with this reason
                self._undelivered[image.tag, host] = outcome.message
        return outcome

    def not_delivered(self, job: JobSpec, host: str) -> str | None:
        """Why the job's image is not on this host (a delivery there failed in this command), or None."""
        with self._lock:
            why = self._undelivered.get((job.image_tag or "", host)) if self.container == "docker" else None
        return None if why is None else \
            f"{host}: image {job.image_tag} was not delivered here: {why.removeprefix(host + ': ')}"

    def _ensure_on(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel,
                   image_id: str | None) -> Outcome:
        """`deliver`, unless the host already holds this very image (the same id, when it is known)."""
        try:
            seen = self._inspect(host, image.tag)
        except (HostUnavailable, OSError):
            seen = None  # said by deliver, which tries again
        if seen is not None and seen[1] == image.node_hash and image_id in (None, seen[0]):
            _log(log_path, f"{host}: {image.tag} is there already\n")
            self._undelivered.pop((image.tag, host), None)
            return Outcome(Status.SUCCESS, image_id=seen[0], host=host, message=f"{image.tag} is there already")
        return self.deliver(image, host, log_path, cancel)

    def _inspect(self, host: str, ref: str) -> tuple[str, str] | None:
        """(image id, its madengine.node label) of `ref` on the host, or None when it has no such image."""
        fmt = '{{.Id}} {{index .Config.Labels "' + render.LABEL_NODE + '"}}'  # a Go template, not a shell's
        code, out, _ = self.session(host).run_simple(shlex.join(["docker", "image", "inspect", "--format", fmt, ref]),
                                                     timeout=60)
        if code != 0:
            return None
        image_id, _, label = out.decode(errors="replace").strip().partition(" ")
        return image_id, label

    def _pull_on(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        repository, tag = self.builder().push_reference(image)
        ref = f"{repository}:{tag}"
        session = self.session(host)
        with open(log_path, "ab") as log:
            code, _, err = session.run_simple(shlex.join(["docker", "pull", "--quiet", ref]), output=log,
                                              idle=DELIVERY_IDLE, cancel=cancel)
        if code != 0:
            return Outcome(Status.FAILURE, message=f"docker pull {ref}: {_one_line(err) or f'exit {code}'}", host=host,
                           transient=True)
        seen = self._inspect(host, ref)
        if seen is None or seen[1] != image.node_hash:
            session.run_simple(shlex.join(["docker", "image", "rm", ref]), timeout=60)
            return Outcome(Status.FAILURE, host=host, message=(
                f"{ref} was not built from this node ({render.LABEL_NODE} is {seen[1] if seen else None}); "
                f"build it here with --replace {image.address}"))
        code, _, err = session.run_simple(shlex.join(["docker", "tag", ref, image.tag]), timeout=60)
        if code != 0:
            return Outcome(Status.FAILURE, message=f"docker tag: {_one_line(err)}", host=host)
        return Outcome(Status.SUCCESS, image_id=seen[0], host=host, message=f"pulled {ref}")

    def _stream_to(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        """`docker save` streamed into the host's `docker load`: from this machine's engine when it has
        the image, else from a host that has it (through this machine)."""
        import docker

        try:
            local = self.builder().client().images.get(image.tag)
        except docker.errors.ImageNotFound:
            local = None
        except Exception:  # no engine here: look for it on the hosts
            local = None
        if local is not None and (local.labels or {}).get(render.LABEL_NODE) == image.node_hash:
            chunks = self.builder().client().api.get_image(image.tag)
            return self._load(host, image, _IterReader(chunks), f"sent {image.tag} from here", log_path, cancel)
        for other in self.by_name:
            if other == host or (image.tag, other) in self._undelivered:
                continue
            try:
                seen = self._inspect(other, image.tag)
            except (HostUnavailable, OSError):
                continue
            if seen is not None and seen[1] == image.node_hash:
                return self._relay(image, other, host, log_path, cancel)
        return Outcome(Status.FAILURE, host=host, message=f"{image.tag} is neither here nor on another host "
                                                          "to send it from; build it again (--replace)")

    def _load(self, host: str, image: ImageSpec, stream: BinaryIO | io.RawIOBase, what: str, log_path: Path,
              cancel: Cancel) -> Outcome:
        session = self.session(host)
        with open(log_path, "ab") as log:
            code, _, err = session.run_simple("docker load --quiet", stdin=stream, output=log, idle=DELIVERY_IDLE,
                                              cancel=cancel)
        if code != 0:
            return Outcome(Status.FAILURE, message=f"docker load: {_one_line(err) or f'exit {code}'}", host=host)
        seen = self._inspect(host, image.tag)
        if seen is None or seen[1] != image.node_hash:
            return Outcome(Status.FAILURE, message=f"{image.tag} is not there after docker load", host=host)
        return Outcome(Status.SUCCESS, image_id=seen[0], host=host, message=what)

    def _relay(self, image: ImageSpec, source: str, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        read_fd, write_fd = os.pipe()
        reader, writer = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
        failure: list[str] = []

        def save() -> None:
            try:
                code, _, err = self.session(source).run_simple(shlex.join(["docker", "save", image.tag]),
                                                               output=writer, idle=DELIVERY_IDLE, cancel=cancel)
                if code != 0:
                    failure.append(f"docker save on {source}: {_one_line(err)}")
            except Exception as e:
                failure.append(_one_line(str(e)))
            finally:
                with contextlib.suppress(OSError):
                    writer.close()

        sender = threading.Thread(target=save, name=f"save {source}", daemon=True)
        sender.start()
        try:
            outcome = self._load(host, image, reader, f"sent {image.tag} from {source}", log_path, cancel)
        finally:
            reader.close()  # the save's writer fails at once: its channel closes, `docker save` there stops
            sender.join(60)
        if failure and outcome.status is Status.SUCCESS:
            return Outcome(Status.FAILURE, message=failure[0], host=host)
        return outcome

    # --- run ------------------------------------------------------------------------------------------------

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.log_path is not None, "apply chooses the log path"
        if job.nnodes > 1:
            return self._run_nodes(job, cancel)
        host = self.by_name.get(job.host or "") or self.ssh_hosts[0]
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        if cancel.is_set():
            return Outcome(Status.INTERRUPTED, message="interrupted", host=host.name)
        prepared = self._prepare(job, host.name)
        if isinstance(prepared, Outcome):
            _log(job.log_path, f"madengine: {prepared.message}\n")
            return prepared
        place, run_dir = prepared
        with open(job.log_path, "ab", buffering=0) as log:
            outcome = self._run_on(job, host, place, run_dir, log, cancel)
        return replace(outcome, host=host.name,
                       artifacts=self._artifacts(self.session(host.name), job, run_dir, outcome))

    def _prepare(self, job: JobSpec, host: str) -> tuple[_Place, str] | Outcome:
        """The job's package and run directory on the host; or why it cannot run there (the host's own
        failure first: unreachable, key refused..., then its image, then the run directory)."""
        try:
            place = self._package(host, job)
            why = self.not_delivered(job, host)
            if why is not None:
                return Outcome(Status.FAILURE, message=why, host=host)
            run_dir = prepare_run_dir(self.session(host), self.workspace.root, job,
                                      staging=self.workspace.runs / "ssh" / _safe(self.target_name) / host,
                                      runs=place.runs)
        except HostUnavailable as e:
            return Outcome(Status.FAILURE, message=_host_message(host, e), host=host, transient=e.transient,
                           host_unreachable=True)
        except OSError as e:  # RunDirConflict included: a script would replace another; a full disk there
            return Outcome(Status.FAILURE, host=host, message=f"{host}: cannot prepare the run directory: "
                                                              f"{_host_message(host, e).removeprefix(host + ': ')}")
        return place, run_dir

    def _run_on(self, job: JobSpec, host: SshHost, place: _Place, run_dir: str, log: BinaryIO, cancel: Cancel, *,
                rank: int | None = None) -> Outcome:
        """One run of the job on one host, its output into `log`: in its container, or as host processes.
        `rank`: the node of a multi-node job this run is (its container is named for it; host networking)."""
        try:
            if self.container == "docker":
                return self._run_container(job, host, place, run_dir, log, cancel, rank=rank)
            env = {**host.env, **host_environment(job, host.gpus, self._data_homes(job, place)),
                   WORKSPACE_ENV: self.workspace.workspace_id}
            return run_host_steps(self.session(host.name), job, env, run_dir, log, cancel)
        except HostUnavailable as e:
            message = _host_message(host.name, e)
            with contextlib.suppress(OSError):
                log.write(f"\nmadengine: {message}\n".encode())
            return Outcome(Status.FAILURE, message=message, host=host.name, transient=e.transient,
                           host_unreachable=True)

    # --- multi-node jobs -------------------------------------------------------------------------------------

    def _run_nodes(self, job: JobSpec, cancel: Cancel) -> Outcome:
        """A job of `nnodes` > 1 on the hosts apply gave it (`host` is rank 0, the master; `peers` the
        others, in rank order): its run directory prepared on every one, then one run per node, all at
        once, each with its node's environment (multinode.node_env: NNODES, NODE_RANK, MASTER_ADDR...).
        Rank 0's output is the job's log (its performance lines), rank i's is `<log>.rank<i>` beside it.
        It succeeds when every node's run does; the first node that fails (or times out) stops the others,
        and the job's message names it. Results (the CSV) are collected from rank 0."""
        assert job.log_path is not None
        ranks = [(job.host or self.ssh_hosts[0].name, job.gpu_ids), *job.peers]
        names = [name for name, _ in ranks]
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        if len(ranks) != job.nnodes or len(set(names)) != len(names) or not set(names) <= set(self.by_name):
            return self._failed(job, names[0], f"{job.address} spans {job.nnodes} hosts of target "
                                               f"{self.target_name}; it was given {', '.join(names)}")
        if cancel.is_set():
            return Outcome(Status.INTERRUPTED, message="interrupted", host=names[0])
        # One host after another: hosts whose workdir is one shared directory (a home over NFS) would
        # otherwise replace the package and the run directory under each other.
        prepared: dict[str, tuple[_Place, str]] = {}
        for name in names:  # nothing has started yet: a host that cannot be reached now is worth a retry
            got = self._prepare(job, name)
            if isinstance(got, Outcome):
                _log(job.log_path, f"madengine: {got.message}\n")
                return replace(got, details={**got.details, "failed_node": name})
            prepared[name] = got
        master = self.by_name[names[0]].endpoint.address
        with self._lock:  # two multi-node jobs whose first node is one host must not listen on one port there
            taken = self._ports.setdefault(names[0], set())
            port = next(p for p in range(multinode.MASTER_PORT, multinode.MASTER_PORT + 1000) if p not in taken)
            taken.add(port)
        try:
            return self._run_ranks(job, cancel, ranks, prepared, master, port)
        finally:
            with self._lock:
                self._ports[names[0]].discard(port)

    def _run_ranks(self, job: JobSpec, cancel: Cancel, ranks: Sequence[tuple[str, tuple[int, ...]]],
                   prepared: Mapping[str, tuple[_Place, str]], master: str, port: int) -> Outcome:
        """Every node's run at once (see `_run_nodes`); the first node, the master, at `master`:`port`."""
        assert job.log_path is not None
        names = [name for name, _ in ranks]
        stop = threading.Event()  # a node failed, or apply cancels: every node's run stops
        lock = threading.Lock()
        handles: dict[int, tuple[str, str]] = {}  # rank -> (host, what stops its run there)
        outcomes: dict[int, Outcome] = {}
        failed: list[int] = []  # ranks that failed on their own, in the order they did
        logs = [job.log_path, *(job.log_path.with_name(f"{job.log_path.name}.rank{r}") for r in range(1, len(ranks)))]

        def started(rank: int, handle: str) -> None:
            with lock:  # recorded whole each time: the last record names every node's run
                handles[rank] = (names[rank], handle)
                cancel.started(rank_handles([handles[r] for r in sorted(handles)]))

        def node(rank: int) -> None:
            name, gpu_ids = ranks[rank]
            host = self.by_name[name]
            place, run_dir = prepared[name]
            node_job = replace(job, host=name, gpu_ids=gpu_ids, peers=())
            nproc = max(1, render.runtime_gpus(node_job, host.gpus))
            env = multinode.node_env(job.nnodes, nproc, str(rank), master, port)
            # The torchrun line with this node's values: they reach the script verbatim, no shell expands them.
            env["MAD_MULTI_NODE_RUNNER"] = multinode.runner_command(job.nnodes, nproc, str(rank), master, port)
            node_job = replace(node_job, env={**job.env, **env}, log_path=logs[rank])
            own = Cancel(event=stop, on_start=lambda handle: started(rank, handle))
            try:
                with open(logs[rank], "ab", buffering=0) as log:
                    outcome = self._run_on(node_job, host, place, run_dir, log, own, rank=rank)
            except Exception as e:  # a bug, or this machine's disk: the job fails, the other nodes stop
                outcome = Outcome(Status.FAILURE, message=f"{type(e).__name__}: {_one_line(str(e))}", host=name)
            with lock:
                outcomes[rank] = outcome
                if outcome.status is not Status.SUCCESS and not stop.is_set():
                    failed.append(rank)
                if outcome.status is not Status.SUCCESS:
                    stop.set()

        threads = [threading.Thread(target=node, args=(r,), name=f"{job.address} rank {r}", daemon=True)
                   for r in range(len(ranks))]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                if cancel.is_set():
                    stop.set()
                t.join(0.05)
        _, first_dir = prepared[names[0]]
        outcome = self._nodes_outcome(job, names, outcomes, failed, logs, cancel)
        return replace(outcome, artifacts=self._artifacts(self.session(names[0]), job, first_dir, outcome))

    def _nodes_outcome(self, job: JobSpec, names: Sequence[str], outcomes: Mapping[int, Outcome],
                       failed: Sequence[int], logs: Sequence[Path], cancel: Cancel) -> Outcome:
        """The job's outcome from its nodes': the first that failed on its own decides, named with its
        rank (and its log, when it is not the job's); else INTERRUPTED when apply cancelled it."""
        assert job.log_path is not None
        details: dict[str, Any] = {"nodes": list(names)}
        if failed:
            rank = failed[0]
            first = outcomes[rank]
            where = f"{names[rank]} (rank {rank})"
            log = "" if rank == 0 else f" (its log: {logs[rank].name})"
            message = f"{where}: {first.message.removeprefix(names[rank] + ': ')}{log}"
            _log(job.log_path, f"madengine: {message}\n")
            return Outcome(first.status, exit_code=first.exit_code, message=message, host=names[rank],
                           host_unreachable=first.host_unreachable, details={**details, "failed_node": where})
        if cancel.is_set() or len(outcomes) < len(names):
            return Outcome(Status.INTERRUPTED, message="interrupted", host=names[0], details=details)
        return Outcome(Status.SUCCESS, exit_code=0, host=names[0], details=details)

    def _artifacts(self, session: FabricSession, job: JobSpec, run_dir: str, outcome: Outcome) -> RunArtifacts:
        assert job.log_path is not None
        try:
            return collect_artifacts(session, job, run_dir, outcome.exit_code)
        except (HostUnavailable, OSError) as e:
            return RunArtifacts(log=job.log_path, run_dir=run_dir, exit_code=outcome.exit_code,
                                log_lost=f"the results could not be fetched: {_one_line(str(e))}")

    def _failed(self, job: JobSpec, host: str, message: str, *, transient: bool = False) -> Outcome:
        assert job.log_path is not None
        _log(job.log_path, f"madengine: {message}\n")
        return Outcome(Status.FAILURE, message=message, host=host, transient=transient)

    def _data_homes(self, job: JobSpec, place: _Place) -> list[str]:
        return [posixpath.join(place.package, m.host_path) if m.in_project else m.host_path for m in job.data_mounts]

    def _run_container(self, job: JobSpec, host: SshHost, place: _Place, run_dir: str, log: BinaryIO,
                       cancel: Cancel, *, rank: int | None = None) -> Outcome:
        """`docker run` in the foreground on the host: its output is the log. A cancel or the timeout
        removes the container (`docker rm -f`, another channel), which ends the run. A node of a
        multi-node job (`rank`) runs on the host's network, where the other nodes reach its master."""
        session = self.session(host.name)
        name = docker_cli.container_name(self.workspace.workspace_id, job) + (f"-rank{rank}" if rank else "")
        entries = tuple((n, posixpath.join(place.package, n)) for n, _ in self.package_entries(job))
        network = "host" if rank is not None else None if place.bridge else "none"
        ctx = render.RunContext(workspace_id=self.workspace.workspace_id, run_dir_host=run_dir,
                                project_root=place.package, package_entries=entries,
                                network=network, system_gpus=host.gpus)
        try:
            argv, env = docker_cli.run_argv(replace(job, env={**host.env, **job.env}), ctx, name=name,
                                            remove=not job.keep_alive)
        except ValueError as e:
            return Outcome(Status.FAILURE, message=f"{job.address}: {e}", host=host.name)
        cancel.started(name)  # before the container exists: a clean-up of a killed apply removes it by name
        own = Cancel()
        stopped: list[tuple[Status, str]] = []
        done = threading.Event()
        deadline = time.monotonic() + job.timeout if job.timeout > 0 else None

        def watch() -> None:
            while not done.wait(0.05):
                if cancel.is_set():
                    stopped.append((Status.INTERRUPTED, "interrupted"))
                elif deadline is not None and time.monotonic() > deadline:
                    stopped.append((Status.TIMEOUT, f"timed out after {job.timeout}s"))
                if stopped:
                    with contextlib.suppress(HostUnavailable):
                        session.run_simple(shlex.join(["docker", "rm", "--force", name]), timeout=60)
                    own.event.set()
                    return

        watcher = threading.Thread(target=watch, name=f"watch {name}", daemon=True)
        watcher.start()
        tail = _Tail(log)
        try:
            finished = session.exec(argv, env=env, output=tail, cancel=own, reap=False)  # type: ignore[arg-type]
        except HostUnavailable as e:
            raise self._remove_lost(session, name, e) from None
        finally:
            done.set()
            watcher.join(90)
        if stopped:
            # Again, now that the CLI is gone: stopped before its container existed, the first removal
            # found none, and the CLI may have created it since.
            with contextlib.suppress(HostUnavailable):
                session.run_simple(shlex.join(["docker", "rm", "--force", name]), timeout=60)
            with contextlib.suppress(OSError):
                log.write(f"\nmadengine: {stopped[0][1]}; container removed\n".encode())
            return Outcome(stopped[0][0], message=stopped[0][1], host=host.name, details={"container": name})
        code = finished.exit_code
        details: dict[str, Any] = {"container": name, **({"kept": True} if job.keep_alive else {})}
        if not finished.started:  # no docker on the host
            return Outcome(Status.FAILURE, exit_code=None, host=host.name,
                           message=f"{host.name}: {finished.message}")
        if code == 125:  # docker itself failed: its last line says why (engine down, no image, disk full)
            return Outcome(Status.FAILURE, exit_code=None, host=host.name, details=details,
                           message=f"{host.name}: docker run: {tail.last_line() or 'exit 125'}")
        if code == 0:
            return Outcome(Status.SUCCESS, exit_code=0, host=host.name, details=details)
        return Outcome(Status.FAILURE, exit_code=code, message=f"exit code {code}", host=host.name, details=details)

    def _remove_lost(self, session: FabricSession, name: str, lost: HostUnavailable) -> HostUnavailable:
        """The connection of a running `docker run` was lost: the engine there keeps the container (its CLI
        is gone). Remove it over a new connection; if that cannot be done, the failure is not transient:
        a retry would run a second copy beside the first."""
        try:
            code, _, err = session.run_simple(shlex.join(["docker", "rm", "--force", name]), timeout=60)
            why = "" if code == 0 else _one_line(err) or f"exit {code}"
        except HostUnavailable as e:
            why = e.reason
        if not why:
            return HostUnavailable(lost.host, f"{lost.reason}; container {name} removed", hint=lost.diagnostics[0].hint,
                                   transient=lost.transient)
        return HostUnavailable(lost.host, f"{lost.reason}; container {name} may still be running there "
                               f"(cannot remove it: {why})", transient=False,
                               hint="the next apply removes it (cleanup_orphans) before running the job again")

    # --- clean-up ---------------------------------------------------------------------------------------------

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """What killed applies left on the hosts: containers by their attempt label (or name), host
        process groups whose leader carries the attempt and this workspace in its environment. A sweep
        (None) removes every container of this workspace that is not kept alive, and every process
        group led by one of its jobs, on every host that answers."""
        records = [(r.attempt, handle, host) for r in running or () for handle, host in _per_host(r)]
        hosts = list(self.by_name) if running is None else sorted({h for _, _, h in records if h in self.by_name})
        if not hosts:
            return []
        answers = self._each_host(lambda host: self._cleanup_host(
            host, None if running is None else [(a, h) for a, h, where in records if where == host]), hosts)
        removed: list[str] = []
        for host, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                continue  # a host that does not answer now (or its engine) is cleaned the next time it does
            removed += [f"{host}: {what}" for what in answer]
        return removed

    def _cleanup_host(self, host: str, records: list[tuple[Any, Any]] | None) -> list[str]:
        session = self.session(host)
        mark = f"{WORKSPACE_ENV}={self.workspace.workspace_id}"
        removed: list[str] = []
        if self.container == "none":
            pairs = [w for a, h in (records or []) if h and str(h).isdigit() for w in (str(h), str(a))]
            if records is not None and not pairs:
                return []
            code, out, _ = session.run_simple(shlex.join(["sh", "-c", _ORPHANS, "madengine-orphans", mark, *pairs]),
                                              timeout=120)
            return [f"process group {g}" for g in out.decode(errors="replace").split()]
        label = f"{render.LABEL_WORKSPACE}={self.workspace.workspace_id}"
        fmt = " ".join(["{{.ID}}", "{{.Names}}", _go_label(render.LABEL_ATTEMPT), _go_label(render.LABEL_KEEP_ALIVE)])
        code, out, err = session.run_simple(shlex.join(["docker", "ps", "--all", "--no-trunc", "--filter",
                                                        f"label={label}", "--format", fmt]), timeout=60)
        if code != 0:
            raise OSError(f"{host}: docker ps: {_one_line(err)}")
        attempts = {str(a) for a, _ in records or ()}
        handles = {str(h) for _, h in records or () if h}
        doomed = []
        for line in out.decode(errors="replace").splitlines():
            cid, cname, attempt, keep = [*line.split(" "), "", "", ""][:4]
            ours = attempt in attempts or cname in handles or cid in handles
            if (records is None and keep != "1") or (records is not None and ours):
                doomed.append(cid)
                removed.append(f"container {cid[:12]} ({cname}, attempt {attempt or '?'})")
        if doomed:
            session.run_simple(shlex.join(["docker", "rm", "--force", *doomed]), timeout=120)
        return removed


# --- helpers ------------------------------------------------------------------------------------------------

RANKS = "ranks:"  # a multi-node job's handle: what stops each node's run, on its host (JSON [[host, handle]...])


def rank_handles(pairs: Sequence[tuple[str, str]]) -> str:
    """One handle for the runs of a multi-node job's nodes: (host, handle) per node, in rank order."""
    return RANKS + json.dumps([list(p) for p in pairs], separators=(",", ":"))


def _per_host(record: OrphanRecord) -> list[tuple[str | None, str | None]]:
    """(handle, host) of each run an attempt left: its own, or each node's of a multi-node job."""
    handle = record.handle or ""
    if handle.startswith(RANKS):
        try:
            pairs = json.loads(handle[len(RANKS):])
            return [(str(h), str(host)) for host, h in pairs]
        except (ValueError, TypeError):  # written otherwise: its first host is still cleaned by attempt
            return [(None, record.host)]
    return [(record.handle, record.host)]


def _go_label(key: str) -> str:
    return '{{.Label "' + key + '"}}'


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text) or "_"


def _one_line(text: str | bytes, limit: int = 300) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _host_message(host: str, e: BaseException) -> str:
    """`host: reason`, said once (HostUnavailable already begins with its host)."""
    text = _one_line(str(e))
    return text if text.startswith(f"{host}: ") else f"{host}: {text}"


def _log(path: Path, text: str) -> None:
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def _package_id(entries: Sequence[tuple[str, Path]]) -> str:
    """Which copy of the package this is: names, sizes, modes and times of every file (not the contents:
    reading them all would cost more than sending them)."""
    h = hashlib.sha256()
    for name, path in entries:
        for p in [path, *sorted(path.rglob("*"))] if path.is_dir() and not path.is_symlink() else [path]:
            try:
                st = p.lstat()
            except OSError:
                continue
            rel = name if p == path else f"{name}/{p.relative_to(path).as_posix()}"
            h.update(f"{rel}\0{st.st_size}\0{st.st_mode}\0{st.st_mtime_ns}\n".encode(errors="surrogateescape"))
    return h.hexdigest()[:32]


class _IterReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (the engine's `docker save` stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return b""
        n = len(self._rest) if size is None or size < 0 else size
        data, self._rest = self._rest[:n], self._rest[n:]
        return data


class _Tail:
    """Writes through to the log, keeping the last bytes (for docker's own one-line reason)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._tail = b""

    def write(self, data: bytes) -> int:
        self._tail = (self._tail + data)[-4096:]
        return self._out.write(data) or len(data)

    def flush(self) -> None:
        self._out.flush()

    def last_line(self) -> str:
        return _one_line(self._tail)
