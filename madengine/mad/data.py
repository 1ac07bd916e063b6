"""Data sets, as MAD packages declare them in `data.json` and models name them in `data`.

What ROCm madengine does (read from ROCm/madengine `src/madengine/core/dataprovider.py`, its use in
`src/madengine/execution/container_runner.py` `run_container` / `get_mount_arg` and the older
`src/madengine/tools/run_models.py`; examples: ROCm/MAD `data.json`, ROCm/madengine
`tests/fixtures/dummy/data.json` and `tests/fixtures/dummy/scripts/dummy/run_data_local.sh`):

- `data.json` maps a *data name* to its providers, keyed by provider type:
  `{"dummy_data_local": {"local": {"path": "/tmp"}}}`. ROCm/MAD's own file is `{"huggingface": {}}`:
  a name with no provider at all, which 81 of its models use (they download by themselves).
- A models.json entry names the data in `data` (several names may be joined with commas). The run
  gets `MAD_DATANAME=<the data field as written>` and, when a provider is found, `MAD_DATAHOME`.
- Provider types are tried in a fixed order, custom, local, minio, nas, aws (`reorder_data_provider_config`);
  the first whose source check passes is used (local: `path` exists; custom: the script `path`
  exists; nas/minio/aws: the network service answers). Other types are never tried.
- A provider's config has `path`, and optionally `home` (the container directory), `readwrite`, and
  for non-local types `mirrorlocal` (a host directory) and, for custom, `args`. `MAD_DATAHOME` is
  `home` (default `/data_dlm`) plus `_<n>`, n counting providers created in the process.
- local: `-v <path>:<home or /data_dlm_<n>>`, read-only unless `readwrite` is the string "true".
  `mirrorlocal` is an error for it.
- custom: no mount (unless `mirrorlocal`: `<mirrorlocal>/<name>` is mounted read-write at home);
  before the model runs, the container runs `mkdir -p <home>; cd <home>; bash /myworkspace/<path> <args>`
  to fetch or generate the data.
- minio, nas, aws: credentials from madengine's environment, then a download (aws s3 sync, sshfs or
  rsync) inside the container.

Here: `local` and `custom` are supported; minio, nas, aws and unknown types need network storage or
code madengine does not have, so a data name served only by them is a ConfigError raised while
compiling, before anything runs. The choice is made statically (the first supported provider in
ROCm's order), not by probing the host. Deliberate differences: `MAD_DATAHOME` equals the mount point
(ROCm appends `_<n>` even when `home` is given, so the two disagree there), `n` is the index of the
name within the model's `data` field rather than a process-wide counter, and `readwrite: true` (a
JSON boolean, which ROCm ignores) counts as read-write like the string "true".
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.jsonlist import KeyPositions
from madengine.mad.tools import (
    in_order,
    known_names_hint,
    read_json_object,
    split_args,
    stop_reading,
    too_many,
    type_name,
)

DATA_JSON = "data.json"

# ROCm madengine's search order (dataprovider.py, Data.reorder_data_provider_config).
PROVIDER_ORDER: tuple[str, ...] = ("custom", "local", "minio", "nas", "aws")
SUPPORTED_TYPES = frozenset({"custom", "local"})
NETWORK_TYPES = frozenset({"minio", "nas", "aws"})
# Config keys ROCm's providers read; anything else is kept in `raw` and warned about.
CONFIG_KEYS: tuple[str, ...] = ("path", "home", "readwrite", "mirrorlocal", "args")
DEFAULT_HOME = "/data_dlm"  # ROCm's MAD_DATAHOME when a provider gives no `home`

NETWORK_HINT = "this provider needs network storage; use a local provider or mount the data with docker_mounts"


@dataclass(frozen=True)
class DataProvider:
    """One provider of one data name: `data.json` → `<name>` → `<type>` → this config."""

    name: str  # the data name
    type: str  # provider type: local, custom, minio, nas, aws, ...
    path: str  # as written ("" if absent): a host directory (local), a script (custom), a remote path
    readwrite: bool
    raw: Mapping[str, Any] = field(default_factory=dict)  # the whole config, as written
    line: int | None = field(default=None, compare=False)  # where the config starts in data.json

    @property
    def home(self) -> str | None:
        """The container directory the config asks for, if any."""
        home = self.raw.get("home")
        return home if isinstance(home, str) and home else None


@dataclass(frozen=True)
class DataMount:
    """A host directory bind-mounted into the container for one data name.

    `host_path` is as data.json wrote it: absolute, or relative to the package root (normalized,
    POSIX); `in_package` says it is a relative path inside the package (so its tree can be hashed).
    `env` is what this one mount means for the run: MAD_DATAHOME and MAD_DATANAME.
    """

    name: str
    provider_type: str
    host_path: str
    container_path: str
    readwrite: bool
    env: Mapping[str, str] = field(default_factory=dict)
    in_package: bool = False

    def host_path_under(self, package_root: Path) -> Path:
        """The host path, made absolute against the package root when it is relative."""
        return Path(self.host_path) if posixpath.isabs(self.host_path) else Path(package_root) / self.host_path


@dataclass(frozen=True)
class DataPrepare:
    """A `custom` provider's script, run in the container before the model:
    `mkdir -p <workdir> && cd <workdir> && bash /<package in container>/<path> <args>`."""

    name: str
    path: str  # package-relative script
    args: tuple[str, ...]
    workdir: str  # the container directory the data ends up in (MAD_DATAHOME)


@dataclass(frozen=True)
class DataBinding:
    """What a model's `data` field resolves to: mounts, preparation steps and environment.

    `providers` are the chosen providers, one per data name that has any (a name declared with no
    provider, like ROCm/MAD's `huggingface`, contributes only to MAD_DATANAME). `env` is the run's
    environment: MAD_DATANAME always, MAD_DATAHOME (comma-joined, as ROCm does) when a provider is used.
    """

    name: str  # the model's `data` field, stripped
    providers: tuple[DataProvider, ...] = ()
    mounts: tuple[DataMount, ...] = ()
    prepare: tuple[DataPrepare, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def provider_type(self) -> str:
        """perf.csv's `data_provider_type`: the chosen types, comma-joined ("" when none)."""
        return ",".join(p.type for p in self.providers)

    @property
    def package_paths(self) -> tuple[str, ...]:
        """Package-relative inputs whose content the run depends on: in-package data directories
        and custom scripts. Data outside the package is only named, never hashed."""
        paths = [m.host_path for m in self.mounts if m.in_package] + [p.path for p in self.prepare]
        return tuple(dict.fromkeys(paths))


# --- reading data.json ----------------------------------------------------------------------------


def load_data(package_root: Path, *, warnings: list[Diagnostic] | None = None) -> dict[str, tuple[DataProvider, ...]]:
    """The data names of `<package_root>/data.json`, each with its providers in ROCm's search order
    (custom, local, minio, nas, aws, then unknown types as written).

    A package without data.json has no data ({}). Invalid JSON or a malformed entry is a ConfigError
    pinned to `data.json:line:col`; unknown provider types and config keys are reported in `warnings`.
    """
    loaded = read_json_object(Path(package_root) / DATA_JSON, DATA_JSON)
    if loaded is None:
        return {}
    document, positions = loaded
    errors: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    unknown: dict[str, list[Any]] = {}  # unknown key -> [providers having it, the first one's name, its kind]
    data: dict[str, tuple[DataProvider, ...]] = {}
    too_many(((name,) for name in document), positions, DATA_JSON, "data names")
    too_many(((name, kind) for name, providers in document.items() if isinstance(providers, dict)
              for kind in providers), positions, DATA_JSON, "data providers")
    for name, providers in document.items():
        if stop_reading(errors, positions, (name,), DATA_JSON):
            break
        line, column = positions.position((name,))
        if not isinstance(providers, dict):
            errors.append(Diagnostic(DATA_JSON, line, column, f"data {name!r} must be an object of providers, "
                                     f"not {type_name(providers)}", key_path=name,
                                     hint='write "name": {"local": {"path": "/data/name"}} (or {} for none)'))
            continue
        found = []
        for kind, config in providers.items():
            provider = _read_provider(name, kind, config, positions, errors, notes, unknown)
            if provider is not None:
                found.append(provider)
        data[name] = tuple(sorted(found, key=_search_rank))
    # One warning per unknown key, where it first appears (as tools.json does): a key in every provider of
    # 10,000 was 10,000 lines, and printing them took most of a second.
    for key, (count, name, kind) in unknown.items():
        also = f" (also in {count - 1:,} other provider{'' if count == 2 else 's'})" if count > 1 else ""
        notes.append(Diagnostic(DATA_JSON, positions.position((name, kind, key))[0], None,
                                f"data {name!r}, provider {kind!r}: unknown key `{key}`{also}; kept",
                                key_path=f"{name}.{kind}.{key}", severity="warning",
                                hint=f"madengine understands: {', '.join(CONFIG_KEYS)}"))
    if errors:
        raise ConfigError.many(errors)
    if warnings is not None:
        warnings.extend(notes)
    return data


def _search_rank(provider: DataProvider) -> int:
    try:
        return PROVIDER_ORDER.index(provider.type)
    except ValueError:
        return len(PROVIDER_ORDER)  # unknown types last, in file order (sorted() is stable)


def _read_provider(name: str, kind: str, config: Any, positions: KeyPositions, errors: list[Diagnostic],
                   notes: list[Diagnostic], unknown: dict[str, list[Any]]) -> DataProvider | None:
    line, column = positions.position((name, kind))
    count = len(errors)

    def error(key: str | None, message: str, hint: str = "") -> None:
        at_line, at_column = positions.position((name, kind, key)) if key else (line, column)
        errors.append(Diagnostic(DATA_JSON, at_line, at_column, f"data {name!r}, provider {kind!r}: {message}",
                                 key_path=".".join(filter(None, (name, kind, key))), hint=hint))

    if not isinstance(config, dict):
        error(None, f"the config must be an object, not {type_name(config)}", 'write {"path": "..."}')
        return None
    if kind not in PROVIDER_ORDER:
        import difflib  # only on this path

        close = difflib.get_close_matches(kind, PROVIDER_ORDER, n=1)
        notes.append(Diagnostic(DATA_JSON, line, column, f"data {name!r}: unknown provider type {kind!r}; "
                                "ROCm madengine never uses it", key_path=f"{name}.{kind}", severity="warning",
                                hint=f"did you mean {close[0]}?" if close else
                                f"provider types are {', '.join(PROVIDER_ORDER)}"))
    for key in ("path", "home", "mirrorlocal"):
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            error(key, f"`{key}` must be a string, not {type_name(value)}")
    readwrite = config.get("readwrite", False)
    if isinstance(readwrite, str) and readwrite.strip().lower() in ("true", "false"):
        readwrite = readwrite.strip().lower() == "true"
    if not isinstance(readwrite, bool):
        error("readwrite", f'`readwrite` must be true, false, "true" or "false", not {type_name(readwrite)}')
        readwrite = False
    split_args(config.get("args"), lambda message: error("args", message))  # checked now, split when used
    for key in config:
        if key not in CONFIG_KEYS:
            seen = unknown.get(key)
            if seen is None:
                unknown[key] = [1, name, kind]
            else:
                seen[0] += 1
    if len(errors) > count:
        return None
    path = config.get("path")
    return DataProvider(name=name, type=kind, path=path if isinstance(path, str) else "", readwrite=readwrite,
                        raw=config, line=line)


# --- resolving a model's data ---------------------------------------------------------------------


def resolve_data(model_data: str, data: Mapping[str, Sequence[DataProvider]], where: str) -> DataBinding | None:
    """What a model's `data` field means here: None when it names no data.

    Each comma-separated name must be declared in data.json (else a ConfigError with close matches);
    a name with providers must have a local or custom one (else a ConfigError: minio, nas and aws
    need network storage). `where` is the key path of the model's `data` field, used in messages.
    This reads no file and probes no host, so it can run at validate time.
    """
    names = [part.strip() for part in model_data.split(",") if part.strip()]
    if not names:
        return None
    errors: list[Diagnostic] = []
    providers: list[DataProvider] = []
    mounts: list[DataMount] = []
    prepare: list[DataPrepare] = []
    homes: list[str] = []
    for index, name in enumerate(names):
        candidates = data.get(name)
        if candidates is None:
            errors.append(Diagnostic(None, None, None, f"data {name!r} is not declared in {DATA_JSON}",
                                     key_path=where, hint=_unknown_hint(name, data)))
            continue
        if not candidates:
            continue  # declared with no provider (ROCm/MAD's `huggingface`): the model fetches its own
        chosen = next((p for p in candidates if p.type in SUPPORTED_TYPES), None)
        if chosen is None:
            errors.append(_unsupported(name, candidates, where))
            continue
        binding = _bind(chosen, index, where, errors)
        if binding is None:
            continue
        home, mount, step = binding
        providers.append(chosen)
        homes.append(home)
        if mount is not None:
            mounts.append(mount)
        if step is not None:
            prepare.append(step)
    if errors:
        raise in_order(errors)  # in the order of the model's names
    env = {"MAD_DATANAME": model_data.strip()}
    if homes:
        env["MAD_DATAHOME"] = ",".join(homes)
    return DataBinding(name=model_data.strip(), providers=tuple(providers), mounts=tuple(mounts),
                       prepare=tuple(prepare), env=env)


def _bind(provider: DataProvider, index: int, where: str,
          errors: list[Diagnostic]) -> tuple[str, DataMount | None, DataPrepare | None] | None:
    """(MAD_DATAHOME, mount, preparation) of a supported provider; None with an error if unusable."""
    at = f"{DATA_JSON}:{provider.line}" if provider.line else DATA_JSON
    label = f"data {provider.name!r} ({provider.type} provider, {at})"
    if not provider.path.strip():
        what = "the host directory to mount" if provider.type == "local" else "the script that fetches the data"
        errors.append(Diagnostic(None, None, None, f"{label} has no `path`", key_path=where,
                                 hint=f"set `path` to {what}"))
        return None
    home = provider.home or f"{DEFAULT_HOME}_{index}"
    env = {"MAD_DATAHOME": home, "MAD_DATANAME": provider.name}
    mirror = provider.raw.get("mirrorlocal")
    if provider.type == "local":
        if mirror is not None:
            errors.append(Diagnostic(None, None, None, f"{label}: `mirrorlocal` cannot be given to a local "
                                     "provider", key_path=where, hint="remove it: local data is mounted in place"))
            return None
        host, in_package = _host_path(provider.path)
        return home, DataMount(name=provider.name, provider_type="local", host_path=host, container_path=home,
                               readwrite=provider.readwrite, env=env, in_package=in_package), None
    script, in_package = _host_path(provider.path)
    if not in_package:
        errors.append(Diagnostic(None, None, None, f"{label}: the script {provider.path!r} is not inside the "
                                 "package", key_path=where, hint="custom data scripts live in the package, "
                                 "usually under scripts/common/data/"))
        return None
    args = split_args(provider.raw.get("args"), lambda message: None)  # already checked by load_data
    step = DataPrepare(name=provider.name, path=script, args=args, workdir=home)
    mount = None
    if isinstance(mirror, str) and mirror:
        # ROCm keeps the fetched data on the host: <mirrorlocal>/<name>, mounted read-write.
        host, _ = _host_path(posixpath.join(mirror, provider.name))
        mount = DataMount(name=provider.name, provider_type="custom", host_path=host, container_path=home,
                          readwrite=True, env=env, in_package=False)
    return home, mount, step


def _host_path(path: str) -> tuple[str, bool]:
    """(normalized POSIX path, whether it is a relative path inside the package)."""
    clean = posixpath.normpath(path.strip().replace("\\", "/"))
    if posixpath.isabs(clean):
        return clean, False
    return clean, not (clean == ".." or clean.startswith("../"))


def _unsupported(name: str, candidates: Sequence[DataProvider], where: str) -> Diagnostic:
    kinds = ", ".join(f"{p.type}" + (f" ({DATA_JSON}:{p.line})" if p.line else "") for p in candidates)
    network = [p.type for p in candidates if p.type in NETWORK_TYPES]
    if network:
        message = (f"data {name!r} is provided only by {kinds}: madengine cannot fetch "
                   f"{'/'.join(dict.fromkeys(network))} data")
        hint = NETWORK_HINT
    else:
        message = f"data {name!r} has only unknown provider types: {kinds}"
        hint = f"provider types are {', '.join(PROVIDER_ORDER)}; {NETWORK_HINT.split('; ', 1)[1]}"
    return Diagnostic(None, None, None, message, key_path=where, hint=hint)


def _unknown_hint(name: str, data: Mapping[str, Sequence[DataProvider]]) -> str:
    if not data:
        return f"the package has no {DATA_JSON} (or an empty one); declare {name!r} there"
    return known_names_hint(name, data, "declared data")
