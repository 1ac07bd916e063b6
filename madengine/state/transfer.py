"""The history file of `madengine results export --format json` and `results import` (pure: text <-> records).

One JSON document, sorted keys, one record per line group, stable bytes for the same store content:

    {"format": "madengine-history", "version": 2, "project": "name" | null,
     "applies":  [{"id", "lock_hash", "serial", "started_at", "ended_at", "outcome", "host", "pid"}, ...],
     "images":   [{"id", "apply_id", "address", "target", "host", "node_hash", "tag", "image_id", "digest",
                   "inputs", "built_at", "status"}, ...],
     "attempts": [{"id", "apply_id", "address", "node_hash", "model", "status", "started_at", "ended_at",
                   "host", "exit_code", "log_path", "image_digest", "inputs", "handle", "message", "gate",
                   "facts", "perf": [{"model", "performance", "metric", "status"}, ...]}, ...]}

oldest first in each list. `project` (version 2) is the exporting madfile's `name:`, null when it has none or
the export had no madfile: an import into a named project refuses another project's history (its applies
would become that project's `latest`). Version 1 files (no `project`) are read as of an unknown project.

Ids are the exporting store's: `apply_id` refers to an apply of the file. An
import keeps them into a store with no record yet, and gives new ones (references followed) otherwise: a
round trip through an empty store gives the same bytes; a merge, the same records under other ids. A merge
never puts an apply after one it started before (it would be taken for the newer): an import of applies
older than the store's newest is refused (import into an empty store first, then apply).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from madengine.errors import ConfigError
from madengine.state.model import Status, instant

FORMAT = "madengine-history"
VERSION = 2  # 2: "project"; a version 1 file is read as of an unknown project (null)
READS = (1, 2)
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


@dataclass(frozen=True)
class History:
    """A history file, checked: its records in `StateStore.dump()`'s shape and the project they are of."""

    records: dict[str, list[dict[str, Any]]]
    project: str | None


def render(records: Mapping[str, Any], project: str | None) -> str:
    """The file's text for `StateStore.dump()`'s records of `project` (the madfile's `name:`, or None)."""
    doc = {"format": FORMAT, "version": VERSION, "project": project,
           **{k: records[k] for k in ("applies", "images", "attempts")}}
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def parse(text: str, where: str) -> History:
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
    version = doc.get("version")
    if isinstance(version, bool) or version not in READS:
        raise ConfigError(f"history file version {version!r}; this madengine reads versions "
                          f"{', '.join(map(str, READS))}",
                          file=where, hint="export it again with this madengine, or upgrade madengine")
    problems: list[str] = []
    project = doc.get("project")
    if version == 1 and "project" in doc:
        problems.append("a version 1 file has no \"project\" (version 2 has)")
    elif project is not None and (not isinstance(project, str) or not project):
        problems.append(f"project is {json.dumps(project)[:40]}, not a name or null")
    out: dict[str, list[dict[str, Any]]] = {}
    unknown = sorted(set(doc) - {"format", "version", "project", "applies", "images", "attempts"})
    if unknown:
        problems.append(f"unknown field {unknown[0]!r}")
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
            if isinstance(item, dict) and section == "applies" and isinstance(item.get("started_at"), str) \
                    and instant(item["started_at"]) is None:
                problems.append(f"{section}[{i}].started_at {json.dumps(item['started_at'])[:40]} is not an "
                                "ISO-8601 time")
        out[section] = items
    if not problems:
        problems += _references(out)
    if problems:
        raise ConfigError.many([ConfigError(p, file=where).diagnostics[0] for p in problems[:20]])
    return History(out, project if isinstance(project, str) else None)


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
