"""The shape of JSON that madengine wrote and reads back: a lockfile, a saved plan, a cache record.

Such a file may have been edited, truncated or replaced by something else. Every field is checked
against a spec before any of it is used, so that a wrong file is one message naming the key, never a
KeyError deep inside a later stage. A spec is:

- a type: `str`, `int` (not a bool), `float` (an int too), `bool`, or `object` (anything);
- a dict of required keys and their specs (a key ending in `?` may be absent; other keys are allowed);
- `Opt(spec)` (null allowed), `ListOf(spec)`, `MapOf(spec)` (an object with any keys), `OneOf(*values)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

LIMIT = 10  # problems reported per file: a file of garbage would otherwise list thousands


@dataclass(frozen=True)
class Opt:
    spec: Any


@dataclass(frozen=True)
class ListOf:
    spec: Any


@dataclass(frozen=True)
class MapOf:
    spec: Any


class OneOf:
    def __init__(self, *values: object) -> None:
        self.values = values


def problems(value: Any, spec: Any, limit: int = LIMIT) -> list[tuple[str, str]]:
    """Where `value` does not fit `spec`: (key path, what is wrong), at most `limit` of them."""
    if _fits(spec)(value):  # the common case, answered by a compiled check (a lock of 1,000 jobs: ~5 ms)
        return []
    out: list[tuple[str, str]] = []
    for found in _walk(value, spec, ""):
        out.append(found)
        if len(out) >= limit:
            break
    return out


_COMPILED: dict[int, tuple[Any, Callable[[Any], bool]]] = {}


def _fits(spec: Any) -> Callable[[Any], bool]:
    """A predicate for `spec`, built once per spec: True when the value fits it. Only when it does not
    is the (slower) walk that names the problems taken."""
    cached = _COMPILED.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    check = _compile(spec)
    _COMPILED[id(spec)] = (spec, check)
    return check


def _compile(spec: Any) -> Callable[[Any], bool]:
    if isinstance(spec, Opt):
        inner = _compile(spec.spec)
        return lambda v: v is None or inner(v)
    if isinstance(spec, dict):
        required = tuple((k, _compile(sub)) for k, sub in spec.items() if not k.endswith("?"))
        optional = tuple((k.removesuffix("?"), _compile(sub)) for k, sub in spec.items() if k.endswith("?"))
        return lambda v: (type(v) is dict and all(k in v and f(v[k]) for k, f in required)
                          and all(f(v[k]) for k, f in optional if k in v))
    if isinstance(spec, ListOf):
        item = _compile(spec.spec)
        return lambda v: type(v) is list and all(map(item, v))
    if isinstance(spec, MapOf):
        item = _compile(spec.spec)
        return lambda v: type(v) is dict and all(map(item, v.values()))
    if isinstance(spec, OneOf):
        return lambda v: not any(_walk(v, spec, ""))
    if spec is object:
        return lambda v: True
    if spec is float:
        return lambda v: type(v) in (int, float) and math.isfinite(v)
    return lambda v: type(v) is spec  # str, int, bool: exactly (a bool is not an int here)


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _walk(value: Any, spec: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(spec, Opt):
        if value is not None:
            yield from _walk(value, spec.spec, path)
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            yield path, f"expected an object, found {_kind(value)}"
            return
        for key, sub in spec.items():
            name = key.removesuffix("?")
            if name in value:
                yield from _walk(value[name], sub, _join(path, name))
            elif not key.endswith("?"):
                yield path, f"missing key {name!r}"
    elif isinstance(spec, ListOf):
        if not isinstance(value, list):
            yield path, f"expected a list, found {_kind(value)}"
            return
        for i, item in enumerate(value):
            yield from _walk(item, spec.spec, f"{path}[{i}]")
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            yield path, f"expected an object, found {_kind(value)}"
            return
        for key, item in value.items():
            yield from _walk(item, spec.spec, _join(path, key))
    elif isinstance(spec, OneOf):
        if value not in spec.values or isinstance(value, bool) != any(isinstance(v, bool) for v in spec.values):
            yield path, f"expected one of {', '.join(map(repr, spec.values))}, found {_short(value)}"
    elif spec is object:
        return
    elif spec is int:
        if not isinstance(value, int) or isinstance(value, bool):
            yield path, f"expected an integer, found {_kind(value)}"
    elif spec is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            yield path, f"expected a finite number, found {_kind(value)}"
    elif not isinstance(value, spec) or (spec is not bool and isinstance(value, bool)):
        yield path, f"expected {_NAMES.get(spec, spec.__name__)}, found {_kind(value)}"


def _join(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"{_NAMES.get(type(value), type(value).__name__)} ({_short(value)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
