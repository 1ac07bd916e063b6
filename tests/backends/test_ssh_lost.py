"""A lost SSH connection during a `container: docker` job (the private loopback sshd and this machine's
dockerd): the job's container is removed over a new connection; when that cannot be done the failure is
not transient (a retry would run a second copy beside the first) and says the container may still run."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from madengine.backends.base import ATTEMPT_ENV, Cancel
from madengine.backends.specs import JobSpec
from madengine.backends.ssh import SshBackend
from madengine.state.model import Status
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)
from tests.infra.services import Registry, registry  # noqa: F401 (fixture)

pytestmark = pytest.mark.docker


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lose_connection_once_running(b: SshBackend, label: str, *, unreachable: bool) -> threading.Thread:
    """Close the session's transport once the job's container runs (and, `unreachable`, point the session
    at a port nothing listens on: the host does not answer again)."""
    import docker

    client = docker.from_env()

    def drop() -> None:
        for _ in range(600):
            if client.containers.list(filters={"label": label, "status": "running"}):
                break
            time.sleep(0.1)
        session = b.session("lo")
        if unreachable:
            session.endpoint = replace(session.endpoint, port=_closed_port())
        session._connection.client.get_transport().close()

    thread = threading.Thread(target=drop, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("unreachable", [False, True])
def test_a_lost_connection_removes_the_jobs_container_or_says_it_may_still_run(
        tmp_path: Path, private_sshd: PrivateSshd, registry: Registry, unreachable: bool) -> None:  # noqa: F811
    import docker

    client = docker.from_env()
    root = tmp_path / "p"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "run.sh").write_text("sleep 60\n")
    b = private_sshd.backend(root, tmp_path / "remote", "l")
    workspace = b.workspace
    label = f"madengine.workspace={workspace.workspace_id}"
    job = JobSpec(address="job:m@cpu/lab#1", node_hash=f"sha256:{1:064x}", model="m", context="cpu", target="lab",
                  script="scripts/run.sh", args=(), env={ATTEMPT_ENV: "1"}, n_gpus=0, timeout=0,
                  image_tag=registry.base_image, image_digest=None, log_path=workspace.logs / "1.log", host="lo")
    try:
        dropper = _lose_connection_once_running(b, label, unreachable=unreachable)
        outcome = b.run(job, Cancel())
        dropper.join(5)
        assert outcome.status is Status.FAILURE, outcome
        assert "connection lost" in outcome.message, outcome.message
        left = client.containers.list(all=True, filters={"label": label})
        if unreachable:
            assert not outcome.transient, outcome  # no retry while the first copy may still run
            assert "may still be running" in outcome.message and left, outcome.message
        else:
            assert left == [], [c.name for c in left]  # before any retry could start
            assert "removed" in outcome.message and outcome.transient, outcome
    finally:
        b.close()
        for c in client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
