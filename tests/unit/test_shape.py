"""madengine.shape: the checker every file madengine reads back goes through."""

from __future__ import annotations

from typing import Any

import pytest

from madengine.shape import ListOf, MapOf, OneOf, Opt, problems

SPEC = {"n": int, "x": float, "name": str, "flag": bool, "maybe": Opt(str), "items": ListOf({"a": int}),
        "by": MapOf(ListOf(str)), "kind": OneOf("job", "image"), "extra?": int, "any": object}
GOOD: dict[str, Any] = {"n": 1, "x": 2, "name": "a", "flag": False, "maybe": None, "items": [{"a": 1, "more": 0}],
                        "by": {"m": ["t"]}, "kind": "job", "any": [1]}


def test_a_fitting_value_has_no_problems() -> None:
    assert problems(GOOD, SPEC) == []
    assert problems({**GOOD, "extra": 3, "maybe": "s", "x": 2.5}, SPEC) == []


@pytest.mark.parametrize(("key", "value", "where", "message"), [
    ("n", True, "n", "expected an integer, found true or false"),
    ("n", 1.0, "n", "expected an integer, found a number (1.0)"),
    ("x", float("inf"), "x", "expected a finite number"),
    ("flag", 0, "flag", "expected true or false, found an integer (0)"),
    ("name", None, "name", "expected a string, found null"),
    ("items", [{"a": "1"}], "items[0].a", "expected an integer, found a string ('1')"),
    ("by", {"key with space": [1]}, "by['key with space'][0]", "expected a string"),
    ("kind", "push", "kind", "expected one of 'job', 'image', found 'push'"),
    ("kind", True, "kind", "expected one of"),
    ("extra", "3", "extra", "expected an integer"),
])
def test_each_wrong_field_is_named_by_its_key_path(key: str, value: Any, where: str, message: str) -> None:
    found = problems({**GOOD, key: value}, SPEC)
    assert len(found) == 1 and found[0][0] == where and found[0][1].startswith(message), found


def test_missing_keys_and_a_cap_on_how_many_are_listed() -> None:
    assert problems({}, {"a": int, "b?": int}) == [("", "missing key 'a'")]
    assert len(problems(list(range(100)), ListOf(str), limit=10)) == 10
