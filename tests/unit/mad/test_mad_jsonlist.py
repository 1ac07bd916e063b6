"""parse_list: the items of a JSON list with their offsets and lines; errors exactly as json reports them.
KeyPositions and Lines: where the keys of a JSON object are, for messages."""

from __future__ import annotations

import json

import pytest

from madengine.mad.jsonlist import KeyPositions, Lines, NotAListError, line_of, parse_list


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


def test_lines_give_what_line_of_gives_for_every_offset() -> None:
    text = 'a\n\nbc\n{"x":\n 1}\n'
    lines = Lines(text)
    assert [lines(offset) for offset in range(len(text) + 1)] == [line_of(text, o) for o in range(len(text) + 1)]


def positions(text: str) -> KeyPositions:
    return KeyPositions(text, json.loads(text))


def test_key_positions_follow_the_structure_not_the_text() -> None:
    # `"b":` inside a string value and in an earlier object does not mislead the search for tools.b.
    text = '{"a": {"b": "\\"b\\": 1"},\n "tools": {"a": {"b": 1},\n  "b": {"cmd": 2}}}'
    where = positions(text)
    assert where.position(("tools", "b")) == (3, 3)
    assert where.position(("tools", "b", "cmd")) == (3, 9)
    assert where.position(("tools", "a", "b")) == (2, 18)


def test_a_missing_key_is_placed_at_its_parent_and_an_escaped_key_is_found() -> None:
    text = '{"tools":\n {"\\u00e9\\"q": {"x": 1}}}'
    where = positions(text)
    assert where.position(("tools", 'é"q', "x")) == (2, 17)
    assert where.position(("tools", 'é"q', "missing")) == (2, 3)
    assert where.position(("missing",)) == (1, 1)


def test_a_big_object_is_walked_once_and_a_repeated_key_is_found_where_it_first_appears() -> None:
    members = [f'"k{i}": {{"v": [{i}]}}' for i in range(1000)]
    text = '{"big": {\n' + ",\n".join(members) + ',\n"k5": {"v": 0}},\n"after": {"cmd": 1}}'
    where = positions(text)
    assert [where.position(("big", f"k{i}", "v"))[0] for i in (999, 0, 500)] == [1001, 2, 502]
    assert where.position(("big", "k5")) == (7, 1)
    assert where.position(("after", "cmd")) == (1003, 11)
