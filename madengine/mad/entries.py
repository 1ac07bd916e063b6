"""Turn raw models.json entries (and `CustomModel.to_dict()` results) into `MadModel`s.

MAD files are lenient: numbers arrive as strings (`"n_gpus": "-1"`), lists as comma strings, and
keys come and go between MAD versions. Values are coerced where the intent is unambiguous; anything
else is an error pinned to the file and line of the offending key. Unknown keys are kept in
`MadModel.extra` and reported once per key and file as a warning.

This runs once per model of packages with thousands of models, so it avoids pydantic, regexes and
file-system calls on the common path.
"""

from __future__ import annotations

import json
import operator
import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from madengine.errors import Diagnostic
from madengine.mad.fastbuild import adopter, static_defaults
from madengine.mad.jsonlist import Lines, json_type_name
from madengine.mad.model import ENV_NAME, INT64_MAX, KNOWN_KEYS, MAX_NODES, MadModel, Origin


class _Invalid(ValueError):
    """A value of the wrong type; `expected` completes "must be ..."."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _string(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Invalid("a string")


def _integer(value: Any, expected: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)  # int() ignores surrounding whitespace
        except ValueError:
            # thousands of digits, which int() refuses to convert: a number, but not one that fits
            digits = value.strip().removeprefix("-")
            raise _Invalid("a number that fits in 64 bits" if digits.isdecimal() else expected) from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Invalid(expected)


def _n_gpus(value: Any) -> int:
    if value is None:
        return 1
    return _integer(value, 'an integer number of GPUs, such as "8" or "-1" for all')


def _nnodes(value: Any) -> int:
    if value is None:
        return 1
    return _integer(value, 'an integer number of nodes, such as "2"')


def _timeout(value: Any) -> int:
    if value is None:
        return -1
    return _integer(value, "an integer number of seconds (-1 for the default)")


def _string_list(value: Any, expected: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(filter(None, map(str.strip, value.split(","))))  # "a, b," -> ("a", "b")
    if isinstance(value, (list, tuple)):
        try:
            "".join(value)  # a C-speed check that every item is a string
        except TypeError:
            raise _Invalid(expected) from None
        return tuple(value)
    raise _Invalid(expected)


def _tags(value: Any) -> tuple[str, ...]:
    return _string_list(value, "a list of strings")


def _skip_gpu_arch(value: Any) -> tuple[str, ...]:
    return _string_list(value, 'a comma-separated string of GPU architectures, such as "gfx90a,gfx942"')


def _env_vars(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        try:
            return {str(k): _string(v) for k, v in value.items()}
        except _Invalid:
            pass
    raise _Invalid("an object of string values")


# How each known key's raw value becomes a MadModel field (`name` is read before the others).
_COERCE: dict[str, Callable[[Any], Any]] = {
    **{key: _string for key in KNOWN_KEYS if key != "name"},
    "n_gpus": _n_gpus, "timeout": _timeout, "tags": _tags, "skip_gpu_arch": _skip_gpu_arch,
    "env_vars": _env_vars, "nnodes": _nnodes,
}
_KNOWN = frozenset(KNOWN_KEYS)
_STRING_KEYS = tuple(key for key, coerce in _COERCE.items() if coerce is _string)
_string_values = operator.itemgetter(*_STRING_KEYS)
# Values a key takes when an entry omits it: the field defaults, with "" for the required paths.
# `env_vars` and `extra` are fresh dicts per model, set below.
_TEMPLATE: dict[str, Any] = {"dockerfile": "", "scripts": "", **static_defaults(MadModel), "env_vars": None}
_PATH_KEYS = ("scripts", "dockerfile", "dockercontext")
_adopt_model = adopter(MadModel)
_adopt_origin = adopter(Origin)


class EntryReader:
    """Reads the entries of one file into models, collecting errors and unknown-key warnings.

    `directory` is the `<dir>` of `scripts/<dir>/` ("" for the root models.json): paths are resolved
    against it and, when `prefix_names`, names become `<dir>/<name>`. `text` is the file's JSON
    source, used only on the error path to find the line of an offending key.
    """

    def __init__(self, *, root: str, file: str, directory: str, prefix_names: bool,
                 errors: list[Diagnostic], text: str | None = None) -> None:
        self.root = root
        self.file = file
        self.directory = directory
        self.base = f"scripts/{directory}" if directory else ""
        self.prefix = f"{directory}/" if prefix_names and directory else ""
        self.errors = errors
        self.text = text
        self._lines = Lines(text) if text is not None else None  # many errors: no count from the start each
        self._resolved: dict[str, dict[str, str]] = {key: {} for key in _PATH_KEYS}  # key -> raw -> path
        self._unknown: dict[str, list[int]] = {}  # unknown key -> [count, first line]
        self._path_warnings: list[Diagnostic] = []

    def read(self, entry: Any, index: int, line: int | None = None, offset: int | None = None,
             *, where: str = "") -> MadModel | None:
        """The model of one entry, or None (with errors recorded) when it is not usable.

        `offset` is where the entry starts in `text`; `where` names the list in messages when it is
        not a JSON file (`list_models()` for a dynamic model).
        """
        if type(entry) is not dict and not isinstance(entry, Mapping):  # the ABC check is slow
            label = f"{where}[{index}]" if where else f"entry {index}"
            self._error(line, offset, None, f"{label} is a JSON {json_type_name(entry)}, not an object",
                        "each entry is an object such as {\"name\": ..., \"scripts\": ...}")
            return None
        name = entry.get("name")
        if type(name) is not str or not name or name.isspace():
            label = f"{where}[{index}]" if where else f"entry {index}"
            problem = "has no `name`" if name is None or name == "" else \
                f"has a `name` that is a {json_type_name(name)}, not a string"
            self._error(line, offset, "name" if "name" in entry else None, f"{label} {problem}",
                        "every model needs a unique string name", key_path=f"[{index}].name")
            return None
        # The raw entry is copied over the defaults in C; only what is not already right is touched.
        state = _TEMPLATE.copy()
        state.update(entry)
        extra: dict[str, Any] = {}
        if not _KNOWN.issuperset(entry):
            for key in entry:
                if key not in _KNOWN:
                    extra[key] = state.pop(key)
                    self._note_unknown(key, line)
        ok = True
        try:
            # every plain-string field is a string, and none holds a NUL byte: checked in C
            if "\0" in "".join(_string_values(state)) or "\0" in name:
                ok = self._no_nul(state, name, index, line, offset)
        except TypeError:
            ok = self._coerce(state, _STRING_KEYS, name, index, line, offset)
        # The usual shapes are converted inline; anything else goes through _coerce.
        n_gpus = state["n_gpus"]
        if type(n_gpus) is str and len(n_gpus) < 20 and (n_gpus.isdecimal() or
                                                         (n_gpus[:1] == "-" and n_gpus[1:].isdecimal())):
            state["n_gpus"] = int(n_gpus)
        elif type(n_gpus) is not int:
            ok = self._coerce(state, ("n_gpus",), name, index, line, offset) and ok
        if type(state["timeout"]) is not int:
            ok = self._coerce(state, ("timeout",), name, index, line, offset) and ok
        if type(state["nnodes"]) is not int:
            ok = self._coerce(state, ("nnodes",), name, index, line, offset) and ok
        tags = state["tags"]
        if type(tags) is not tuple:
            try:
                if type(tags) is not list:
                    raise TypeError
                "".join(tags)  # every tag is a string: checked in C
                state["tags"] = tuple(tags)
            except TypeError:
                ok = self._coerce(state, ("tags",), name, index, line, offset) and ok
        skip_gpu_arch = state["skip_gpu_arch"]
        if type(skip_gpu_arch) is str:
            state["skip_gpu_arch"] = tuple(filter(None, map(str.strip, skip_gpu_arch.split(","))))
        elif type(skip_gpu_arch) is not tuple:
            ok = self._coerce(state, ("skip_gpu_arch",), name, index, line, offset) and ok
        env_vars = state["env_vars"]
        if env_vars is None:
            state["env_vars"] = {}
        else:
            ok = self._coerce(state, ("env_vars",), name, index, line, offset) and ok
        if not ok:
            return None
        # What validates must run: values a job could not be started with are errors here.
        usual = -1 <= state["n_gpus"] <= INT64_MAX and -1 <= state["timeout"] <= INT64_MAX \
            and 1 <= state["nnodes"] <= MAX_NODES
        if not (usual and not state["env_vars"]) and not self._in_range(state, name, index, line, offset):
            return None
        resolved = self._resolved
        for key in _PATH_KEYS:  # most models share a few paths: resolve each once
            path = state[key]
            if path or (key == "scripts" and self.base):
                state[key] = resolved[key].get(path) or self._resolve(key, path, line, name)
        state["name"] = self.prefix + name
        state["extra"] = extra
        state["directory"] = self.directory
        state["origin"] = _adopt_origin({"file": self.file, "index": index, "line": line})
        return _adopt_model(state)

    def _coerce(self, state: dict[str, Any], keys: tuple[str, ...], name: str, index: int,
                line: int | None, offset: int | None) -> bool:
        """Coerce `keys` of `state` in place; False (with an error recorded) if one cannot be."""
        ok = True
        for key in keys:
            value = state[key]
            try:
                state[key] = _COERCE[key](value)
            except _Invalid as exc:
                ok = False
                self._error(line, offset, key,
                            f"model {name!r}: `{key}` must be {exc.expected}, not {json_type_name(value)} "
                            f"{_short_repr(value)}", key_path=f"[{index}].{key}")
        return ok

    def _no_nul(self, state: dict[str, Any], name: str, index: int, line: int | None,
                offset: int | None) -> bool:
        """Report each string of the entry that holds a NUL byte (no argv, path or name can): False."""
        for key in ("name", *_STRING_KEYS):
            value = name if key == "name" else state[key]
            if isinstance(value, str) and "\0" in value:
                self._error(line, offset, key, f"model {name!r}: `{key}` contains a NUL byte",
                            "remove the NUL (\\u0000) character", key_path=f"[{index}].{key}")
        return False

    def _in_range(self, state: dict[str, Any], name: str, index: int, line: int | None,
                  offset: int | None) -> bool:
        """n_gpus and timeout within -1..2^63-1, environment names and values a process can take."""
        problems: list[tuple[str, str, str]] = []
        for key, what in (("n_gpus", "the number of GPUs, or -1 for all of the host's"),
                          ("timeout", "seconds, 0 for none, or -1 for the default")):
            value = state[key]
            if value < -1:
                problems.append((key, f"`{key}` must be -1 or at least 0, not {value}", f"give {what}"))
            elif value > INT64_MAX:
                problems.append((key, f"`{key}` is too large ({value.bit_length()} bits; numbers must fit "
                                      "in 64 bits)", f"give {what}"))
        if not 1 <= state["nnodes"] <= MAX_NODES:
            problems.append(("nnodes", f"`nnodes` must be 1 to {MAX_NODES}, not {state['nnodes']}",
                             "give the number of nodes one run spans (1: a single node)"))
        for env_name, env_value in state["env_vars"].items():
            if not ENV_NAME.match(env_name):
                problems.append(("env_vars", f"`env_vars` has an invalid variable name {env_name!r}",
                                 "use letters, digits and `_`, not starting with a digit"))
            elif "\0" in env_value:
                problems.append(("env_vars", f"`env_vars.{env_name}` contains a NUL byte",
                                 "remove the NUL (\\u0000) character"))
        for key, message, hint in problems:
            self._error(line, offset, key, f"model {name!r}: {message}", hint, key_path=f"[{index}].{key}")
        return not problems

    def warnings(self) -> list[Diagnostic]:
        """One warning per unknown key of this file: MAD evolves, so they are kept, not rejected."""
        return self._path_warnings + [
            Diagnostic(self.file, first_line or None, None,
                       f"unknown key `{key}` in {count} entr{'y' if count == 1 else 'ies'}; kept as extra",
                       key_path=key, hint=f"madengine understands: {', '.join(KNOWN_KEYS)}",
                       severity="warning")
            for key, (count, first_line) in self._unknown.items()
        ]

    def _note_unknown(self, key: str, line: int | None) -> None:
        seen = self._unknown.get(key)
        if seen is None:
            self._unknown[key] = [1, line or 0]
        else:
            seen[0] += 1

    def _resolve(self, key: str, path: str, line: int | None, name: str) -> str:
        """A path of the entry as a normalized POSIX path relative to the package root (cached)."""
        if not self.base or posixpath.isabs(path):
            resolved = posixpath.normpath(path)
        else:
            resolved = posixpath.normpath(f"{self.base}/{path}")
            if key == "dockercontext":
                resolved = self._dockercontext_fallback(path, resolved)
        if resolved == ".." or resolved.startswith("../"):
            self._path_warnings.append(Diagnostic(
                self.file, line, None, f"model {name!r}: `{key}` {path!r} leads outside the package "
                f"(to {resolved!r})", hint="keep Dockerfiles and scripts inside the MAD package",
                severity="warning"))
        self._resolved[key][path] = resolved
        return resolved

    def _dockercontext_fallback(self, raw: str, relative_to_dir: str) -> str:
        """ROCm madengine passes `dockercontext` to `docker build` as is (relative to the package
        root) even in scripts/<dir>/models.json; keep that reading when only it names a directory."""
        if os.path.isdir(os.path.join(self.root, relative_to_dir)):
            return relative_to_dir
        as_root_path = posixpath.normpath(raw)
        if os.path.isdir(os.path.join(self.root, as_root_path)):
            return as_root_path
        return relative_to_dir

    def _error(self, line: int | None, offset: int | None, key: str | None, message: str,
               hint: str = "", key_path: str = "") -> None:
        """Record an error at the entry's line, or at its key's line when the JSON text is known."""
        column = None
        if self.text is not None and self._lines is not None and offset is not None:
            at = offset
            if key is not None:
                end = _entry_end(self.text, offset)
                found = self.text.find(f'"{key}"', offset, end)
                if found >= 0:
                    at = found
            line, column = self._lines(at)
        self.errors.append(Diagnostic(self.file, line, column, message, key_path=key_path, hint=hint))


def _entry_end(text: str, offset: int) -> int:
    """Where the JSON value starting at `offset` ends (the error path only: it decodes it again)."""
    try:
        return json.JSONDecoder().raw_decode(text, offset)[1]
    except json.JSONDecodeError:
        return len(text)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
