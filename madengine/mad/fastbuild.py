"""Build frozen dataclass instances without their generated `__init__`, for hot loops.

A frozen dataclass assigns each field through `object.__setattr__`; for `MadModel` (20 fields) that
is most of the cost of discovering a 6,000-model package. Giving the instance a ready `__dict__`
yields an identical object (same fields, equality, hash and repr) several times faster.
The shortcut is only taken for plain dataclasses: one with `__post_init__` or `__slots__` gets its
real constructor, so a validation added to the class later is never skipped.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

T = TypeVar("T")

_set_attribute = object.__setattr__


def is_plain_dataclass(cls: type) -> bool:
    """True when an instance is fully described by its fields' values in `__dict__`."""
    return (dataclasses.is_dataclass(cls) and not hasattr(cls, "__post_init__")
            and not any("__slots__" in vars(klass) for klass in cls.__mro__[:-1]))


def static_defaults(cls: type) -> dict[str, Any]:
    """The fields that have a plain default (not a default_factory), with it."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def adopter(cls: type[T]) -> Callable[[dict[str, Any]], T]:
    """A function that makes a `cls` whose field values are a dict holding every field (and only those).

    The dict becomes the instance's `__dict__`: the caller must not use it afterwards.
    """
    if not is_plain_dataclass(cls):
        return lambda state: cls(**state)
    new = object.__new__

    def adopt(state: dict[str, Any]) -> T:
        instance: T = new(cls)
        _set_attribute(instance, "__dict__", state)
        return instance

    return adopt


def frozen_builder(cls: type[T]) -> Callable[[dict[str, Any]], T]:
    """A function that builds a `cls` from a dict of field values (missing ones take defaults).

    The dict is consumed: when it holds every field it becomes the instance's `__dict__`.
    """
    if not is_plain_dataclass(cls):
        return lambda values: cls(**values)
    fields = dataclasses.fields(cast(Any, cls))
    defaults = static_defaults(cls)
    factories = [(f.name, f.default_factory) for f in fields if f.default_factory is not dataclasses.MISSING]
    required = tuple(f.name for f in fields if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    field_count = len(fields)
    adopt = adopter(cls)

    def build(values: dict[str, Any]) -> T:
        """`values` must name fields only (callers in this package guarantee it)."""
        for name in required:
            if name not in values:
                return cls(**values)  # let the real constructor report the mistake
        if len(values) == field_count:
            return adopt(values)
        state = defaults.copy()
        for name, factory in factories:
            if name not in values:
                state[name] = factory()
        state.update(values)
        return adopt(state)

    return build


def deriver(cls: type[T]) -> Callable[[T, dict[str, Any]], T]:
    """A faster `dataclasses.replace(template, **changes)`, for many instances that differ from one
    template in a few fields (the jobs of one model in one context differ by address and params).

    The copy's `__dict__` shares the class's keys, as a constructed instance's does (a JobNode is
    ~400 bytes, where `adopter`'s own dict makes it ~900). `changes` must name fields only.
    """
    if not is_plain_dataclass(cls):
        return lambda template, changes: dataclasses.replace(cast(Any, template), **changes)
    new = object.__new__

    def derive(template: T, changes: dict[str, Any]) -> T:
        instance: T = new(cls)
        state = instance.__dict__
        state.update(template.__dict__)
        state.update(changes)
        return instance

    return derive


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while tens of thousands of objects are created.

    None of them is garbage, yet each allocation burst would make the collector traverse all of
    them again, which costs more than the discovery itself on a large package. Reference counting
    still frees everything as usual; cycles (if a script makes any) are collected once it resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
