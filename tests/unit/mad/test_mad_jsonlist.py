"""parse_list: the items of a JSON list with their offsets and lines; errors exactly as json reports them."""

from __future__ import annotations

import json

import pytest

from madengine.mad.jsonlist import NotAListError, line_of, parse_list


def test_items_know_their_offset_and_line() -> None:
    text = '[\n  {"a": "{[\\"]}"},\n\n  {"b": [1, {"c": 2}]}, 3,\n  "x"\n]\n'

    items = parse_list(text)

    assert [value for value, _, _ in items] == json.loads(text)
    assert [line for _, _, line in items] == [2, 4, 4, 5]
    assert [text[offset] for _, offset, _ in items] == ["{", "{", "3", '"']
    assert [line_of(text, offset) for _, offset, _ in items] == [(2, 3), (4, 3), (4, 25), (5, 3)]


@pytest.mark.parametrize("text", ["[]", " [ ] \n", "[{}]", '[{"a":1},{"b":2}]', "[1,2,3]", "[[],[[]]]"])
def test_any_valid_list_parses_like_json_loads(text: str) -> None:
    assert [value for value, _, _ in parse_list(text)] == json.loads(text)


@pytest.mark.parametrize("text", ["", "[", "[1,]", "[1 2]", "[1]]", "[1] [2]", "[{]", '[{"a": 1,}]',
                                  "[1,\n,2]", "[nope]", "[{}\n{}]",
                                  "[{},\u00a0{}]", "[{}\u00a0,{}]"])
def test_invalid_json_raises_what_json_loads_raises(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        parse_list(text)

    assert (got.value.msg, got.value.lineno, got.value.colno) == (
        expected.value.msg, expected.value.lineno, expected.value.colno)


@pytest.mark.parametrize(("text", "type_name"), [("{}", "object"), ('"x"', "string"), ("1", "number"),
                                                 ("null", "null"), ("true", "boolean")])
def test_a_document_that_is_not_a_list_is_reported_with_its_type(text: str, type_name: str) -> None:
    with pytest.raises(NotAListError) as caught:
        parse_list(text)

    assert caught.value.type_name == type_name
