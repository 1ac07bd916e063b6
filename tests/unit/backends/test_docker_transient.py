"""One rule says whether a Docker failure is worth retrying (`docker.transient`): its table."""

from __future__ import annotations

import pytest

from madengine.backends.docker import transient

REFUSED = "Error while fetching server API version: ('Connection aborted.', ConnectionRefusedError(111, " \
          "'Connection refused'))"
DEVICE = "error gathering device information while adding custom device \"/dev/kfd\": no such file or directory"


@pytest.mark.parametrize(("text", "local", "status", "retry"), [
    # Nothing listens on this host's engine socket: no retry brings it back; a remote engine may be restarting.
    (REFUSED, True, None, False),
    (REFUSED, False, None, True),
    # Refused, but said by an engine that answered (a registry it dialed): worth another try, local or not.
    ("Get https://reg:5000/v2/: dial tcp 10.0.0.2:5000: connect: connection refused", True, 500, True),
    # The host lacks a device or runtime: the engine's 500 stays a 500.
    (DEVICE, True, 500, False),
    (DEVICE, False, 500, False),
    ("unknown or invalid runtime name: nvidia", True, 400, False),
    ("could not select device driver \"\" with capabilities: [[gpu]]", True, 500, False),
    # A request the engine rejected as wrong, or credentials refused: the same request fails again.
    ("404 Client Error: Not Found (\"no such image\")", True, 404, False),
    ("409 Client Error: Conflict", True, 409, False),
    ("unauthorized: authentication required", False, None, False),
    ("denied: requested access to the resource is denied", False, 500, False),
    ("The command '/bin/sh -c false' returned a non-zero code: 1", False, None, False),
    # The network, or an engine's or registry's hiccup.
    ("408 Request Timeout", True, 408, True),
    ("429 Too Many Requests", False, 429, True),
    ("500 Server Error: Internal Server Error (\"oci runtime hiccup\")", True, 500, True),
    ("UnixHTTPConnectionPool(host='localhost', port=None): Read timed out. (read timeout=60)", True, None, True),
    ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", True, None,
     True),
    ("net/http: TLS handshake timeout", False, None, True),
    ("Get https://reg/v2/: dial tcp: lookup reg: no such host", False, None, True),
    # Anything else a stream says (no status) is the build's or push's own failure.
    ("manifest for busybox:nope not found: manifest unknown", False, None, False),
])
def test_which_docker_failures_are_retried(text: str, local: bool, status: int | None, retry: bool) -> None:
    assert transient(text, local=local, status=status) is retry
