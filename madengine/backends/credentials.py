"""Registry credentials, as ROCm madengine reads them (DESIGN §2, §9: never written anywhere).

Sources, the later winning for the `dockerhub` key:

1. `credential.json` beside the madfile: an object keyed by registry (`dockerhub` for Docker Hub,
   `localhost:5000`, `registry.example.org`, ...), each `{"username", "password", "repository"?}`.
   Other entries (tokens for GitHub, S3 keys...) are kept out: only entries with a username and a
   password are registry credentials.
2. `MAD_DOCKERHUB_USER`, `MAD_DOCKERHUB_PASSWORD` (both needed) and `MAD_DOCKERHUB_REPO`.

Passwords are held in `Secret`, whose str/repr is `***`, so a password printed, logged or put in an
f-string by mistake shows nothing; `reveal()` is called only where the value goes to the engine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from madengine.errors import ConfigError

CREDENTIAL_FILE = "credential.json"
DOCKERHUB = "dockerhub"
_DOCKERHUB_ALIASES = {"", DOCKERHUB, "docker.io", "index.docker.io", "registry-1.docker.io"}


class Secret:
    """A secret string: shows as `***`; `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling (a plan file, a process pool) must not carry the value out of this process.
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class RegistryCredentials:
    registry: str  # the key it was found under (`dockerhub`, `localhost:5000`, ...)
    username: str
    password: Secret
    repository: str | None = None  # Docker Hub: the repository images are pushed to
    source: str = CREDENTIAL_FILE  # where it came from, for messages: a file name or `environment`

    def auth_config(self) -> dict[str, str]:
        """What the Docker SDK takes as `auth_config` (the only place the password is revealed)."""
        return {"username": self.username, "password": self.password.reveal()}

    def secrets(self) -> tuple[str, ...]:
        return (self.password.reveal(),) if self.password else ()


def registry_key(registry: str | None) -> str:
    """The credential.json key of a registry: `dockerhub` for Docker Hub, else the registry as written."""
    reg = (registry or "").strip().rstrip("/")
    for prefix in ("https://", "http://"):
        if reg.startswith(prefix):
            reg = reg[len(prefix):]
    return DOCKERHUB if reg.split("/", 1)[0].lower() in _DOCKERHUB_ALIASES else reg


def load_credentials(root: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, RegistryCredentials]:
    """Registry credentials from `<root>/credential.json` and the MAD_DOCKERHUB_* variables."""
    env = os.environ if environ is None else environ
    creds: dict[str, RegistryCredentials] = {}
    if root is not None:
        path = root / CREDENTIAL_FILE
        if path.is_file():
            creds.update(_from_file(path))
    user, password = env.get("MAD_DOCKERHUB_USER", ""), env.get("MAD_DOCKERHUB_PASSWORD", "")
    if user and password:
        creds[DOCKERHUB] = RegistryCredentials(DOCKERHUB, user, Secret(password),
                                               env.get("MAD_DOCKERHUB_REPO") or None, "environment")
    return creds


def for_registry(creds: Mapping[str, RegistryCredentials], registry: str | None) -> RegistryCredentials | None:
    return creds.get(registry_key(registry))


def all_secrets(creds: Iterable[RegistryCredentials]) -> tuple[str, ...]:
    return tuple(s for c in creds for s in c.secrets())


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced by `***` (for engine messages that could echo one)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    return text


def _from_file(path: Path) -> dict[str, RegistryCredentials]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        # e.msg and the position only: the message must not quote the file (it holds passwords).
        raise ConfigError(f"{path.name} is not valid JSON: {e.msg}", file=str(path), line=e.lineno,
                          column=e.colno) from None
    except OSError as e:
        raise ConfigError(f"cannot read {path.name}: {e.strerror}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a JSON object keyed by registry", file=str(path),
                          hint='{"dockerhub": {"username": "...", "password": "...", "repository": "..."}}')
    out: dict[str, RegistryCredentials] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            continue  # not a registry entry (a GitHub token, S3 keys...), or a blank placeholder
        repo = entry.get("repository")
        name = registry_key(str(key))
        out[name] = RegistryCredentials(name, user, Secret(password),
                                        repo if isinstance(repo, str) and repo else None, path.name)
    return out


# What this madengine holds to reach its stores, which the jobs it starts never need: the state store's URL
# (which may carry a password) and the passwords of the database commands (libpq's, ROCm's TUNA_DB and MONGO
# ones). A job's script that prints its environment (many MAD scripts do) would put them in its log.
STORE_SECRET_ENV = ("MADENGINE_STATE_URL", "PGPASSWORD", "TUNA_DB_USER_PASSWORD", "MONGO_PASSWORD")


def job_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment as a job (or a command that starts jobs: sbatch) inherits it."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if k not in STORE_SECRET_ENV}
