"""Backend factories for the conformance suite (`test_conformance.py`): every backend must pass it.

A factory makes a `Harness` for one test: a backend of its kind on a fresh workspace (a project with
the conformance model in it), a way to make the JobSpecs it runs (apply's fields filled in: log path,
host, attempt id) and a way to list what it left running. A new backend (ssh, slurm, kubernetes)
joins the suite by adding one factory to `FACTORIES`; every test then runs against it too.

- `local`: real processes on this machine. What is left running: live processes whose environment
  carries this workspace's marker.
- `docker`: the real dockerd of `dev/services start` (a failure, never a skip, when it is missing:
  tests/infra/services.py). Jobs run in an image built once per session FROM the registry's busybox
  base image (`/bin/bash` there is a shim to busybox sh; there is no python3). What is left: the
  containers, in any state, labelled with this workspace.
- `ssh`: `container: none` jobs on a private sshd on loopback (tests/backends/sshd.py; a failure when
  sshd is missing), so the "remote" host is this machine: what is left running is looked for as for
  `local`, and run directories are on this disk (under a workdir of the test's own).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.base import ATTEMPT_ENV, Backend, Workspace
from madengine.backends.specs import JobSpec
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)
from tests.infra.services import Registry, docker_client, registry  # noqa: F401 (fixtures)

MARKER_ENV = "MADENGINE_CONFORMANCE"  # in every job's env: the workspace id, to find what a job left

RUN_SH = r"""#!/bin/bash
# The conformance model: its first argument says what to do.
mode=$1
shift
case "$mode" in
  perf) echo "performance: 12.5 x" ;;
  protocol)
    echo "step: main $*"
    cat sibling.txt
    cat pre.out
    pwd > cwd.txt ;;
  env)
    printf 'MAD_MODEL_NAME=<%s>\n' "$MAD_MODEL_NAME"
    printf 'MAD_GPU_VENDOR=<%s>\n' "$MAD_GPU_VENDOR"
    printf 'MAD_RUNTIME_NGPUS=<%s>\n' "$MAD_RUNTIME_NGPUS"
    printf 'MAD_SYSTEM_NGPUS=<%s>\n' "$MAD_SYSTEM_NGPUS"
    printf 'MAD_GUEST_OS=<%s>\n' "$MAD_GUEST_OS"
    printf 'MY_VAR=<%s>\n' "$MY_VAR" ;;
  csv)
    printf 'model,performance,metric\nm_a,10.5,x\nm_b,11,x\n' > "$1"
    echo "wrote $1 (MAD_OUTPUT_CSV=$MAD_OUTPUT_CSV)" ;;
  fail) echo "failing on purpose"; exit 3 ;;
  fresh) if [ -e stale.txt ]; then echo "stale file seen"; fi; echo "$1" > stale.txt; echo "fresh $1" ;;
  sleep) echo "sleeping"; sleep "$1"; echo "woke up" ;;
  tag) sleep 0.3; echo "tag <$1>"; echo "$1" > tag.txt ;;
  argv)
    echo "==begin=="
    for a in "$@"; do printf '<%s>\n' "$a"; done
    printf 'env<%s>\n' "$HOSTILE"
    printf 'model<%s>\n' "$MAD_MODEL_NAME"
    echo "==end==" ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac
