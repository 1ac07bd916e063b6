"""Canonical hashing and .dockerignore semantics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from madengine.lock.hashing import DockerIgnore, FileHasher, canonical_json, hash_value


def test_canonical_json_is_independent_of_key_order() -> None:
    left = canonical_json({"b": 1, "a": [1, {"y": 2, "x": 1}]})
    assert left == canonical_json({"a": [1, {"x": 1, "y": 2}], "b": 1})
    assert canonical_json({"é": "ü"}) == '{"é":"ü"}'.encode()


def test_hash_value_changes_with_content() -> None:
    assert hash_value({"a": 1}) != hash_value({"a": 2})
    assert hash_value({"a": 1}).startswith("sha256:")


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "sub/a.log", False),  # docker: `*` does not cross directories
        (["**/*.log"], "sub/deep/a.log", True),
        (["**/*.log"], "a.log", True),
        (["build"], "build/x/y.o", True),  # a pattern matching a parent excludes the children
        (["/build"], "build/y.o", True),
        (["data/*", "!data/keep.txt"], "data/keep.txt", False),
        (["data/*", "!data/keep.txt"], "data/drop.txt", True),
        (["!x", "*"], "x", True),  # the last match wins
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["[ab].txt"], "b.txt", True),
        (["[!ab].txt"], "c.txt", True),
        (["./tmp/"], "tmp/f", True),
    ],
)
def test_dockerignore_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).excluded(path) is excluded


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_tree_hash_ignores_mtime_and_mode_but_not_content(tmp_path: Path) -> None:
    _tree(tmp_path, {"ctx/a.txt": "a", "ctx/sub/b.txt": "b"})
    before = FileHasher(tmp_path).tree("ctx")
    os.utime(tmp_path / "ctx/a.txt", (1, 1))
    os.chmod(tmp_path / "ctx/sub/b.txt", 0o755)
    assert FileHasher(tmp_path).tree("ctx") == before
    (tmp_path / "ctx/sub/b.txt").write_text("B")
    assert FileHasher(tmp_path).tree("ctx") != before


def test_tree_hash_honours_dockerignore(tmp_path: Path) -> None:
    _tree(tmp_path, {"ctx/a.txt": "a", "ctx/.dockerignore": "*.log\ncache\n"})
    before = FileHasher(tmp_path).tree("ctx")
    _tree(tmp_path, {"ctx/debug.log": "noise", "ctx/cache/x": "noise"})
    assert FileHasher(tmp_path).tree("ctx") == before
    _tree(tmp_path, {"ctx/new.txt": "signal"})
    assert FileHasher(tmp_path).tree("ctx") != before


def test_tree_hash_sees_renames(tmp_path: Path) -> None:
    _tree(tmp_path, {"ctx/a.txt": "x"})
    before = FileHasher(tmp_path).tree("ctx")
    (tmp_path / "ctx/a.txt").rename(tmp_path / "ctx/b.txt")
    assert FileHasher(tmp_path).tree("ctx") != before


def test_missing_file_and_tree_hash_to_none(tmp_path: Path) -> None:
    hasher = FileHasher(tmp_path)
    assert hasher.file("nope") is None
    assert hasher.tree("nope") is None
