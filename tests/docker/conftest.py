"""Tests against the real dockerd and registry started by `dev/services start`."""

from __future__ import annotations

from tests.infra.services import docker_client, registry  # noqa: F401 (fixtures)
