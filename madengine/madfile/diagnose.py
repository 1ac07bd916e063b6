"""pydantic validation errors -> diagnostics a user can act on.

pydantic's `loc` mixes data keys with union branch labels (`targets.lab.ssh.hosts`,
`select.list[str]`); here each `loc` is walked alongside the model's types so the labels are
recognised and dropped, the model that owns a bad key is known (for "did you mean" hints), and the
errors of a union whose every branch failed are cut down to the branch that fits the value's shape,
or merged into one "expected a string or a list" message.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from madengine.errors import Diagnostic
from madengine.madfile import model as m
from madengine.madfile.names import BASELINE_NAME_RULE
from madengine.madfile.source import KeyPath, SourceMap, format_key_path

# Where each kind of mapping lives, to say where a misplaced key belongs.
_PLACES: tuple[tuple[type[BaseModel], str], ...] = (
    (m.Madfile, "the top level"),
    (m.SelectModels, "a `select:` models entry"),
    (m.InlineModel, "an inline model (a models entry with `name:` and no `select:`)"),
    (m.Context, "a context (contexts.<name>)"),
    (m.Tool, "a context's tool (tools: [{name: ...}])"),
    (m.Script, "a pre/post script (pre_scripts: [{path: ..., args: ...}])"),
    (m.Host, "a host (hosts: [{address: ...}])"),
    (m.LoginHost, "a login host (login: {address: ...})"),
    (m.Run, "a run (runs: [...])"),
    (m.Expect, "an expect gate (expect: {<model>: {...}})"),
)
# Keys refused with their own message and hint instead of "unknown key" and a guess, checked once:
# keys of the format (DESIGN §2) that are not implemented yet (absent from the models, so from the
# schema, until they work), and keys of ROCm's formats that madengine would ignore. Refused, never
# accepted and ignored.
_REFUSED: dict[tuple[type[BaseModel] | None, str], tuple[str, str]] = {
    (m.InlineModel, "url"): ("unknown key `url`", "`url` is not read by madengine; keep it in a comment"),
    (m.InlineModel, "skip_gpu_arch"): ("unknown key `skip_gpu_arch`",
                                       "madengine does not detect GPU architectures, so it cannot skip one; "
                                       "leave the model out of the run instead"),
    (m.Context, "docker_gpus"): ("unknown key `docker_gpus`",
                                 "madengine gives each job free GPUs itself; set the target's `gpus`"),
    (m.Host, "password"): ("unknown key `password`", m.PASSWORD_HINT),
    (m.LoginHost, "password"): ("unknown key `password`", m.PASSWORD_HINT),
}
# Hints for a key's own validation errors (the message says what is wrong, the hint what is allowed).
_VALUE_HINTS: dict[tuple[type[BaseModel] | None, str], str] = {
    (m.Host, "key"): m.KEY_HINT,
    (m.Expect, "tolerance"): "a percentage with its % sign: `tolerance: 5%`",
    (m.Expect, "baseline"): f"a baseline name is {BASELINE_NAME_RULE}",
    (m.LoginHost, "key"): m.KEY_HINT,
    (m.Host, "name"): f"a host name is {m.HOST_NAME_RULE}; set `name:` for an address that is not one",
    (m.LoginHost, "address"): "a DNS name or an IP address, without `user@` or `:port`",
    (m.Host, "address"): "a DNS name or an IP address, without `user@` or `:port` (those are `user:` and `port:`)",
    (m.SshTarget, "max_parallel_per_host"): m.MAX_PARALLEL_HINT,
    (m.AnsibleTarget, "max_parallel_per_host"): m.MAX_PARALLEL_HINT,
}
# Target = Annotated[LocalTarget | DockerTarget | ..., Field(discriminator="backend")]
_TARGETS: tuple[type[BaseModel], ...] = get_args(get_args(m.Target)[0])

_EXPECTED = {
    "string_type": "a string",
    "string_sub_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "model_entry": "a mapping",
}
_LABEL_EXPECTED = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
                   "list": "a list", "dict": "a mapping", "tuple": "a list"}
_CONSTRAINTS = {"greater_than": ("gt", "greater than"), "greater_than_equal": ("ge", "at least"),
                "less_than": ("lt", "less than"), "less_than_equal": ("le", "at most")}


def backends() -> list[str]:
    """The valid `backend:` values, in the order the model declares them."""
    return [_backend_of(t) for t in _TARGETS]


def validate(data: Any, source: SourceMap) -> tuple[m.Madfile | None, list[Diagnostic]]:
    """Validate plain data against the format: the Madfile, or None and every error."""
    try:
        return m.Madfile.model_validate(data), []
    except ValidationError as exc:
        located = [_walk(err) for err in exc.errors()]
        # `version` is checked before pydantic, with messages of its own (load._check_version).
        located = [e for e in located if e.path != ("version",)]
        located = _drop_misspelt_select_noise(located)
        return None, [_diagnostic(e, source) for e in _prune(located, data)]


class _Redacted:
    """A value that messages describe by its type only."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return "..."


