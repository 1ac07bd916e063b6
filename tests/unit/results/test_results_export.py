"""perf.csv as `run` appends it: one row per job of the apply, from a real state store."""

from __future__ import annotations

import csv
from pathlib import Path

from madengine.results.export import append_perf_csv
from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.unit.results.conftest import job_inputs

BAD = "job:bad@cpu/box#1"
GOOD = "job:good@cpu/box#1"


def test_a_job_retried_after_transient_failures_is_one_row_of_its_last_attempt(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.db") as store:
        apply_id = store.begin_apply("sha256:lock")
        for message in ("engine hiccup (transient; retrying)", "engine hiccup (transient; retrying)",
                        "engine hiccup"):  # apply retries a transient failure twice: three attempts
            attempt = store.start_attempt(apply_id, BAD, "sha256:bad", job_inputs("bad"), host="h", log_path=None)
            store.finish_attempt(attempt, Status.FAILURE, message=message)
        attempt = store.start_attempt(apply_id, GOOD, "sha256:good", job_inputs("good"), host="h", log_path=None)
        store.finish_attempt(attempt, Status.SUCCESS, exit_code=0, perf=(PerfRow("good", 2.5, "x"),))
        store.finish_apply(apply_id, "FAILURE")
        assert append_perf_csv(tmp_path / "perf.csv", store, apply_id) == 2
    rows = list(csv.DictReader((tmp_path / "perf.csv").open()))
    assert [(r["model"], r["status"], r["machine_name"]) for r in rows] == [("bad", "FAILURE", "h"),
                                                                          ("good", "SUCCESS", "h")]
