"""The workspace id names a workspace's containers and remote directories: stable for one state store on one
machine, distinct for the same checkout path on another machine (two CI runners on one shared host)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from madengine.backends.base import workspace_id


def test_stable_for_one_store_on_one_machine(tmp_path: Path) -> None:
    db = tmp_path / ".madengine" / "state.db"
    assert workspace_id(db) == workspace_id(db) and len(workspace_id(db)) == 12
    assert workspace_id(db) != workspace_id(tmp_path / "other" / "state.db")


def test_another_machine_with_the_same_path_gets_another_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / ".madengine" / "state.db"
    here = workspace_id(db)
    monkeypatch.setattr(socket, "gethostname", lambda: "ci-runner-2")
    assert workspace_id(db) != here
