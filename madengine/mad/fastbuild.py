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


def sharing_builder(cls: type[T], own: tuple[str, ...]) -> tuple[Callable[[dict[str, Any]], T],
                                                               Callable[[T, dict[str, Any]], T]]:
    """Two functions, for many instances of `cls` that share every field value but those named `own`
    (the jobs of one model in one context differ by address, params, args, repeat and gate only):
    `share(values)` makes a template of the shared values once (its `own` fields None: it is never
    used as an instance) and refuses values that name a field not shared or miss one;
    `build(template, own_values)` makes one instance from it and its own fields (all of `own`).

    Instances (and the template) are made without the constructor, so only for plain dataclasses; their
    `__dict__` shares the class's keys, as a constructed instance's does (a JobNode is ~400 bytes, where
    a dict of its own makes it ~900: the copy is taken from the template's `__dict__`, not a plain dict).
    """
    names = [f.name for f in dataclasses.fields(cast(Any, cls))]
    shared_names = set(names) - set(own)
    new = object.__new__

    def share(values: dict[str, Any]) -> T:
        if values.keys() != shared_names:
            raise TypeError(f"{cls.__name__}: shared fields {sorted(values)} are not {sorted(shared_names)}")
        template: T = new(cls)
        state = template.__dict__
        # In the fields' order, as the constructor sets them; the first on its own, since `update` of an
        # empty __dict__ from a plain dict would copy that dict's own keys instead of sharing the class's.
        ordered = dict.fromkeys(names)
        ordered.update(values)
        state[names[0]] = ordered[names[0]]
        state.update(ordered)
        return template

    if not is_plain_dataclass(cls):
        return share, lambda template, values: dataclasses.replace(cast(Any, template), **values)

    def build(template: T, values: dict[str, Any]) -> T:
        instance: T = new(cls)
        state = instance.__dict__
        state.update(template.__dict__)
        state.update(values)
        return instance

    return share, build


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
            # What was made while paused is long-lived: straight to the oldest generation (freeze, then
            # unfreeze), or the first young collection after enable() would traverse all of it once more.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
