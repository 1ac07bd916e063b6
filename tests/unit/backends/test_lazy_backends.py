"""LazyBackends: a backend is made on first use, and `close()` (the end of a command) closes those made."""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.backends.base import Workspace
from madengine.backends.local import LocalBackend
from madengine.backends.registry import LazyBackends
from madengine.madfile.model import LocalTarget


def test_close_closes_the_backends_made_and_only_those(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(LocalBackend, "close", lambda self: closed.append(self.target_name))
    targets = {"a": LocalTarget(backend="local"), "b": LocalTarget(backend="local")}
    backends = LazyBackends(["a", "b"], lambda: targets, Workspace(tmp_path, tmp_path / ".madengine", "w"))
    first = backends["a"]
    backends.close()
    assert closed == ["a"]  # "b" was never made: nothing to close
    assert backends["a"] is not first  # made again after the close, as a new command would
    backends.close()
    assert closed == ["a", "a"]
