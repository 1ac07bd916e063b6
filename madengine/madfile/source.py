"""Source positions of a loaded YAML document, and diagnostics pinned to them.

Positions are collected once while the ruamel round-trip tree is turned into plain dicts and lists,
so nothing downstream needs ruamel's types: a key path such as `("targets", "lab", "hosts", 0)` maps
to the 1-based (line, column) of the key and of its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from madengine.errors import Diagnostic

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]  # 1-based (line, column)

ROOT_POS: Pos = (1, 1)

_PLAIN_KEY = re.compile(r"[^\s.\[\]\"]+")


# Python refuses to turn more digits than this into an int (sys.get_int_max_str_digits, 4300 by default).
_HUGE_NUMBER = re.compile(r"[0-9]{4000,}")


def huge_number_diagnostic(text: str, file: str) -> Diagnostic | None:
    """The error for a YAML or JSON document with a number too long to be read (Python raises a
    ValueError while parsing it): pinned to the first such number."""
    found = _HUGE_NUMBER.search(text)
    if found is None:
        return None
    offset = found.start()
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Diagnostic(file=file, line=line, column=column,
                      message=f"a number of {found.end() - found.start()} digits is too large "
                              "(numbers must fit in 64 bits)", hint="give a smaller number")


def format_key_path(key_path: KeyPath) -> str:
    """`("targets", "lab", "hosts", 0, "gpus")` -> `targets.lab.hosts[0].gpus`."""
    text = ""
    for part in key_path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(str(part)):
            text += f".{part}" if text else str(part)
        else:
            # A key with dots, brackets or spaces would make the path ambiguous: quote it.
            escaped = str(part).replace('"', '\\"')
            text += f'["{escaped}"]'
    return text


@dataclass(frozen=True)
class SourceMap:
    """Where each key and value of one document sits in its file."""

    display_path: str
    # key path -> (position of the key, position of its value); for a list item both are the item's.
    positions: Mapping[KeyPath, tuple[Pos, Pos]] = field(default_factory=dict, repr=False)

    def _nearest(self, key_path: KeyPath) -> tuple[KeyPath, tuple[Pos, Pos]]:
        path = tuple(key_path)
        while path:
            found = self.positions.get(path)
            if found is not None:
                return path, found
            path = path[:-1]
        return (), self.positions.get((), (ROOT_POS, ROOT_POS))

    def locate(self, key_path: KeyPath) -> Pos | None:
        """The (line, column) of that key or list item, else of its nearest existing parent."""
        return self._nearest(key_path)[1][0]

    def locate_value(self, key_path: KeyPath) -> Pos | None:
        """The (line, column) of the value under that key; for a missing key, of its nearest parent key."""
        path, (key_pos, value_pos) = self._nearest(key_path)
        # Falling back to a parent must point at the parent's key, not into its (block) value.
        return value_pos if path == tuple(key_path) else key_pos

    def locate_auto(self, key_path: KeyPath) -> Pos | None:
        """The value when it starts on its key's line (a scalar or a flow `[...]`/`{...}`), else the key."""
        key_pos, value_pos = self.locate(key_path), self.locate_value(key_path)
        return value_pos if key_pos and value_pos and key_pos[0] == value_pos[0] else key_pos

    def diagnostic(self, key_path: KeyPath, message: str, hint: str = "",
                   *, at: Literal["key", "value", "auto"] = "key") -> Diagnostic:
        if at == "auto":
            pos = self.locate_auto(key_path)
        else:
            pos = self.locate_value(key_path) if at == "value" else self.locate(key_path)
        line, column = pos if pos is not None else (None, None)
        return Diagnostic(file=self.display_path, line=line, column=column, message=message,
                          key_path=format_key_path(key_path), hint=hint)

    def file_diagnostic(self, message: str, hint: str = "", pos: Pos | None = ROOT_POS) -> Diagnostic:
        """A problem with the file as a whole (no key path)."""
        line, column = pos if pos is not None else (None, None)
        return Diagnostic(file=self.display_path, line=line, column=column, message=message, hint=hint)
