"""The ansible backend's tests run against the SSH hosts of `dev/services` (tests/infra/ssh.py): its
loopback sshd and the three hosts node1..node3 in network namespaces, each with its own Docker engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.services import docker_client, registry  # noqa: F401 (fixtures)
from tests.infra.ssh import SshServices, ssh_hosts, ssh_services  # noqa: F401 (fixtures)


@pytest.fixture
def known_hosts(ssh_hosts: SshServices, monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    """The hosts' keys, where the ansible backend reads them (MADENGINE_SSH_KNOWN_HOSTS)."""
    monkeypatch.setenv("MADENGINE_SSH_KNOWN_HOSTS", str(ssh_hosts.known_hosts))
    return ssh_hosts.known_hosts
