"""`expect:` gates, end to end on the `local` backend: real processes, state store and CLI (exit 6, DESIGN §9)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, RunCli

EXPECTATION, RUN_FAILURE, CONFIG = 6, 3, 5
JOB = "job:bench@cpu/here#1"
# What a verdict of a gate without a tolerance says of one.
NO_TOLERANCE = {"tolerance": None, "baseline": None, "bound": None, "reference": None, "reference_from": None,
                "repeats": 0, "note": ""}


def project(root: Path, gate: str, *, script: str = 'echo "performance: 9 mflops"', repeat: int = 1) -> Path:
    """One model whose run prints `performance: 9 mflops`, gated by `gate` (the madfile's line 9)."""
    (root / "run.sh").write_text(f"#!/bin/sh\n{script}\n")
    (root / "madfile.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        models: [{{name: bench, scripts: run.sh, n_gpus: 0}}]
        contexts: {{cpu: {{gpu_vendor: NONE}}}}
        targets: {{here: {{backend: local}}}}
        runs:
          - models: [bench]
            repeat: {repeat}
            expect:
              bench: {gate}
        """))
    return root


def apply(run_cli: RunCli, root: Path, *args: str) -> tuple[int, str]:
    code, out, err = run_cli("apply", "--yes", *args, cwd=root)
    assert "Traceback" not in err
    return code, out


def test_a_failing_gate_exits_6_naming_job_metric_value_and_bound(run_cli: RunCli, tmp_path: Path) -> None:
    code, out = apply(run_cli, project(tmp_path, "{metric: mflops, min: 1e9}"))
    assert code == EXPECTATION
    assert "Apply success: 1 SUCCESS" in out  # the job ran fine: only its gate is unmet
    assert "Expect gates: 0 met, 1 unmet" in out
    assert f"{JOB}: mflops 9 is below min 1000000000 (expect in madfile.yaml:9:7)" in out.splitlines()


def test_a_met_gate_exits_0(run_cli: RunCli, tmp_path: Path) -> None:
    code, out = apply(run_cli, project(tmp_path, "{metric: mflops, min: 1, max: 10}"))
    assert (code, "Expect gates: 1 met") == (0, out.splitlines()[-1])


def test_a_max_gate(run_cli: RunCli, tmp_path: Path) -> None:
    code, out = apply(run_cli, project(tmp_path, "{metric: mflops, min: 1, max: 5}"))
    assert code == EXPECTATION and f"{JOB}: mflops 9 is above max 5 (expect in madfile.yaml:9:7)" in out


def test_a_metric_never_reported_is_unmet(run_cli: RunCli, tmp_path: Path) -> None:
    code, out = apply(run_cli, project(tmp_path, "{metric: gflops}"))
    assert code == EXPECTATION
    assert f"{JOB}: reported no gflops (it reported mflops) (expect in madfile.yaml:9:7)" in out


def test_a_no_op_apply_still_exits_6_and_a_gate_edit_needs_no_rerun(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1e9}", repeat=2)
    assert apply(run_cli, root)[0] == EXPECTATION
    for _ in range(2):  # the second no-op plans from the fresh lock, without compiling: its gates too
        code, out = apply(run_cli, root)
        assert (code, "No changes: everything is up to date.") == (EXPECTATION, out.splitlines()[1])
        assert f"{JOB}: mflops 9 is below min 1000000000 (expect in madfile.yaml:9:7)" in out
        assert "job:bench@cpu/here#2: mflops 9 is below min 1000000000" in out
    # A gate is not an input of the job: loosening it reruns nothing, and the same results now pass.
    project(root, "{metric: mflops, min: 1}", repeat=2)
    for _ in range(2):
        code, out = apply(run_cli, root)
        assert (code, out.splitlines()[1:]) == (0, ["No changes: everything is up to date.", "Expect gates: 2 met"])


def test_only_the_selected_jobs_are_checked(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1e9}")
    text = (root / "madfile.yaml").read_text()
    (root / "madfile.yaml").write_text(text.replace("models: [{name: bench, scripts: run.sh, n_gpus: 0}]",
                                                    "models: [{name: bench, scripts: run.sh, n_gpus: 0},\n"
                                                    "         {name: free, scripts: run.sh, n_gpus: 0}]")
                                       .replace("models: [bench]", "models: [bench, free]"))
    code, out = apply(run_cli, root, "--select", "job:free*")
    assert (code, "Expect gates" in out) == (0, False)
    code, out = apply(run_cli, root)  # free is up to date; bench runs and fails its gate
    assert code == EXPECTATION and out.count("is below min 1000000000") == 1


def test_a_run_failure_wins_over_the_gate(run_cli: RunCli, tmp_path: Path) -> None:
    code, out = apply(run_cli, project(tmp_path, "{metric: mflops, min: 1}", script="exit 1"))
    assert code == RUN_FAILURE
    assert f"{JOB}: reported no mflops (its latest attempt is FAILURE) (expect in madfile.yaml:9:7)" in out


def test_results_show_the_recorded_verdict(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1e9}")
    apply(run_cli, root)
    code, out, _ = run_cli("results", cwd=root)
    header, row, total = out.splitlines()
    assert code == 0 and header.split()[-2:] == ["GATE", "NOTE"]
    assert row.split()[-7:] == ["UNMET", "mflops", "9", "is", "below", "min", "1000000000"]
    assert total == "1 job: 1 SUCCESS; gates: 0 met, 1 unmet"
    (data,) = json.loads(run_cli("results", "--json", cwd=root).stdout)
    assert data["gate"] == {"met": False, "value": 9.0, "reason": "mflops 9 is below min 1000000000",
                            "metric": "mflops", "better": "higher", "min": 1e9, "max": None,
                            "where": "madfile.yaml:9:7", **NO_TOLERANCE}


def test_results_show_what_the_last_apply_judged_after_a_gate_edit(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1e9}")
    assert apply(run_cli, root)[0] == EXPECTATION
    project(root, "{metric: mflops, min: 1}")  # loosened: nothing reruns, the same result now passes
    code, out = apply(run_cli, root)
    assert (code, out.splitlines()[-1]) == (0, "Expect gates: 1 met")
    code, out, _ = run_cli("results", cwd=root)
    assert code == 0 and out.splitlines()[-1] == "1 job: 1 SUCCESS; gates: 1 met"
    assert out.splitlines()[1].split()[-1] == "met"  # GATE; NOTE is empty
    (data,) = json.loads(run_cli("results", "--json", cwd=root).stdout)
    assert data["gate"] == {"met": True, "value": 9.0, "reason": "", "metric": "mflops", "better": "higher",
                            "min": 1.0, "max": None, "where": "madfile.yaml:9:7", **NO_TOLERANCE}
    project(root, "{metric: mflops, min: 1, max: 5}")  # and back to unmet, by the same path
    assert apply(run_cli, root)[0] == EXPECTATION
    assert json.loads(run_cli("results", "--json", cwd=root).stdout)[0]["gate"]["reason"] == "mflops 9 is above max 5"


@pytest.mark.parametrize(("gate", "message"), [
    ("{metric: mflops, min: 1, tolerance: 100%}", "madfile.yaml:9:50: error: runs[0].expect.bench.tolerance: "
                                                  "tolerance 100% on a higher-is-better metric lets any result pass"),
    ("{metric: mflops, better: higher, max: 5}", "madfile.yaml:9:47: error: runs[0].expect.bench.max: a gate on "
                                                 "a higher-is-better metric with only a `max`"),
    # the direction as compare and the gate judge it: by the metric's name, where `better:` is not given
    ("{metric: mflops, max: 5}", "madfile.yaml:9:31: error: runs[0].expect.bench.max: a gate on a higher-is-better "
                                 "metric (by its name) with only a `max`"),
    ("{metric: latency_ms, min: 5}", "madfile.yaml:9:35: error: runs[0].expect.bench.min: a gate on a "
                                     "lower-is-better metric (by its name) with only a `min`"),
])
def test_gates_that_would_be_ignored_or_misread_are_config_errors(run_cli: RunCli, tmp_path: Path, gate: str,
                                                                  message: str) -> None:
    root = project(tmp_path, gate)
    for command in ("validate", "apply"):
        code, out, err = run_cli(command, *(("--yes",) if command == "apply" else ()), cwd=root)
        assert (code, out) == (CONFIG, "") and err.startswith(message), err
    assert not (root / ".madengine" / "state.db").exists()


def test_a_gate_on_a_model_the_run_does_not_run_is_a_config_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace("bench: {", "bnch: {"))
    code, out, err = run_cli("validate", cwd=root)
    assert (code, out) == (CONFIG, "")
    assert err.startswith("madfile.yaml:9:7: error: runs[0].expect.bnch: expect names 'bnch', which this run "
                          "does not run"), err


def test_the_readme_quickstart_passes_its_gates(run_cli: RunCli, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "quickstart"
    shutil.copytree(REPO_ROOT / "examples" / "quickstart", root, ignore=shutil.ignore_patterns(".madengine"))
    code, out = apply(run_cli, root)
    assert (code, out.splitlines()[-1]) == (0, "Expect gates: 4 met")
    code, out, _ = run_cli("results", cwd=root)
    assert code == 0 and out.splitlines()[-1] == "4 jobs: 4 SUCCESS; gates: 4 met"


def test_a_garbled_gate_in_the_lock_record_is_recomputed_not_trusted(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1e9}")
    apply(run_cli, root)
    apply(run_cli, root)  # the record now holds the gate
    record = root / ".madengine" / "cache" / "lock-fingerprint.json"
    data = json.loads(record.read_text())
    assert data["gates"] == {JOB: {"metric": "mflops", "better": "higher", "min": 1e9, "max": None,
                                   "where": "madfile.yaml:9:7", "tolerance": None, "baseline": None}}
    for garbled in ({JOB: {"min": 1}}, {JOB: [1]}, [1]):
        record.write_text(json.dumps({**data, "gates": garbled}))
        code, out = apply(run_cli, root)
        assert code == EXPECTATION and f"{JOB}: mflops 9 is below min 1000000000" in out


# --- tolerance ---------------------------------------------------------------------------------------

SERIES = "job:bench@cpu/here"


def measure(root: Path, value: float) -> None:
    """The next run prints `performance: <value> mflops` (a changed script: its jobs run again)."""
    (root / "run.sh").write_text(f'#!/bin/sh\necho "performance: {value} mflops"\n')


def test_a_tolerance_against_the_previous_result(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, tolerance: 5%}", repeat=3)
    code, out = apply(run_cli, root)  # a first run has nothing to regress from: met, and said
    assert (code, out.splitlines()[-2:]) == (0, [
        "Expect gates: 3 met",
        f"{SERIES}: no reference for the tolerance: no earlier result of this job has mflops (met) (expect in "
        "madfile.yaml:9:7)"])
    measure(root, 8.6)  # 4.4% slower: within 5%
    assert apply(run_cli, root)[0] == 0
    measure(root, 8)
    code, out = apply(run_cli, root)
    line = f"{SERIES}: mflops 8 (median of 3 repeats) is below 8.17 = apply 2's 8.6 - 5% (expect in madfile.yaml:9:7)"
    assert (code, out.splitlines()[-2:]) == (EXPECTATION, ["Expect gates: 0 met, 3 unmet", line])
    code, out = apply(run_cli, root)  # a no-op apply judges the same results the same way
    assert (code, out.splitlines()[-1]) == (EXPECTATION, line)
    (data, *_) = json.loads(run_cli("results", "--json", cwd=root).stdout)
    assert {k: data["gate"][k] for k in ("met", "value", "bound", "reference", "reference_from", "repeats")} == {
        "met": False, "value": 8.0, "bound": 8.17, "reference": 8.6, "reference_from": "apply 2", "repeats": 3}


def test_a_tolerance_on_a_lower_is_better_metric(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, better: lower, tolerance: 10%}")
    assert apply(run_cli, root)[0] == 0
    measure(root, 8)  # better
    assert apply(run_cli, root)[0] == 0
    measure(root, 8.9)
    code, out = apply(run_cli, root)
    assert code == EXPECTATION
    assert f"{JOB}: mflops 8.9 is above 8.8 = apply 2's 8 + 10% (expect in madfile.yaml:9:7)" in out.splitlines()


def test_a_tolerance_against_a_baseline(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, min: 1}", repeat=2)
    assert apply(run_cli, root)[0] == 0
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    project(root, "{metric: mflops, tolerance: 5%, baseline: main}", repeat=2)
    measure(root, 10)  # better than the baseline's 9: met, whatever the previous apply
    assert apply(run_cli, root)[0] == 0
    measure(root, 8.5)
    code, out = apply(run_cli, root)
    assert (code, out.splitlines()[-1]) == (EXPECTATION, f"{SERIES}: mflops 8.5 (median of 2 repeats) is below 8.55 "
                                                         "= baseline main's 9 - 5% (expect in madfile.yaml:9:7)")


def test_a_baseline_that_does_not_exist_is_refused_at_its_line_before_anything_runs(run_cli: RunCli,
                                                                                    tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, tolerance: 5%, baseline: main}")
    for command in ("validate", "plan", "apply"):
        code, out, err = run_cli(command, *(("--yes",) if command == "apply" else ()), cwd=root)
        assert (code, out) == (CONFIG, ""), err
        assert err == ("madfile.yaml:9:56: error: runs[0].expect.bench.baseline: no baseline 'main' "
                       "(baselines/main.json does not exist) (hint: save one: `madengine baseline save main`)\n")
    assert not (root / ".madengine" / "state.db").exists()


def test_a_baseline_removed_after_the_lock_stops_apply_before_it_runs(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    assert apply(run_cli, root)[0] == 0
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    project(root, "{metric: mflops, tolerance: 5%, baseline: main}")
    assert apply(run_cli, root)[0] == 0
    assert apply(run_cli, root)[0] == 0  # the lock is fresh now: the next plan compiles nothing
    (root / "baselines" / "main.json").unlink()
    code, out, err = run_cli("apply", "--yes", "--replace", JOB, cwd=root)
    assert (code, out) == (CONFIG, "") and "no baseline 'main' (baselines/main.json does not exist)" in err
    assert len(json.loads(run_cli("state", "show", JOB, "--json", cwd=root).stdout)["attempts"]) == 1  # none ran


def test_a_baseline_of_another_project_stops_apply_before_it_runs(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    assert apply(run_cli, root)[0] == 0
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    project(root, "{metric: mflops, tolerance: 5%, baseline: main}")
    text = (root / "madfile.yaml").read_text()
    (root / "madfile.yaml").write_text(text.replace("version: 1\n", "version: 1\nname: other\n"))
    measure(root, 10)
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert (code, out) == (CONFIG, "")
    # The lock is refreshed (as `plan` would); no job runs, no result is recorded.
    assert err.splitlines()[-1] == ("baselines/main.json: error: a baseline of an unnamed project (no `name:`), "
                                    "not of project 'other' (hint: remove it (`madengine baseline rm main`) and save "
                                    "this project's own (`madengine baseline save main`))")
    assert len(json.loads(run_cli("state", "show", JOB, "--json", cwd=root).stdout)["attempts"]) == 1
