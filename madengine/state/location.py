"""Where the state store is: an SQLite file (a `Path`) or a PostgreSQL database by URL (`PgLocation`).

Chosen by `--state`, else $MADENGINE_STATE_URL, else $MADENGINE_STATE, else the madfile's `state:`, else
`.madengine/state.db` beside the madfile. Whatever the store, the local workspace directory (`.madengine/`
beside the madfile, or the SQLite file's directory) holds logs, run directories and caches.

A URL may carry a password only where it is not stored (the environment, the command line); it is never
printed: every message shows `PgLocation.display`, the URL with its password replaced. Importing this
module loads neither sqlite3 nor psycopg.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATE_DIR = ".madengine"
STATE_NAME = "state.db"
STATE_ENV = "MADENGINE_STATE"
STATE_URL_ENV = "MADENGINE_STATE_URL"
PG_SCHEMES = ("postgresql", "postgres")
PG_EXTRA = "madengine[postgresql]"
CREDENTIALS_HINT = ("give the password by PGPASSWORD or a ~/.pgpass file (PGPASSFILE names another), "
                    "never in the URL")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class PgLocation:
    """A PostgreSQL state store: its URL (never printed: see `display`) and the local workspace directory."""

    url: str = field(repr=False)
    workspace: Path  # `.madengine/` beside the madfile: logs, run directories, caches

    @property
    def display(self) -> str:
        return redact(self.url)

    def __str__(self) -> str:
        return self.display

    # As a `Path` of an SQLite store has them, so that code written for either reads the same:
    def exists(self) -> bool:
        """A database may always hold something (read-only, one without madengine's tables reads as empty)."""
        return True

    @property
    def parent(self) -> Path:
        """The local workspace directory, where an SQLite store's file would be: logs are relative to it."""
        return self.workspace

    def __repr__(self) -> str:
        return f"PgLocation({self.display!r}, {str(self.workspace)!r})"


StateLocation = Path | PgLocation


def is_url(text: str) -> bool:
    """Whether `text` is a URL (`scheme://...`), not a path."""
    return _SCHEME.match(text) is not None


def url_scheme(text: str) -> str:
    m = _SCHEME.match(text)
    return m.group(1).lower() if m else ""


def url_password(url: str) -> str | None:
    """The password a URL carries (in its authority or as `password=` in its query), else None."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            return parts.password
    except ValueError:
        pass
    query = url.partition("?")[2]
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == "password" and value:
            return value
    return None


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (in the authority and in a `password=` parameter)."""
    head, sep, query = url.partition("?")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)(.*)$", head, re.DOTALL)
    if m:
        scheme, authority, rest = m.groups()
        userinfo, at, hostport = authority.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        head = scheme + (userinfo + at if at else "") + hostport + rest
    if sep:
        query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", query)
    return head + sep + query


def scrub(text: str, url: str) -> str:
    """`text` (an error from the driver) with the URL's password removed wherever it appears."""
    password = url_password(url)
    if password:
        for form in {password, urllib.parse.unquote(password), urllib.parse.quote(password, safe="")}:
            if form:
                text = text.replace(form, "***")
    return text.replace(url, redact(url))


def local_dir(location: StateLocation) -> Path:
    """The local workspace directory of a store: logs, run directories and caches live there."""
    return location.workspace if isinstance(location, PgLocation) else location.parent


def describe(location: StateLocation) -> str:
    """How messages name a store: the SQLite file, or the URL without its password."""
    return location.display if isinstance(location, PgLocation) else str(location)


def identity(location: StateLocation) -> Path:
    """A path that stands for the store on this machine (`backends.base.workspace_id`): the SQLite file,
    or, for a database, the local workspace directory (two checkouts sharing one database are still two
    workspaces for the containers and remote directories they own)."""
    return location.workspace / "state.postgresql" if isinstance(location, PgLocation) else location


def state_location(madfile_root: Path, override: str | None = None, environ: Mapping[str, str] | None = None,
                   configured: str | None = None) -> StateLocation:
    """Where the store is: `override` (`--state`), else $MADENGINE_STATE_URL, else $MADENGINE_STATE, else
    `configured` (the madfile's `state:`, references resolved), else `<madfile dir>/.madengine/state.db`.
    A relative path is taken from the madfile's directory. A URL of another scheme is a usage error."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    chosen = override or env.get(STATE_URL_ENV) or env.get(STATE_ENV) or configured or None
    workspace = madfile_root / STATE_DIR
    if chosen is None:
        return workspace / STATE_NAME
    if is_url(chosen):
        scheme = url_scheme(chosen)
        if scheme not in PG_SCHEMES:
            from madengine.errors import UsageError

            raise UsageError(f"the state store {redact(chosen)!r} is a {scheme}:// URL; only postgresql:// "
                             "URLs and SQLite file paths are state stores",
                             hint="e.g. postgresql://user@host:5432/dbname, or a path such as .madengine/state.db")
        return PgLocation(chosen, workspace)
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else madfile_root / path


# A `state` key anywhere in the text (a cheap test: false positives only cost a full load of the madfile).
_STATE_KEY = re.compile(r"""(?:^|[{,\s])["']?state["']?[ \t]*:""", re.MULTILINE)
_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def configured_state(madfile: Path, loaded: Any = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The madfile's `state:` with its `${env:NAME}` references resolved, or None (no madfile, no key).
    The madfile is loaded (and checked: a password in the URL is refused there) only when its text has a
    `state` key; `loaded` is a `LoadedMadfile` already at hand."""
    if loaded is None:
        try:
            text = madfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None  # no madfile (yet): the commands that need one say so themselves
        if _STATE_KEY.search(text) is None:
            return None
        from madengine.madfile.load import load_and_check

        loaded = load_and_check(madfile)
    value = loaded.madfile.state
    if value is None:
        return None
    env: Mapping[str, str] = os.environ if environ is None else environ
    missing = [m.group(1) for m in _REFERENCE.finditer(value) if m.group(1) not in env]
    if missing:
        from madengine.errors import ConfigError

        raise ConfigError.many([loaded.source.diagnostic(
            ("state",), f"environment variable {missing[0]} is not set (needed by `state`)",
            f"export {missing[0]}=... before running madengine", at="value")])
    return _REFERENCE.sub(lambda m: env[m.group(1)], value)


def locate_store(madfile: Path, override: str | None = None, environ: Mapping[str, str] | None = None,
                 loaded: Any = None) -> StateLocation:
    """The store of the madfile at `madfile` (which need not exist): `state_location`, reading the madfile's
    `state:` only when neither `override` nor the environment chose the store."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    root = Path(madfile).absolute().parent
    chosen = override or env.get(STATE_URL_ENV) or env.get(STATE_ENV)
    configured = None if chosen else configured_state(Path(madfile), loaded, env)
    return state_location(root, override, env, configured)


def exists(location: StateLocation) -> bool:
    """Whether there may be something recorded: an SQLite file that exists; a database always may (opening
    it read-only tells: one without madengine's tables reads as empty)."""
    return True if isinstance(location, PgLocation) else location.exists()


def shown(location: StateLocation) -> str:
    """A store as the CLI names it: the SQLite file relative to the current directory, or the URL without
    its password."""
    if isinstance(location, PgLocation):
        return location.display
    from madengine.madfile.locate import display_path

    return display_path(location)
