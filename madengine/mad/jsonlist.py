"""Parse a JSON list and remember where each item starts, at C-decoder speed.

`json.load` forgets positions, and a character-by-character scanner in Python is too slow for a
package of thousands of entries. Decoding the list one item at a time with the C scanner that
`json.loads` uses gives every item's offset for free; lines are counted incrementally.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from madengine import limits
from madengine.errors import ConfigError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")  # the separator between two items, in one match
# The C scanner behind json.loads: (text, offset) -> (value, end); untyped in typeshed.
_scan_value: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009


# One item of the top-level list: (value, 0-based offset where it starts, 1-based line). A plain
# tuple rather than a NamedTuple: building one per item is measurably cheaper.
ListItem = tuple[Any, int, int]


class NotAListError(ValueError):
    """The document is valid JSON but its top level is not a list."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"the top level is a JSON {type_name}, not a list")
        self.type_name = type_name


class TooManyItemsError(ValueError):
    """The list has more than the `max_items` it may have; `offset` is where the first one too many starts."""

    def __init__(self, max_items: int, offset: int) -> None:
        super().__init__(f"more than {max_items:,} entries")
        self.max_items, self.offset = max_items, offset


class TooDeepError(ValueError):
    """A value nested deeper than `limits.MAX_DEPTH`, starting at `offset` (of the item holding it)."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"nested more than {limits.MAX_DEPTH} levels deep")
        self.offset = offset


def read_json_text(path: str | os.PathLike[str], shown: str) -> str:
    """The text of a JSON input file (models.json, tools.json, data.json), refused before it is parsed
    when over the size limit, and a ConfigError at the line and column of a byte that is not UTF-8.
    OSError (a missing file...) is the caller's to report."""
    raw = limits.read_bounded(path, shown, limits.input_bytes(), limits.INPUT_BYTES_ENV)
    try:
        return raw.decode("utf-8-sig")  # a BOM that some editors write is not an error
    except UnicodeDecodeError as exc:
        start = exc.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise ConfigError(f"not UTF-8 text: byte 0x{raw[start]:02x} cannot be decoded", file=shown,
                          line=line, column=column, hint="save the file as UTF-8 (JSON is UTF-8 text)") from None


def too_deep(value: Any, limit: int = limits.MAX_DEPTH) -> bool:
    """Whether lists and objects nest deeper than `limit` in `value` (a parsed JSON value)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children = current.values() if current.__class__ is dict else current
        for child in children:
            if child.__class__ is dict or child.__class__ is list:
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def loads(text: str) -> Any:
    """`json.loads`, with nesting past `limits.MAX_DEPTH` a TooDeepError (json raises RecursionError
    past Python's recursion limit, and deep values would hit it again wherever they are used)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise TooDeepError(0) from None
    if (value.__class__ is dict or value.__class__ is list) and too_deep(value):
        raise TooDeepError(0)
    return value


def parse_list(text: str, max_items: int | None = None) -> list[ListItem]:
    """The items of a JSON document whose top level is a list.

    Raises json.JSONDecodeError (with lineno/colno) for invalid JSON, TooDeepError for nesting past
    the limit, TooManyItemsError past `max_items`, and NotAListError otherwise.
    """
    pos = _skip_whitespace(text, 0)
    if text[pos:pos + 1] != "[":
        raise NotAListError(json_type_name(loads(text)))
    pos = _skip_whitespace(text, pos + 1)
    items: list[ListItem] = []
    if text[pos:pos + 1] == "]":
        return _finish(text, pos, items)
    scan, separator, count, find = _scan_value, _COMMA.match, text.count, text.find
    line, counted_to = 1, 0
    while True:
        if max_items is not None and len(items) >= max_items:
            raise TooManyItemsError(max_items, pos)
        try:
            value, end = scan(text, pos)
        except (StopIteration, json.JSONDecodeError):
            _raise_canonical_error(text)
            raise json.JSONDecodeError("Expecting value", text, pos) from None
        except RecursionError:
            raise TooDeepError(pos) from None
        if value.__class__ is dict:  # the usual entry: only its lists and objects can nest
            for field in value.values():
                if (field.__class__ is dict or field.__class__ is list) and too_deep(field, limits.MAX_DEPTH - 2):
                    raise TooDeepError(pos)
        elif value.__class__ is list and too_deep(value, limits.MAX_DEPTH - 1):
            raise TooDeepError(pos)
        line += count("\n", counted_to, pos)
        counted_to = pos
        items.append((value, pos, line))
        # Usually the next item is an object: find its brace and check that only a comma and
        # whitespace lie between (C-speed str calls); otherwise match the separator properly.
        brace = find("{", end, end + 80)
        if brace > 0 and text[end:brace].strip(" \t\n\r") == ",":  # JSON whitespace only
            pos = brace
            continue
        comma = separator(text, end)
        if comma is not None:
            pos = comma.end()
            continue
        pos = _skip_whitespace(text, end)
        if text[pos:pos + 1] == "]":
            return _finish(text, pos, items)
        _raise_canonical_error(text)
        raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


def _skip_whitespace(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def line_of(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _finish(text: str, closing_bracket: int, items: list[ListItem]) -> list[ListItem]:
    rest = _skip_whitespace(text, closing_bracket + 1)
    if rest != len(text):
        _raise_canonical_error(text)
        raise json.JSONDecodeError("Extra data", text, rest)
    return items


def _raise_canonical_error(text: str) -> None:
    """Let the standard decoder report the error, so messages match what users know from json."""
    loads(text)


def json_type_name(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (`object`, `list`, `string`...), for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__
