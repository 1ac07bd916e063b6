"""The services' own tests (test_ssh_services.py, test_slurm_services.py): the real dockerd, registry, SSH hosts,
SLURM cluster and PostgreSQL server of `dev/services`."""

from __future__ import annotations

from tests.infra.postgres import pg_schema, pg_server  # noqa: F401 (fixtures)
from tests.infra.services import docker_client, registry  # noqa: F401 (fixtures)
from tests.infra.slurm import slurm_cluster  # noqa: F401 (fixture)
from tests.infra.ssh import ssh_hosts, ssh_services  # noqa: F401 (fixtures)