def describe(value: Any) -> str:
    """A short, readable description of a YAML value for messages."""
    if isinstance(value, _Redacted):
        inner = value.value
        return "a number" if isinstance(inner, int | float) and not isinstance(inner, bool) else \
            "a string" if isinstance(inner, str) else describe(inner)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string '{shown}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def close_match(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` was most likely meant to be (case-insensitive first), if any."""
    options = list(candidates)
    for option in options:
        if option.lower() == word.lower():
            return option
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return found[0] if found else None


# --- walking a pydantic loc -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Located:
    err: ErrorDetails
    path: KeyPath  # the data path, union labels removed
    sites: tuple[tuple[KeyPath, str], ...]  # every union passed: (its data path, the branch label)
    owner: type[BaseModel] | None  # the model whose key is the last path element
    expected: Any  # the declared type at the end of the path
    key_error: bool  # the error is about a mapping key (`[key]`), not a value


def _strip(tp: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X, until neither applies."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _branches(tp: Any) -> tuple[Any, ...] | None:
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(a for a in get_args(tp) if a is not type(None))
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _backend_of(cls: type[BaseModel]) -> str:
    return str(get_args(cls.model_fields["backend"].annotation)[0])


def _branch_labels(branch: Any) -> set[str]:
    """The labels pydantic may use in a `loc` for this union branch."""
    labels: set[str] = set()
    if get_origin(branch) is Annotated:
        labels |= {meta.tag for meta in get_args(branch)[1:] if isinstance(meta, Tag)}
        branch = get_args(branch)[0]
    if _is_model(branch):
        labels.add(branch.__name__)
        if "backend" in branch.model_fields:
            labels.add(_backend_of(branch))
    else:
        origin = get_origin(branch) or branch
        labels.add(getattr(origin, "__name__", str(origin)))
    return labels


def _label_base(label: str) -> str:
    return label.split("[", 1)[0]


def _walk(err: ErrorDetails) -> _Located:
    tp: Any = m.Madfile
    path: list[str | int] = []
    sites: list[tuple[KeyPath, str]] = []
    owner: type[BaseModel] | None = None
    key_error = False
    for seg in err["loc"]:
        tp = _strip(tp)
        branches = _branches(tp)
        if branches is not None and isinstance(seg, str):
            sites.append((tuple(path), seg))
            chosen = [b for b in branches if {seg, _label_base(seg)} & _branch_labels(b)]
            tp = chosen[0] if chosen else Any
            continue
        if seg == "[key]":
            key_error = True
            continue
        if _is_model(tp):
            owner = tp
            info = tp.model_fields.get(seg) if isinstance(seg, str) else None
            tp = info.annotation if info is not None else Any
        else:
            owner = None
            origin, args = get_origin(tp), get_args(tp)
            if origin in (list, tuple) and args:
                tp = args[0]
            elif origin is dict and len(args) == 2:
                tp = args[1]
            else:
                tp = Any
        path.append(seg)
    return _Located(err=err, path=tuple(path), sites=tuple(sites), owner=owner, expected=_strip(tp),
                    key_error=key_error)


def _get(data: Any, path: KeyPath) -> Any:
    for part in path:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            return None
        data = data[part]
    return data


# --- unions: keep the branch that fits, or merge ------------------------------------------------


@dataclass(frozen=True)
class _Merged:
    """All branches of a union failed on a value none of them fits."""

    path: KeyPath
    labels: tuple[str, ...]
    value: Any


def _shape(value: Any) -> str:
    return "list" if isinstance(value, list) else "dict" if isinstance(value, dict) else "scalar"


def _label_shape(label: str) -> str:
    base = _label_base(label)
    if base in ("list", "tuple"):
        return "list"
    if base == "dict" or base[:1].isupper():  # a model class
        return "dict"
    return "scalar"


def _prune(errors: Sequence[_Located], data: Any, depth: int = 0) -> list[_Located | _Merged]:
    out: list[_Located | _Merged] = [e for e in errors if len(e.sites) <= depth]
    groups: dict[KeyPath, list[_Located]] = {}
    for e in errors:
        if len(e.sites) > depth:
            groups.setdefault(e.sites[depth][0], []).append(e)
    for site, members in groups.items():
        labels = tuple(dict.fromkeys(e.sites[depth][1] for e in members))
        if len(labels) > 1:
            value = _get(data, site)
            fitting = [e for e in members if _label_shape(e.sites[depth][1]) == _shape(value) != "scalar"]
            if not fitting:
                out.append(_Merged(path=site, labels=labels, value=value))
                continue
            members = fitting
        out += _prune(members, data, depth + 1)
    return out


def _drop_misspelt_select_noise(errors: list[_Located]) -> list[_Located]:
    """A models entry with a misspelt `select` is read as an inline model; its missing
    `name`/`scripts` errors would only distract from the misspelling."""
    noisy: set[KeyPath] = set()
    for e in errors:
        if (e.err["type"] == "extra_forbidden" and e.owner is m.InlineModel
                and close_match(str(e.path[-1]), ["select"])):
            noisy.add(e.path[:-1])
    return [e for e in errors if not (e.err["type"] == "missing" and e.path[:-1] in noisy)]


# --- messages and hints ---------------------------------------------------------------------------


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _yaml_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _alternatives(labels: Iterable[str]) -> str:
    words = list(dict.fromkeys(_LABEL_EXPECTED.get(_label_base(lb), "a mapping") for lb in labels))
    if "a number" in words and "an integer" in words:
        words.remove("an integer")
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _shown(path: KeyPath, value: Any) -> Any:
    """The value as messages may show it: never the value of a secret-named key."""
    if any(isinstance(p, str) and m.is_secret_name(p) for p in path) and not isinstance(value, dict | list):
        return _Redacted(value)
    return value


def _at_value(value: Any) -> Literal["key", "value", "auto"]:
    # A scalar is pointed at where it is written; a mapping or list where it starts if that is on
    # its key's line (flow style), else at its key.
    if value is None:
        return "key"
    return "auto" if isinstance(value, dict | list) else "value"


def _diagnostic(e: _Located | _Merged, source: SourceMap) -> Diagnostic:
    if isinstance(e, _Merged):
        shown = _shown(e.path, e.value)
        message = f"expected {_alternatives(e.labels)}, found {describe(shown)}"
        hint = f'quote it: "{_yaml_text(shown)}"' if isinstance(shown, bool) else ""
        return source.diagnostic(e.path, message, hint, at=_at_value(e.value))
    err, path, kind = e.err, e.path, e.err["type"]
    value = _shown(path, err.get("input"))

    if e.key_error or kind == "invalid_key":
        d = source.diagnostic(path, f"keys must be strings, found {describe(path[-1])}",
                              f'quote the key: "{_yaml_text(path[-1])}"')
        # An int key would read as a list index (`contexts[1]`): show it as the key it is.
        return replace(d, key_path=f"{format_key_path(path[:-1])}.{_yaml_text(path[-1])}")
    if kind == "extra_forbidden":
        refused = _REFUSED.get((e.owner, str(path[-1])))
        if refused is not None:
            return source.diagnostic(path, *refused)
        return source.diagnostic(path, f"unknown key `{path[-1]}`", _unknown_key_hint(str(path[-1]), e.owner))
    if kind == "missing":
        return source.diagnostic(path[:-1], f"missing required key `{path[-1]}`", _missing_hint(e))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _backend_diagnostic(e, source)
    if kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, found {describe(value)}"
        return source.diagnostic(path, message, _type_hint(e, value), at=_at_value(value))
    if kind == "literal_error":
        allowed = [str(a) for a in get_args(e.expected)] if get_origin(e.expected) is Literal else []
        message = f"expected one of {', '.join(allowed)}, found {describe(value)}" if allowed else err["msg"]
        guess = close_match(str(value), allowed) if value is not None else None
        hint = f"did you mean `{guess}`?" if guess else ""
        return source.diagnostic(path, message, hint, at=_at_value(value))
    if kind in _CONSTRAINTS:
        bound_key, words = _CONSTRAINTS[kind]
        bound = (err.get("ctx") or {}).get(bound_key)
        return source.diagnostic(path, f"must be {words} {_number(bound)}, found {_yaml_text(value)}",
                                 _VALUE_HINTS.get((e.owner, str(path[-1])), "") if path else "", at=_at_value(value))
    if kind == "too_short":
        return source.diagnostic(path, "must not be empty", "list at least one entry", at="key")
    if kind == "value_error":
        error = (err.get("ctx") or {}).get("error")
        hint = _VALUE_HINTS.get((e.owner, str(path[-1])), "") if path else ""
        return source.diagnostic(path, str(error) if error else err["msg"], hint, at=_at_value(value))
    message = err["msg"][:1].lower() + err["msg"][1:]
    return source.diagnostic(path, message, at=_at_value(value))


def _type_hint(e: _Located, value: Any) -> str:
    kind = e.err["type"]
    if value is None and e.path:
        return f"give `{e.path[-1]}` a value, or remove it"
    if kind == "finite_number":
        return "give a finite number (.inf and .nan are not)"
    if kind in ("string_type", "string_sub_type") and isinstance(value, bool | int | float):
        return f'quote it: "{_yaml_text(value)}"'
    if kind == "list_type" and isinstance(value, str | int | float):
        return f"write a list: [{_yaml_text(value)}]"
    if kind == "model_entry" and isinstance(value, str):
        return f"to pick models from the package by tag, write `- select: {value}`"
    if kind in ("model_type", "model_attributes_type", "dict_type") and e.path[:1] == ("targets",) \
            and isinstance(value, str) and value in backends():
        return f"write `{e.path[-1]}: {{backend: {value}}}`"
    return ""


def _missing_hint(e: _Located) -> str:
    key = str(e.path[-1])
    if e.owner is m.InlineModel and key in ("name", "scripts"):
        return "an inline model needs `name` and `scripts`; to pick package models by tag use `select:`"
    return f"add `{key}:` here"


def _backend_diagnostic(e: _Located, source: SourceMap) -> Diagnostic:
    valid = backends()
    listing = ", ".join(valid)
    value = e.err.get("input")
    given = value.get("backend") if isinstance(value, dict) else None
    if given is None:
        return source.diagnostic(e.path, f"target `{e.path[-1]}` has no `backend`",
                                 f"add `backend:` with one of: {listing}")
    guess = close_match(str(given), valid)
    hint = f"did you mean `{guess}`? (backends: {listing})" if guess else f"backends: {listing}"
    return source.diagnostic((*e.path, "backend"), f"unknown backend `{_yaml_text(given)}`", hint,
                             at="value")


def _fields(cls: type[BaseModel]) -> list[str]:
    return list(cls.model_fields)


def _unknown_key_hint(key: str, owner: type[BaseModel] | None) -> str:
    allowed = _fields(owner) if owner is not None else []
    candidates = [*allowed, "select"] if owner is m.InlineModel else allowed
    guess = close_match(key, candidates)
    homes = _homes(key, owner)
    if guess and homes:
        # The key is right for another place; a local look-alike is worth naming only when it is
        # very close (`hosts` under docker: `host`), not merely similar (`args` vs `params`).
        if difflib.SequenceMatcher(None, key.lower(), guess.lower()).ratio() >= 0.8:
            return f"did you mean `{guess}`? (`{key}` belongs in {homes})"
        return f"`{key}` belongs in {homes}"
    if guess:
        return f"did you mean `{guess}`?"
    if homes:
        return f"`{key}` belongs in {homes}"
    if owner is m.Context:
        return (f"free-form keys that Dockerfile `# CONTEXT` headers test go under `match:` "
                f"(match: {{{key}: ...}})")
    return f"allowed keys: {', '.join(allowed)}" if allowed else ""


def _homes(key: str, owner: type[BaseModel] | None) -> str:
    places = [text for cls, text in _PLACES if cls is not owner and key in cls.model_fields]
    target_backends = [_backend_of(cls) for cls in _TARGETS if cls is not owner and key in cls.model_fields]
    if target_backends:
        names = target_backends[0] if len(target_backends) == 1 else \
            ", ".join(target_backends[:-1]) + " or " + target_backends[-1]
        article = "an" if names[0] in "aeiou" or names.startswith("ssh") else "a"
        places.append(f"{article} {names} target")
    if not places:
        return ""
    return places[0] if len(places) == 1 else ", ".join(places[:-1]) + " or " + places[-1]
