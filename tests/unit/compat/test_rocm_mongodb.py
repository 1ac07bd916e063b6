"""upload-mongodb's documents and bulk upserts, as pure functions; and the upload against a fake collection.

No MongoDB server is installed here, and mongomock (the usual stand-in) has had no release since 2024:
`FakeCollection` below is a FAKE, written for these tests, that applies `UpdateOne(filter, update,
upsert=True)` on `_id` the way MongoDB does ($set, $setOnInsert) and counts as pymongo's BulkWriteResult.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymongo import UpdateOne

from madengine.compat import rocm_mongodb as rmg
from madengine.compat.rocm_csv import CsvTable, parse_csv
from madengine.errors import ConfigError
from madengine.results.perfcsv import PERF_CSV_COLUMNS, write_perf_csv
from tests.cli.test_rocm_results import gfx942_rows

NOW = datetime(2026, 12, 5, 8, 30, 0, tzinfo=timezone.utc)


def table_of(path: Path) -> CsvTable:
    return parse_csv(path.read_text(encoding="utf-8"), path.name)


def test_a_document_per_row_with_typed_values(tmp_path: Path) -> None:
    write_perf_csv(tmp_path / "perf.csv", gfx942_rows([1234.5, None]))
    docs = rmg.documents(table_of(tmp_path / "perf.csv"), NOW)
    assert len(docs) == 2
    first = docs[0]
    assert list(first)[1:-1] == list(PERF_CSV_COLUMNS)  # _id first, then the columns, then the upload time
    assert first["model"] == "dummy" and first["performance"] == 1234.5 and first["n_gpus"] == 1
    assert first["gpu_architecture"] == "gfx942" and first["status"] == "SUCCESS" and first["pipeline"] is None
    assert first["tags"] == "dummies,smoke" and first[rmg.META_UPLOADED] == NOW
    assert docs[1]["performance"] is None and docs[1]["status"] == "FAILURE"


def test_column_types_as_pandas_would_read_them_but_ints_stay_ints() -> None:
    table = parse_csv('model,n,x,cfg\na,1,1.5,"{""bs"": 8}"\nb,,2,[1]\nc,3,nan,x\n', "perf.csv")
    docs = rmg.documents(table, NOW)
    assert [d["n"] for d in docs] == [1, None, 3]  # pandas: 1.0, NaN, 3.0
    assert [d["x"] for d in docs] == ["1.5", "2", "nan"]  # one value is not a number: the column is text
    assert [d["cfg"] for d in docs] == [{"bs": 8}, [1], "x"]  # ROCm's: JSON objects and arrays as such


def test_upserts_keyed_on_the_row() -> None:
    table = parse_csv("model,performance,relative_change\ndummy,1,\ndummy,1,\ndummy,2,\n", "perf.csv")
    ops = rmg.upserts(rmg.documents(table, NOW), NOW)
    keys = [op.filter["_id"] for op in ops]
    assert keys[0].endswith("-1") and keys[1] == keys[0][:-1] + "2" and keys[2].endswith("-1")  # equal rows: 2
    assert ops[0].operation() == UpdateOne(
        {"_id": keys[0]},
        {"$set": {"model": "dummy", "performance": 1, "relative_change": None, rmg.META_UPLOADED: NOW},
         "$setOnInsert": {"created_date": "2026-12-05 08:30:00"}},
        upsert=True)


def test_keys_stable_when_the_csv_grows_or_gains_an_empty_column() -> None:
    before = rmg.row_keys(parse_csv("model,performance\na,1\nb,2\n", "perf.csv"))
    appended = rmg.row_keys(parse_csv("model,performance\na,1\nb,2\na,1\n", "perf.csv"))
    wider = rmg.row_keys(parse_csv("model,performance,launcher\na,1,\nb,2,\n", "perf.csv"))
    assert appended[:2] == before and appended[2] not in before and wider == before
    assert rmg.row_keys(parse_csv("model,performance\na,1.0\n", "perf.csv"))[0] != before[0]  # as written


def test_a_row_s_own_created_date_is_kept() -> None:
    table = parse_csv("model,created_date\na,2025-01-01 00:00:00\n", "perf.csv")
    [op] = rmg.upserts(rmg.documents(table, NOW), NOW)
    assert op.update == {"$set": {"model": "a", "created_date": "2025-01-01 00:00:00", rmg.META_UPLOADED: NOW}}


def test_field_names_mongodb_would_misread_are_refused() -> None:
    table = parse_csv("model,a.b,$x,_id\na,1,2,3\n", "perf.csv")
    try:
        rmg.documents(table, NOW)
    except ConfigError as exc:
        assert [d.render() for d in exc.diagnostics] == [
            "perf.csv:1: error: column '$x': a MongoDB field name cannot start with $ or have a dot in it "
            "(hint: rename the column)",
            "perf.csv:1: error: column '_id': `_id` is the key madengine gives each row (hint: rename the column)",
            "perf.csv:1: error: column 'a.b': a MongoDB field name cannot start with $ or have a dot in it "
            "(hint: rename the column)"]
    else:
        raise AssertionError("refused columns were accepted")


def test_mongo_target_from_url_or_rocm_s_variables() -> None:
    assert rmg.mongo_target("mongodb://u:p@db:27017", {}).shown() == "mongodb://u:***@db:27017"
    target = rmg.mongo_target(None, {"MONGO_HOST": "db", "MONGO_USER": "ci", "MONGO_PASSWORD": "s3cret"})
    assert target.url == "mongodb://db:27017" and "s3cret" not in target.shown()
    assert target.client_options() == {"username": "ci", "password": "s3cret", "authSource": "admin"}
    assert rmg.mongo_target(None, {}).url == "mongodb://localhost:27017"  # ROCm's default


# --- a FAKE collection (see the module's docstring) ------------------------------------------------


@dataclass
class FakeResult:
    upserted_count: int
    matched_count: int


class FakeCollection:
    """FAKE: MongoDB's upsert on `_id`, for `bulk_write([UpdateOne(...)])` only."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.batches: list[int] = []

    def bulk_write(self, requests: list[Any], ordered: bool = True) -> FakeResult:
        assert ordered is False
        self.batches.append(len(requests))
        upserted = matched = 0
        for op in requests:
            assert isinstance(op, UpdateOne) and op._upsert is True
            key = op._filter["_id"]
            update: dict[str, Any] = copy.deepcopy(dict(op._doc))  # type: ignore[arg-type]  # a mapping here
            if key in self.docs:
                matched += 1
                self.docs[key].update(update["$set"])
            else:
                upserted += 1
                self.docs[key] = {"_id": key, **update.get("$setOnInsert", {}), **update["$set"]}
        return FakeResult(upserted, matched)


def test_uploading_the_same_perf_csv_again_adds_nothing(tmp_path: Path) -> None:
    write_perf_csv(tmp_path / "perf.csv", gfx942_rows([1.0, 2.0, 3.0]))
    collection = FakeCollection()
    first = rmg.upload(collection, rmg.upserts(rmg.documents(table_of(tmp_path / "perf.csv"), NOW), NOW),
                       batch_size=2)
    assert first == rmg.Uploaded(added=3, already=0) and collection.batches == [2, 1]
    write_perf_csv(tmp_path / "perf.csv", gfx942_rows([1.0, 2.0, 3.0, 4.0]))
    later = datetime(2026, 12, 6, tzinfo=timezone.utc)
    again = rmg.upload(collection, rmg.upserts(rmg.documents(table_of(tmp_path / "perf.csv"), later), later))
    assert again == rmg.Uploaded(added=1, already=3) and len(collection.docs) == 4
    created = sorted(d["created_date"] for d in collection.docs.values())
    assert created == ["2026-12-05 08:30:00"] * 3 + ["2026-12-06 00:00:00"]  # first upload's, kept
    assert all(d[rmg.META_UPLOADED] == later for d in collection.docs.values())