"""

FILES = {
    "scripts/m/run.sh": RUN_SH,
    "scripts/m/sibling.txt": "sibling ok\n",
    "scripts/py/run.py": "import os, sys\n"
                         "print('python', sys.version_info[0], sys.argv[1:], os.path.exists('data.txt'))\n",
    "scripts/py/data.txt": "beside run.py\n",
    "scripts/common/pre.sh": 'echo "step: pre $*"\necho "pre output" > pre.out\n',
    "scripts/common/pre_fail.sh": 'echo "step: pre failing"\nexit 4\n',
    "scripts/common/post.sh": 'echo "step: post $*"\n',
    "scripts/common/pre/trace.sh": 'echo "step: trace-pre $*"\n',  # ROCm's rpd tool: a pre and a post script
    "scripts/common/post/trace.sh": 'echo "step: trace-post $*"\n',  # of one name
    "scripts/other/run.sh": 'echo "step: impostor"\n',  # named like the model's script
    "scripts/common/nap.sh": 'echo "step: nap $1"\nsleep "$1"\n',
    "scripts/common/wrap.sh": 'echo "step: wrap-begin"\n"$@"\nrc=$?\necho "step: wrap-end $rc"\nexit "$rc"\n',
}


@dataclass
class Harness:
    """One backend under test, on a workspace of its own."""

    name: str  # the name it is registered under
    workspace: Workspace
    target_name: str
    target: Any  # the target's configuration, as a madfile declares it
    make: Callable[[Any], Backend]  # a backend of this kind for a target configuration, on this workspace
    leftovers: Callable[[], list[str]]  # what jobs of this workspace left running (or existing), described
    image_tag: str | None = None  # what jobs run in, for backends that need an image
    python3: bool = True  # whether `.py` scripts can run where the jobs run
    gpus_of: Callable[[Any, int | None], Any] | None = None  # the target with its hosts' GPUs changed
    backend: Backend = field(init=False)
    host: str = field(init=False)
    _ids: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.backend = self.make(self.target)
        self.host = self.backend.hosts()[0].name

    @property
    def root(self) -> Path:
        return self.workspace.root

    def with_gpus(self, gpus: int | None) -> Backend:
        """Another backend of this kind whose hosts have `gpus` GPUs (None: not scheduled by GPUs)."""
        if self.gpus_of is not None:
            return self.make(self.gpus_of(self.target, gpus))
        return self.make(self.target.model_copy(update={"gpus": gpus}))

    def job(self, *args: str, **changes: Any) -> JobSpec:
        """A job of the conformance model, as apply hands it over; `env` is added to apply's env."""
        n = next(self._ids)
        env = {ATTEMPT_ENV: str(n), MARKER_ENV: self.workspace.workspace_id, **changes.pop("env", {})}
        base = JobSpec(address=f"job:m[n={n}]@cpu/{self.target_name}#1", node_hash=f"sha256:{n:064x}", model="m",
                       context="cpu", target=self.target_name, script="scripts/m/run.sh", args=args, env=env,
                       n_gpus=0, timeout=30, image_tag=self.image_tag, image_digest=None,
                       log_path=self.workspace.logs / "1" / f"job-{n}.log", host=self.host)
        return replace(base, **changes)


Factory = Callable[[pytest.FixtureRequest, Workspace], Harness]


# --- local ----------------------------------------------------------------------------------------


