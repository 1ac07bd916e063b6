"""Fixtures of the CLI tests: `state_location` runs a test once per state store (SQLite, PostgreSQL)."""

from __future__ import annotations

from tests.infra.postgres import pg_schema, pg_server, state_location  # noqa: F401 (fixtures)
