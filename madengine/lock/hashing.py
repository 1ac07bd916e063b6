"""Canonical hashing: the same inputs give the same digest on any machine, in any directory.

File digests cover bytes only (never mtimes or permissions). A build context's tree digest covers the
relative path and content digest of every file the builder would receive, honouring `.dockerignore`
with Docker's rules (patterns match the path or any parent, `**`, `!` exceptions, last match wins).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the byte form every node hash is taken over."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hash_value(value: Any) -> str:
    return digest(canonical_json(value))


@dataclass
class FileHasher:
    """Content digests of files and directory trees, memoized for one compilation.

    Missing files are not errors here: they hash to None and the caller decides what that means.
    """

    root: Path
    _files: dict[str, str | None] = field(default_factory=dict)
    _trees: dict[tuple[str, tuple[str, ...]], str | None] = field(default_factory=dict)

    def file(self, rel: str) -> str | None:
        """Digest of a project-relative file's bytes, or None if it is not a readable file."""
        if rel not in self._files:
            try:
                self._files[rel] = "sha256:" + hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                self._files[rel] = None
        return self._files[rel]

    def tree(self, rel: str, ignore: tuple[str, ...] = ()) -> str | None:
        """Digest of a project-relative directory: every kept file's path and content digest.

        `ignore` holds extra .dockerignore-style patterns; the directory's own `.dockerignore` is
        always read. Symlinks count by their target text, as the builder sends them.
        """
        key = (rel, ignore)
        if key not in self._trees:
            self._trees[key] = self._tree(rel, ignore)
        return self._trees[key]

    def _tree(self, rel: str, ignore: tuple[str, ...]) -> str | None:
        top = self.root / rel
        if not top.is_dir():
            return None
        matcher = DockerIgnore(read_dockerignore(top) + list(ignore))
        lines = []
        for path in sorted(_walk(top, matcher)):
            full = top / path
            if full.is_symlink():
                content = "link:" + os.readlink(full)
                lines.append(f"{digest(content.encode())}  {path}\n")
            else:
                file_digest = self.file(f"{rel}/{path}" if rel not in ("", ".") else path)
                lines.append(f"{file_digest}  {path}\n")
        return digest("".join(lines).encode("utf-8"))


def _walk(top: Path, matcher: DockerIgnore) -> Iterable[str]:
    """Relative POSIX paths of the files under top that the matcher keeps."""
    for dirpath, dirnames, filenames in os.walk(top):
        base = os.path.relpath(dirpath, top)
        prefix = "" if base == "." else base.replace(os.sep, "/") + "/"
        if not matcher.has_exceptions:
            # prune excluded directories early; with `!` exceptions a child may come back
            dirnames[:] = [d for d in dirnames if not matcher.excluded(prefix + d)]
        for name in filenames:
            path = prefix + name
            if not matcher.excluded(path):
                yield path
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)) and not matcher.excluded(prefix + name):
                yield prefix + name  # a symlink to a directory is sent as a link, not followed


def read_dockerignore(context_dir: Path) -> list[str]:
    try:
        text = (context_dir / ".dockerignore").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class DockerIgnore:
    """Docker's .dockerignore matching (moby/patternmatcher semantics)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in patterns:
            negate = raw.startswith("!")
            pattern = raw[1:].strip() if negate else raw
            pattern = os.path.normpath(pattern).replace(os.sep, "/").lstrip("/")
            if pattern in ("", "."):
                continue
            self._rules.append((re.compile(_pattern_regex(pattern)), negate))
        self.has_exceptions = any(negate for _, negate in self._rules)

    def excluded(self, path: str) -> bool:
        parents = _parents(path)
        result = False
        for regex, negate in self._rules:
            if regex.fullmatch(path) or (not negate and any(regex.fullmatch(p) for p in parents)):
                result = not negate
        return result


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _pattern_regex(pattern: str) -> str:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # `**/` matches zero or more directories
                    i += 1
                    out.append("(?:.*/)?")
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)
