"""`madengine baseline save|list|show|rm` and `madengine check [APPLY]`, end to end on the `local` backend."""

from __future__ import annotations

import json
from pathlib import Path

from tests.apply.test_gates import JOB, measure, project
from tests.conftest import RunCli

USAGE, CONFIG, EXPECTATION = 4, 5, 6
SERIES = "job:bench@cpu/here"


def applied(run_cli: RunCli, root: Path, *values: float) -> None:
    """An apply per value, each run printing `performance: <value> mflops`."""
    for value in values:
        measure(root, value)
        code, _, err = run_cli("apply", "--yes", cwd=root)
        assert code in (0, EXPECTATION), err


def test_save_twice_gives_the_same_bytes_and_list_show_rm(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}", repeat=2)
    applied(run_cli, root, 9)
    assert run_cli("baseline", "save", "main", cwd=root) == (0, "baselines/main.json written (1 job, 1 figure from "
                                                                "apply 1)\n", "")
    first = (root / "baselines" / "main.json").read_bytes()
    assert run_cli("baseline", "save", "main", cwd=root).stdout == ("baselines/main.json unchanged (1 job, 1 figure "
                                                                    "from apply 1)\n")
    assert (root / "baselines" / "main.json").read_bytes() == first and first.endswith(b"}\n")
    applied(run_cli, root, 10)
    assert run_cli("baseline", "save", "old", "--from", "previous", cwd=root).code == 0
    assert (root / "baselines" / "old.json").read_bytes() == first  # apply 1 again, from another apply's view
    assert run_cli("baseline", "save", "new", "--from", "2", cwd=root).code == 0

    code, out, _ = run_cli("baseline", "list", cwd=root)
    assert code == 0 and [line.split()[:2] + line.split()[3:] for line in out.splitlines()] == [
        ["NAME", "APPLY", "JOBS", "FIGURES"], ["main", "1", "1", "1"], ["new", "2", "1", "1"], ["old", "1", "1", "1"]]
    listed = json.loads(run_cli("baseline", "list", "--json", cwd=root).stdout)
    assert [(e["name"], e["apply_id"], e["jobs"]) for e in listed] == [("main", 1, 1), ("new", 2, 1), ("old", 1, 1)]

    code, out, _ = run_cli("baseline", "show", "new", cwd=root)
    assert code == 0 and out.splitlines()[:2] == [
        "JOB                 MODEL  METRIC  MEDIAN  SPREAD  REPEATS  STATUS",
        f"{SERIES}  bench  mflops  10      0.0%    2        SUCCESS"]
    shown = json.loads(run_cli("baseline", "show", "new", "--json", cwd=root).stdout)
    assert (shown["name"], shown["apply_id"], shown["series"][SERIES]["figures"]) == (
        "new", 2, [{"model": "bench", "metric": "mflops", "values": [10.0, 10.0]}])

    assert run_cli("baseline", "rm", "old", cwd=root) == (0, "baselines/old.json removed\n", "")
    assert not (root / "baselines" / "old.json").exists()
    assert run_cli("baseline", "rm", "old", cwd=root) == (
        USAGE, "", "error: no baseline 'old' (baselines/old.json does not exist) (hint: saved baselines: main, new)\n")


