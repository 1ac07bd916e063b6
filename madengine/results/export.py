"""Exports written after an apply, the way ROCm madengine users find them: perf.csv, build_manifest.json."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any

from madengine.results.manifest import build_manifest, write_build_manifest
from madengine.results.perfcsv import PERF_CSV_COLUMNS, is_job, perf_rows, write_perf_csv
from madengine.results.table import select
from madengine.state.model import Attempt, ImageRecord, Status
from madengine.state.store import StateStore

# `results export --format csv`: the attempt a perf row belongs to, then perf.csv's columns
ATTEMPT_COLUMNS = ("apply_id", "attempt_id", "address", "node_hash", "started_at", "ended_at", "host",
                   "exit_code", "attempt_status")


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


def csv_text(attempts: list[Attempt], images: Mapping[tuple[str, str], ImageRecord]) -> str:
    """One row per perf row of every finished job attempt (one row for an attempt without any), oldest
    first: the attempt's columns, then perf.csv's."""
    import io

    selected = [a for a in attempts if is_job(a) and a.status is not Status.RUNNING]
    rows = perf_rows(selected, images, history=attempts)  # in `selected`'s order, max(1, len(perf)) each
    owners = [a for a in selected for _ in range(max(1, len(a.perf)))]
    assert len(owners) == len(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ATTEMPT_COLUMNS + PERF_CSV_COLUMNS)
    for a, row in zip(owners, rows, strict=True):
        writer.writerow([a.apply_id, a.id, a.address, a.node_hash, a.started_at, a.ended_at or "", a.host or "",
                         "" if a.exit_code is None else a.exit_code, a.status.value,
                         *(row[c] for c in PERF_CSV_COLUMNS)])
    return buffer.getvalue()
