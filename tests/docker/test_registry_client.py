"""registry_client against the real registry of `dev/services start`."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from madengine.backends.registry_client import manifest_exists, resolve_digest
from tests.infra.services import Registry, silent_listener

pytestmark = pytest.mark.docker


def test_resolve_digest_of_the_base_image(registry: Registry, docker_client: object) -> None:
    digest = resolve_digest(registry.base_image)
    assert digest is not None and digest.startswith("sha256:")
    assert resolve_digest(registry.base_image.replace("localhost", "127.0.0.1")) == digest
    # The engine's view agrees: the base image's repo digest is the registry's manifest digest.
    import docker

    image = docker.from_env(version="auto").images.get(registry.base_image)
    assert f"{registry.base_image.rsplit(':', 1)[0]}@{digest}" in image.attrs["RepoDigests"]
    repo = registry.base_image.rsplit(":", 1)[0]
    assert manifest_exists(f"{repo}@{digest}") is True
    assert manifest_exists(f"{repo}@sha256:{'0' * 64}") is False
    assert resolve_digest(f"{repo}@{digest}") == digest  # already pinned: no request needed


def test_missing_tag_and_unreachable_registry(registry: Registry) -> None:
    assert resolve_digest(f"{registry.address}/madengine/busybox:no-such-tag") is None
    assert resolve_digest("127.0.0.1:9/madengine/busybox:1") is None  # nothing listens on the discard port
    assert manifest_exists(f"127.0.0.1:9/madengine/busybox@sha256:{'0' * 64}") is None  # unknown, not gone
    assert resolve_digest("no-such-registry.invalid/x:1", timeout=1) is None


def test_a_registry_that_does_not_answer_is_asked_once_per_scheme_not_retried() -> None:
    with silent_listener() as (address, connections):
        assert resolve_digest(f"{address}/madengine/busybox:1") is None
        assert manifest_exists(f"{address}/madengine/busybox@sha256:{'0' * 64}") is None  # unknown, not gone
        assert len(connections) == 2 * 2  # each: https, then http (loopback), once


@pytest.fixture
def token_registry() -> Iterator[str]:
    """A registry that wants a bearer token (as Docker Hub does), served on loopback."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # the token endpoint
            body = b'{"token": "t0k"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            if self.headers.get("Authorization") != "Bearer t0k":
                port = server.server_port  # the server below (self.server is typed as any socketserver)
                self.send_response(401)
                self.send_header("WWW-Authenticate",
                                 f'Bearer realm="http://127.0.0.1:{port}/token",service="test",scope="repo:x:pull"')
            elif "application/vnd.oci.image.manifest.v1+json" not in self.headers.get("Accept", ""):
                self.send_response(404)
            else:
                self.send_response(200)
                self.send_header("Docker-Content-Digest", "sha256:" + "f" * 64)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_bearer_token_challenge(token_registry: str) -> None:
    assert resolve_digest(f"{token_registry}/library/x:1") == "sha256:" + "f" * 64