def _marked_processes(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment has MARKER_ENV=marker."""
    wanted = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone, or not ours to read
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def local_factory(request: pytest.FixtureRequest, workspace: Workspace) -> Harness:
    from madengine.backends.local import LocalBackend
    from madengine.madfile.model import LocalTarget

    marker = workspace.workspace_id

    def leftovers() -> list[str]:
        return [f"process {pid} ({_cmdline(pid)})" for pid in _marked_processes(marker)]

    def kill_leftovers() -> None:
        for pid in _marked_processes(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    request.addfinalizer(kill_leftovers)
    return Harness("local", workspace, "here", LocalTarget(backend="local", gpus=None),
                   lambda t: LocalBackend("here", t, workspace), leftovers)


# --- docker ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConformanceImage:
    tag: str
    python3: bool


@pytest.fixture(scope="session")
def conformance_image(docker_client: Any, registry: Registry,  # noqa: F811 (fixtures)
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConformanceImage]:
    """The image docker jobs run in: FROM the registry's busybox base, built once per session (per worker)."""
    import docker

    context = tmp_path_factory.mktemp("conformance-image")
    (context / "Dockerfile").write_text(f"FROM {registry.base_image}\nLABEL madengine.test=conformance\n")
    tag = f"madengine/conformance:{uuid.uuid4().hex[:12]}"
    docker_client.images.build(path=str(context), tag=tag, rm=True, network_mode="none")
    try:
        docker_client.containers.run(tag, ["sh", "-c", "command -v python3"], remove=True, network_mode="none")
        python3 = True
    except docker.errors.ContainerError:
        python3 = False
    yield ConformanceImage(tag, python3)
    with contextlib.suppress(docker.errors.DockerException):
        docker_client.images.remove(tag, force=True)


def docker_factory(request: pytest.FixtureRequest, workspace: Workspace) -> Harness:
    from madengine.backends.docker import DockerBackend
    from madengine.madfile.model import DockerTarget

    image: ConformanceImage = request.getfixturevalue("conformance_image")
    client = request.getfixturevalue("docker_client")

    def containers() -> list[Any]:
        label = f"madengine.workspace={workspace.workspace_id}"
        return list(client.containers.list(all=True, filters={"label": label}, ignore_removed=True))

    def leftovers() -> list[str]:
        return [f"container {c.short_id} ({c.status})" for c in containers()]

    def remove_leftovers() -> None:
        for c in containers():
            with contextlib.suppress(Exception):
                c.remove(force=True)

    request.addfinalizer(remove_leftovers)
    return Harness("docker", workspace, "box", DockerTarget(backend="docker", gpus=None),
                   lambda t: DockerBackend("box", t, workspace), leftovers,
                   image_tag=image.tag, python3=image.python3)


# --- ssh ------------------------------------------------------------------------------------------


def ssh_factory(request: pytest.FixtureRequest, workspace: Workspace, container: str = "none") -> Harness:
    from madengine.backends.ssh import SshBackend
    from madengine.madfile.model import SshTarget

    sshd: PrivateSshd = request.getfixturevalue("private_sshd")
    marker = workspace.workspace_id
    host = {"name": "loopback", "address": sshd.address, "port": sshd.port, "user": sshd.user, "key": str(sshd.key)}
    target = SshTarget.model_validate({"backend": "ssh", "hosts": [host], "container": container,
                                       "workdir": str(workspace.root.parent / "host workdir")})
    image: ConformanceImage | None = None
    if container == "docker":  # the loopback host's engine is this machine's
        image = request.getfixturevalue("conformance_image")
        client = request.getfixturevalue("docker_client")

    def containers() -> list[Any]:
        label = f"madengine.workspace={workspace.workspace_id}"
        return list(client.containers.list(all=True, filters={"label": label}, ignore_removed=True))

    def leftovers() -> list[str]:
        found = [f"process {pid} ({_cmdline(pid)})" for pid in _marked_processes(marker)]
        return found + ([f"container {c.short_id} ({c.status})" for c in containers()] if image else [])

    def kill_leftovers() -> None:
        for pid in _marked_processes(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for c in containers() if image else ():
            with contextlib.suppress(Exception):
                c.remove(force=True)

    made: list[Any] = []

    def make(t: Any) -> Backend:
        backend = SshBackend("lab", t, workspace, known_hosts=(sshd.known_hosts,))
        made.append(backend)
        return backend

    def close() -> None:
        for backend in made:
            backend.close()
        kill_leftovers()

    def gpus_of(t: SshTarget, gpus: int | None) -> SshTarget:
        return t.model_copy(update={"hosts": [h.model_copy(update={"gpus": gpus}) for h in t.hosts or ()]})

    request.addfinalizer(close)
    return Harness("ssh", workspace, "lab", target, make, leftovers, gpus_of=gpus_of,
                   image_tag=image.tag if image else None, python3=image.python3 if image else True)


def ssh_docker_factory(request: pytest.FixtureRequest, workspace: Workspace) -> Harness:
    """`container: docker` on the loopback sshd: `docker run` over SSH, into this machine's engine."""
    return ssh_factory(request, workspace, container="docker")


# --- the registry of factories: add a backend here --------------------------------------------------

FACTORIES: dict[str, tuple[Factory, tuple[pytest.MarkDecorator, ...]]] = {
    "local": (local_factory, ()),
    "docker": (docker_factory, (pytest.mark.docker,)),
    "ssh": (ssh_factory, ()),
    "ssh-docker": (ssh_docker_factory, (pytest.mark.docker,)),
}


def write_project(root: Path) -> None:
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture(params=[pytest.param(name, marks=marks) for name, (_, marks) in FACTORIES.items()])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    """The backend under test, on a fresh project in tmp_path."""
    root = tmp_path / "project"
    write_project(root)
    workspace = Workspace(root=root, state_dir=root / ".madengine",
                          workspace_id=f"conformance-{uuid.uuid4().hex[:12]}")
    factory, _ = FACTORIES[request.param]
    return factory(request, workspace)
