"""Registry credentials: credential.json (ROCm madengine's format) and MAD_DOCKERHUB_*; never shown."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest

from madengine.backends.credentials import (
    Secret,
    for_registry,
    load_credentials,
    redact,
    registry_key,
)
from madengine.backends.registry_client import parse_reference
from madengine.errors import ConfigError

FILE = {
    "dockerhub": {"username": "hubuser", "password": "hub-pass", "repository": "my-org"},
    "localhost:5000": {"username": "local", "password": "local-pass"},
    "AMD_GITHUB": {"username": "gh", "token": "gh-token"},  # not a registry entry: no password
    "blank": {"username": "", "password": ""},  # a placeholder is not configured
}


def test_file_entries_by_registry(tmp_path: Path) -> None:
    (tmp_path / "credential.json").write_text(json.dumps(FILE))
    creds = load_credentials(tmp_path, environ={})
    assert sorted(creds) == ["dockerhub", "localhost:5000"]
    hub = creds["dockerhub"]
    assert (hub.username, hub.password.reveal(), hub.repository, hub.source) == (
        "hubuser", "hub-pass", "my-org", "credential.json")
    assert for_registry(creds, "docker.io") is hub
    assert for_registry(creds, None) is hub
    assert for_registry(creds, "localhost:5000") is creds["localhost:5000"]
    assert for_registry(creds, "127.0.0.1:5000") is None


def test_environment_overrides_dockerhub(tmp_path: Path) -> None:
    (tmp_path / "credential.json").write_text(json.dumps(FILE))
    env = {"MAD_DOCKERHUB_USER": "envuser", "MAD_DOCKERHUB_PASSWORD": "env-pass", "MAD_DOCKERHUB_REPO": "env-org"}
    hub = load_credentials(tmp_path, environ=env)["dockerhub"]
    assert (hub.username, hub.password.reveal(), hub.repository, hub.source) == (
        "envuser", "env-pass", "env-org", "environment")
    # Both a user and a password are needed, as in ROCm madengine.
    assert "dockerhub" not in load_credentials(None, environ={"MAD_DOCKERHUB_USER": "u"})


def test_no_file_no_credentials(tmp_path: Path) -> None:
    assert load_credentials(tmp_path, environ={}) == {}


def test_secret_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret("hunter2")
    assert (str(s), repr(s), f"{s}", f"{s!r}") == ("***", "Secret('***')", "***", "Secret('***')")
    assert s.reveal() == "hunter2" and s == Secret("hunter2") and s != Secret("x")
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("password %s", s)
    assert "hunter2" not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        json.dumps({"p": s})


def test_credentials_repr_hides_the_password(tmp_path: Path) -> None:
    (tmp_path / "credential.json").write_text(json.dumps(FILE))
    creds = load_credentials(tmp_path, environ={})
    assert "local-pass" not in repr(creds) and "hub-pass" not in str(creds)
    assert creds["localhost:5000"].auth_config() == {"username": "local", "password": "local-pass"}


def test_bad_file_is_a_config_error_that_does_not_quote_it(tmp_path: Path) -> None:
    (tmp_path / "credential.json").write_text('{"dockerhub": {"password": "leaky-secret",}}')
    with pytest.raises(ConfigError) as info:
        load_credentials(tmp_path, environ={})
    assert "credential.json is not valid JSON" in str(info.value)
    assert "leaky-secret" not in str(info.value)
    assert info.value.diagnostics[0].line == 1
    (tmp_path / "credential.json").write_text("[]")
    with pytest.raises(ConfigError, match="JSON object keyed by registry"):
        load_credentials(tmp_path, environ={})


def test_registry_key_and_redact() -> None:
    assert [registry_key(r) for r in (None, "", "docker.io", "https://index.docker.io/v1/", "localhost:5000")] == [
        "dockerhub", "dockerhub", "dockerhub", "dockerhub", "localhost:5000"]
    assert redact("login as u with pa55 failed: pa55", ["pa55", ""]) == "login as u with *** failed: ***"


@pytest.mark.parametrize(("ref", "expected"), [
    ("busybox", ("docker.io", "library/busybox", "latest", None)),
    ("busybox:1.36", ("docker.io", "library/busybox", "1.36", None)),
    ("rocm/pytorch:latest", ("docker.io", "rocm/pytorch", "latest", None)),
    ("localhost:5000/madengine/busybox:1", ("localhost:5000", "madengine/busybox", "1", None)),
    ("localhost/x", ("localhost", "x", "latest", None)),
    ("reg.example.org/a/b@sha256:" + "0" * 64, ("reg.example.org", "a/b", None, "sha256:" + "0" * 64)),
])
def test_parse_reference(ref: str, expected: tuple[str, str, str | None, str | None]) -> None:
    r = parse_reference(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == expected


@pytest.mark.parametrize("ref", ["x@sha256:zz", "x:", ""])
def test_parse_reference_rejects(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_reference(ref)
