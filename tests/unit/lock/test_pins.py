"""Base-image pins: reused from the lock, resolved only when new or asked for."""

from __future__ import annotations

from madengine.lock.pins import pin_bases, previous_pins


class Resolver:
    def __init__(self, answers: dict[str, str | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, ref: str) -> str | None:
        self.asked.append(ref)
        return self.answers.get(ref)


def test_new_references_are_resolved_and_known_ones_reused() -> None:
    resolve = Resolver({"reg:5000/a:1": "sha256:new", "reg:5000/b:1": "sha256:b"})
    pins = pin_bases(["reg:5000/a:1", "reg:5000/b:1", None, "scratch"], {"reg:5000/a:1": "sha256:old"}, resolve)
    assert pins == {"reg:5000/a:1": "sha256:old", "reg:5000/b:1": "sha256:b"}
    assert resolve.asked == ["reg:5000/b:1"]


def test_unresolvable_stays_null_until_updated() -> None:
    resolve = Resolver({})
    assert pin_bases(["rocm/pytorch:latest"], {}, resolve) == {"rocm/pytorch:latest": None}
    resolve = Resolver({"rocm/pytorch:latest": "sha256:x"})
    assert pin_bases(["rocm/pytorch:latest"], {"rocm/pytorch:latest": None}, resolve) == \
        {"rocm/pytorch:latest": None}
    assert resolve.asked == []
    assert pin_bases(["rocm/pytorch:latest"], {"rocm/pytorch:latest": None}, resolve,
                     update={"rocm/pytorch:latest"}) == {"rocm/pytorch:latest": "sha256:x"}


def test_update_all_and_digest_references() -> None:
    resolve = Resolver({"a:1": "sha256:2"})
    ref = "b@sha256:" + "c" * 64
    pins = pin_bases(["a:1", ref], {"a:1": "sha256:1"}, resolve, update_all=True)
    assert pins == {"a:1": "sha256:2", ref: "sha256:" + "c" * 64}
    assert resolve.asked == ["a:1"]


def test_previous_pins_reads_a_lock() -> None:
    lock = {"images": {"image:x@c": {"base": {"ref": "a:1", "digest": "sha256:1"}},
                       "image:y@c": {"base": {"ref": None, "digest": None}}}}
    assert previous_pins(lock) == {"a:1": "sha256:1"}
    assert previous_pins(None) == {}
