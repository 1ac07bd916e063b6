"""Semantic checks: what the format's types cannot say (DESIGN §2).

The checks read the plain parsed data, not the pydantic model, so that they run even when schema
validation failed elsewhere in the file and the user sees every error at once. Each check therefore
looks only at values of the expected shape and leaves the rest to the schema errors.

Whether a run's `models` exist among the package's selected models needs the package: the compiler
checks that, not this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from madengine.errors import Diagnostic
from madengine.mad.model import ENV_NAME, INT64_MAX, INT64_MIN
from madengine.madfile.diagnose import backends, close_match
from madengine.madfile.model import DEFAULT_CONTEXT, DEFAULT_TARGET, MAX_TOLERANCE_PERCENT, is_secret_name, n_gpus_value
from madengine.madfile.percent import parse_percent
from madengine.madfile.source import KeyPath, SourceMap

if TYPE_CHECKING:
    from madengine.madfile.load import LoadedMadfile

# A secret is never a value in a madfile, only a reference resolved at apply time.
REFERENCE = re.compile(r"\$\{(env|credential):[A-Za-z_][A-Za-z0-9_.-]*\}")
_SHELL_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_CREDENTIALS_IN_URL = re.compile(r"(?:^|//)[^/@\s:]+:[^/@\s]+@")

# Node addresses are `job:<model>[k=v]@<context>/<target>#<n>`: names must not contain the separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_MODEL_NAME_FORBIDDEN = frozenset("/:,@#[] ") | {chr(c) for c in range(1, 32)} | {"\x7f"}  # NUL: _check_values
# What the performance line's metric group (`results.extract.PERFORMANCE_RE`) can capture.
_METRIC = re.compile(r"[^\s,]+")


def check(data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """Every semantic problem of a parsed madfile, in no particular order."""
    contexts = _mapping(data.get("contexts"))
    targets = _mapping(data.get("targets"))
    models = _items(data.get("models"))
    out: list[Diagnostic] = []
    out += _check_section_names("contexts", "context", contexts, source)
    out += _check_section_names("targets", "target", targets, source)
    out += _check_models(models, source)
    out += _check_targets(targets, source)
    out += _check_backends(targets, source)
    out += _check_cluster_registry(data, targets, source)
    out += _check_batch_registry(data, targets, source)
    out += _check_secrets(data, source)
    out += _check_env_names(data, source)
    out += _check_runs(data, contexts, targets, source)
    out += _check_values(data, source)
    out += _check_state(data, source)
    return out


def check_madfile(loaded: LoadedMadfile) -> list[Diagnostic]:
    """`check` for an already loaded madfile."""
    return check(loaded.data, loaded.source)


# --- helpers --------------------------------------------------------------------------------------


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_section(data: Mapping[Any, Any], section: str) -> bool:
    """False when the section has the wrong type: its schema error says so; names in it are unknowable."""
    return isinstance(data.get(section), dict | None)


def _dicts(value: Any) -> Iterator[tuple[int, dict[Any, Any]]]:
    for index, item in enumerate(_items(value)):
        if isinstance(item, dict):
            yield index, item


def _unknown_hint(name: str, known: list[str], section: str) -> str:
    guess = close_match(name, known)
    if guess:
        return f"did you mean `{guess}`?"
    if known:
        return f"declared {section}: {', '.join(known)}"
    return f"declare it under `{section}:`"


# --- the checks -----------------------------------------------------------------------------------


def _check_section_names(section: str, what: str, entries: dict[Any, Any],
                         source: SourceMap) -> list[Diagnostic]:
    return [
        source.diagnostic((section, name), f"{what} name `{name}` cannot be used in node addresses",
                          "use letters, digits, `_`, `-` and `.`, starting with a letter or digit")
        for name in entries
        if isinstance(name, str) and not _NAME.fullmatch(name)  # a non-string key is a schema error
    ]


def _check_timeout(path: KeyPath, entry: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    value = entry.get("timeout")
    if _is_int(value) and value < 0 and value != -1:
        return [source.diagnostic((*path, "timeout"), f"timeout must be -1 or at least 0, found {value}",
                                  "give seconds, 0 for none, or -1 for the default (7200 s)", at="value")]
    return []


def _check_n_gpus(path: KeyPath, entry: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    written = entry.get("n_gpus")
    try:
        value = n_gpus_value(written)  # models.json's string form ("-1"), read as the model reads it
    except ValueError:
        return []  # too many digits: the schema's error
    if isinstance(written, str) and _is_int(value) and value > INT64_MAX:  # _check_values bounds numbers
        return [source.diagnostic((*path, "n_gpus"), f"the number is too large ({value.bit_length()} bits; "
                                  "numbers must fit in 64 bits)", "give a smaller number", at="value")]
    if _is_int(value) and value < -1:
        return [source.diagnostic((*path, "n_gpus"), f"n_gpus must be -1 or at least 0, found {value}",
                                  "give the number of GPUs the model needs, 0 for none, or -1 for all of "
                                  "the host's", at="value")]
    return []


def _check_params(path: KeyPath, entry: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    return [
        source.diagnostic((*path, "params", key), f"empty matrix: `{key}` has no values",
                          f"give `{key}` at least one value, or remove it", at="value")
        for key, values in _mapping(entry.get("params")).items()
        if values == []
    ]


def _check_models(models: list[Any], source: SourceMap) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    first_seen: dict[str, int] = {}
    for index, entry in _dicts(models):
        path: KeyPath = ("models", index)
        out += _check_params(path, entry, source)
        if "select" in entry:
            continue
        out += _check_timeout(path, entry, source)
        out += _check_n_gpus(path, entry, source)
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        bad = sorted({c for c in name if c in _MODEL_NAME_FORBIDDEN})
        if bad or not name.strip():
            shown = " ".join(f"`{c}`" if c.isprintable() and c.strip() else repr(c)[1:-1] if c != " " else
                             "whitespace" for c in bad) or "nothing"
            out.append(source.diagnostic(
                (*path, "name"), f"model name `{name}` contains {shown}",
                "in tags `/` scopes a directory and `:` passes arguments: name an inline model "
                "with letters, digits, `_`, `-` and `.`", at="value"))
        if name in first_seen:
            first = first_seen[name]
            line = source.locate(("models", first, "name"))
            where = f" (line {line[0]})" if line else ""
            out.append(source.diagnostic(
                (*path, "name"), f"duplicate model name `{name}`",
                f"models[{first}]{where} already declares it; rename one", at="value"))
        else:
            first_seen[name] = index
    return out


def _check_targets(targets: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """One machine listed twice, or two hosts of one name (default: the address), in a target. One machine
    may be two hosts only under two explicit names (each with its own GPUs, e.g. ROCR_VISIBLE_DEVICES in `env`)."""
    out: list[Diagnostic] = []
    for name, target in targets.items():
        if not isinstance(target, dict):
            continue
        seen: dict[tuple[str, int], int] = {}
        names: dict[str, int] = {}
        for index, host in _dicts(target.get("hosts")):
            address, port, named = host.get("address"), host.get("port", 22), host.get("name")
            if not isinstance(address, str):
                continue
            ident = (address.strip().lower(), port if _is_int(port) else 22)
            label = named if isinstance(named, str) else address
            if ident in seen and not (isinstance(named, str) and isinstance(
                    _items(target.get("hosts"))[seen[ident]].get("name"), str)):
                out.append(source.diagnostic(
                    ("targets", name, "hosts", index, "address"),
                    f"duplicate host `{address}` in target `{name}`",
                    f"hosts[{seen[ident]}] is the same host; list each host once (set `gpus` there), or give "
                    "both their own `name:` to split its GPUs", at="value"))
            elif label.lower() in names:  # names are file names: unique on a case-insensitive disk too
                out.append(source.diagnostic(
                    ("targets", name, "hosts", index, "name" if isinstance(named, str) else "address"),
                    f"duplicate host name `{label}` in target `{name}`",
                    f"hosts[{names[label.lower()]}] has that name (a host's name defaults to its address); "
                    "give each host its own `name:`", at="value"))
            seen.setdefault(ident, index)
            names.setdefault(label.lower(), index)
    return out


def _check_backends(targets: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """A target whose backend is not installed would fail only at apply: it is an error now.

    Only the names are looked up (built in, or entry points of `madengine.backends`): no backend
    module is imported. An unknown name is the schema's error, not this one."""
    declared = {name: t["backend"] for name, t in targets.items()
                if isinstance(t, dict) and isinstance(t.get("backend"), str) and t["backend"] in backends()}
    if not declared:
        return []
    from madengine.backends.registry import installed, missing_requirement

    names = installed(declared.values())
    out = []
    for name, backend in declared.items():
        if backend in names:
            continue
        at = ("targets", name, "backend")
        lacking = missing_requirement(backend)  # built in, but what it needs is not installed
        out.append(source.diagnostic(at, f"backend `{backend}` cannot work here: {lacking[0]}", lacking[1], at="value")
                   if lacking else source.diagnostic(at, f"backend `{backend}` is not installed",
                                                     f"installed backends: {', '.join(sorted(names))}", at="value"))
    return out


