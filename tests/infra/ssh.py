"""The SSH hosts of `dev/services start`, for the ssh and ansible backends' tests.

What runs (dev/services' header has the details): an sshd on loopback (the root namespace, this machine's
Docker engine) and three hosts node1..node3, each in network namespaces of its own on a bridge: own
address, hostname, /srv and home directory (`~/.madengine` differs per host), its own sshd on port 22
and its own Docker engine (which its sshd exports as DOCKER_HOST: which images a host holds is its own),
the busybox base image loaded, and the registry reachable under the same name as here
(`localhost:<port>`). The rest of the filesystem, /tmp included, is shared. /srv/bin comes first on the
PATH of a host's SSH sessions (`install_tool`). Login as the current user with one client key; every
host key is in one known_hosts file.

Fixtures (import them into a conftest: `from tests.infra.ssh import ssh_hosts, ssh_services  # noqa: F401`):

- `ssh_services` (session): the hosts, checked to answer; a FAILURE (with what to run) when they do not.
- `ssh_hosts` (per test): the same, leased for the test: a test of another xdist worker that takes a host
  down (`ssh_hosts.stopped("node2")`) waits until no other test uses the hosts, and they wait for it.

A test that uses either is marked `ssh` (tests/conftest.py), so `-m 'not ssh'` leaves them out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import socket
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.infra.services import SERVICES_DIR, service_env, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES = REPO_ROOT / "dev" / "services"
HINT = "run `dev/services start` (dev/test does it before pytest)"


@dataclass(frozen=True)
class SshHost:
    """One host as a client sees it, and, for assertions, its engine and /srv as seen from here."""

    name: str  # its hostname (node1...), or "loopback" for this machine's sshd
    address: str
    port: int
    user: str
    key: Path  # the client's private key
    known_hosts: Path
    docker_host: str  # its Docker engine, reachable from this machine (unix://...)
    srv: Path | None  # its /srv as a directory of this machine; None for loopback (no /srv of its own)
    home: Path  # its home directory (of `user`) as a directory of this machine

    def connection(self, **kwargs: Any) -> Any:
        """A fabric Connection that checks the host key strictly (known_hosts + paramiko's RejectPolicy;
        fabric alone accepts any key). Not opened yet: use it in a `with`."""
        import fabric
        import paramiko

        conn = fabric.Connection(self.address, user=self.user, port=self.port, connect_timeout=10,
                                 connect_kwargs={"key_filename": str(self.key), "look_for_keys": False,
                                                 "allow_agent": False}, **kwargs)
        conn.client.load_host_keys(str(self.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return conn

    def ssh_args(self) -> list[str]:
        """The OpenSSH client's command line to this host (strict host key, this key only, no prompt)."""
        return ["ssh", "-p", str(self.port), "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "--", f"{self.user}@{self.address}"]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` on the host over the OpenSSH client (not fabric, which the code under test uses).
        Each argument is quoted for the remote shell. `check`: a non-zero exit fails the test."""
        done = subprocess.run([*self.ssh_args(), shlex.join(argv)], capture_output=True, text=True,
                              timeout=timeout, check=False, input=input if input is not None else "")
        if check and done.returncode != 0:
            pytest.fail(f"{self.name}: {shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}",
                        pytrace=False)
        return done

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`docker ARGS` against this host's own engine, from here (quicker than over ssh)."""
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env={**os.environ, "DOCKER_HOST": self.docker_host})
        if check and done.returncode != 0:
            pytest.fail(f"{self.name}: docker {shlex.join(args)} exited {done.returncode}: {done.stderr.strip()}",
                        pytrace=False)
        return done

    def images(self) -> set[str]:
        """The `repository:tag` of every image this host's engine holds."""
        out = self.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return {line for line in out.splitlines() if line and not line.endswith(":<none>")}

    def install_tool(self, name: str, script: str) -> Path:
        """An executable `name` (the text `script`, e.g. a fake rocm-smi) on this host's PATH only: its
        /srv/bin comes first on the PATH of its SSH sessions. Remove it (`unlink()`) when done."""
        if self.srv is None:
            raise ValueError(f"{self.name} has no /srv of its own: a tool there would be on every host")
        path = self.srv / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(script)
        path.chmod(0o755)
        return path

    def madfile_host(self, **extra: object) -> dict[str, object]:
        """This host as an entry of an ssh target's `hosts:` list (extra keys, e.g. gpus=0, added)."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "key": str(self.key), **extra}

    def inventory_node(self, **extra: object) -> dict[str, object]:
        """This host as a node of ROCm madengine's SSH/Ansible inventory (`nodes:`)."""
        return {"hostname": self.name, "address": self.address, "port": self.port, "username": self.user,
                "ssh_key_path": str(self.key), **extra}


