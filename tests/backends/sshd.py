"""A private sshd on a free loopback port, for the ssh backend's tests (INFRA.md's recipe).

Started once per test session (per xdist worker), stopped by its pid at the end. It logs in the current
user with a client key made for it; the host key is in `known_hosts`. A missing `/usr/sbin/sshd` or
`ssh-keygen` FAILS the tests that use it (tests/infra/services.unavailable), never skips them.

Use: `from tests.backends.sshd import private_sshd  # noqa: F401` in a conftest, then the `private_sshd`
fixture (a `PrivateSshd`).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.infra.services import unavailable

if TYPE_CHECKING:
    from madengine.backends.ssh import SshBackend

SSHD = os.environ.get("MADENGINE_SSHD", "/usr/sbin/sshd")
HINT = "apt-get install -y --no-install-recommends --no-upgrade openssh-server openssh-client"


@dataclass(frozen=True)
class PrivateSshd:
    address: str
    port: int
    user: str
    key: Path  # the client key (authorized)
    other_key: Path  # a client key the server does not accept
    known_hosts: Path  # this server's host key, as ssh-keyscan gives it
    other_host_key_line: str  # a known_hosts line for this address with ANOTHER key (a "changed" key)
    pid: int

    def backend(self, root: Path, workdir: Path, prefix: str) -> SshBackend:
        """An `ssh` backend of one host "lo" (this server) for a project at `root`, its hosts' files under
        `workdir`, in a workspace of its own (id `<prefix>-<random>`)."""
        from madengine.backends.base import Workspace
        from madengine.backends.ssh import SshBackend
        from madengine.madfile.model import SshTarget

        workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"{prefix}-{uuid.uuid4().hex[:8]}")
        target = SshTarget.model_validate({"backend": "ssh", "workdir": str(workdir), "hosts": [
            {"name": "lo", "address": self.address, "port": self.port, "user": self.user, "key": str(self.key)}]})
        return SshBackend("lab", target, workspace, known_hosts=(self.known_hosts,))

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)


@pytest.fixture(scope="session")
def private_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateSshd]:
    for tool in (SSHD, "ssh-keygen", "ssh-keyscan"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is missing: {HINT}")
    base = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "other_host_key", "client_key", "other_client_key"):
        _keygen(base / name)
    (base / "authorized_keys").write_text((base / "client_key.pub").read_text())
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log = base / "sshd.log"
    for _ in range(5):  # a port taken between the check and the bind: another one
        port = _free_port()
        (base / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {base / 'host_key'}\nPidFile {base / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {base / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n"
            "MaxSessions 64\nMaxStartups 64\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
        with open(log, "ab") as out:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        scanned = ""
        while time.monotonic() < deadline and proc.poll() is None:
            done = subprocess.run(["ssh-keyscan", "-T", "1", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
                                  capture_output=True, text=True, check=False)
            scanned = "".join(ln + "\n" for ln in done.stdout.splitlines() if ln and not ln.startswith("#"))
            if scanned:
                break
            time.sleep(0.1)
        if scanned:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    else:
        unavailable(f"sshd did not start: {log.read_text(errors='replace')[-500:]}")
    (base / "known_hosts").write_text(scanned)
    other = (base / "other_host_key.pub").read_text().split()
    try:
        yield PrivateSshd("127.0.0.1", port, getpass.getuser(), base / "client_key", base / "other_client_key",
                          base / "known_hosts", f"[127.0.0.1]:{port} {other[0]} {other[1]}\n", proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
