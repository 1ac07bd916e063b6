"""perf.csv rows: ROCm madengine's columns and their values, from attempts."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest

from madengine.results.perfcsv import PERF_CSV_COLUMNS, format_number, perf_rows, write_perf_csv
from madengine.state.model import Attempt, Status
from tests.unit.results.conftest import (
    IMAGE,
    TAG,
    attempt,
    build_attempt,
    image_record,
    job_address,
    job_inputs,
    perf,
)

DESIGN_COLUMNS = ("model,n_gpus,nnodes,gpus_per_node,training_precision,pipeline,args,tags,docker_file,base_docker,"
                  "docker_sha,docker_image,git_commit,machine_name,deployment_type,launcher,gpu_architecture,"
                  "performance,metric,relative_change,status,build_duration,test_duration,dataname,"
                  "data_provider_type,data_size,data_download_duration,build_number,additional_docker_run_options")

DOCKER_JOB = job_address()
IMAGES = {(IMAGE, "box"): image_record()}


def test_columns_are_madengine_s_in_order() -> None:
    assert ",".join(PERF_CSV_COLUMNS) == DESIGN_COLUMNS


def test_a_docker_job_row() -> None:
    attempts = [build_attempt(1), attempt(2, DOCKER_JOB, job_inputs(), perf=(perf(1234.5),))]
    [row] = perf_rows(attempts, IMAGES)
    assert list(row) == list(PERF_CSV_COLUMNS)
    assert row == {
        "model": "dummy", "n_gpus": "1", "nnodes": "1", "gpus_per_node": "1", "training_precision": "fp16",
        "pipeline": "", "args": "--steps 5", "tags": "dummies,smoke",
        "docker_file": "docker/dummy.ubuntu.none.Dockerfile", "base_docker": "localhost:5000/madengine/busybox:1",
        "docker_sha": "sha256:9c1e00", "docker_image": TAG, "git_commit": "", "machine_name": "bench-01",
        "deployment_type": "docker", "launcher": "docker", "gpu_architecture": "",
        "performance": "1234.5", "metric": "samples_per_second", "relative_change": "", "status": "SUCCESS",
        "build_duration": "60", "test_duration": "42", "dataname": "", "data_provider_type": "", "data_size": "",
        "data_download_duration": "", "build_number": "", "additional_docker_run_options": "--shm-size=8g",
    }


def test_a_local_job_has_no_image_fields() -> None:
    inputs = job_inputs(target="here", backend="local", image=None, dockerfile=None)
    [row] = perf_rows([attempt(1, job_address(target="here"), inputs, perf=(perf(3),))], IMAGES)
    assert {k: row[k] for k in ("docker_file", "base_docker", "docker_sha", "docker_image", "build_duration",
                                "deployment_type", "launcher")} == {
        "docker_file": "", "base_docker": "", "docker_sha": "", "docker_image": "", "build_duration": "",
        "deployment_type": "local", "launcher": ""}


def test_args_are_quoted_so_they_split_back() -> None:
    inputs = job_inputs(args=["--name", "a b", "--expr", "$(touch /tmp/x); 'q'"])
    [row] = perf_rows([attempt(1, DOCKER_JOB, inputs, perf=(perf(1),))], IMAGES)
    assert shlex.split(row["args"]) == ["--name", "a b", "--expr", "$(touch /tmp/x); 'q'"]


def test_gpu_architecture_comes_from_the_environment() -> None:
    inputs = job_inputs()
    inputs["env"]["MAD_SYSTEM_GPU_ARCHITECTURE"] = "gfx942"
    [row] = perf_rows([attempt(1, DOCKER_JOB, inputs, perf=(perf(1),))], IMAGES)
    assert row["gpu_architecture"] == "gfx942"


@pytest.mark.parametrize(("status", "csv_status"), [(Status.FAILURE, "FAILURE"), (Status.TIMEOUT, "FAILURE"),
                                                    (Status.INTERRUPTED, "FAILURE"), (Status.SKIPPED, "SKIPPED")])
def test_an_unsuccessful_attempt_gives_one_row_without_performance(status: Status, csv_status: str) -> None:
    [row] = perf_rows([attempt(1, DOCKER_JOB, job_inputs(), status=status)], IMAGES)
    assert (row["model"], row["performance"], row["metric"], row["status"]) == ("dummy", "", "", csv_status)


def test_a_failed_attempt_keeps_its_figure_but_fails() -> None:
    a = attempt(1, DOCKER_JOB, job_inputs(), status=Status.FAILURE, perf=(perf(5, status=Status.FAILURE),))
    [row] = perf_rows([a], IMAGES)
    assert (row["performance"], row["status"]) == ("5", "FAILURE")


def test_running_attempts_and_image_builds_give_no_rows() -> None:
    attempts = [build_attempt(1), attempt(2, DOCKER_JOB, job_inputs(), status=Status.RUNNING, end=None)]
    assert perf_rows(attempts, IMAGES) == []


def test_multiple_results_rows() -> None:
    rows = (perf(10, "tps", "dummy_bs1"), perf(None, "tps", "dummy_bs8", Status.FAILURE))
    out = perf_rows([attempt(1, DOCKER_JOB, job_inputs(), perf=rows)], IMAGES)
    assert [(r["model"], r["performance"], r["status"]) for r in out] == [
        ("dummy_bs1", "10", "SUCCESS"), ("dummy_bs8", "", "FAILURE")]


def _series(*values: tuple[float | None, Status]) -> list[Attempt]:
    return [attempt(i + 1, DOCKER_JOB, job_inputs(), status=s, apply_id=i + 1,
                    start=f"2026-11-2{i}T10:00:00Z", end=f"2026-11-2{i}T10:01:00Z",
                    perf=(perf(v, status=s),) if v is not None else ()) for i, (v, s) in enumerate(values)]


def test_relative_change_against_the_previous_success() -> None:
    attempts = _series((100, Status.SUCCESS), (50, Status.FAILURE), (110, Status.SUCCESS), (99, Status.SUCCESS))
    assert [r["relative_change"] for r in perf_rows(attempts, IMAGES)] == ["", "-50.00%", "+10.00%", "-10.00%"]


def test_relative_change_of_a_selection_looks_into_history() -> None:
    attempts = _series((100, Status.SUCCESS), (125, Status.SUCCESS))
    [row] = perf_rows(attempts[1:], IMAGES, history=attempts)
    assert row["relative_change"] == "+25.00%"
    [row] = perf_rows(attempts[1:], IMAGES)  # without history: nothing to compare with
    assert row["relative_change"] == ""


def test_relative_change_compares_like_with_like() -> None:
    cpu = attempt(1, DOCKER_JOB, job_inputs(), perf=(perf(100),), start="2026-11-20T10:00:00Z")
    gpu = attempt(2, job_address(context="mi300x"), job_inputs(context="mi300x"), perf=(perf(900),),
                  start="2026-11-21T10:00:00Z")
    other_metric = attempt(3, DOCKER_JOB, job_inputs(), perf=(perf(7, metric="ms"),), start="2026-11-22T10:00:00Z")
    zero = attempt(4, job_address(params={"bs": 2}), job_inputs(params={"bs": 2}), perf=(perf(0),),
                   start="2026-11-23T10:00:00Z")
    after_zero = attempt(5, job_address(params={"bs": 2}), job_inputs(params={"bs": 2}), perf=(perf(3),),
                         start="2026-11-24T10:00:00Z")
    rows = perf_rows([cpu, gpu, other_metric, zero, after_zero], IMAGES)
    assert [r["relative_change"] for r in rows] == ["", "", "", "", ""]


def test_build_duration_is_the_image_s_build() -> None:
    builds = [build_attempt(1, start="2026-11-28T09:00:00Z", end="2026-11-28T09:02:05Z"),
              build_attempt(2, status=Status.FAILURE, start="2026-11-28T09:10:00Z", end="2026-11-28T09:10:01Z")]
    [row] = perf_rows([*builds, attempt(3, DOCKER_JOB, job_inputs(), perf=(perf(1),))], IMAGES)
    assert row["build_duration"] == "125"


def test_durations_keep_milliseconds() -> None:
    a = attempt(1, DOCKER_JOB, job_inputs(), perf=(perf(1),), start="2026-11-28T10:00:00Z",
                end="2026-11-28T10:00:01.2346Z")
    [row] = perf_rows([a], IMAGES)
    assert row["test_duration"] == "1.235"


@pytest.mark.parametrize(("value", "text"), [(None, ""), (12.0, "12"), (-3.0, "-3"), (0.5, "0.5"),
                                             (1e-05, "1e-05"), (1234.5678, "1234.5678"), (1e20, "1e+20")])
def test_format_number(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_write_perf_csv(tmp_path: Path) -> None:
    inputs = job_inputs(args=["--title", "a, \"b\""])
    rows = perf_rows([attempt(1, DOCKER_JOB, inputs, perf=(perf(1.5),))], IMAGES)
    path = tmp_path / "out" / "perf.csv"
    assert write_perf_csv(path, rows) == 1
    raw = path.read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    assert raw.decode().splitlines()[0] == DESIGN_COLUMNS
    with path.open(newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f)) == rows
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["perf.csv"]  # no temporary file left


def test_write_an_empty_perf_csv(tmp_path: Path) -> None:
    path = tmp_path / "perf.csv"
    assert write_perf_csv(path, []) == 0
    assert path.read_text() == DESIGN_COLUMNS + "\n"


@pytest.mark.parametrize(("n_gpus", "total"), [(2, "6"), (0, "0"), (-1, "-1")])
def test_a_multi_node_row_has_the_jobs_gpus_in_all_and_per_node_and_torchrun(n_gpus: int, total: str) -> None:
    inputs = {**job_inputs(target="lab", backend="ssh"), "nnodes": 3, "n_gpus": n_gpus}
    [row] = perf_rows([attempt(1, job_address(target="lab"), inputs, perf=(perf(1),))], IMAGES)
    assert (row["n_gpus"], row["nnodes"], row["gpus_per_node"], row["launcher"], row["deployment_type"]) == (
        total, "3", str(n_gpus), "torchrun", "ssh")
