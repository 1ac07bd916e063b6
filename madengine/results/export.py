"""Exports written after an apply, the way ROCm madengine users find them: perf.csv, build_manifest.json."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from madengine.results.manifest import build_manifest, write_build_manifest
from madengine.results.perfcsv import PERF_CSV_COLUMNS, perf_rows, write_perf_csv
from madengine.state.store import StateStore


def append_perf_csv(path: Path, store: StateStore, apply_id: int) -> int:
    """Add this apply's rows to perf.csv (ROCm madengine appends); return how many were added."""
    history = store.attempts()
    rows = perf_rows([a for a in history if a.apply_id == apply_id], store.images(), history)
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
