"""The SDK-free image probe that `plan` uses: which engines it speaks to, and what it makes of answers.

The real engine answers it in the docker backend's tests (observe_images on `docker`); here a
stdlib HTTP server on a unix socket plays the engine, to reach the answers a healthy engine never gives.
"""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from madengine.backends import docker_probe as probe


class _Engine(http.server.BaseHTTPRequestHandler):
    images: ClassVar[dict[str, list[str]]] = {"madengine/x:abc": ["madengine/x:abc", "other:1"],
                                              "sha256:1234": []}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path.startswith("/images/json?"):  # the list call, filtered by reference
            wanted = set(json.loads(parse_qs(urlsplit(self.path).query)["filters"][0])["reference"])
            self._answer(200, [{"Id": name, "RepoTags": tags} for name, tags in self.images.items()
                               if wanted & set(tags)])
            return
        name = self.path.removeprefix("/images/").removesuffix("/json")
        if name == "broken":
            self._answer(500, {"message": "engine on fire"})
        elif name in self.images:
            self._answer(200, {"Id": "sha256:1234", "RepoTags": self.images[name] or None})
        else:
            self._answer(404, {"message": "No such image"})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    sock = tmp_path / "docker.sock"
    server = socketserver.ThreadingUnixStreamServer(str(sock), _Engine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Engine.seen.clear()
    yield f"unix://{sock}"
    server.shutdown()
    server.server_close()


def test_tags_of_an_image_by_reference_or_id(engine: str) -> None:
    assert probe.image_tags(engine, "madengine/x:abc") == ["madengine/x:abc", "other:1"]
    assert probe.image_tags(engine, "sha256:1234") == []
    assert probe.image_tags(engine, "madengine/gone:1") is None
    assert _Engine.seen == ["/images/madengine/x:abc/json", "/images/sha256:1234/json",
                            "/images/madengine/gone:1/json"]


def test_a_name_cannot_leave_its_path_segment(engine: str) -> None:
    assert probe.image_tags(engine, "a b?c#d") is None
    assert _Engine.seen == ["/images/a%20b%3Fc%23d/json"]


def test_engine_errors_are_os_errors(engine: str, tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"500 Internal Server Error: .*engine on fire"):
        probe.image_tags(engine, "broken")
    with pytest.raises(OSError):
        probe.image_tags(f"unix://{tmp_path}/nothing.sock", "x")


def test_which_engines_are_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert probe.engine_connection(None)._path == probe.DEFAULT_SOCKET  # type: ignore[attr-defined]
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    conn = probe.engine_connection(None)
    assert (conn.host, conn.port) == ("127.0.0.1", 2375)
    for host in ("ssh://me@box", "tcp://box:2376", "npipe:////./pipe/docker_engine", "tcp://box"):
        with pytest.raises(probe.Unsupported):
            probe.engine_connection(host)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    with pytest.raises(probe.Unsupported):
        probe.engine_connection(None)
    assert probe.engine_connection("unix:///run/other.sock")._path == "/run/other.sock"  # type: ignore[attr-defined]


def test_the_tags_of_many_images_are_one_list_call(engine: str) -> None:
    found = probe.tagged_images(engine, ["madengine/x:abc", "other:1", "madengine/gone:1"])
    assert found == {"madengine/x:abc": "madengine/x:abc", "other:1": "madengine/x:abc"}  # tag -> the image's id
    assert len(_Engine.seen) == 1 and _Engine.seen[0].startswith("/images/json?filters=")
    assert probe.tagged_images(engine, []) == {} and len(_Engine.seen) == 1  # nothing asked: no call