def test_save_needs_an_apply_with_results(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    assert run_cli("baseline", "save", "main", cwd=root) == (
        USAGE, "", "error: no apply has run yet: no results to keep (hint: run `madengine apply` first)\n")
    applied(run_cli, root, 9)
    code, out, err = run_cli("baseline", "save", "main", "--from", "7", cwd=root)
    assert (code, out, err) == (USAGE, "", "error: apply 7: no such apply (applies are 1..1) (hint: `madengine "
                                           "results --json` lists them)\n")
    code, _, err = run_cli("baseline", "save", "main", "--from", "results.json", cwd=root)
    assert (code, err) == (USAGE, "error: --from 'results.json' is not an apply (hint: name an apply id, `latest`, "
                                  "`previous` or @{YYYY-MM-DD})\n")
    assert not (root / "baselines").exists()


def test_a_baseline_of_another_project_is_refused_by_every_command(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    applied(run_cli, root, 9)
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    before = (root / "baselines" / "main.json").read_bytes()
    text = (root / "madfile.yaml").read_text()
    (root / "madfile.yaml").write_text(text.replace("version: 1\n", "version: 1\nname: nightly\n"))
    line = ("baselines/main.json: error: a baseline of an unnamed project (no `name:`), not of project 'nightly' "
            "(hint: remove it (`madengine baseline rm main`) and save this project's own (`madengine baseline save "
            "main`))\n")
    for args in (("show", "main"), ("list",), ("save", "main")):
        assert run_cli("baseline", *args, cwd=root).code == CONFIG
    code, out, err = run_cli("baseline", "show", "main", cwd=root)
    assert (code, out, err) == (CONFIG, "", line)
    code, out, err = run_cli("baseline", "save", "main", cwd=root)
    assert (code, out) == (CONFIG, "") and "(hint: nothing written: remove it first" in err
    assert (root / "baselines" / "main.json").read_bytes() == before
    assert run_cli("baseline", "rm", "main", cwd=root).code == 0  # what `rm` is for
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    assert json.loads((root / "baselines" / "main.json").read_text())["project"] == "nightly"


def test_a_baseline_file_of_the_wrong_shape_is_one_line_naming_it(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    (root / "baselines").mkdir()
    (root / "baselines" / "main.json").write_text('{"format": "madengine-results",\n "version": 1,\n "series": 3}\n')
    code, out, err = run_cli("baseline", "show", "main", cwd=root)
    assert (code, out, len(err.splitlines())) == (CONFIG, "", 1)
    assert err.startswith("baselines/main.json: error: series: must be an object of job series, not 3"), err
    (root / "baselines" / "main.json").write_text('{"format": "madengine-results",\n "version": }\n')
    code, out, err = run_cli("baseline", "list", cwd=root)
    assert (code, out) == (CONFIG, "") and err.startswith("baselines/main.json:2:13: error: invalid JSON"), err


# --- check ---------------------------------------------------------------------------------------------


def test_check_judges_an_applys_results_without_running_anything(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops, tolerance: 5%}", repeat=2)
    applied(run_cli, root, 9, 8)  # apply 2 regressed by 11%
    unmet = f"{SERIES}: mflops 8 (median of 2 repeats) is below 8.55 = apply 1's 9 - 5% (expect in madfile.yaml:9:7)"
    code, out, err = run_cli("check", cwd=root)
    assert (code, err) == (EXPECTATION, unmet + "\n")
    header, row, total = out.splitlines()
    assert header.split() == ["GATE", "JOB", "RESULT", "EXPECT"]
    assert total == "gates: 0 met, 2 unmet (results of apply 2)"
    assert row == f"UNMET  {SERIES}  mflops 8 (median of 2 repeats) is below 8.55 = apply 1's 9 - 5%  madfile.yaml:9:7"
    assert run_cli("check", "2", cwd=root)[:2] == (code, out)
    code, out, err = run_cli("check", "previous", cwd=root)  # apply 1: the first, with nothing to regress from
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        f"met   {SERIES}  mflops 9 (median of 2 repeats); no reference for the tolerance: no earlier result of "
        "this job has mflops (met)  madfile.yaml:9:7", "gates: 2 met (results of apply 1)"]
    data = json.loads(run_cli("check", "--json", cwd=root).stdout)
    assert (data["apply_id"], data["met"], data["unmet"]) == (2, 0, 2)
    assert data["verdicts"][0] == {
        "address": JOB, "met": False, "value": 8.0, "bound": 8.55, "reference": 9.0, "reference_from": "apply 1",
        "repeats": 2, "reason": "mflops 8 (median of 2 repeats) is below 8.55 = apply 1's 9 - 5%", "note": "",
        "metric": "mflops", "better": "higher", "min": None, "max": None, "tolerance": 0.05, "baseline": None,
        "where": "madfile.yaml:9:7"}
    # Loosened: the same results now pass; check recorded nothing, ran nothing.
    project(root, "{metric: mflops, tolerance: 15%}", repeat=2)
    assert run_cli("check", cwd=root).code == 0
    assert len(json.loads(run_cli("results", "--json", cwd=root).stdout)) == 2
    assert json.loads(run_cli("results", "--json", cwd=root).stdout)[0]["gate"]["met"] is False  # as apply judged


def test_check_against_a_baseline_and_absolute_bounds(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    applied(run_cli, root, 100)
    assert run_cli("baseline", "save", "main", cwd=root).code == 0
    project(root, "{metric: mflops, min: 50, tolerance: 10%, baseline: main}")
    applied(run_cli, root, 95, 89)
    code, out, err = run_cli("check", cwd=root)
    assert (code, err) == (EXPECTATION, f"{JOB}: mflops 89 is below 90 = baseline main's 100 - 10% (expect in "
                                        "madfile.yaml:9:7)\n")
    code, out, _ = run_cli("check", "previous", cwd=root)
    assert code == 0 and f"met   {JOB}  mflops 95 is within min 50, 90 = baseline main's 100 - 10%" in out


def test_check_usage_errors(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "{metric: mflops}")
    assert run_cli("check", cwd=root) == (USAGE, "", "error: no apply has run yet (hint: run `madengine apply` "
                                                     "first)\n")
    applied(run_cli, root, 9)
    assert run_cli("check", "3", cwd=root) == (USAGE, "", "error: apply 3: no such apply (applies are 1..1) (hint: "
                                                          "`madengine results --json` lists them)\n")
    assert run_cli("check", "previous", cwd=root) == (USAGE, "", "error: previous: only apply 1 has recorded results "
                                                                 "(hint: run `madengine apply`)\n")
    assert run_cli("check", "main", cwd=root) == (USAGE, "", "error: 'main' is not an apply (hint: name an apply id, "
                                                             "`latest` or `previous`)\n")
    assert run_cli("check", cwd=root)[:2] == (0, f"GATE  JOB                   RESULT    EXPECT\n"
                                                 f"met   {JOB}  mflops 9  madfile.yaml:9:7\n"
                                                 "gates: 1 met (results of apply 1)\n")
