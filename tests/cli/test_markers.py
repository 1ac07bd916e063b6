"""`-m 'not docker'` leaves out every test that needs dockerd (and only those)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

# Tests without the engine in the directories of engine tests: the registry's own client, the local and ssh
# (host processes) backends' conformance, the ssh tests of host processes and transfers over a private sshd, and
# the slurm backend's tests of host-process jobs.
WITHOUT_DOCKERD = {"tests/docker/test_registry_client.py", "tests/backends/test_ssh_session.py",
                   "tests/backends/test_ssh_backend.py", "tests/backends/test_ssh_limits.py",
                   "tests/backends/test_ssh_transfer.py", "tests/backends/test_slurm_backend.py",
                   "tests/backends/test_slurm_apply.py"}


def collected(*args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *args, "tests/docker", "tests/backends"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_not_docker_deselects_every_test_that_needs_dockerd() -> None:
    without = collected("-m", "not docker")
    assert without, "nothing collected"
    for test in without:
        path = test.split("::", 1)[0]
        assert path in WITHOUT_DOCKERD or (path == "tests/backends/test_conformance.py" and (
            "[local" in test or "[ssh]" in test or ("[ssh-" in test and "[ssh-docker" not in test))), test
    with_docker = collected("-m", "docker")
    assert any("test_apply_docker.py" in t for t in with_docker)
    assert any("test_rocm_commands_docker.py" in t for t in with_docker)
    assert any("[docker" in t for t in with_docker)
