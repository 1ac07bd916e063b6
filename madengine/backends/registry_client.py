"""A read-only registry client: resolve an image reference to its manifest digest (DESIGN §4, §5).

Plain urllib, HTTP API v2: `HEAD /v2/<repo>/manifests/<tag|digest>` with an Accept header naming the
schema-2 and OCI manifests (without it a registry converts to schema 1 and answers another digest).
HTTPS first; plain HTTP only for loopback registries (which Docker also treats as insecure). A registry
that cannot be reached answers None quickly: pinning is best-effort, and there may be no network.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

from madengine.backends.credentials import RegistryCredentials

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
# What Docker resolves a reference with no registry to, and where that registry is served.
DOCKERHUB_NAME = "docker.io"
DOCKERHUB_HOST = "registry-1.docker.io"
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


@dataclass(frozen=True)
class Reference:
    """An image reference split as Docker splits it."""

    registry: str  # `docker.io`, `localhost:5000`, `registry.example.org`
    repository: str  # `library/busybox`, `madengine/busybox`
    tag: str | None
    digest: str | None

    @property
    def host(self) -> str:
        return DOCKERHUB_HOST if self.registry == DOCKERHUB_NAME else self.registry

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(ref: str) -> Reference:
    """`[registry/]repo[:tag][@digest]` → Reference; the tag defaults to `latest` when there is no digest."""
    name, _, digest = ref.strip().partition("@")
    if digest and not _DIGEST.match(digest):
        raise ValueError(f"not a digest: {digest!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKERHUB_NAME, name
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    tag: str | None = None
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
    if not path or tag == "":
        raise ValueError(f"not an image reference: {ref!r}")
    if registry == DOCKERHUB_NAME and "/" not in path:
        path = f"library/{path}"
    if tag is None and not digest:
        tag = "latest"
    return Reference(registry, path, tag, digest or None)


def is_loopback(host: str) -> bool:
    hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def resolve_digest(ref: str, timeout: float = 2.0, credentials: RegistryCredentials | None = None) -> str | None:
    """The registry's manifest digest (`sha256:...`) of `ref`, or None when it cannot be had.

    A reference that already names a digest answers that digest without asking anyone.
    """
    return lookup_digest(ref, timeout, credentials)[1]


def lookup_digest(ref: str, timeout: float = 2.0,
                  credentials: RegistryCredentials | None = None) -> tuple[bool, str | None]:
    """(did the registry answer, the digest of `ref` if it has it): "not there" apart from "not asked"."""
    try:
        parsed = parse_reference(ref)
    except ValueError:
        return True, None
    if parsed.digest:
        return True, parsed.digest
    status, digest = _head_manifest(parsed, parsed.tag or "latest", timeout, credentials)
    return status is not None, digest if status == 200 else None


def manifest_exists(ref_with_digest: str, timeout: float = 2.0,
                    credentials: RegistryCredentials | None = None) -> bool | None:
    """Is the manifest (a reference with `@sha256:...`, or a tag) in its registry?

    True or False when the registry answered; None when it could not be asked (unreachable), so a
    caller can tell "gone" from "don't know" (None is falsy for a caller that only wants a bool).
    """
    try:
        parsed = parse_reference(ref_with_digest)
    except ValueError:
        return False
    status, _ = _head_manifest(parsed, parsed.digest or parsed.tag or "latest", timeout, credentials)
    if status is None:
        return None
    if status == 200:
        return True
    if status == 404:
        return False
    return None  # 401/403/5xx: the registry did not say


def _head_manifest(ref: Reference, tag_or_digest: str, timeout: float,
                   credentials: RegistryCredentials | None) -> tuple[int | None, str | None]:
    """(HTTP status or None when unreachable, Docker-Content-Digest) of the manifest."""
    schemes = ("https", "http") if is_loopback(ref.host) else ("https",)
    path = f"/v2/{ref.repository}/manifests/{urllib.parse.quote(tag_or_digest, safe=':@')}"
    for scheme in schemes:
        url = f"{scheme}://{ref.host}{path}"
        try:
            return _request_manifest(url, timeout, credentials)
        except (urllib.error.URLError, HTTPException, OSError, ValueError):
            continue  # TLS to a plain-HTTP registry, refused, unresolvable: try the next scheme
    return None, None


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """One context for every request: loading the CA bundle takes tens of milliseconds. Shareable."""
    return ssl.create_default_context()


def _opener(url: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = []
    host = urllib.parse.urlsplit(url).netloc
    if is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))  # a loopback registry is never behind a proxy
    handlers.append(urllib.request.HTTPSHandler(context=_ssl_context()))
    return urllib.request.build_opener(*handlers)


def _request_manifest(url: str, timeout: float,
                      credentials: RegistryCredentials | None) -> tuple[int, str | None]:
    opener = _opener(url)
    headers = {"Accept": MANIFEST_ACCEPT}
    status, resp_headers = _head(opener, url, headers, timeout)
    if status == 401 and (challenge := resp_headers.get("www-authenticate", "")):
        auth = _authorization(opener, challenge, timeout, credentials)
        if auth:
            headers["Authorization"] = auth
            status, resp_headers = _head(opener, url, headers, timeout)
    if status != 200:
        return status, None
    digest = resp_headers.get("docker-content-digest")
    if not digest:
        # Some registries omit the header on HEAD: the digest is the sha256 of the manifest bytes.
        req = urllib.request.Request(url, headers=headers, method="GET")
        with opener.open(req, timeout=timeout) as resp:
            digest = "sha256:" + hashlib.sha256(resp.read()).hexdigest()
    return status, digest


def _head(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str],
          timeout: float) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, headers=headers, method="HEAD")
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def _authorization(opener: urllib.request.OpenerDirector, challenge: str, timeout: float,
                   credentials: RegistryCredentials | None) -> str | None:
    """The Authorization header answering a 401 challenge (Basic, or a Bearer token, anonymous if need be)."""
    basic = None
    if credentials is not None:
        pair = f"{credentials.username}:{credentials.password.reveal()}".encode()
        basic = "Basic " + base64.b64encode(pair).decode()
    scheme, _, params_text = challenge.partition(" ")
    if scheme.lower() == "basic":
        return basic
    if scheme.lower() != "bearer":
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
    realm = params.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        return None
    req = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}")
    if basic:
        req.add_header("Authorization", basic)
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = json.loads(resp.read() or b"{}")
    except (urllib.error.URLError, HTTPException, OSError, ValueError):
        return None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    return f"Bearer {token}" if isinstance(token, str) and token else None
