"""The kubernetes backend's tests: an API server (kmock) per test, with its Job controller."""

from __future__ import annotations

from tests.infra.kube import kube  # noqa: F401 (fixture)
