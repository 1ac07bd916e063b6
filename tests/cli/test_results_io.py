"""`madengine results export|import`: history moved between stores, SQLite and PostgreSQL, through the CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from madengine.results.perfcsv import PERF_CSV_COLUMNS
from madengine.state.location import PgLocation, StateLocation
from madengine.state.model import ImageRecord, PerfRow, Status
from madengine.state.store import StateStore
from tests.conftest import RunCli
from tests.infra.postgres import location_arg
from tests.unit.state.children import hold_store_lock

NO_URL = {"MADENGINE_STATE_URL": None, "MADENGINE_STATE": None}
FACTS = {"os": "debian 12", "gpu_vendor": "AMD", "gpu_count": 8, "gpu_arch": "gfx942", "rocm": "6.3.1"}


def history(location: StateLocation) -> None:
    """Two applies with everything a store records: images (one failed build), attempts with perf rows, a
    gate verdict, host facts, a handle, a failure, a forgotten job (ids with a gap), one left RUNNING."""
    with StateStore.open(location) as store:
        first = store.begin_apply("sha256:lock1")
        store.record_image(ImageRecord(address="image:a@cpu", target="box", node_hash="sha256:i1",
                                       tag="madengine/a:i1", image_id="sha256:eng", digest="sha256:d1",
                                       inputs={"dockerfile": {"sha256": "f1"}}, built_at="2026-11-20T09:00:00Z",
                                       host="node1"), first)
        store.record_image(ImageRecord(address="image:b@cpu", target="box", node_hash="sha256:i2", tag="madengine/b",
                                       image_id=None, digest=None, inputs={}, built_at="2026-11-20T09:01:00Z",
                                       status=Status.FAILURE), first)
        for model, value in (("a", 100.0), ("gone", 1.0), ("a", 123.456789)):
            attempt = store.start_attempt(first, f"job:{model}@cpu/box#1", "sha256:j" + model,
                                          {"model": model, "args": ["--n", "1"], "image": "image:a@cpu",
                                           "target": "box"}, "node1", f"logs/{model}.log", handle="4242",
                                          facts=FACTS)
            store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, image_digest="sha256:d1",
                                 perf=[PerfRow(model, value, "samples_per_second"),
                                       PerfRow(model + "_bs8", None, "tps", Status.FAILURE)],
                                 gate={"met": True, "metric": "samples_per_second", "min": 1.0})
        store.forget("job:gone@cpu/box#1")
        store.finish_apply(first, "SUCCESS")
        second = store.begin_apply("sha256:lock2")
        failed = store.start_attempt(second, "job:c@cpu/box#1", "sha256:jc", {"model": "c"}, None, None)
        store.finish_attempt(failed, Status.FAILURE, exit_code=3, message="RuntimeError: boom \u2713")
        store.start_attempt(second, "job:d@cpu/box#1", "sha256:jd", {"model": "d"}, "node2", None)  # left RUNNING


def export(run_cli: RunCli, root: Path, *args: str, env: dict[str, str | None] | None = None) -> str:
    code, out, err = run_cli("results", "export", "--format", "json", *args, cwd=root, env=env or NO_URL)
    assert (code, err) == (0, ""), err
    return out


def store_of(location: StateLocation) -> tuple[str, ...]:
    return ("--state", location_arg(location))


def test_sqlite_to_postgresql_to_sqlite_is_byte_identical(run_cli: RunCli, tmp_path: Path,
                                                          pg_schema: PgLocation) -> None:
    sqlite_db = tmp_path / "a" / "state.db"
    history(sqlite_db)
    first = export(run_cli, tmp_path, *store_of(sqlite_db))
    doc = json.loads(first)
    assert [len(doc[k]) for k in ("applies", "images", "attempts")] == [2, 2, 4]
    assert [a["id"] for a in doc["attempts"]] == [1, 3, 4, 5]  # the forgotten one's id is a gap, kept
    assert doc["attempts"][1]["perf"][0]["performance"] == 123.456789  # all of a double, not 4 bytes of it
    (tmp_path / "h.json").write_text(first)
    code, out, err = run_cli("results", "import", "h.json", *store_of(pg_schema), cwd=tmp_path, env=NO_URL)
    assert (code, err) == (0, "")
    assert out == "imported h.json: 2 applies, 2 image records, 4 attempts (4 perf rows) added; 0 already there\n"
    assert export(run_cli, tmp_path, *store_of(pg_schema)) == first
    back = tmp_path / "b" / "state.db"
    assert run_cli("results", "import", "h.json", *store_of(back), cwd=tmp_path, env=NO_URL).code == 0
    assert export(run_cli, tmp_path, *store_of(back)) == first
    with StateStore.open(pg_schema) as store:  # the imported store goes on: ids after the imported ones
        assert store.begin_apply("sha256:lock3") == 3
        assert store.start_attempt(3, "job:e@cpu/box#1", "sha256:je", {}, None, None) == 6


def test_importing_twice_adds_nothing_and_the_serial_moves_once(run_cli: RunCli, tmp_path: Path,
                                                                 state_location: StateLocation) -> None:
    source = tmp_path / "src" / "state.db"
    history(source)
    (tmp_path / "h.json").write_text(export(run_cli, tmp_path, *store_of(source)))
    target = store_of(state_location)
    assert run_cli("results", "import", "h.json", *target, cwd=tmp_path, env=NO_URL).code == 0
    with StateStore.open(state_location) as store:
        serial, records = store.serial(), store.dump()
    assert serial == 1  # one import, one move
    code, out, _ = run_cli("results", "import", "h.json", *target, cwd=tmp_path, env=NO_URL)
    assert (code, out) == (0, "imported h.json: 0 applies, 0 image records, 0 attempts (0 perf rows) added; "
                              "8 already there\n")
    with StateStore.open(state_location) as store:
        assert (store.serial(), store.dump()) == (serial, records)


def test_a_merge_keeps_what_is_there_and_gives_the_imported_new_ids(run_cli: RunCli, tmp_path: Path,
                                                                     state_location: StateLocation) -> None:
    with StateStore.open(state_location) as store:  # older than the imported history: it goes after
        mine = store.begin_apply("sha256:mine")
        store.finish_attempt(store.start_attempt(mine, "job:z@cpu/box#1", "sha256:z", {}, None, None),
                             Status.SUCCESS, perf=[PerfRow("z", 5.0, "x")])
        serial = store.serial()
    source = tmp_path / "src" / "state.db"
    history(source)
    (tmp_path / "h.json").write_text(export(run_cli, tmp_path, *store_of(source)))
    assert run_cli("results", "import", "h.json", *store_of(state_location), cwd=tmp_path, env=NO_URL).code == 0
    merged = json.loads(export(run_cli, tmp_path, *store_of(state_location)))
    imported = json.loads((tmp_path / "h.json").read_text())
    assert [a["lock_hash"] for a in merged["applies"]] == ["sha256:mine", "sha256:lock1", "sha256:lock2"]
    assert [a["id"] for a in merged["attempts"]] == [1, 2, 3, 4, 5]  # in the file's order, after what was here
    apply_ids = {a["id"]: b["id"] for a, b in zip(imported["applies"], merged["applies"][1:], strict=True)}

    def without_ids(records: list[dict[str, Any]], refs: dict[int, int]) -> list[dict[str, Any]]:
        return [{**{k: v for k, v in r.items() if k != "id"}, "apply_id": refs.get(r["apply_id"], r["apply_id"])}
                for r in records]

    assert without_ids(merged["attempts"][1:], {}) == without_ids(imported["attempts"], apply_ids)
    assert without_ids(merged["images"], {}) == without_ids(imported["images"], apply_ids)
    with StateStore.open(state_location) as store:
        assert store.serial() == serial + 1


def test_import_takes_the_workspace_lock(run_cli: RunCli, tmp_path: Path, state_location: StateLocation) -> None:
    source = tmp_path / "src" / "state.db"
    history(source)
    (tmp_path / "h.json").write_text(export(run_cli, tmp_path, *store_of(source)))
    with hold_store_lock(location_arg(state_location)) as child:
        code, out, err = run_cli("results", "import", "h.json", *store_of(state_location), cwd=tmp_path,
                                 env=NO_URL)
    assert (code, out) == (1, "") and err.startswith(f"error: state is locked by pid {child.pid} on ")
    assert json.loads(export(run_cli, tmp_path, *store_of(state_location)))["attempts"] == []


@pytest.mark.parametrize(("text", "message"), [
    ('{"format": "madengine-history",\n "version": 1,\n "applies": [}', "h.json:3:14: error: not JSON: "),
    ("model,performance\na,1\n", "h.json:1:1: error: not JSON: Expecting value"),
    ('{"format": "other"}', 'h.json: error: not a madengine history file (no "format": "madengine-history")'),
    ('{"format": "madengine-history", "version": 9}', "h.json: error: history file version 9; this madengine"),
    ('{"format": "madengine-history", "version": 1, "applies": [{"id": 1}]}', "h.json: error: applies[0] has no "),
    ('{"format": "madengine-history", "version": 2, "project": 3}', "h.json: error: project is 3, not a name or null"),
    ('{"format": "madengine-history", "version": 2, "project": null, "other": 1}', "h.json: error: unknown field "),
    ('{"format": "madengine-history", "version": 1, "attempts": [{"id": 1, "apply_id": 7, "address": "job:a", '
     '"node_hash": "h", "model": null, "status": "DONE", "started_at": "t", "ended_at": null, "host": null, '
     '"exit_code": null, "log_path": null, "image_digest": null, "inputs": {}, "handle": null, "message": "", '
     '"gate": null, "facts": null, "perf": []}]}', "h.json: error: attempts[0].status 'DONE' is not one of "),
])
def test_a_file_of_the_wrong_shape_is_a_config_error_and_nothing_is_written(
        run_cli: RunCli, tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "h.json").write_text(text)
    code, out, err = run_cli("results", "import", "h.json", cwd=tmp_path, env=NO_URL)
    assert (code, out) == (5, "") and err.startswith(message), err
    assert "Traceback" not in err and not (tmp_path / ".madengine").exists()


def test_a_missing_file_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    code, _, err = run_cli("results", "import", "nope.json", cwd=tmp_path, env=NO_URL)
    assert code == 4 and err.startswith("error: nope.json does not exist")


def test_csv_export_one_row_per_perf_row_with_its_attempt(run_cli: RunCli, tmp_path: Path,
                                                          state_location: StateLocation) -> None:
    history(state_location)
    code, out, err = run_cli("results", "export", "--format", "csv", "-o", "out/all.csv", cwd=tmp_path)
    assert (code, out, err) == (0, "", "out/all.csv written\n")
    with (tmp_path / "out" / "all.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    header = next(csv.reader(io.StringIO((tmp_path / "out" / "all.csv").read_text())))
    assert header[:9] == ["apply_id", "attempt_id", "address", "node_hash", "started_at", "ended_at", "host",
                          "exit_code", "attempt_status"] and tuple(header[9:]) == PERF_CSV_COLUMNS
    assert [(r["attempt_id"], r["model"], r["performance"], r["status"]) for r in rows] == [
        ("1", "a", "100", "SUCCESS"), ("1", "a_bs8", "", "FAILURE"),
        ("3", "a", "123.456789", "SUCCESS"), ("3", "a_bs8", "", "FAILURE"),
        ("4", "c", "", "FAILURE")]  # the RUNNING attempt has no row, nor does the forgotten one
    assert rows[2]["relative_change"] == "+23.46%" and rows[2]["machine_name"] and rows[4]["exit_code"] == "3"
    # the latest rows are what `results --csv` writes, column for column
    assert run_cli("results", "--csv", "latest.csv", cwd=tmp_path).code == 0
    with (tmp_path / "latest.csv").open(newline="") as f:
        latest = list(csv.DictReader(f))
    assert [{c: r[c] for c in PERF_CSV_COLUMNS} for r in rows[2:]] == latest


def test_export_into_a_directory_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "out.json").mkdir()
    code, out, err = run_cli("results", "export", "--format", "json", "-o", "out.json", cwd=tmp_path, env=NO_URL)
    assert (code, out) == (4, "") and err.startswith("error: -o out.json is a directory"), err


def test_history_older_than_the_stores_newest_apply_is_refused_and_nothing_written(
        run_cli: RunCli, tmp_path: Path, state_location: StateLocation) -> None:
    """Added after a newer apply, the old one would get the higher id and be taken for `latest` (compare,
    plan)."""
    source = tmp_path / "src" / "state.db"
    history(source)
    (tmp_path / "h.json").write_text(export(run_cli, tmp_path, *store_of(source)))
    with StateStore.open(state_location) as store:
        store.finish_apply(store.begin_apply("sha256:newer"), "SUCCESS")
        serial, before = store.serial(), store.dump()
    code, out, err = run_cli("results", "import", "h.json", *store_of(state_location), cwd=tmp_path, env=NO_URL)
    assert (code, out) == (5, "") and len(err.splitlines()) == 1, err
    assert err.startswith("h.json: error: its apply of ") and "started before the store's newest apply" in err
    assert "import the older history into an empty store first, then apply" in err
    with StateStore.open(state_location) as store:
        assert (store.serial(), store.dump()) == (serial, before)
    # what is there already is no reason to refuse: into an empty store, then again
    empty = tmp_path / "b" / "state.db"
    assert run_cli("results", "import", "h.json", *store_of(empty), cwd=tmp_path, env=NO_URL).code == 0
    with StateStore.open(empty) as store:
        store.finish_apply(store.begin_apply("sha256:after"), "SUCCESS")
    code, out, err = run_cli("results", "import", "h.json", *store_of(empty), cwd=tmp_path, env=NO_URL)
    assert (code, err) == (0, "") and " 0 applies, " in out


def named(root: Path, name: str | None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "madfile.yaml").write_text("version: 1\n" + (f"name: {name}\n" if name else ""))
    return root


def test_the_export_names_its_project_and_another_projects_history_is_refused(run_cli: RunCli,
                                                                             tmp_path: Path) -> None:
    alpha, beta = named(tmp_path / "alpha", "alpha"), named(tmp_path / "beta", "beta")
    history(alpha / ".madengine" / "state.db")
    doc = json.loads(export(run_cli, alpha))
    assert (doc["version"], doc["project"]) == (2, "alpha")
    assert json.loads(export(run_cli, tmp_path, *store_of(alpha / ".madengine" / "state.db")))["project"] is None
    (tmp_path / "h.json").write_text(json.dumps(doc))
    code, out, err = run_cli("results", "import", "../h.json", cwd=beta, env=NO_URL)
    assert (code, out) == (5, "") and err.startswith(
        "../h.json: error: history of project 'alpha', not of this project 'beta' (hint: import it into "
        "'alpha''s store; if this project was renamed, --from-project alpha accepts it)"), err
    assert not (beta / ".madengine").exists()
    code, _, err = run_cli("results", "import", "../h.json", "--from-project", "gamma", cwd=beta, env=NO_URL)
    assert code == 5 and "history of project 'alpha', not of project 'gamma' (--from-project)" in err
    assert not (beta / ".madengine").exists()
    # a renamed project takes its own history; an unnamed one, and a file of unknown project, are accepted
    assert run_cli("results", "import", "../h.json", "--from-project", "alpha", cwd=beta, env=NO_URL).code == 0
    assert run_cli("results", "import", "../h.json", cwd=named(tmp_path / "anon", None), env=NO_URL).code == 0
    old = {k: v for k, v in doc.items() if k != "project"} | {"version": 1}
    (tmp_path / "v1.json").write_text(json.dumps(old))
    code, out, err = run_cli("results", "import", "../v1.json", cwd=named(tmp_path / "gamma", "gamma"), env=NO_URL)
    assert (code, err) == (0, ""), err


def test_a_history_file_over_the_limit_is_refused_before_it_is_read(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "src" / "state.db"
    history(source)
    (tmp_path / "h.json").write_text(export(run_cli, tmp_path, *store_of(source)))
    code, out, err = run_cli("results", "import", "h.json", cwd=tmp_path,
                             env={**NO_URL, "MADENGINE_MAX_HISTORY_BYTES": "1000"})
    assert (code, out) == (5, "") and len(err.splitlines()) == 1, err
    size = (tmp_path / "h.json").stat().st_size
    assert err == (f"h.json: error: h.json is {size / 1024:.0f} KB; the limit is 1000 bytes (hint: set "
                   "MADENGINE_MAX_HISTORY_BYTES (in bytes) to raise it)\n")
    assert not (tmp_path / ".madengine").exists()
