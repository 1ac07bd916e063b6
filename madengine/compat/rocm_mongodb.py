"""ROCm madengine's `database upload-mongodb`: a document per perf.csv row, upserted into a collection.

Documents as ROCm's (database/mongodb.py): one per row, a field per column (names stripped of spaces),
numbers as numbers (a column whose values are all whole numbers is int, all numbers float), an empty
cell null, a cell holding a JSON object or array that value; `created_date` (UTC, `%Y-%m-%d %H:%M:%S`,
unless the CSV has that column) and `_meta_uploaded_at` (a UTC datetime) added.

What identifies a row: a perf.csv has no run id nor time, so a row is its content. Its `_id` is the
SHA-256 of its non-empty cells (column=value, as written in the file), and its occurrence number among
equal rows of the file (`<hash>-1`, `-2`...): uploading the same perf.csv again, or a perf.csv later runs
appended to, upserts the same documents (matched, not added); a measurement that happened twice with
the same values stays two documents; a column added empty by a newer madengine does not change the key.
ROCm's keyed on the whole document, upload time included (the legacy command: every upload added every
row again), or on `model` alone when it is unique in the file (today's: a second run of a model replaced
the first). `_id` is unique in every collection, so two uploads at once cannot add a row twice.
`created_date` is set on insert only: it says when the row was first uploaded.

Pure but for `upload`, which sends the operations to a collection (pymongo's, or anything with its
`bulk_write`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from madengine.compat.rocm_csv import CsvTable
from madengine.errors import ConfigError, Diagnostic, UsageError

BATCH_SIZE = 1000  # ROCm's --batch-size default
META_UPLOADED = "_meta_uploaded_at"
CREATED = "created_date"
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BSON_INT_MAX = 2**63 - 1

# ROCm's MONGO_* variables (MongoDBConfig.from_env) and their defaults.
MONGO_HOST, MONGO_PORT, MONGO_USER, MONGO_PASSWORD, MONGO_AUTH = (
    "MONGO_HOST", "MONGO_PORT", "MONGO_USER", "MONGO_PASSWORD", "MONGO_AUTH_SOURCE")


@dataclass(frozen=True)
class MongoTarget:
    """A MongoDB server: `url` as given or built from MONGO_*; credentials from the variables apart."""

    url: str
    username: str | None = None
    password: str | None = None
    auth_source: str | None = None

    def shown(self) -> str:
        from madengine.state.location import redact

        return redact(self.url)

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.username and self.password:
            options.update(username=self.username, password=self.password, authSource=self.auth_source or "admin")
        return options


def mongo_target(db_url: str | None, environ: Mapping[str, str]) -> MongoTarget:
    """--db-url mongodb://… (or mongodb+srv://), else ROCm's MONGO_HOST/PORT/USER/PASSWORD/AUTH_SOURCE
    (default localhost:27017, no user)."""
    if db_url is not None:
        scheme = db_url.split("://", 1)[0].lower() if "://" in db_url else ""
        if scheme not in ("mongodb", "mongodb+srv"):
            from madengine.state.location import redact

            raise UsageError(f"--db-url {redact(db_url)}: not a MongoDB URL",
                             hint="give mongodb://HOST:PORT; an SQL database goes to `database update-table`")
        return MongoTarget(db_url)
    host = environ.get(MONGO_HOST) or "localhost"
    port = environ.get(MONGO_PORT) or "27017"
    if not port.isdigit():
        raise UsageError(f"{MONGO_PORT}={port!r} is not a port number")
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return MongoTarget(f"mongodb://{host}:{port}", environ.get(MONGO_USER) or None,
                       environ.get(MONGO_PASSWORD) or None, environ.get(MONGO_AUTH) or None)


def check_columns(table: CsvTable) -> None:
    """Column names MongoDB would read as something else: `a.b` a nested field, `$x` an operator,
    `_id` the key this upload owns."""
    errors = [Diagnostic(table.shown, 1, None, f"column {name!r}: " + (
        "`_id` is the key madengine gives each row" if name == "_id" else
        "a MongoDB field name cannot start with $ or have a dot in it"),
        hint="rename the column") for name in table.columns
        if name == "_id" or name.startswith("$") or "." in name]
    if errors:
        raise ConfigError.many(errors)


def _column_kind(values: Sequence[str]) -> type:
    filled = [v.strip() for v in values if v.strip()]
    if filled and all(_INT.fullmatch(v) and abs(int(v)) <= _BSON_INT_MAX for v in filled):
        return int
    if filled and all(_FLOAT.fullmatch(v) for v in filled):
        return float
    return str


def _value(text: str, kind: type) -> Any:
    if not text.strip():
        return None
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if text.lstrip().startswith(("{", "[")):  # ROCm's: configs, multi_results kept as structures
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return text
    return text


def row_keys(table: CsvTable) -> list[str]:
    """Each row's `_id`: the hash of its non-empty cells, and its occurrence among equal rows of the file."""
    seen: Counter[str] = Counter()
    keys: list[str] = []
    for row in table.rows:
        cells = sorted((c, v) for c, v in zip(table.columns, row, strict=True) if v.strip())
        digest = hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()
        seen[digest] += 1
        keys.append(f"{digest}-{seen[digest]}")
    return keys


def documents(table: CsvTable, now: datetime) -> list[dict[str, Any]]:
    """One document per row, `_id` and `_meta_uploaded_at` included (created_date is the upsert's)."""
    check_columns(table)
    kinds = [_column_kind([row[i] for row in table.rows]) for i in range(len(table.columns))]
    out: list[dict[str, Any]] = []
    for key, row in zip(row_keys(table), table.rows, strict=True):
        doc: dict[str, Any] = {"_id": key}
        doc.update((c, _value(v, k)) for c, v, k in zip(table.columns, row, kinds, strict=True))
        doc[META_UPLOADED] = now
        out.append(doc)
    return out


@dataclass(frozen=True)
class Upsert:
    """One `UpdateOne(filter, update, upsert=True)`, as data: what is sent is known without pymongo installed."""

    filter: dict[str, Any]
    update: dict[str, Any]

    def operation(self) -> Any:
        from pymongo import UpdateOne

        return UpdateOne(self.filter, self.update, upsert=True)


def upserts(docs: Sequence[Mapping[str, Any]], now: datetime) -> list[Upsert]:
    """The upserts of `docs`, keyed on `_id`; created_date on insert only, unless the row has its own."""
    created = now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    out: list[Upsert] = []
    for doc in docs:
        fields = {k: v for k, v in doc.items() if k != "_id"}
        update: dict[str, Any] = {"$set": fields}
        if CREATED not in fields:
            update["$setOnInsert"] = {CREATED: created}
        out.append(Upsert({"_id": doc["_id"]}, update))
    return out


class Collection(Protocol):
    def bulk_write(self, requests: list[Any], ordered: bool = ...) -> Any: ...


@dataclass(frozen=True)
class Uploaded:
    added: int
    already: int


def upload(collection: Collection, operations: Sequence[Upsert], batch_size: int = BATCH_SIZE) -> Uploaded:
    """Send the upserts in batches (unordered, as ROCm's); count the documents added and already there."""
    added = matched = 0
    for start in range(0, len(operations), batch_size):
        result = collection.bulk_write([op.operation() for op in operations[start:start + batch_size]],
                                       ordered=False)
        added += int(result.upserted_count)
        matched += int(result.matched_count)
    return Uploaded(added, matched)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)

