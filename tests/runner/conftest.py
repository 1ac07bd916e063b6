"""`madengine runner ssh|ansible` and examples/ssh against the SSH hosts of `dev/services`."""

from __future__ import annotations

from tests.infra.services import docker_client, registry  # noqa: F401 (fixtures)
from tests.infra.ssh import ssh_hosts, ssh_services  # noqa: F401 (fixtures)
