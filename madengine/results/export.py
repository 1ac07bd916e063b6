"""Exports written after an apply, the way ROCm madengine users find them: perf.csv, build_manifest.json."""

from __future__ import annotations

import csv
from operator import attrgetter
from pathlib import Path
from typing import Any

from madengine.results.manifest import build_manifest, write_build_manifest
from madengine.results.perfcsv import PERF_CSV_COLUMNS, perf_rows, write_perf_csv
from madengine.results.table import select
from madengine.state.store import StateStore


def append_perf_csv(path: Path, store: StateStore, apply_id: int) -> int:
    """Add this apply's rows to perf.csv (ROCm madengine appends); return how many were added.

    One job, one result: of a job that apply retried (transient failures), only its last attempt."""
    history = store.attempts()
    final = sorted(select(history, apply_id=apply_id), key=attrgetter("chronology"))
    rows = perf_rows(final, store.images(), history)
    existing: list[dict[str, str]] = []
    if path.exists():
        with path.open(encoding="utf-8", newline="") as f:
            existing = [{c: r.get(c) or "" for c in PERF_CSV_COLUMNS} for r in csv.DictReader(f)]
    write_perf_csv(path, [*existing, *rows])
    return len(rows)


def export_build_manifest(path: Path, store: StateStore, jobs: dict[str, Any], registry: str | None) -> dict[str, Any]:
    """build_manifest.json for the images of `jobs` (lock entries), as ROCm madengine's build writes it."""
    manifest = build_manifest(store.images(), store.attempts(), registry, jobs=jobs)
    write_build_manifest(path, manifest)
    return manifest
