"""The history file of `madengine results export --format json` and `results import` (pure: text <-> records).

One JSON document, sorted keys, one record per line group, stable bytes for the same store content:

    {"format": "madengine-history", "version": 1,
     "applies":  [{"id", "lock_hash", "serial", "started_at", "ended_at", "outcome", "host", "pid"}, ...],
     "images":   [{"id", "apply_id", "address", "target", "host", "node_hash", "tag", "image_id", "digest",
                   "inputs", "built_at", "status"}, ...],
     "attempts": [{"id", "apply_id", "address", "node_hash", "model", "status", "started_at", "ended_at",
                   "host", "exit_code", "log_path", "image_digest", "inputs", "handle", "message", "gate",
                   "facts", "perf": [{"model", "performance", "metric", "status"}, ...]}, ...]}

oldest first in each list. Ids are the exporting store's: `apply_id` refers to an apply of the file. An
import keeps them into a store with no record yet, and gives new ones (references followed) otherwise: a
round trip through an empty store gives the same bytes; a merge, the same records under other ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from madengine.errors import ConfigError
from madengine.state.model import Attempt, ImageRecord, Status

FORMAT = "madengine-history"
# export --format csv: the attempt a perf row belongs to, then perf.csv's columns (results/perfcsv.py)
ATTEMPT_COLUMNS = ("apply_id", "attempt_id", "address", "node_hash", "started_at", "ended_at", "host",
                   "exit_code", "attempt_status")
VERSION = 1
_STATUSES = frozenset(s.value for s in Status)

_INT, _STR, _OBJ, _NUM = (int,), (str,), (dict,), (int, float)
_APPLY: dict[str, tuple[tuple[type, ...], bool]] = {  # field -> (types, may be null)
    "id": (_INT, False), "lock_hash": (_STR, False), "serial": (_INT, False), "started_at": (_STR, False),
    "ended_at": (_STR, True), "outcome": (_STR, True), "host": (_STR, False), "pid": (_INT, False)}
_IMAGE = {
    "id": (_INT, False), "apply_id": (_INT, True), "address": (_STR, False), "target": (_STR, False),
    "host": (_STR, False), "node_hash": (_STR, False), "tag": (_STR, False), "image_id": (_STR, True),
    "digest": (_STR, True), "inputs": (_OBJ, False), "built_at": (_STR, False), "status": (_STR, False)}
_ATTEMPT = {
    "id": (_INT, False), "apply_id": (_INT, False), "address": (_STR, False), "node_hash": (_STR, False),
    "model": (_STR, True), "status": (_STR, False), "started_at": (_STR, False), "ended_at": (_STR, True),
    "host": (_STR, True), "exit_code": (_INT, True), "log_path": (_STR, True), "image_digest": (_STR, True),
    "inputs": (_OBJ, False), "handle": (_STR, True), "message": (_STR, False), "gate": (_OBJ, True),
    "facts": (_OBJ, True), "perf": ((list,), False)}
_PERF = {"model": (_STR, False), "performance": (_NUM, True), "metric": (_STR, False), "status": (_STR, False)}


def render(records: Mapping[str, Any]) -> str:
    """The file's text for `StateStore.dump()`'s records."""
    doc = {"format": FORMAT, "version": VERSION, **{k: records[k] for k in ("applies", "images", "attempts")}}
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def parse(text: str, where: str) -> dict[str, list[dict[str, Any]]]:
    """The records of a history file, checked: every problem found is a config error naming the file (and
    the line of a JSON syntax error, the record and field of a wrong value)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON: {exc.msg}", file=where, line=exc.lineno, column=exc.colno,
                          hint="`madengine results import` reads what `results export --format json` writes"
                          ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError("not a madengine history file (no \"format\": \"madengine-history\")", file=where,
                          hint="`madengine results import` reads what `results export --format json` writes")
    if doc.get("version") != VERSION:
        raise ConfigError(f"history file version {doc.get('version')!r}; this madengine reads version {VERSION}",
                          file=where, hint="export it again with this madengine, or upgrade madengine")
    problems: list[str] = []
    out: dict[str, list[dict[str, Any]]] = {}
    for section, spec in (("applies", _APPLY), ("images", _IMAGE), ("attempts", _ATTEMPT)):
        items = doc.get(section, [])
        if not isinstance(items, list):
            problems.append(f"{section} is not a list")
            continue
        for i, item in enumerate(items):
            problems += _check(item, spec, f"{section}[{i}]")
            if isinstance(item, dict) and section == "attempts" and isinstance(item.get("perf"), list):
                for j, row in enumerate(item["perf"]):
                    problems += _check(row, _PERF, f"{section}[{i}].perf[{j}]")
        out[section] = items
    if not problems:
        problems += _references(out)
    if problems:
        raise ConfigError.many([ConfigError(p, file=where).diagnostics[0] for p in problems[:20]])
    return out


def _check(item: Any, spec: Mapping[str, tuple[tuple[type, ...], bool]], at: str) -> list[str]:
    if not isinstance(item, dict):
        return [f"{at} is not an object"]
    problems = []
    for key, (types, nullable) in spec.items():
        if key not in item:
            problems.append(f"{at} has no {key!r}")
            continue
        value = item[key]
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            problems.append(f"{at}.{key} is {json.dumps(value)[:40]}, not {'/'.join(t.__name__ for t in types)}")
    unknown = sorted(set(item) - set(spec))
    if unknown:
        problems.append(f"{at} has an unknown field {unknown[0]!r}")
    status = item.get("status")
    if isinstance(status, str) and status not in _STATUSES:
        problems.append(f"{at}.status {status!r} is not one of {', '.join(sorted(_STATUSES))}")
    return problems


def _references(records: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    problems = []
    applies = [a["id"] for a in records.get("applies", [])]
    if len(set(applies)) != len(applies):
        problems.append("applies: an id appears twice")
    known = set(applies)
    for section in ("images", "attempts"):
        items = records.get(section, [])
        ids = [x["id"] for x in items]
        if len(set(ids)) != len(ids):
            problems.append(f"{section}: an id appears twice")
        for i, item in enumerate(items):
            if item["apply_id"] is not None and item["apply_id"] not in known:
                problems.append(f"{section}[{i}].apply_id {item['apply_id']} is no apply of the file")
    return problems


def csv_text(attempts: list[Attempt], images: Mapping[tuple[str, str], ImageRecord]) -> str:
    """One row per perf row of every finished job attempt (one row for an attempt without any), oldest
    first: the attempt's columns, then perf.csv's."""
    import csv
    import io

    from madengine.results.perfcsv import PERF_CSV_COLUMNS, is_job, perf_rows

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
