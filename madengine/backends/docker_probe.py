"""A read-only look at a Docker engine without the SDK: which tags an image has, if it exists.

`plan` asks this about every image it recorded. The Docker SDK imports `requests`, which alone costs
more than the rest of a no-op plan; one `GET /images/{name}/json` over the engine's socket needs only
the standard library. Plain `unix://` and `tcp://` engines are probed here; anything else (TLS, ssh://)
raises `Unsupported`, and the caller asks the SDK instead. Everything that changes the engine uses the SDK.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 30.0


class Unsupported(Exception):
    """An engine this probe does not speak to (TLS, ssh://, npipe://): use the SDK."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def engine_address(host: str | None) -> str:
    """The engine a target talks to: its `host`, else DOCKER_HOST, else the local socket."""
    return host or os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def socket_path(host: str | None) -> str | None:
    """The socket file of a `unix://` engine (whose host is this machine), None for any other."""
    url = urlsplit(engine_address(host))
    return (url.path or DEFAULT_SOCKET) if url.scheme in ("unix", "http+unix") else None


def engine_connection(host: str | None, timeout: float = TIMEOUT) -> http.client.HTTPConnection:
    """A connection to the engine at `host` (a DOCKER_HOST value; None: the environment's, else the
    local socket). Raises Unsupported for an engine that needs TLS or another transport."""
    if host is None and os.environ.get("DOCKER_TLS_VERIFY"):
        raise Unsupported("DOCKER_TLS_VERIFY is set")
    host = engine_address(host)
    url = urlsplit(host)
    if url.scheme in ("unix", "http+unix"):
        return _UnixConnection(url.path or DEFAULT_SOCKET, timeout)
    if url.scheme in ("tcp", "http") and url.hostname and url.port and url.port != 2376:  # 2376: TLS
        return http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    raise Unsupported(f"engine {host!r}")


def _get(host: str | None, path: str) -> tuple[int, str, bytes]:
    conn = engine_connection(host)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.reason, response.read()
    except http.client.HTTPException as e:
        raise OSError(f"bad answer from the engine: {e!r}") from None
    finally:
        conn.close()


def info(host: str | None) -> dict[str, Any]:
    """The engine's `GET /info` (its host's `Name`, its `Runtimes`...). Raises OSError when the engine
    cannot be reached, Unsupported for an engine this probe does not speak to."""
    status, reason, body = _get(host, "/info")
    if status != 200:
        raise OSError(f"{status} {reason}: {body[:200].decode('utf-8', 'replace').strip()}")
    data = json.loads(body)
    return data if isinstance(data, dict) else {}


def image_tags(host: str | None, name: str) -> list[str] | None:
    """The repository tags of the image `name` (an id or a reference), None if the engine has no such
    image. Raises OSError when the engine cannot be reached or answers with an error."""
    status, reason, body = _get(host, f"/images/{quote(name, safe='/:')}/json")  # quoted as the SDK quotes it
    if status == 404:
        return None
    if status != 200:
        raise OSError(f"{status} {reason}: {body[:200].decode('utf-8', 'replace').strip()}")
    tags = json.loads(body).get("RepoTags") or []
    return [str(t) for t in tags]


def tagged_images(host: str | None, tags: Sequence[str]) -> dict[str, str]:
    """Of these tags, those the engine has, each with the id of the image it names: one
    `GET /images/json` filtered by reference, however many tags are asked. Raises OSError when the
    engine cannot be reached or answers with an error."""
    if not tags:
        return {}
    query = urlencode({"filters": json.dumps({"reference": sorted(set(tags))})})
    status, reason, body = _get(host, f"/images/json?{query}")
    if status != 200:
        raise OSError(f"{status} {reason}: {body[:200].decode('utf-8', 'replace').strip()}")
    return images_by_tag(json.loads(body), tags)


def images_by_tag(listing: object, tags: Sequence[str]) -> dict[str, str]:
    """tag -> image id, for the wanted `tags`, from an engine's image list (`GET /images/json`)."""
    wanted = set(tags)
    out: dict[str, str] = {}
    for image in listing if isinstance(listing, list) else ():
        for tag in (image.get("RepoTags") or []) if isinstance(image, dict) else ():
            if tag in wanted:
                out[str(tag)] = str(image.get("Id"))
    return out
