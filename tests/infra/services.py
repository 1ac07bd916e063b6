"""Fixtures for the real services that `dev/services start` runs (dev/test starts them before pytest).

A test that needs a service FAILS when the service is missing, never skips: a skip would let CI pass
with the Docker tests unrun. The one way out, for a developer's machine without Docker, is
`MADENGINE_SKIP_SERVICES=1`, which skips instead, and is ignored when CI=true.

Use them from a conftest: `from tests.infra.services import docker_client, registry  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

SERVICES_DIR = Path(os.environ.get("MADENGINE_SERVICES_DIR", "/tmp/madengine-services"))
HINT = "run `dev/services start` (dev/test does it before pytest)"
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def service_env() -> dict[str, str]:
    """What `dev/services start` wrote to its env file, under the process environment (which wins)."""
    env: dict[str, str] = {}
    path = SERVICES_DIR / "env"
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() and not key.startswith("#"):
                env[key.strip()] = value.strip()
    env.update({k: v for k, v in os.environ.items() if k in env or k.startswith("MADENGINE_") or k == "DOCKER_HOST"})
    return env


def missing(what: str, detail: str) -> NoReturn:
    unavailable(f"{what} is not reachable ({detail}): {HINT}")


def unavailable(message: str) -> NoReturn:
    """What this machine lacks for a test (a service, root to mount): the test fails, or with
    `MADENGINE_SKIP_SERVICES=1` outside CI, is skipped."""
    if os.environ.get("MADENGINE_SKIP_SERVICES") == "1" and os.environ.get("CI", "").lower() != "true":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@contextlib.contextmanager
def silent_listener() -> Iterator[tuple[str, list[str]]]:
    """A TCP port on loopback that accepts each connection and closes it unanswered (a registry that is
    up but says nothing). Yields its `host:port` and the connections it got, one entry each; an entry
    is added before its connection is closed, so a client that saw the close finds it counted."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:  # shut down
                return
            got.append(f"{peer[0]}:{peer[1]}")
            conn.close()

    thread = threading.Thread(target=serve, name="silent listener", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", got
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        server.close()
        thread.join(5)


@dataclass(frozen=True)
class Registry:
    address: str  # host:port, e.g. 127.0.0.1:5000
    base_image: str  # the busybox base image pushed there, e.g. localhost:5000/madengine/busybox:1


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client of the engine `dev/services` started (or reused); DOCKER_HOST is exported."""
    env = service_env()
    if env.get("DOCKER_HOST"):
        os.environ["DOCKER_HOST"] = env["DOCKER_HOST"]  # so code under test (docker.from_env) finds it too
    try:
        import docker
    except ImportError as e:  # a dependency of madengine: its absence is a broken install, not a skip
        pytest.fail(f"the docker SDK is not installed: {e}", pytrace=False)
    error = ""
    try:
        client = docker.from_env(version="auto", timeout=30)
        client.ping()
    except docker.errors.DockerException as e:
        error = str(e)
    if error:  # outside the except block: the failure reads as one line, not a chain of tracebacks
        missing("the Docker engine", f"{env.get('DOCKER_HOST', 'the default socket')}: {error}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The registry `dev/services` started, with the busybox base image in it."""
    env = service_env()
    address = env.get("MADENGINE_REGISTRY", "127.0.0.1:5000")
    base = env.get("MADENGINE_BASE_IMAGE", "localhost:5000/madengine/busybox:1")
    error = _http_error(urllib.request.Request(f"http://{address}/v2/"), "Docker-Distribution-Api-Version")
    if error:
        missing("the registry", f"{address}: {error}")
    name, _, tag = base.partition("/")[2].rpartition(":")
    error = _http_error(urllib.request.Request(f"http://{address}/v2/{name}/manifests/{tag}", method="HEAD",
                                               headers={"Accept": ACCEPT}))
    if error:
        missing("the base image", f"{base}: {error}")
    return Registry(address, base)


def _http_error(req: urllib.request.Request, header: str = "") -> str:
    """'' when the request succeeds (with `header` in the answer, when given), else why not."""
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            return "" if not header or resp.headers.get(header) else f"answers without {header}: not a registry"
    except (urllib.error.URLError, OSError) as e:
        return str(e)
