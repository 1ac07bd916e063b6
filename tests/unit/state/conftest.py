"""Fixtures of the state tests: a real SQLite state store in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from madengine.state.store import StateStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / ".madengine" / "state.db"


@pytest.fixture
def store(db: Path) -> Iterator[StateStore]:
    with StateStore.open(db) as s:
        yield s
