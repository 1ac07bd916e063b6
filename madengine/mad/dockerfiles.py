"""The Dockerfiles a MAD model's `dockerfile` prefix names, their `# CONTEXT` headers and base images.

ROCm madengine runs `ls <prefix>.*` and reads `# CONTEXT {...}` (a Python dict literal) from the
first 5 lines of each file; a file matches a context when every CONTEXT key that the context also
has is equal (DESIGN §3). Here only names ending in `.Dockerfile` count (so `x.Dockerfile` and
`x.ubuntu.amd.Dockerfile` do, a `x.ubuntu.amd.Dockerfile.dockerignore` does not), in sorted order.

A `DockerfileIndex` lists each directory once and parses each header once, however many models
share a prefix.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.model import Dockerfile

SUFFIX = ".Dockerfile"
CONTEXT_MARKER = "# CONTEXT"
HEADER_LINES = 5


class DockerfileIndex:
    """Finds the Dockerfiles of prefixes under one base directory, caching listings and headers."""

    def __init__(self, base_dir: Path | str) -> None:
        self.base_dir = os.fspath(base_dir)
        self._listings: dict[str, tuple[str, ...]] = {}
        self._found: dict[str, tuple[Dockerfile, ...]] = {}

    def find(self, prefix: str) -> tuple[Dockerfile, ...]:
        """Every `<prefix>.Dockerfile` and `<prefix>.*.Dockerfile`, sorted, with its CONTEXT header.

        `prefix` and the returned paths are relative to the base directory. A malformed header is
        a ConfigError naming file:line.
        """
        prefix = posixpath.normpath(prefix)
        found = self._found.get(prefix)
        if found is None:
            found = self._found[prefix] = self._find(prefix)
        return found

    def _find(self, prefix: str) -> tuple[Dockerfile, ...]:
        directory, stem = posixpath.split(prefix)
        start = stem + "."
        names = [n for n in self._listing(directory) if n.startswith(start) and n.endswith(SUFFIX)]
        files: list[Dockerfile] = []
        errors: list[Diagnostic] = []
        for name in names:
            rel_path = posixpath.join(directory, name) if directory else name
            try:
                files.append(Dockerfile(rel_path, read_context(os.path.join(self.base_dir, rel_path),
                                                               rel_path)))
            except ConfigError as exc:
                errors.extend(exc.diagnostics)
        if errors:
            raise ConfigError.many(errors)
        return tuple(files)

    def _listing(self, directory: str) -> tuple[str, ...]:
        listing = self._listings.get(directory)
        if listing is None:
            try:
                names = os.listdir(os.path.join(self.base_dir, directory))
            except (FileNotFoundError, NotADirectoryError):
                names = []
            listing = self._listings[directory] = tuple(sorted(names))
        return listing


def find_dockerfiles(base_dir: Path | str, prefix: str,
                     index: DockerfileIndex | None = None) -> tuple[Dockerfile, ...]:
    """The Dockerfiles of a `dockerfile` prefix relative to `base_dir` (see `DockerfileIndex.find`).

    Pass one `index` for many prefixes under the same base directory to list each directory once.
    """
    if index is None:
        index = DockerfileIndex(base_dir)
    elif os.path.abspath(index.base_dir) != os.path.abspath(base_dir):
        raise ValueError(f"index is for {index.base_dir!r}, not {os.fspath(base_dir)!r}")
    return index.find(prefix)


def select_dockerfiles(files: Iterable[Dockerfile],
                       context_keys: Mapping[str, Any]) -> tuple[Dockerfile, ...]:
    """The files whose CONTEXT matches: every CONTEXT key that the context also has is equal."""
    return tuple(f for f in files if f.matches(context_keys))


def read_context(path: str | Path, display: str | None = None) -> dict[str, Any]:
    """The `# CONTEXT {...}` dict from the first 5 lines of a Dockerfile ({} when there is none)."""
    display = display or os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = list(islice(f, HEADER_LINES))
    except OSError as exc:
        raise ConfigError(f"cannot read Dockerfile: {exc.strerror}", file=display) from None
    for line_number, line in enumerate(head, start=1):
        stripped = line.strip()
        if not stripped.startswith(CONTEXT_MARKER) or stripped[len(CONTEXT_MARKER):][:1] not in (" ", "\t"):
            continue  # as ROCm madengine's `grep '# CONTEXT '`: "# CONTEXTS ..." is prose
        after_marker = line.index(CONTEXT_MARKER) + len(CONTEXT_MARKER)
        literal = line[after_marker:].strip()
        column = after_marker + len(line[after_marker:]) - len(line[after_marker:].lstrip()) + 1
        try:
            context = ast.literal_eval(literal)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            raise ConfigError(f"malformed # CONTEXT header: {reason}", file=display, line=line_number,
                              column=column,
                              hint="write a Python dict literal: # CONTEXT {'gpu_vendor': 'AMD', "
                                   "'guest_os': 'UBUNTU'}") from None
        if not isinstance(context, dict):
            raise ConfigError(f"# CONTEXT header is a {type(context).__name__}, not a dict", file=display,
                              line=line_number, column=column,
                              hint="write a Python dict literal: # CONTEXT {'gpu_vendor': 'AMD'}")
        return context
    return {}


# --- base image ----------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class _Unresolved(Exception):
    """A variable without a value: the image cannot be known before the build."""


def base_image(path: str | Path, build_args: Mapping[str, str] | None = None) -> str | None:
    """The image the first stage of a Dockerfile starts from, with ARGs substituted.

    `FROM $BASE_DOCKER` takes the `ARG BASE_DOCKER=<ref>` default unless `build_args` overrides it,
    as `docker build --build-arg` would. `--platform=` and `AS name` are ignored; `scratch` is
    "scratch". None when there is no FROM or it uses a variable that has no value.
    """
    build_args = build_args or {}
    values: dict[str, str] = {}
    for instruction, arguments in _instructions(path):
        if instruction == "ARG":
            for name, default in _arg_declarations(arguments):
                if name in build_args:
                    values[name] = build_args[name]
                elif default is not None:
                    try:
                        values[name] = _substitute(default, values)
                    except _Unresolved:
                        values.pop(name, None)
        elif instruction == "FROM":
            image = next((word for word in arguments.split() if not word.startswith("--")), None)
            if image is None:
                return None
            try:
                return _substitute(image, values) or None
            except _Unresolved:
                return None
    return None


def _instructions(path: str | Path) -> Iterable[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read Dockerfile: {exc.strerror}", file=os.fspath(path)) from None
    escape = "\\"
    for line in lines[:HEADER_LINES]:  # a parser directive such as `# escape=`` ` comes first
        directive = line.strip().lower().replace(" ", "")
        if directive.startswith("#escape="):
            escape = directive[len("#escape="):][:1] or "\\"
            break
        if not directive.startswith("#"):
            break
    pending = ""
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may sit between continuation lines too
        body = line.rstrip()
        if body.endswith(escape):
            pending += body[:-1]  # as Docker does: the escape and newline go, the rest is kept
            continue
        instruction, _, arguments = (pending + line).strip().partition(" ")
        pending = ""
        yield instruction.upper(), arguments.strip()


def _arg_declarations(arguments: str) -> list[tuple[str, str | None]]:
    try:
        words = shlex.split(arguments)
    except ValueError:
        words = arguments.split()
    declarations: list[tuple[str, str | None]] = []
    for word in words:
        name, has_default, default = word.partition("=")
        declarations.append((name, default if has_default else None))
    return declarations


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("plain")
        value = values.get(name)
        op = match.group("op")
        if op == ":-":
            return value if value else match.group("word")
        if op == ":+":
            return match.group("word") if value else ""
        if value is None:
            raise _Unresolved(name)
        return value

    return _VARIABLE.sub(replace, text)
