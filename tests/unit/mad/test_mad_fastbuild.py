"""fastbuild: instances identical to the constructor's, and the constructor whenever it does more."""

from __future__ import annotations

import dataclasses
import gc
from typing import cast

import pytest

from madengine.mad.fastbuild import adopter, frozen_builder, gc_paused, sharing_builder


@dataclasses.dataclass(frozen=True)
class Plain:
    name: str
    size: int = 1
    labels: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Validated:
    name: str

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("empty name")


def test_built_instances_equal_constructed_ones() -> None:
    build = frozen_builder(Plain)

    built = build({"name": "a"})

    assert built == Plain("a") and repr(built) == repr(Plain("a"))
    assert build({"name": "b", "size": 2, "labels": {"k": "v"}}) == Plain("b", 2, {"k": "v"})
    assert build({"name": "c"}).labels is not build({"name": "c"}).labels  # default_factory per instance
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        build({"size": 3})  # a missing required field goes to the constructor, which says so


def test_a_dataclass_with_post_init_is_always_constructed() -> None:
    with pytest.raises(ValueError, match="empty name"):
        frozen_builder(Validated)({"name": ""})
    with pytest.raises(ValueError, match="empty name"):
        adopter(Validated)({"name": ""})


def test_gc_paused_restores_the_collector_state() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_instances_built_from_shared_values_equal_constructed_ones() -> None:
    share, build = sharing_builder(Plain, own=("name",))
    template = share({"size": 5, "labels": {"k": "v"}})

    built = build(template, {"name": "a"})

    assert built == Plain("a", 5, {"k": "v"}) and repr(built) == repr(Plain("a", 5, {"k": "v"}))
    # The template's own fields are None, whatever their declared type (it is never used as an instance).
    assert build(template, {"name": "b"}) == Plain("b", 5, {"k": "v"}) \
        and cast(str | None, template.name) is None  # unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="shared fields"):
        share({"size": 5})  # a field neither shared nor own: refused, never left None


def test_a_dataclass_with_post_init_is_always_built_through_its_constructor() -> None:
    share, build = sharing_builder(Validated, own=("name",))
    with pytest.raises(ValueError, match="empty name"):
        build(share({}), {"name": ""})