@dataclass
class SshServices:
    """The hosts of `dev/services` (node1..node3) and its loopback sshd."""

    nodes: tuple[SshHost, ...]
    loopback: SshHost
    user: str
    key: Path
    known_hosts: Path
    _lock: int | None = field(default=None, repr=False)  # this process's fd on the hosts' lease lock
    _mode: int = field(default=fcntl.LOCK_UN, repr=False)

    def __getitem__(self, name: str) -> SshHost:
        for host in (*self.nodes, self.loopback):
            if host.name == name:
                return host
        raise KeyError(f"no SSH host {name!r} (there are {', '.join(h.name for h in self.nodes)} and loopback)")

    def madfile_hosts(self, names: Sequence[str] | None = None, **extra: object) -> list[dict[str, object]]:
        """An ssh target's `hosts:` list: the named hosts (default node1..node3), `extra` added to each."""
        return [self[n].madfile_host(**extra) for n in (names or [h.name for h in self.nodes])]

    def known_hosts_with_changed_key(self, path: Path, name: str) -> Path:
        """A copy of the known_hosts file at `path` in which host `name` has another key (a fresh one): what
        a client sees when that host's key changed. Every other host keeps its real key."""
        host = self[name]
        other = fresh_key(path.parent / f"{path.name}.key")
        pattern = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
        lines = [line for line in self.known_hosts.read_text().splitlines() if line.split(" ", 1)[0] != pattern]
        kind, blob = Path(f"{other}.pub").read_text().split()[:2]
        path.write_text("\n".join([*lines, f"{pattern} {kind} {blob}"]) + "\n")
        return path

    def _set_lock(self, mode: int) -> None:
        if self._lock is None:
            SERVICES_DIR.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(SERVICES_DIR / "ssh-hosts.lock", os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._lock, mode)
        self._mode = mode

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """The hosts are used by this test: nobody takes one down meanwhile (nested uses keep the lease)."""
        if self._mode != fcntl.LOCK_UN:
            yield
            return
        self._set_lock(fcntl.LOCK_SH)
        try:
            yield
        finally:
            self._set_lock(fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """No other test uses the hosts in the block: it may take one down and bring it back."""
        before = self._mode
        self._set_lock(fcntl.LOCK_EX)
        try:
            yield
        finally:
            self._set_lock(before)

    @contextlib.contextmanager
    def stopped(self, name: str) -> Iterator[SshHost]:
        """Host `name` down for the block (`stop_host`), up again after it, whatever happens."""
        with self.exclusive():
            stop_host(name)
            try:
                yield self[name]
            finally:
                start_host(name)


def fresh_key(path: Path) -> Path:
    """A new ed25519 key pair at `path` (and `path`.pub) that no host knows: a wrong client key, or a
    host key that differs from the real one."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "madengine-test", "-f", str(path)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return path


def _services(*args: str) -> None:
    env = {**os.environ, "MADENGINE_SERVICES_DIR": str(SERVICES_DIR)}
    done = subprocess.run(["bash", str(SERVICES), *args], capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL, env=env)
    if done.returncode != 0:
        pytest.fail(f"dev/services {shlex.join(args)} failed: {done.stderr.strip()}", pytrace=False)


def stop_host(name: str) -> None:
    """Take host `name` off the network for SSH: its sshd and every session it serves end (connections
    drop, new ones are refused); its engine and containers keep running. Without `exclusive()` (or
    `stopped()`), only for a test that runs alone; callable from a thread, e.g. mid-apply."""
    _services("host", "stop", name)


def start_host(name: str) -> None:
    """Bring host `name`'s sshd back (same host key); returns once it answers."""
    _services("host", "start", name)


def _answers(address: str, port: int) -> str:
    """'' when an SSH server answers at address:port, else why not."""
    try:
        with socket.create_connection((address, port), timeout=3) as sock:
            sock.settimeout(3)
            banner = sock.recv(64)
    except OSError as e:
        return str(e)
    return "" if banner.startswith(b"SSH-") else f"answers {banner[:20]!r}, not SSH"


def load_ssh_services() -> SshServices:
    """The hosts `dev/services` started, from its env file; fails the test (never skips) when they are
    missing or do not answer."""
    env = service_env()
    names = ("MADENGINE_SSH_USER", "MADENGINE_SSH_KEY", "MADENGINE_SSH_KNOWN_HOSTS", "MADENGINE_SSH_LOOPBACK",
             "MADENGINE_SSH_HOSTS")
    absent = [n for n in names if not env.get(n)]
    if absent:
        unavailable(f"the SSH hosts are not set up ({', '.join(absent)} missing from {SERVICES_DIR / 'env'}): {HINT}")
    user, key, known = env["MADENGINE_SSH_USER"], Path(env["MADENGINE_SSH_KEY"]), Path(env["MADENGINE_SSH_KNOWN_HOSTS"])
    for path in (key, known):
        if not path.is_file():
            unavailable(f"the SSH hosts' {path} is missing: {HINT}")
    lo_addr, _, lo_port = env["MADENGINE_SSH_LOOPBACK"].rpartition(":")
    loopback = SshHost("loopback", lo_addr, int(lo_port), user, key, known,
                       env.get("DOCKER_HOST", "unix:///var/run/docker.sock"), None, Path.home())
    nodes = []
    for item in env["MADENGINE_SSH_HOSTS"].split(","):
        name, _, address = item.partition("=")
        srv = SERVICES_DIR / "hosts" / name / "srv"
        nodes.append(SshHost(name, address, 22, user, key, known, f"unix://{srv}/docker.sock", srv,
                             SERVICES_DIR / "hosts" / name / "home"))
    services = SshServices(tuple(nodes), loopback, user, key, known)
    with services.shared():  # not while a test of another worker has a host down on purpose
        down = [f"{h.name} ({h.address}:{h.port}: {why})" for h in (loopback, *nodes)
                if (why := _answers(h.address, h.port))]
    if down:
        unavailable(f"SSH hosts do not answer: {'; '.join(down)}: {HINT}")
    return services


@pytest.fixture(scope="session")
def ssh_services() -> SshServices:
    """The SSH hosts of `dev/services`, checked once per session (use `ssh_hosts` in tests)."""
    return load_ssh_services()


@pytest.fixture
def ssh_hosts(ssh_services: SshServices) -> Iterator[SshServices]:
    """The SSH hosts, leased to this test (see `SshServices.shared`/`stopped`); every host answers."""
    with ssh_services.shared():
        down = [h.name for h in ssh_services.nodes if _answers(h.address, h.port)]
        if down:  # a test that crashed between stop and start, or a dev/services stop meanwhile
            unavailable(f"SSH hosts {', '.join(down)} do not answer: {HINT}")
        yield ssh_services
