"""Parse a JSON list and remember where each item starts, at C-decoder speed.

`json.load` forgets positions, and a character-by-character scanner in Python is too slow for a
package of thousands of entries. Decoding the list one item at a time with the C scanner that
`json.loads` uses gives every item's offset for free; lines are counted incrementally.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from madengine import limits
from madengine.errors import ConfigError
from madengine.files import decode_utf8

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_COMMA = re.compile(r"[ \t\n\r]*,[ \t\n\r]*")  # the separator between two items, in one match
# The C scanner behind json.loads: (text, offset) -> (value, end); untyped in typeshed.
_scan_value: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009
# A key without escapes and the colon after it, in one match (others go through the decoder).
_PLAIN_KEY = re.compile(r'"([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*')
_scan_string: Callable[[str, int], tuple[str, int]] = getattr(json.decoder, "scanstring")  # noqa: B009
# Containers of more members than this are walked member by member instead of decoded a second time.
_WALK_OVER = 64


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


def read_json_text(path: str | os.PathLike[str], shown: str, limit: int, env: str) -> str:
    """The text of a JSON input file (models.json, tools.json, data.json), refused before it is parsed
    when over `limit` bytes (`env` is the variable that raises it), and a ConfigError at the line and
    column of a byte that is not UTF-8. OSError (a missing file...) is the caller's to report."""
    text = decode_utf8(limits.read_bounded(path, shown, limit, env), shown,
                       hint="save the file as UTF-8 (JSON is UTF-8 text)")
    offset = lone_surrogate(text)
    if offset is not None:
        line, column = line_of(text, offset)
        raise ConfigError(f"the escape {text[offset:offset + 6]} is half of a UTF-16 surrogate pair, not a "
                          "character", file=shown, line=line, column=column,
                          hint="write the character itself, or both halves of its pair (\\ud83d\\ude00)")
    return text


_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)


def lone_surrogate(text: str) -> int | None:
    """The offset of a `\\uXXXX` escape that is half of a UTF-16 surrogate pair without its other half:
    json.loads keeps it as a lone surrogate, which no UTF-8 text (a lock, a log) can hold."""
    if not _MAYBE_SURROGATE.search(text):
        return None
    pending = None  # a high half's offset, waiting for the low half right after it
    for match in _ESCAPE.finditer(text):  # every escape in order: an escaped backslash is one of them
        body = match.group(1)
        code = int(body[1:], 16) if len(body) == 5 else None
        if pending is not None:
            if code is not None and 0xDC00 <= code <= 0xDFFF and match.start() == pending + 6:
                pending = None
                continue
            return pending
        if code is not None and 0xD800 <= code <= 0xDBFF:
            pending = match.start()
        elif code is not None and 0xDC00 <= code <= 0xDFFF:
            return match.start()
    return pending


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
    """1-based (line, column) of a character offset: for one position in a text (it reads from the
    start); for many, make a `Lines` once."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


class Lines:
    """1-based (line, column) of many offsets of one text: after the first few (counted as `line_of`
    does, cheaper for a file with one error), the line starts are listed once and each position is a
    bisection, not a count from the start of the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: array[int] | None = None
        self._counted = 0

    def __call__(self, offset: int) -> tuple[int, int]:
        if self._starts is None:
            if self._counted < 8:
                self._counted += 1
                return line_of(self.text, offset)
            self._starts = array("q", [0])
            self._starts.extend(match.end() for match in re.finditer("\n", self.text))
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


