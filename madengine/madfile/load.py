"""Load madfile.yaml with source positions and validate it, reporting every error at once.

The file is read as bytes (to report bad UTF-8 at its position), composed once to find duplicate
keys (ruamel would stop at the first), then loaded round-trip to keep line/column data, turned into
plain dicts and lists for pydantic, and validated. Every problem becomes a `Diagnostic` with
`file:line:col`; they are raised together as one `ConfigError` (exit 5).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import MappingStartEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarbool import ScalarBoolean

from madengine import limits
from madengine.errors import ConfigError, Diagnostic
from madengine.files import decode_utf8
from madengine.madfile.check import check
from madengine.madfile.diagnose import describe, validate
from madengine.madfile.locate import display_path
from madengine.madfile.model import FORMAT_VERSION, Madfile
from madengine.madfile.source import ROOT_POS, KeyPath, Pos, SourceMap, format_key_path, huge_number_diagnostic

_YAML_TAG_PREFIX = "tag:yaml.org,2002:"
_MERGE_TAG = _YAML_TAG_PREFIX + "merge"
# The tags of YAML's core schema (and `<<`, the merge key), which the plain data of a madfile is made of.
# Everything else (`!!binary`, `!!set`, `!!omap`, `!!timestamp`, `!!python/...`, local `!tags`) is refused.
_PLAIN_TAGS = frozenset(_YAML_TAG_PREFIX + name for name in
                        ("str", "int", "float", "bool", "null", "map", "seq", "merge"))
_TIMESTAMP_TAG = _YAML_TAG_PREFIX + "timestamp"
_STARTER_HINT = "start with `version: 1`, or run `madengine init` to write a starter madfile"


@dataclass(frozen=True)
class LoadedMadfile:
    """A validated madfile, with what is needed to point at any of its keys."""

    path: Path  # absolute
    display_path: str  # as the user gave it, or relative to cwd: used in messages
    root: Path  # the madfile's directory; relative paths in it are relative to this
    text: str
    madfile: Madfile
    data: Any = field(repr=False, compare=False)  # the plain parsed YAML, before pydantic
    source: SourceMap = field(repr=False, compare=False)

    def locate(self, key_path: KeyPath) -> tuple[int, int] | None:
        """1-based (line, column) of that key or list item, else of its nearest existing parent."""
        return self.source.locate(key_path)

    def diagnostic(self, key_path: KeyPath, message: str, hint: str = "",
                   *, at: Literal["key", "value", "auto"] = "key") -> Diagnostic:
        """A diagnostic pinned to that key (`at="value"`: to its value; `"auto"`: to its value when
        that starts on the key's line, else to the key)."""
        return self.source.diagnostic(key_path, message, hint, at=at)


def load_madfile(path: Path) -> LoadedMadfile:
    """Read, parse and validate against the format (pydantic); raise every error as one ConfigError."""
    return _load(path, semantic=False)


def load_and_check(path: Path, text: str | None = None) -> LoadedMadfile:
    """`load_madfile` plus the semantic checks of `check.py`; the errors of both are raised together.

    With `text`, that is the madfile's content and `path` only says where it stands (its directory
    is the root for relative paths): `madengine run --tags` compiles a madfile it never writes.
    """
    return _load(path, semantic=True, text=text)


# --- the steps ------------------------------------------------------------------------------------


def _load(path: Path, *, semantic: bool, text: str | None = None) -> LoadedMadfile:
    shown = display_path(path)
    absolute = Path(os.path.abspath(path))
    if text is None:
        text = _read_text(absolute, shown)
    data, source, problems = _parse(text, shown)

    diagnostics = list(problems)
    version_diags, fatal = _check_version(data, source)
    diagnostics += version_diags
    if fatal:
        # A madfile of another version has keys this one does not know: reporting them is noise.
        raise ConfigError.many(diagnostics)

    madfile, schema_diags = validate(data, source)
    diagnostics += schema_diags
    if semantic:
        diagnostics += check(data, source)
        if madfile is not None:  # the inventories its ssh and ansible targets name, each at its own lines
            from madengine.madfile.inventory import check_inventories

            diagnostics += check_inventories(madfile, absolute.parent, source)
    if diagnostics or madfile is None:
        raise ConfigError.many(diagnostics)
    return LoadedMadfile(path=absolute, display_path=shown, root=absolute.parent, text=text,
                         madfile=madfile, data=data, source=source)


def _read_text(path: Path, shown: str) -> str:
    if path.is_dir():
        raise ConfigError(f"{shown} is a directory, not a madfile", file=shown,
                          hint=f"name the file with -f {shown}/madfile.yaml, or run in it with -C {shown}")
    try:
        raw = limits.read_bounded(path, shown, limits.madfile_bytes(), limits.MADFILE_BYTES_ENV)
    except FileNotFoundError:
        raise ConfigError(f"no madfile: {shown} does not exist", file=shown,
                          hint="run `madengine init` to write one, or name it with -f FILE") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {shown}: {exc.strerror or exc}", file=shown) from None
    return decode_utf8(raw, shown, what="not valid UTF-8", hint="save the file as UTF-8 (madfiles are UTF-8 text)")


def _parse(text: str, shown: str) -> tuple[Any, SourceMap, list[Diagnostic]]:
    """Parse the madfile into plain data, positions, and non-fatal problems (duplicate keys, custom tags)."""
    data, source, problems = parse_yaml(text, shown)
    if data is None:
        raise ConfigError("the madfile is empty", file=shown, line=1, column=1, hint=_STARTER_HINT)
    if not isinstance(data, dict):
        raise ConfigError.many([source.file_diagnostic(
            f"the top level must be a mapping (version, models, contexts, targets, runs), "
            f"found {_kind(data)}", hint=_STARTER_HINT, pos=source.locate(()))])
    return data, source, problems


def parse_yaml(text: str, shown: str, what: str = "a madfile") -> tuple[Any, SourceMap, list[Diagnostic]]:
    """Parse one YAML document (`what` it is, for hints: an inventory is read the same way) into plain data
    (None if empty), positions, and non-fatal problems (duplicate keys, custom tags); within the budgets of
    `limits` (nesting, alias expansion), every other problem raised as a ConfigError at its position."""
    problems: list[Diagnostic] = []
    yaml = YAML(typ="rt")
    # Duplicates are found on the composed tree (all of them, with both positions), so the
    # constructor must not stop at the first one.
    yaml.allow_duplicate_keys = True
    yaml.Composer = _BoundedComposer
    yaml.Resolver = _NoDatesResolver
    try:
        # ruamel warns on stderr about legal oddities (a reused anchor): a user would see a
        # Python warning instead of a diagnostic, so they are silenced here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            node = yaml.compose(text)  # parsed once: the tree for positions, then the data built from it
            if node is not None:
                # Before anything is constructed: no tag outside plain YAML reaches a constructor,
                # and aliases cannot make the data bigger than the budget.
                _check_tree(node, shown, what)
            document = yaml.constructor.construct_document(node) if node is not None else None
    except _TooDeepError as exc:
        raise ConfigError(f"the YAML is nested more than {limits.MAX_DEPTH} levels deep", file=shown,
                          line=exc.pos[0], column=exc.pos[1],
                          hint=f"{what} needs a few levels; this limit is fixed") from None
    except RecursionError:  # a last resort: the composer's own bound should come first
        raise ConfigError(f"the YAML is nested too deeply (more than {limits.MAX_DEPTH} levels)",
                          file=shown, hint=f"{what} needs a few levels; this limit is fixed") from None
    except MarkedYAMLError as exc:
        raise ConfigError.many([_syntax_diagnostic(exc, shown)]) from None
    except ReaderError as exc:
        line, column = _offset_to_pos(text, exc.position)
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise ConfigError(f"invalid YAML: control character U+{char:04X} is not allowed", file=shown,
                          line=line, column=column,
                          hint=f"remove the control character; {what} is plain text") from None
    except YAMLError as exc:  # anything else the parser can say, without a position
        raise ConfigError(f"invalid YAML: {exc}", file=shown) from None
    except ValueError:  # a number of thousands of digits, which Python refuses to convert
        huge = huge_number_diagnostic(text, shown)
        if huge is None:
            raise
        raise ConfigError.many([huge]) from None

    source_positions: dict[KeyPath, tuple[Pos, Pos]] = {}
    root_pos = _mark_pos(node.start_mark) if node is not None else ROOT_POS
    source_positions[()] = (root_pos, root_pos)
    if node is not None:
        _find_duplicates(node, (), shown, problems, set())
    data = _plain(document, (), source_positions, problems, shown, set(), what)
    return data, SourceMap(display_path=shown, positions=source_positions), problems


def _check_version(data: dict[Any, Any], source: SourceMap) -> tuple[list[Diagnostic], bool]:
    """Check `version` first: (diagnostics, fatal). A future version stops everything else."""
    if "version" not in data:
        return [source.file_diagnostic(
            "missing `version`", hint=f"add `version: {FORMAT_VERSION}` as the first line")], False
    value = data["version"]
    if isinstance(value, int) and not isinstance(value, bool):
        if value > FORMAT_VERSION:
            return [source.diagnostic(
                ("version",), f"madfile version {value} is newer than this madengine",
                hint=f"this madengine reads madfile version {FORMAT_VERSION}; upgrade madengine",
                at="value")], True
        if value < FORMAT_VERSION:
            return [source.diagnostic(
                ("version",), f"unknown madfile version {value}",
                hint=f"write `version: {FORMAT_VERSION}`", at="value")], False
        return [], False
    return [source.diagnostic(
        ("version",), f"must be the number {FORMAT_VERSION}, found {_kind(value)}",
        hint=f"write `version: {FORMAT_VERSION}`", at="value")], False


# --- YAML helpers ---------------------------------------------------------------------------------


class _TooDeepError(Exception):
    def __init__(self, pos: Pos) -> None:
        super().__init__(pos)
        self.pos = pos


class _NoDatesResolver(VersionedResolver):
    """YAML 1.1's resolver without dates: no madfile field takes one, so `2024-01-01` (and
    `2024-13-45`, which is no date at all) is the string it reads as, like any other plain word."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)
        return self.DEFAULT_SCALAR_TAG if str(tag) == _TIMESTAMP_TAG else tag


class _BoundedComposer(Composer):
    """ruamel's composer (recursive, one Python frame per level), stopped at `limits.MAX_DEPTH`
    levels of mappings and lists, before Python's recursion limit is anywhere near."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.parser.check_event(MappingStartEvent, SequenceStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= limits.MAX_DEPTH:
            raise _TooDeepError(_mark_pos(self.parser.peek_event().start_mark))
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_SURROGATE = re.compile("[\ud800-\udfff]")  # what `\ud83d` escapes give: no character, and not UTF-8


def _check_tree(root: Node, shown: str, what: str) -> None:
    """Refuse tags that are not plain YAML (all of them, at once) and an expansion past the budget.

    The size of each node's expansion is counted once per node (aliases share nodes), so a "billion
    laughs" is measured in microseconds instead of being expanded.
    """
    sizes: dict[int, int] = {}
    bad: list[Diagnostic] = []

    def size(node: Node, path: KeyPath) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 0  # a recursive alias counts nothing more (reported while building the data)
        tag = str(node.tag)
        if tag not in _PLAIN_TAGS and not (isinstance(node, ScalarNode) and tag in ("!", "?")):
            line, column = _mark_pos(node.start_mark)
            shown_tag = "!!" + tag[len(_YAML_TAG_PREFIX):] if tag.startswith(_YAML_TAG_PREFIX) else tag
            bad.append(Diagnostic(file=shown, line=line, column=column, key_path=format_key_path(path),
                                  message=f"unsupported YAML tag `{shown_tag}`",
                                  hint=f"remove the tag: {what} holds plain YAML values (strings, "
                                       "numbers, booleans, lists and mappings)"))
        unit = _SURROGATE.search(node.value) if isinstance(node, ScalarNode) and isinstance(node.value, str) else None
        if unit is not None:
            line, column = _mark_pos(node.start_mark)
            bad.append(Diagnostic(file=shown, line=line, column=column, key_path=format_key_path(path),
                                  message=f"the escape \\u{ord(unit.group()):04x} is half of a UTF-16 surrogate pair, "
                                          "not a character",
                                  hint="write the character itself, or its code point as \\UXXXXXXXX "
                                       "(\\U0001F600, not \\ud83d\\ude00)"))
        total = 1
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                key = _node_key(key_node)
                total += size(key_node, path) + size(value_node, (*path, key) if key is not None else path)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                total += size(item, (*path, i))
        if total > limits.MAX_YAML_VALUES:
            line, column = _mark_pos(node.start_mark)
            raise ConfigError(
                f"YAML aliases expand this to more than {limits.MAX_YAML_VALUES:,} values", file=shown,
                line=line, column=column, hint="use fewer or smaller aliases (`*name`, `<<: *name`); "
                "this limit is fixed")
        sizes[id(node)] = total
        return total

    size(root, ())
    if bad:
        raise ConfigError.many(bad)


def _mark_pos(mark: Any) -> Pos:
    return (int(mark.line) + 1, int(mark.column) + 1)


def _offset_to_pos(text: str, offset: int) -> Pos:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


_SYNTAX_HINTS = (
    ("'\\t'", "indent with spaces: YAML does not allow tabs"),
    ("mapping values are not allowed", "quote a value that contains `: `, or fix the indentation"),
    ("expected a single document", "a madfile is one YAML document: remove the extra `---`"),
    ("found undefined alias", "define the anchor (`&name`) before using it (`*name`)"),
    ("could not find expected ':'", "a key needs `: ` after it; check the indentation and quotes"),
    ("found unexpected end of stream", "close the quote or bracket that is still open"),
)


def _syntax_diagnostic(exc: MarkedYAMLError, shown: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = _mark_pos(mark) if mark is not None else (None, None)
    problem = exc.problem or exc.context or "syntax error"
    message = f"invalid YAML: {problem}"
    if "expected a single document" in str(exc.context):
        message = "invalid YAML: more than one document"
    elif exc.context and exc.problem and exc.context_mark is not None:
        ctx_line, ctx_col = _mark_pos(exc.context_mark)
        message += f" ({exc.context} started at {ctx_line}:{ctx_col})"
    hint = next((h for needle, h in _SYNTAX_HINTS if needle in str(problem) + str(exc.context)),
                "check the indentation, quotes and brackets here")
    return Diagnostic(file=shown, line=line, column=column, message=message, hint=hint)


def _node_key(node: Node) -> str | None:
    return str(node.value) if isinstance(node, ScalarNode) else None


def _find_duplicates(node: Node, path: KeyPath, shown: str, out: list[Diagnostic], seen: set[int]) -> None:
    if id(node) in seen:  # aliases share nodes; visit each once
        return
    seen.add(id(node))
    if isinstance(node, MappingNode):
        first: dict[tuple[str, str], Pos] = {}
        for key_node, value_node in node.value:
            key = _node_key(key_node)
            if key is not None and str(key_node.tag) != _MERGE_TAG:
                ident = (str(key_node.tag), key)
                pos = _mark_pos(key_node.start_mark)
                if ident in first:
                    line, col = first[ident]
                    out.append(Diagnostic(
                        file=shown, line=pos[0], column=pos[1],
                        message=f"duplicate key `{key}` (first defined at {shown}:{line}:{col})",
                        key_path=format_key_path((*path, key)),
                        hint="a key may appear once per mapping: remove or merge one of them"))
                else:
                    first[ident] = pos
            _find_duplicates(value_node, path + ((key,) if key is not None else ()), shown, out, seen)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicates(item, (*path, index), shown, out, seen)


def _plain_key(key: Any) -> Any:
    """A mapping key as a plain value; non-string keys stay what they are so pydantic can name them."""
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool | ScalarBoolean):
        return bool(key)
    if isinstance(key, int | float):
        return key
    return str(key)  # a complex key (`? [a, b]`)


def _plain(value: Any, path: KeyPath, positions: dict[KeyPath, tuple[Pos, Pos]],
           problems: list[Diagnostic], shown: str, active: set[int], what: str = "a madfile") -> Any:
    """ruamel round-trip objects -> plain Python values, recording each key's and item's position."""
    if isinstance(value, CommentedMap | CommentedSeq):
        if id(value) in active:  # a recursive alias (`&a [*a]`)
            problems.append(_at(positions, path, shown, "recursive YAML alias",
                                "an anchor cannot contain an alias of itself"))
            return None
        active = active | {id(value)}
    if isinstance(value, CommentedMap):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            plain_key = _plain_key(key)
            child = (*path, plain_key)
            lc = value.lc.data.get(key)
            if lc is not None:  # merged (`<<:`) keys have no position of their own
                positions[child] = ((lc[0] + 1, lc[1] + 1), (lc[2] + 1, lc[3] + 1))
            out[plain_key] = _plain(item, child, positions, problems, shown, active, what)
        return out
    if isinstance(value, CommentedSeq):
        items: list[Any] = []
        for index, item in enumerate(value):
            child = (*path, index)
            lc = value.lc.data.get(index)
            if lc is not None:
                pos = (lc[0] + 1, lc[1] + 1)
                positions[child] = (pos, pos)
            items.append(_plain(item, child, positions, problems, shown, active, what))
        return items
    if isinstance(value, TaggedScalar):
        tag = str(value.tag.value if hasattr(value.tag, "value") else value.tag)
        if not tag.startswith(_YAML_TAG_PREFIX):
            problems.append(_at(positions, path, shown, f"unsupported YAML tag `{tag}`",
                                f"remove the tag: {what} uses plain YAML values", value_pos=True))
        return str(value.value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def _at(positions: dict[KeyPath, tuple[Pos, Pos]], path: KeyPath, shown: str, message: str,
        hint: str, *, value_pos: bool = False) -> Diagnostic:
    source = SourceMap(display_path=shown, positions=positions)
    return source.diagnostic(path, message, hint, at="value" if value_pos else "key")


def _kind(value: Any) -> str:
    return describe(value)
