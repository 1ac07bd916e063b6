"""A real sshd for the ansible backend's tests (INFRA.md's recipe): on a free loopback port, with its own
host key, a client key and a known_hosts file, started once per session and stopped by its PID.

A test that needs it FAILS when it cannot start (no /usr/sbin/sshd): see tests/infra/services.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.services import docker_client, registry, unavailable  # noqa: F401 (fixtures)

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class SshHost:
    address: str
    port: int
    user: str
    key: Path  # the client's private key
    known_hosts: Path  # holds this sshd's host key
    dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


@pytest.fixture(scope="session")
def loopback_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        unavailable(f"{SSHD} or ssh-keygen is missing (apt-get install openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "id")
    shutil.copy(d / "id.pub", d / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)
    port = _free_port()
    (d / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
""")
    with (d / "sshd.log").open("wb") as log:
        sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        scan = ""
        while time.monotonic() < deadline and "ssh-ed25519" not in scan:
            if sshd.poll() is not None:
                unavailable(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
            scan = subprocess.run(["ssh-keyscan", "-T", "1", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
                                  capture_output=True, text=True, timeout=10, check=False).stdout
            time.sleep(0.1)
        if "ssh-ed25519" not in scan:
            unavailable(f"sshd on 127.0.0.1:{port} did not answer")
        (d / "known_hosts").write_text(scan)
        import pwd

        yield SshHost("127.0.0.1", port, pwd.getpwuid(os.getuid()).pw_name, d / "id", d / "known_hosts", d)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sshd.pid, signal.SIGTERM)  # the sshd this fixture started (its own process group)
        sshd.wait(10)


@pytest.fixture
def known_hosts(loopback_host: SshHost, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MADENGINE_SSH_KNOWN_HOSTS", str(loopback_host.known_hosts))
    return loopback_host.known_hosts
