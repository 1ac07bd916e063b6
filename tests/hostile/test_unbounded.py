"""Unbounded work: aliases, sizes, nesting, repeat and params matrices are budgets, each a config error
with its position (never a hang, a MemoryError or a RecursionError). Timings are in bench/bench_hostile.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import RunCli

CONFIG = 5
LAUGHS = "version: 1\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))


def validate(tmp_path: Path, run_cli: RunCli, text: str, **env: str) -> tuple[int, str]:
    (tmp_path / "madfile.yaml").write_text(text)
    (tmp_path / "run.sh").touch()
    code, out, err = run_cli("validate", cwd=tmp_path, env=env, timeout=60)
    assert "Traceback" not in err and "internal error" not in err
    return code, out + err


def test_billion_laughs_is_refused_at_the_alias_that_expands_past_the_budget(tmp_path: Path, run_cli: RunCli) -> None:
    code, out = validate(tmp_path, run_cli, LAUGHS)
    assert code == CONFIG
    assert "madfile.yaml:7:4: error: YAML aliases expand this to more than 200,000 values" in out


def test_merged_aliases_of_big_mappings_count_what_they_copy(tmp_path: Path, run_cli: RunCli) -> None:
    text = "version: 1\nx0: &x0 {" + ", ".join(f"k{i}: v" for i in range(100)) + "}\n" + "".join(
        f"x{n}: &x{n}\n" + "".join(f"  m{j}: {{<<: *x{n - 1}, z: 1}}\n" for j in range(10)) for n in range(1, 8))
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert "YAML aliases expand this to more than 200,000 values" in out


@pytest.mark.parametrize("text", [
    "version: 1\nname: " + "[" * 5000 + "]" * 5000 + "\n",  # flow
    "version: 1\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)),  # block
])
def test_deep_yaml_is_a_config_error_not_a_recursion_error(tmp_path: Path, run_cli: RunCli, text: str) -> None:
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert "error: the YAML is nested more than 64 levels deep" in out


# Each file nested `levels` deep in all (its top level is 1), in a place where shallower values are accepted.
DEEP_JSON = {
    "models.json": lambda levels: '[\n  {"name": "m", "dockerfile": "d", "scripts": "run.sh",\n   "x": '
                                  + "[" * (levels - 2) + "]" * (levels - 2) + "}\n]",
    "scripts/common/tools.json": lambda levels: '{"tools": {},\n "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}",
    "data.json": lambda levels: '{"y": {"local": {"path": "/d", "z": '
                                + "[" * (levels - 3) + "]" * (levels - 3) + "}}}",
}


@pytest.mark.parametrize(("name", "where"), [("models.json", "2:3"), ("scripts/common/tools.json", "1:1"),
                                             ("data.json", "1:1")])
def test_json_nested_past_64_levels_is_refused_at_its_position(
        tmp_path: Path, run_cli: RunCli, name: str, where: str) -> None:
    (tmp_path / "pkg" / "scripts" / "common").mkdir(parents=True)
    (tmp_path / "pkg" / "run.sh").touch()
    (tmp_path / "pkg" / "models.json").write_text('[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]')
    (tmp_path / "pkg" / name).write_text(DEEP_JSON[name](64))
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == 0, out
    (tmp_path / "pkg" / name).write_text(DEEP_JSON[name](65))
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert (code, out) == (CONFIG, f"{name}:{where}: error: JSON nested more than 64 levels deep "
                                   "(hint: this limit is fixed)\n")


def test_a_50_mb_madfile_is_refused_before_it_is_parsed(tmp_path: Path, run_cli: RunCli) -> None:
    code, out = validate(tmp_path, run_cli, "version: 1\nname: " + "x" * 50_000_000 + "\n")
    assert code == CONFIG
    assert "madfile.yaml is 47.7 MB; the limit is 64 KB" in out and "MADENGINE_MAX_MADFILE_BYTES" in out


def test_the_madfile_size_limit_comes_from_the_environment(tmp_path: Path, run_cli: RunCli) -> None:
    code, out = validate(tmp_path, run_cli, "version: 1\nname: " + "x" * 2000 + "\n",
                         MADENGINE_MAX_MADFILE_BYTES="1000")
    assert code == CONFIG
    assert "madfile.yaml is 2 KB; the limit is 1000 bytes" in out


@pytest.mark.parametrize("name", ["models.json", "scripts/m/models.json"])
def test_models_json_over_the_size_limit_is_refused(tmp_path: Path, run_cli: RunCli, name: str) -> None:
    (tmp_path / "pkg" / "scripts" / "m").mkdir(parents=True)
    (tmp_path / "pkg" / "models.json").write_text('[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]')
    (tmp_path / "pkg" / name).write_text("[" + " " * 9_000_000 + "]")
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    assert "is 8.6 MB; the limit is 8.0 MB" in out and "MADENGINE_MAX_INPUT_BYTES" in out


@pytest.mark.parametrize("name", ["scripts/common/tools.json", "data.json"])
def test_tools_or_data_json_just_over_its_own_smaller_limit_is_refused_before_parsing(
        tmp_path: Path, run_cli: RunCli, name: str) -> None:
    # Real ones are tens of KB; 8 MB of them (models.json's limit) took over a second and 278 MB.
    (tmp_path / "pkg" / "scripts" / "common").mkdir(parents=True)
    (tmp_path / "pkg" / "models.json").write_text('[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]')
    (tmp_path / "pkg" / name).write_text("{" + " " * (1024 * 1024) + "x")  # 1 MB + 2 bytes, invalid JSON
    madfile = "version: 1\npackage: pkg\nmodels: [{select: m}]\n"
    code, out = validate(tmp_path, run_cli, madfile, MADENGINE_MAX_INPUT_BYTES="100000000")
    assert code == CONFIG
    assert (f"{name}: error: {name} is 1,048,578 bytes; the limit is 1,048,576 bytes "
            "(hint: set MADENGINE_MAX_TOOLS_DATA_BYTES (in bytes) to raise it)") in out
    assert "invalid JSON" not in out  # refused before it was parsed
    code, out = validate(tmp_path, run_cli, madfile, MADENGINE_MAX_TOOLS_DATA_BYTES="2000000")
    assert code == CONFIG
    assert f"{name}:1:" in out and "invalid JSON" in out and "the limit is" not in out


def test_a_fifo_as_the_madfile_is_refused_not_read(tmp_path: Path, run_cli: RunCli) -> None:
    os.mkfifo(tmp_path / "madfile.yaml")  # reading it waited for a writer forever
    code, out, err = run_cli("validate", cwd=tmp_path, timeout=30)
    assert (code, out, err) == (CONFIG, "", "madfile.yaml: error: madfile.yaml is not a regular file (hint: "
                                            "madfile.yaml must be a file (not a FIFO, socket or device))\n")


@pytest.mark.parametrize("name", ["scripts/common/tools.json", "data.json"])
def test_a_fifo_as_a_json_input_is_refused_not_read(tmp_path: Path, run_cli: RunCli, name: str) -> None:
    (tmp_path / "pkg" / "scripts" / "common").mkdir(parents=True)
    (tmp_path / "pkg" / "models.json").write_text('[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]')
    os.mkfifo(tmp_path / "pkg" / name)
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    assert f"{name}: error: {name} is not a regular file (hint: {Path(name).name} must be a file" in out


RUN_M = "version: 1\nmodels:\n  - {name: m, scripts: run.sh}\nruns:\n  - {models: [m], repeat: 10000000}\n"


def test_repeat_past_the_job_limit_is_refused_before_jobs_are_built(tmp_path: Path, run_cli: RunCli) -> None:
    code, out = validate(tmp_path, run_cli, RUN_M)
    assert code == CONFIG
    assert ("madfile.yaml:5:5: error: runs[0]: compiles to 10,000,000 jobs; the limit is 25,000 "
            "(hint: set `limits.jobs` to raise it") in out


def test_a_params_matrix_of_a_billion_combinations_is_refused_before_it_is_expanded(
        tmp_path: Path, run_cli: RunCli) -> None:
    params = ", ".join(f"p{i}: [{', '.join(map(str, range(10)))}]" for i in range(9))
    text = f"version: 1\nmodels:\n  - {{name: m, scripts: run.sh, params: {{{params}}}}}\n"
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert "models[0].params: the params matrix has 1,000,000,000 combinations" in out


def test_models_times_contexts_times_targets_count_against_the_limit_and_limits_jobs_raises_it(
        tmp_path: Path, run_cli: RunCli) -> None:
    models = "".join(f"  - {{name: m{i}, scripts: run.sh, params: {{a: [1, 2, 3, 4, 5]}}}}\n" for i in range(40))
    contexts = "contexts:\n" + "".join(f"  c{i}: {{}}\n" for i in range(30))
    text = f"version: 1\nmodels:\n{models}{contexts}runs:\n  - {{models: [all], repeat: 20}}\n"
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert "compiles to 120,000 jobs; the limit is 25,000" in out
    code, out = validate(tmp_path, run_cli, text + "limits: {jobs: 120000}\n")
    assert code == 0, out
    assert "120000 jobs" in out


def test_a_package_of_more_models_than_the_limit_is_refused_where_it_goes_over(
        tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "models.json").write_text("[\n" + ",\n".join(f'{{"name": "m{i}"}}' for i in range(30_000)) + "\n]")
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert "models.json:20002:1: error: the package has more than 20,000 models" in err
    code, _, err = run_cli("discover", cwd=tmp_path, env={"MADENGINE_MAX_MODELS": "30000"}, timeout=60)
    assert code == 0, err


def test_thousands_of_duplicate_names_are_not_all_listed(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "models.json").write_text("[" + ",".join(['{"name": "m"}'] * 10_000) + "]")
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert len(err.splitlines()) == 101 and "more than 100 duplicate model names" in err


def _package(tmp_path: Path, rel: str, text: str) -> Path:
    (tmp_path / "pkg" / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pkg" / "models.json").write_text('[{"name": "m", "dockerfile": "d", "scripts": "run.sh"}]')
    (tmp_path / "pkg" / rel).write_text(text)
    return tmp_path


UNKNOWN = ", ".join(f'"x{k}": 0' for k in range(6))  # six unknown keys, kept with a warning (10,000 entries: < 1 MB)


def test_a_position_per_tool_of_a_big_tools_json_is_not_a_search_from_its_start(
        tmp_path: Path, run_cli: RunCli) -> None:
    # Each tool has its line, and each unknown key the line where it first appears: they were searched
    # for from the start of the file, 9 times per tool (minutes for this file). The last tool is wrong.
    lines = [f'"t{i}": {{{UNKNOWN}, "cmd": "c"}}' for i in range(10_000)]
    lines[-1] = lines[-1].replace('"cmd": "c"', '"cmd": 2')
    _package(tmp_path, "scripts/common/tools.json", '{"tools": {\n' + ",\n".join(lines) + "\n}}\n")
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    column = lines[-1].index('"cmd"') + 1
    assert (f"scripts/common/tools.json:10001:{column}: error: tools.t9999.cmd: tool 't9999': `cmd` must be "
            "a string, not a number") in out


def test_a_position_per_provider_of_a_big_data_json_is_not_a_search_from_its_start(
        tmp_path: Path, run_cli: RunCli) -> None:
    lines = [f'"d{i}": {{"local": {{{UNKNOWN}, "path": "/d"}}}}' for i in range(10_000)]
    lines[-1] = lines[-1].replace('"path": "/d"', '"path": 2')
    _package(tmp_path, "data.json", "{\n" + ",\n".join(lines) + "\n}\n")
    code, out = validate(tmp_path, run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    column = lines[-1].index('"path"') + 1
    assert (f"data.json:10001:{column}: error: d9999.local.path: data 'd9999', provider 'local': `path` must be "
            "a string, not a number") in out


@pytest.mark.parametrize(("rel", "entry", "head", "tail"), [
    ("scripts/common/tools.json", '"t{i}": {{"cmd": 2}}', '{"tools": {\n', "\n}}"),
    ("data.json", '"d{i}": {{"local": {{"path": 2}}}}', "{\n", "\n}"),
])
def test_reading_a_tools_or_data_json_stops_after_100_errors(
        tmp_path: Path, run_cli: RunCli, rel: str, entry: str, head: str, tail: str) -> None:
    text = head + ",\n".join(entry.format(i=i) for i in range(5000)) + tail
    code, out = validate(_package(tmp_path, rel, text), run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    assert out.count(f"{rel}:") == 101
    assert f"{rel}:102: error: 100 errors before this entry; the rest of the file is not read" in out


@pytest.mark.parametrize(("rel", "text", "message"), [
    ("scripts/common/tools.json", '{"tools": {\n' + ",\n".join(f'"t{i}": {{}}' for i in range(10_001)) + "\n}}",
     "scripts/common/tools.json:10002:1: error: more than 10,000 tools"),
    ("data.json", "{\n" + ",\n".join(f'"d{i}": {{}}' for i in range(10_001)) + "\n}",
     "data.json:10002:1: error: more than 10,000 data names"),
    ("data.json", '{"d": {\n' + ",\n".join(f'"p{i}": {{}}' for i in range(10_001)) + "\n}}",
     "data.json:10002:1: error: more than 10,000 data providers"),
])
def test_more_tools_or_data_than_the_limit_are_refused_at_the_first_one_over(
        tmp_path: Path, run_cli: RunCli, rel: str, text: str, message: str) -> None:
    code, out = validate(_package(tmp_path, rel, text), run_cli, "version: 1\npackage: pkg\nmodels: [{select: m}]\n")
    assert code == CONFIG
    assert message in out


# 10 jobs of the limit allow 1,600 characters of job addresses (madengine.limits.ADDRESS_CHARS_PER_JOB).
LONG = "v" * 200


def test_a_params_matrix_of_long_values_is_refused_by_its_address_characters_before_it_is_expanded(
        tmp_path: Path, run_cli: RunCli) -> None:
    params = f"{{p: [{', '.join(f'{i}{LONG}' for i in range(10))}]}}"
    text = f"version: 1\nlimits: {{jobs: 10}}\nmodels:\n  - {{name: m, scripts: run.sh, params: {params}}}\n"
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert ("madfile.yaml:4:32: error: models[0].params: model 'm': its 10 params combinations make job addresses "
            "of 2,060 characters, more than the limit of 1,600 (160 a job of the limit of 10 jobs)") in out
    assert "shorten the model, param, context or target names" in out
    code, out = validate(tmp_path, run_cli, text.replace("jobs: 10", "jobs: 20"))
    assert code == 0, out


def test_long_context_names_count_against_the_address_characters_of_the_jobs(
        tmp_path: Path, run_cli: RunCli) -> None:
    text = (f"version: 1\nlimits: {{jobs: 10}}\nmodels:\n  - {{name: m, scripts: run.sh}}\n"
            f"contexts:\n  a{LONG}: {{}}\n  b{LONG}: {{}}\n  c{LONG}: {{}}\n  d{LONG}: {{}}\n"
            f"  e{LONG}: {{}}\n  f{LONG}: {{}}\n  g{LONG}: {{}}\n  h{LONG}: {{}}\n")
    code, out = validate(tmp_path, run_cli, text)
    assert code == CONFIG
    assert ("madfile.yaml:3:1: error: models: compiles to 8 jobs whose addresses take 1,720 characters; the limit "
            "is 1,600 (160 a job of the limit of 10 jobs)") in out
    code, out = validate(tmp_path, run_cli, text.replace("jobs: 10", "jobs: 12"))
    assert code == 0, out
