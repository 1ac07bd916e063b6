"""The kubernetes backend's tests: an API server (kmock) per test, with its Job controller."""

from __future__ import annotations

from tests.infra.kube import kube  # noqa: F401 (fixture)
from tests.infra.services import docker_client, registry  # noqa: F401 (fixtures: the end-to-end apply builds and pushes)
