"""Hostile values: each validates with a position and a hint, or runs as written; none reaches apply as a
raw Python error or an internal error (issue 7, §3 "What validates must run")."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import RunCli

CONFIG = 5


def project(tmp_path: Path, madfile: str, models: list[dict[str, object]] | None = None) -> Path:
    (tmp_path / "madfile.yaml").write_text(textwrap.dedent(madfile), encoding="utf-8")
    (tmp_path / "run.sh").write_text('echo "performance: $# args"\n', encoding="utf-8")
    if models is not None:
        (tmp_path / "models.json").write_text(json.dumps(models, indent=1), encoding="utf-8")
    return tmp_path


def inline(tmp_path: Path, fields: str) -> Path:
    return project(tmp_path, f"version: 1\nmodels:\n  - {{name: m, scripts: run.sh, n_gpus: 0, {fields}}}\n")


def packaged(tmp_path: Path, **fields: object) -> Path:
    return project(tmp_path, "version: 1\npackage: .\nmodels: [{select: m}]\n",
                   [{"name": "m", "scripts": "run.sh", "n_gpus": "0", **fields}])


def config_error(run_cli: RunCli, root: Path) -> str:
    code, out, err = run_cli("validate", cwd=root)
    assert (code, out) == (CONFIG, ""), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def test_nul_in_a_model_name(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, project(tmp_path, 'version: 1\nmodels: [{name: "a\\0b", scripts: run.sh}]\n'))
    assert err.startswith("madfile.yaml:2:17: error: models[0].name: contains a NUL byte (hint: "), err


def test_nul_in_an_env_value(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, inline(tmp_path, 'env_vars: {A: "x\\0y"}'))
    assert err.startswith("madfile.yaml:3:57: error: models[0].env_vars.A: contains a NUL byte"), err


def test_env_name_with_equals_and_empty(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, inline(tmp_path, 'env_vars: {"A=B": x, "": y}'))
    assert err.splitlines() == [
        "madfile.yaml:3:54: error: models[0].env_vars.A=B: `A=B` is not a valid environment variable name "
        "(hint: use letters, digits and `_`, not starting with a digit)",
        'madfile.yaml:3:64: error: models[0].env_vars[""]: an environment variable name is empty '
        "(hint: use letters, digits and `_`, not starting with a digit)"]


def test_env_name_in_a_context(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, project(tmp_path, "version: 1\ncontexts: {c: {docker_env_vars: {1X: y}}}\n"))
    assert err.startswith("madfile.yaml:2:34: error: contexts.c.docker_env_vars.1X: `1X` is not a valid"), err


def test_negative_n_gpus(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, project(tmp_path, "version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: -5}]\n"))
    assert err.startswith("madfile.yaml:2:45: error: models[0].n_gpus: n_gpus must be -1 or at least 0, "
                          "found -5 (hint: "), err
    (tmp_path / "madfile.yaml").write_text('version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: "-5"}]\n')
    assert "n_gpus must be -1 or at least 0, found -5" in config_error(run_cli, tmp_path)  # models.json's string form
    (tmp_path / "madfile.yaml").write_text("version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: -1}]\n")
    assert run_cli("validate", cwd=tmp_path)[0] == 0  # -1: all of the host's GPUs


def test_boolean_n_gpus(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, project(tmp_path, "version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: true}]\n"))
    assert err.startswith("madfile.yaml:2:45: error: models[0].n_gpus: expected an integer, found `true`"), err


def test_boolean_repeat(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\nmodels: [{name: m, scripts: run.sh}]\nruns: [{models: [m], repeat: true}]\n")
    assert config_error(run_cli, root).startswith("madfile.yaml:3:30: error: runs[0].repeat: expected an integer")


def test_models_json_nul_name_env_and_n_gpus(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\npackage: .\nmodels: [{select: all}]\n", [
        {"name": "a\0b", "scripts": "run.sh"},
        {"name": "e", "scripts": "run.sh", "env_vars": {"A=B": "1", "C": "x\0"}},
        {"name": "g", "scripts": "run.sh", "n_gpus": "-5"},
        {"name": "t", "scripts": "run.sh", "n_gpus": True}])
    lines = config_error(run_cli, root).splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        "models.json:3:3", "models.json:9:3", "models.json:9:3", "models.json:17:3", "models.json:22:3"], lines
    assert "`name` contains a NUL byte" in lines[0] and "invalid variable name 'A=B'" in "".join(lines[1:3])
    assert "`env_vars.C` contains a NUL byte" in "".join(lines[1:3])
    assert "`n_gpus` must be -1 or at least 0, not -5" in lines[3] and "not boolean True" in lines[4]


def test_tools_and_data_json_nul_anywhere(run_cli: RunCli, tmp_path: Path) -> None:
    """A tools.json pre-script's args, a tool's env value, a data.json path: each failed only at apply."""
    root = project(tmp_path, "version: 1\npackage: .\nmodels: [{select: m}]\n",
                   [{"name": "m", "scripts": "run.sh", "n_gpus": "0"}])
    (root / "scripts" / "common").mkdir(parents=True)
    (root / "scripts" / "common" / "tools.json").write_text(json.dumps({"tools": {"t": {
        "cmd": "x", "env_vars": {"E": "a\0"}, "pre_scripts": [{"path": "p.sh", "args": "-a \0"}]}}}, indent=1))
    (root / "data.json").write_text('{"d": {"local": {"path": "/d\\\\u0000"}}, "n": {"local": {"path": "\\u0000"}}}')
    lines = config_error(run_cli, root).splitlines()
    assert [line.split(": error: ")[0] for line in lines] == [
        "data.json:1:66", "scripts/common/tools.json:6:12", "scripts/common/tools.json:11:18"], lines
    assert all("a string holds a NUL byte" in line for line in lines), lines


# --- numbers beyond 64 bits, infinities ------------------------------------------------------------


def test_huge_n_gpus_and_timeout(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, project(tmp_path, f"version: 1\nmodels: [{{name: m, scripts: run.sh, "
                                                  f"timeout: {2**64}, n_gpus: {2**70}}}]\n"))
    assert "models[0].timeout: the number is too large (65 bits; numbers must fit in 64 bits)" in err
    assert "models[0].n_gpus: the number is too large (71 bits;" in err
    (tmp_path / "madfile.yaml").write_text(f'version: 1\nmodels: [{{name: m, scripts: run.sh, n_gpus: "{2**63}"}}]\n')
    assert "2:45: error: models[0].n_gpus: the number is too large (64 bits;" in config_error(run_cli, tmp_path)


def test_n_gpus_string_too_long_to_read(run_cli: RunCli, tmp_path: Path) -> None:
    text = 'version: 1\nmodels: [{name: m, scripts: run.sh, n_gpus: "' + "9" * 5000 + '"}]\n'
    err = config_error(run_cli, project(tmp_path, text))  # was Python's wording: sys.set_int_max_str_digits()
    assert err == "madfile.yaml:2:45: error: models[0].n_gpus: the number is too large (5000 digits; numbers must " \
                  "fit in 64 bits)\n", err


def test_number_too_long_to_read(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, inline(tmp_path, "timeout: " + "9" * 5000))
    assert err.startswith("madfile.yaml:3:52: error: a number of 5000 digits is too large"), err


def test_models_json_huge_timeout(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, packaged(tmp_path, timeout=2**64))
    assert err.startswith("models.json:6:3: error: [0].timeout: model 'm': `timeout` is too large (65 bits;"), err


def test_models_json_number_too_long_to_read(run_cli: RunCli, tmp_path: Path) -> None:
    root = packaged(tmp_path)
    (root / "models.json").write_text(f'[{{"name": "m", "scripts": "run.sh", "timeout": {"9" * 5000}}}]')
    assert config_error(run_cli, root).startswith("models.json:1:48: error: a number of 5000 digits is too large")


def test_infinite_nan_and_negative_timeout_multiplier(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\ncontexts:\n  a: {timeout_multiplier: .inf}\n  b: {timeout_multiplier: .nan}\n"
                             "  c: {timeout_multiplier: -2}\n")
    assert config_error(run_cli, root).splitlines() == [
        "madfile.yaml:3:27: error: contexts.a.timeout_multiplier: expected a finite number, found the number inf "
        "(hint: give a finite number (.inf and .nan are not))",
        "madfile.yaml:4:27: error: contexts.b.timeout_multiplier: expected a finite number, found the number nan "
        "(hint: give a finite number (.inf and .nan are not))",
        "madfile.yaml:5:27: error: contexts.c.timeout_multiplier: must be greater than 0, found -2"]


def test_timeout_times_multiplier_beyond_64_bits(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, f"version: 1\nmodels: [{{name: m, scripts: run.sh, timeout: {2**62}}}]\n"
                             "contexts: {c: {timeout_multiplier: 1e300}}\n")
    assert config_error(run_cli, root).startswith("madfile.yaml:3:16: error: contexts.c.timeout_multiplier: model 'm': "
                                                  "its timeout times timeout_multiplier does not fit in 64 bits")


# --- params: one argument each, quoted in addresses ------------------------------------------------


def test_param_values_with_spaces_and_newlines_are_one_argument(run_cli: RunCli, tmp_path: Path) -> None:
    root = inline(tmp_path, 'params: {msg: ["a b", "x\\ny", "p,q]@r#1"]}')
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert (code, err) == (0, "madengine.lock written (0 images, 3 jobs)\n"), (out, err)
    jobs = ['job:m[msg="a b"]@default/local#1', 'job:m[msg="p,q]@r#1"]@default/local#1',
            'job:m[msg="x\\ny"]@default/local#1']
    assert [line.split()[0] for line in out.splitlines() if line.startswith("SUCCESS")] == ["SUCCESS"] * 3
    code, out, _ = run_cli("results", cwd=root)
    rows = [line.split("  ")[0] for line in out.splitlines()[1:-1]]
    assert rows == jobs, out
    assert all(" 2 " in line and "args" in line for line in out.splitlines()[1:-1])  # `--msg <value>`: 2 arguments


def test_models_json_n_gpus_string_too_long_to_read(run_cli: RunCli, tmp_path: Path) -> None:
    err = config_error(run_cli, packaged(tmp_path, n_gpus="9" * 5000))
    assert err.startswith("models.json:5:3: error: [0].n_gpus: model 'm': `n_gpus` must be a number that fits in "
                          "64 bits, not string '9999"), err


def test_a_huge_integer_param_is_passed_as_text(run_cli: RunCli, tmp_path: Path) -> None:
    root = inline(tmp_path, f"params: {{seed: [{2**70}]}}")
    assert run_cli("validate", cwd=root)[0] == 0
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0 and f"job:m[seed={2**70}]@default/local#1" in out, (out, err)


def test_half_a_surrogate_pair_in_the_madfile(run_cli: RunCli, tmp_path: Path) -> None:
    """YAML's `\\ud83d\\ude00` is two lone surrogates (not JSON's pair): no UTF-8 lock could hold them."""
    err = config_error(run_cli, project(tmp_path, 'version: 1\nmodels: [{name: "m\\ud83d\\ude00", scripts: run.sh}]\n'))
    assert "madfile.yaml:2:17: error: models[0].name: the escape \\ud83d is half of a UTF-16 surrogate pair" in err
    assert "\\U0001F600" in err


def test_half_a_surrogate_pair_in_models_json(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\npackage: .\nmodels: [{select: all}]\n")
    (root / "models.json").write_text('[{"name": "m\\ud83d", "scripts": "run.sh", "n_gpus": "0"}]', encoding="utf-8")
    err = config_error(run_cli, root)
    assert "models.json:1:13: error: the escape \\ud83d is half of a UTF-16 surrogate pair" in err


def test_a_whole_surrogate_pair_in_models_json_is_its_character(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\npackage: .\nmodels: [{select: all}]\n")
    (root / "models.json").write_text('[{"name": "m\\ud83d\\ude00", "scripts": "run.sh", "n_gpus": "0", "owner": "",'
                                      ' "training_precision": "", "tags": ["t"], "args": "", "dockerfile": "d"}]',
                                      encoding="utf-8")
    code, out, err = run_cli("lock", cwd=root)
    assert code == 0 and "m\U0001F600" in (root / "madengine.lock").read_text(encoding="utf-8"), (code, out, err)