def _check_cluster_registry(data: Mapping[Any, Any], targets: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """A cluster's nodes pull images from the madfile's registry: a kubernetes target without one could
    never start a pod."""
    if data.get("registry"):
        return []
    return [source.diagnostic(("targets", name, "backend"),
                              f"target `{name}` (kubernetes) pulls its images from a registry, and the madfile "
                              "names none",
                              "set `registry:` at the top of the madfile (e.g. `registry: localhost:5000`): images are "
                              "pushed there and the cluster's nodes pull them", at="value")
            for name, t in targets.items() if isinstance(t, dict) and t.get("backend") == "kubernetes"]
def _check_batch_registry(data: Mapping[Any, Any], targets: dict[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """A SLURM target running jobs in their images: its nodes pull them from the registry (images are built
    here), so the madfile must name one."""
    if data.get("registry"):
        return []
    out = []
    for name, target in targets.items():
        if not isinstance(target, dict) or target.get("backend") != "slurm":
            continue
        container = target.get("container", "docker")
        if container not in ("docker", "apptainer"):
            continue
        at = ("targets", name, "container") if "container" in target else ("targets", name, "backend")
        out.append(source.diagnostic(
            at, f"target `{name}` runs jobs in their images (container: {container}), which its nodes pull from "
            "a registry, and the madfile names none",
            "set `registry:` (e.g. `registry: localhost:5000`), where images built here are pushed; or "
            "`container: none` for host processes", at="value"))
    return out


def _env_maps(data: Mapping[Any, Any]) -> Iterator[tuple[KeyPath, dict[Any, Any]]]:
    """Every `name: value` map whose values end up in an environment or a build."""
    for index, entry in _dicts(data.get("models")):
        yield ("models", index, "env_vars"), _mapping(entry.get("env_vars"))
    for name, context in _mapping(data.get("contexts")).items():
        if isinstance(context, dict):
            yield ("contexts", name, "docker_env_vars"), _mapping(context.get("docker_env_vars"))
            yield ("contexts", name, "docker_build_arg"), _mapping(context.get("docker_build_arg"))
            for index, tool in _dicts(context.get("tools")):
                yield ("contexts", name, "tools", index, "env_vars"), _mapping(tool.get("env_vars"))
    for path, host in _hosts(data):
        yield (*path, "env"), _mapping(host.get("env"))


def _hosts(data: Mapping[Any, Any]) -> Iterator[tuple[KeyPath, dict[Any, Any]]]:
    for name, target in _mapping(data.get("targets")).items():
        if isinstance(target, dict):
            for index, host in _dicts(target.get("hosts")):
                yield ("targets", name, "hosts", index), host
            if isinstance(target.get("login"), dict):
                yield ("targets", name, "login"), target["login"]


def _check_secrets(data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    # Messages never repeat the value: it may be the secret.
    out: list[Diagnostic] = []
    for path, values in _env_maps(data):
        for key, value in values.items():
            if not (isinstance(key, str) and is_secret_name(key) and isinstance(value, str)):
                continue
            if not value.strip() or REFERENCE.fullmatch(value.strip()):
                continue
            shell = _SHELL_REFERENCE.fullmatch(value.strip())
            name = shell.group(1) if shell else key
            out.append(source.diagnostic(
                (*path, key), f"`{key}` looks like a secret written as a literal value",
                f"secrets are references resolved at apply time: write `{key}: ${{env:{name}}}`", at="value"))
    registry = data.get("registry")
    if isinstance(registry, str) and _CREDENTIALS_IN_URL.search(registry):
        out.append(source.diagnostic(
            ("registry",), "`registry` contains credentials",
            "write only the registry address (e.g. `localhost:5000`) and log in with `docker login`",
            at="value"))
    return out


def _check_state(data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """`state:` is a postgresql:// URL or an SQLite file path; a URL never holds a password (the madfile is
    committed): it comes from PGPASSWORD, a .pgpass file, or the whole URL from a `${env:NAME}` reference."""
    from madengine.state.location import PG_SCHEMES, is_url, url_password, url_scheme

    state = data.get("state")
    if not isinstance(state, str):
        return []
    if not state.strip():
        return [source.diagnostic(("state",), "`state` is empty",
                                  "a postgresql:// URL or an SQLite file path; leave it out for .madengine/state.db",
                                  at="value")]
    literal = REFERENCE.sub("", state)  # what is written here, references aside
    if is_url(state) and url_scheme(state) not in PG_SCHEMES:
        return [source.diagnostic(("state",), f"`state` is a {url_scheme(state)}:// URL; only postgresql:// URLs "
                                  "and SQLite file paths are state stores",
                                  "e.g. `state: postgresql://user@host:5432/dbname`", at="value")]
    if is_url(literal) and url_password(literal):
        return [source.diagnostic(("state",), "the URL contains a password",
                                  "the madfile is committed: give the password by PGPASSWORD or a ~/.pgpass file "
                                  "(PGPASSFILE names another), or the whole URL by a reference: "
                                  "`state: ${env:MADENGINE_STATE_URL}`", at="value")]
    return []


def _check_env_names(data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    # A name with `=` (or none at all) cannot be put in a process's environment: an error at apply.
    return [source.diagnostic((*path, key), f"`{key}` is not a valid environment variable name" if key
                              else "an environment variable name is empty",
                              "use letters, digits and `_`, not starting with a digit")
            for path, values in _env_maps(data) for key in values
            if isinstance(key, str) and not ENV_NAME.match(key)]


def _check_values(data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """Values no run can use, wherever they are: a NUL byte (no argument, path or environment can
    hold one) and integers beyond 64 bits (no JSON lock or SQLite store holds them)."""
    out: list[Diagnostic] = []
    stack: list[tuple[KeyPath, Any]] = [((), data)]
    while stack:  # iterative: a deeply nested value is the loader's limit to report, not a RecursionError
        path, value = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                out.append(source.diagnostic(path, "contains a NUL byte", "remove the NUL (\\0) character",
                                             at="value"))
        elif _is_int(value):
            # A param is passed on as text (`--seed 123...`): only the numbers madengine stores are bounded.
            if not INT64_MIN <= value <= INT64_MAX and "params" not in path[2:3]:
                out.append(source.diagnostic(path, f"the number is too large ({value.bit_length()} bits; "
                                                   "numbers must fit in 64 bits)",
                                             "give a smaller number", at="value"))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and "\0" in key:
                    out.append(source.diagnostic((*path, key), "the key contains a NUL byte",
                                                 "remove the NUL (\\0) character"))
                stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
    return out


def _check_runs(data: Mapping[Any, Any], contexts: dict[Any, Any], targets: dict[Any, Any],
                source: SourceMap) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    # Without contexts or targets, the madfile has an implicit one of each (DESIGN §2).
    context_names = [str(n) for n in contexts] or [DEFAULT_CONTEXT]
    target_names = [str(n) for n in targets] or [DEFAULT_TARGET]
    for index, run in _dicts(data.get("runs")):
        path: KeyPath = ("runs", index)
        for j, name in enumerate(_items(run.get("contexts"))):
            if isinstance(name, str) and name not in context_names and _valid_section(data, "contexts"):
                out.append(source.diagnostic((*path, "contexts", j), f"unknown context `{name}`",
                                             _unknown_hint(name, context_names, "contexts"), at="value"))
        for j, name in enumerate(_items(run.get("targets"))):
            if isinstance(name, str) and name not in target_names and _valid_section(data, "targets"):
                out.append(source.diagnostic((*path, "targets", j), f"unknown target `{name}`",
                                             _unknown_hint(name, target_names, "targets"), at="value"))
        repeat = run.get("repeat")
        if _is_int(repeat) and repeat < 1:
            out.append(source.diagnostic((*path, "repeat"), f"repeat must be at least 1, found {repeat}",
                                         "`repeat: 1` runs each job once", at="value"))
        out += _check_timeout(path, run, source)
        for model, gate in _mapping(run.get("expect")).items():
            if isinstance(gate, dict):
                out += _check_gate((*path, "expect", model), gate, data, source)
    return out


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_gate(path: KeyPath, gate: dict[Any, Any], data: Mapping[Any, Any], source: SourceMap) -> list[Diagnostic]:
    """A metric or bounds that no result can meet, and a sole bound on the better side (`better: higher,
    max: 10` fails only when the result improves: almost always a `min` written as `max`)."""
    low, high, metric = gate.get("min"), gate.get("max"), gate.get("metric")
    if isinstance(metric, str) and not _METRIC.fullmatch(metric):
        what = f"metric `{metric}`" if metric else "an empty metric"
        return [source.diagnostic((*path, "metric"), f"{what} can never be reported",
                                  "a performance line names its metric in one word, without spaces or commas "
                                  "(`performance: 9.5 gflops`)", at="value")]
    if _is_number(low) and _is_number(high) and low > high:
        return [source.diagnostic((*path, "min"), f"min {low} is above max {high}: no result can meet this gate",
                                  "swap them", at="value")]
    direction, said_by = _direction(gate, data)
    # for a direction the gate does not say itself: how to say the other one
    override = "" if said_by == "expect" else f"; if {'lower' if direction == 'higher' else 'higher'} is better " \
        f"for it, say `better: {'lower' if direction == 'higher' else 'higher'}`"
    why = {"results": " (the madfile's `results.better`)", "name": " (by its name)"}.get(said_by, "")
    if direction == "higher" and _is_number(high) and low is None:
        return [source.diagnostic((*path, "max"), f"a gate on a higher-is-better metric{why} with only a `max` "
                                  "fails only when the result improves",
                                  "a floor is `min:`; for a range give both `min` and `max`" + override, at="key")]
    if direction == "lower" and _is_number(low) and high is None:
        return [source.diagnostic((*path, "min"), f"a gate on a lower-is-better metric{why} with only a `min` "
                                  "fails only when the result improves",
                                  "a ceiling is `max:`; for a range give both `min` and `max`" + override, at="key")]
    return _check_tolerance(path, gate, data, source)


def _check_tolerance(path: KeyPath, gate: dict[Any, Any], data: Mapping[Any, Any],
                     source: SourceMap) -> list[Diagnostic]:
    """A tolerance no result can fail, and a baseline with nothing measured against it (a key that would
    be accepted and ignored). A negative one, which every result would fail, is no percentage to the parser."""
    if "baseline" in gate and gate.get("tolerance") is None:
        return [source.diagnostic((*path, "baseline"), "a `baseline` without a `tolerance` checks nothing",
                                  "add how much worse than the baseline a result may be: `tolerance: 5%`",
                                  at="key")]
    try:
        tolerance = parse_percent(gate.get("tolerance"), maximum=MAX_TOLERANCE_PERCENT)
    except ValueError:
        return []  # absent, or not a percentage: the schema's error says so
    if tolerance >= 1 and _direction(gate, data)[0] == "higher":
        return [source.diagnostic((*path, "tolerance"), f"tolerance {gate['tolerance']} on a higher-is-better "
                                  "metric lets any result pass (its bound is 0 or below)",
                                  "give a tolerance below 100%; for a lower-is-better metric say `better: lower`",
                                  at="value")]
    return []


def _direction(gate: dict[Any, Any], data: Mapping[Any, Any]) -> tuple[str, str]:
    """The gate's direction as the compiler gives it (`compare.metric_direction`), from the plain data,
    and where it comes from."""
    from madengine.results.compare import metric_direction

    metric, better = gate.get("metric"), gate.get("better")
    results = _mapping(_mapping(data.get("results")).get("better"))
    return metric_direction(metric if isinstance(metric, str) else "",
                            better=better if isinstance(better, str) else None,
                            results={k: v for k, v in results.items() if isinstance(k, str) and isinstance(v, str)},
                            low=_is_number(gate.get("min")), high=_is_number(gate.get("max")))