class KeyPositions:
    """Where the keys of the objects of a parsed JSON document are in its text, for messages.

    `position(("tools", name, "cmd"))` is the line and column of the key `cmd` in the object under
    `name` under `tools`. An object looked into is walked member by member with the C decoder, only
    as far as the key looked for, and what was walked is kept: a message per entry of a file of many
    entries costs one pass over the file, not a scan from its start per entry. Keys are matched by
    their decoded text, so a key that also appears in a string value cannot mislead it. A repeated
    key is found where it first appears (json keeps its last value, at that place).
    """

    def __init__(self, text: str, document: Any) -> None:
        self.text, self.document = text, document
        self.lines = Lines(text)
        self._big: dict[int, _Walk] = {}  # object start -> its walk, for objects of many members
        self._recent: OrderedDict[int, _Walk] = OrderedDict()  # small objects: only the last few kept
        self._parent: tuple[list[str], tuple[int | None, int, Any]] = ([], (None, 0, None))  # the last parent

    def offset(self, keys: Sequence[str | None]) -> int | None:
        """The offset of the last of `keys` (None ones skipped); of the last one found if a key is
        missing or its parent is not an object; None if not even the first is found."""
        path = [key for key in keys if key is not None]
        # Messages about one entry come together: start from its parent when the last lookup had it too.
        parent = path[:-1]
        known_parent, known = self._parent
        if parent and parent == known_parent:
            (found, start, value), todo = known, path[-1:]
        else:
            found, start, value, todo = None, _skip_whitespace(self.text, 0), self.document, path
        try:
            for depth, key in enumerate(todo):
                if value.__class__ is not dict or self.text[start:start + 1] != "{":
                    break
                at = self._find(self._walk(start, value), key)
                if at is None:
                    break
                found, value = at, value[key]
                start = self._value_start(at)
                if todo is path and depth == len(path) - 2:
                    self._parent = (parent, (found, start, value))
        except (ValueError, IndexError, StopIteration):  # only if `text` is not the text of `document`
            pass
        return found

    def position(self, keys: Sequence[str | None]) -> tuple[int, int]:
        """1-based (line, column) of `offset(keys)`; (1, 1) if none is found."""
        found = self.offset(keys)
        return (1, 1) if found is None else self.lines(found)

    def _value_start(self, key_offset: int) -> int:
        match = _PLAIN_KEY.match(self.text, key_offset)
        if match is not None:
            return match.end()
        _, end = _scan_string(self.text, key_offset + 1)
        return _skip_whitespace(self.text, _skip_whitespace(self.text, end) + 1)  # past the colon

    def _walk(self, start: int, value: dict[str, Any]) -> _Walk:
        walk = self._big.get(start) or self._recent.get(start)
        if walk is None:
            walk = _Walk(_skip_whitespace(self.text, start + 1), value)
            if len(value) > _WALK_OVER:
                self._big[start] = walk
            else:  # the small objects of one entry are looked into together: keep only the last few
                self._recent[start] = walk
                if len(self._recent) > 32:
                    self._recent.popitem(last=False)
        return walk

    def _find(self, walk: _Walk, key: str | None) -> int | None:
        """The offset of `key` in the walked object, walking on as far as it (to the end for None)."""
        members = walk.members
        found = members.get(key) if key is not None else None
        if found is not None or walk.end >= 0:
            return found
        text, pos, value = self.text, walk.pos, walk.value
        plain, scan = _PLAIN_KEY.match, _scan_string
        name = walk.pending
        while True:
            if name is not None:  # the value of the last key read: skipped only now, as it may be big
                pos = _skip_whitespace(text, self._skip(pos, value.get(name)))
                if text[pos] == ",":
                    pos = _skip_whitespace(text, pos + 1)
            if text[pos] == "}":
                break
            match = plain(text, pos)
            if match is not None:
                name, at = match.group(1), match.end()
            else:
                name, after = scan(text, pos + 1)
                at = _skip_whitespace(text, _skip_whitespace(text, after) + 1)  # past the colon
            members.setdefault(name, pos)
            if name == key:  # its first appearance: an earlier one would have been found above
                walk.pos, walk.pending = at, name
                return members[name]
            pos = at
        walk.pos, walk.end, walk.pending = pos, pos + 1, None
        return None

    def _skip(self, pos: int, value: Any) -> int:
        """The end of the value at `pos`; `value` is what it decoded to (None: not known)."""
        if value.__class__ is dict and len(value) > _WALK_OVER and self.text[pos] == "{":
            walk = self._walk(pos, value)
            self._find(walk, None)
            return walk.end
        if value.__class__ is list and len(value) > _WALK_OVER and self.text[pos] == "[":
            text, items = self.text, iter(value)
            pos = _skip_whitespace(text, pos + 1)
            while text[pos] != "]":
                pos = _skip_whitespace(text, self._skip(pos, next(items, None)))
                if text[pos] == ",":
                    pos = _skip_whitespace(text, pos + 1)
            return pos + 1
        return _scan_value(self.text, pos)[1]


class _Walk:
    """How far an object has been walked: its keys so far (-> offset), where to go on, its end (-1: not
    reached)."""

    __slots__ = ("end", "members", "pending", "pos", "value")

    def __init__(self, pos: int, value: dict[str, Any]) -> None:
        self.members: dict[str, int] = {}
        self.pos, self.end, self.value = pos, -1, value
        self.pending: str | None = None  # the key whose value starts at `pos` (not yet skipped)


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
