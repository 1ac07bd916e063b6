"""Fixtures of the state tests: a real state store, SQLite in a temporary directory or PostgreSQL in a schema
of its own on the server of dev/services. Every test that takes `db` (or `store`) runs on both, unless it is
marked `sqlite_only` (SQLite's own behaviour: files, WAL, pages)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from madengine.state.location import StateLocation
from madengine.state.store import StateStore
from tests.infra.postgres import pg_schema, pg_server  # noqa: F401 (fixtures)

DIALECTS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dialect" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("dialect", ("sqlite",) if only else DIALECTS)


@pytest.fixture
def db(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> StateLocation:
    if dialect == "sqlite":
        return tmp_path / ".madengine" / "state.db"
    location: StateLocation = request.getfixturevalue("pg_schema")
    return location


@pytest.fixture
def store(db: StateLocation) -> Iterator[StateStore]:
    with StateStore.open(db) as s:
        yield s
