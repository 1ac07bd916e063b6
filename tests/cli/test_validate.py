"""`madengine validate` through the real entry point (`python -m madengine`), one test per bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import REPO_ROOT, CliResult, RunCli
from tests.unit.madfile.conftest import DESIGN_EXAMPLE, FUTURE_BACKENDS

CONFIG = 5
# The DESIGN example has ssh, slurm and kubernetes targets: these runs have them registered.
WITH_FUTURE_BACKENDS = {"PYTHONPATH": f"{REPO_ROOT}:{FUTURE_BACKENDS}"}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def assert_config_error(result: CliResult, *lines: str) -> None:
    """Exit 5, the exact diagnostic lines on stderr (in order), nothing on stdout, no traceback."""
    code, out, err = result
    assert code == CONFIG, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert out == ""
    assert err.splitlines() == list(lines), err


# --- valid files ----------------------------------------------------------------------------------


DESIGN_PACKAGE = {
    "MAD/models.json": """\
        [{"name": "dummy", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": "1",
          "owner": "", "training_precision": "", "tags": ["dummies"], "args": ""},
         {"name": "dummy3", "dockerfile": "docker/dummy", "scripts": "scripts/dummy/run.sh", "n_gpus": "1",
          "owner": "", "training_precision": "", "tags": ["dummies"], "args": ""}]
        """,
    "MAD/docker/dummy.ubuntu.none.Dockerfile": "# CONTEXT {'gpu_vendor': 'NONE'}\nFROM scratch\n",
    "MAD/scripts/dummy/run.sh": "echo 'performance: 1 x'\n",
    "docker/matmul.ubuntu.none.Dockerfile": "# CONTEXT {'gpu_vendor': 'NONE'}\nFROM scratch\n",
    "scripts/matmul/run.sh": "echo 'performance: 1 gflops'\n",
}


def test_design_example_is_valid(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", DESIGN_EXAMPLE)
    for rel, text in DESIGN_PACKAGE.items():
        write(tmp_path / rel, text)
    code, out, err = run_cli("validate", cwd=tmp_path, env=WITH_FUTURE_BACKENDS)
    assert (code, err) == (0, "")
    assert out == "madfile.yaml: ok (3 model entries, 2 contexts, 5 targets -> 2 images, 9 jobs)\n"


def test_design_example_without_its_package(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", DESIGN_EXAMPLE)
    code, out, err = run_cli("validate", cwd=tmp_path, env=WITH_FUTURE_BACKENDS)
    assert code == CONFIG and out == ""
    assert err.startswith("madfile.yaml:3:1: error: package: package directory")


def test_valid_json(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", DESIGN_EXAMPLE)
    for rel, text in DESIGN_PACKAGE.items():
        write(tmp_path / rel, text)
    code, out, err = run_cli("validate", "--json", cwd=tmp_path, env=WITH_FUTURE_BACKENDS)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"ok": True, "file": "madfile.yaml", "name": "nightly", "diagnostics": [],
                               "counts": {"models": 3, "contexts": 2, "targets": 5, "runs": 1,
                                          "images": 2, "jobs": 9}}


def test_targets_of_backends_not_installed(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", DESIGN_EXAMPLE)
    for rel, text in DESIGN_PACKAGE.items():
        write(tmp_path / rel, text)
    code, _, err = run_cli("validate", cwd=tmp_path)
    assert (code, err) == (0, ""), err


def test_yml_fallback_and_chdir(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "proj" / "madfile.yml", "version: 1\n")
    code, out, _ = run_cli("validate", "-C", "proj", cwd=tmp_path)
    assert (code, out) == (0, "proj/madfile.yml: ok (0 model entries, 1 contexts, 1 targets -> 0 images, 0 jobs)\n")


def test_file_option(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "conf" / "bench.yaml", "version: 1\n")
    code, out, _ = run_cli("validate", "-f", "conf/bench.yaml", cwd=tmp_path)
    assert (code, out) == (0, "conf/bench.yaml: ok (0 model entries, 1 contexts, 1 targets -> 0 images, 0 jobs)\n")


# --- one test per bad input -----------------------------------------------------------------------


def test_yaml_syntax_error(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\nmodels: [a, b\ncontexts: {}\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:3:9: error: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at 2:9) "
        "(hint: check the indentation, quotes and brackets here)")


def test_missing_file(run_cli: RunCli, tmp_path: Path) -> None:
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml: error: no madfile: madfile.yaml does not exist "
        "(hint: run `madengine init` to write one, or name it with -f FILE)")


def test_missing_file_named_with_f(run_cli: RunCli, tmp_path: Path) -> None:
    assert_config_error(
        run_cli("validate", "-f", "other.yaml", cwd=tmp_path),
        "other.yaml: error: no madfile: other.yaml does not exist "
        "(hint: run `madengine init` to write one, or name it with -f FILE)")


def test_directory_instead_of_file(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    assert_config_error(
        run_cli("validate", "-f", "proj", cwd=tmp_path),
        "proj: error: proj is a directory, not a madfile "
        "(hint: name the file with -f proj/madfile.yaml, or run in it with -C proj)")


def test_empty_file(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:1:1: error: the madfile is empty "
        "(hint: start with `version: 1`, or run `madengine init` to write a starter madfile)")


def test_non_mapping_top_level(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "# a list, not a mapping\n- select: dummy\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:2:1: error: the top level must be a mapping "
        "(version, models, contexts, targets, runs), found a list "
        "(hint: start with `version: 1`, or run `madengine init` to write a starter madfile)")


def test_duplicate_keys(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", """\
        version: 1
        contexts:
          cpu: {gpu_vendor: NONE}
          cpu: {gpu_vendor: AMD}
        """)
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:4:3: error: contexts.cpu: duplicate key `cpu` (first defined at madfile.yaml:3:3) "
        "(hint: a key may appear once per mapping: remove or merge one of them)")


def test_missing_version(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "name: nightly\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:1:1: error: missing `version` (hint: add `version: 1` as the first line)")


def test_future_version(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 2\nworkflows: {}\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:1:10: error: version: madfile version 2 is newer than this madengine "
        "(hint: this madengine reads madfile version 1; upgrade madengine)")


def test_non_utf8_bytes(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "madfile.yaml").write_bytes(b"version: 1\nname: caf\xe9\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:2:10: error: not valid UTF-8: byte 0xe9 cannot be decoded "
        "(hint: save the file as UTF-8 (madfiles are UTF-8 text))")


def test_unknown_key(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\ntargets:\n  box: {backend: docker, gpu_vendor: AMD}\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:3:26: error: targets.box.gpu_vendor: unknown key `gpu_vendor` "
        "(hint: `gpu_vendor` belongs in a context (contexts.<name>) or a host (hosts: [{address: ...}]))")


def test_many_errors_all_reported(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", """\
        version: 1
        models:
          - name: matmul
            scripts: run.sh
            timeout: -5
          - dummy
        contexts:
          cpu: {gpu_vendr: NONE}
        targets:
          lab: {backend: sshh}
          box: {backend: docker}
        runs:
          - models: [matmul]
            contexts: [cpux]
            targets: [box]
            repeat: 0
        """)
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:5:14: error: models[0].timeout: timeout must be -1 or at least 0, found -5 "
        "(hint: give seconds, 0 for none, or -1 for the default (7200 s))",
        "madfile.yaml:6:5: error: models[1]: expected a mapping, found the string 'dummy' "
        "(hint: to pick models from the package by tag, write `- select: dummy`)",
        "madfile.yaml:8:9: error: contexts.cpu.gpu_vendr: unknown key `gpu_vendr` "
        "(hint: did you mean `gpu_vendor`?)",
        "madfile.yaml:10:18: error: targets.lab.backend: unknown backend `sshh` "
        "(hint: did you mean `ssh`? (backends: local, docker, ssh, ansible, slurm, kubernetes))",
        "madfile.yaml:14:16: error: runs[0].contexts[0]: unknown context `cpux` (hint: did you mean `cpu`?)",
        "madfile.yaml:16:13: error: runs[0].repeat: repeat must be at least 1, found 0 "
        "(hint: `repeat: 1` runs each job once)",
    )


def test_errors_as_json(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\nbogus: 1\nname: [x]\n")
    code, out, err = run_cli("validate", "--json", cwd=tmp_path, env=WITH_FUTURE_BACKENDS)
    assert code == CONFIG and "Traceback" not in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["file"] == "madfile.yaml"
    assert [(d["file"], d["line"], d["column"], d["key_path"], d["message"]) for d in doc["diagnostics"]] == [
        ("madfile.yaml", 2, 1, "bogus", "unknown key `bogus`"),
        ("madfile.yaml", 3, 7, "name", "expected a string, found a list"),
    ]
    assert set(doc["diagnostics"][0]) == {"file", "line", "column", "message", "key_path", "hint", "severity"}


def test_chdir_to_missing_directory(run_cli: RunCli, tmp_path: Path) -> None:
    assert_config_error(
        run_cli("validate", "-C", "nowhere", cwd=tmp_path),
        "nowhere/madfile.yaml: error: no madfile: nowhere/madfile.yaml does not exist "
        "(hint: run `madengine init` to write one, or name it with -f FILE)")


def test_a_problem_met_in_every_context_and_repeat_is_reported_once(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", """\
        version: 1
        models:
          - {name: a, scripts: a.sh}
          - {name: b, scripts: b.sh}
        contexts: {c1: {}, c2: {}, c3: {}}
        targets: {box: {backend: docker}}
        runs: [{models: [all], repeat: 2}]
        """)
    write(tmp_path / "a.sh", "")
    write(tmp_path / "b.sh", "")
    hint = "(hint: give the model a Dockerfile prefix, or run it on `local`)"
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        f"madfile.yaml:3:5: error: models[0]: model 'a' has no `dockerfile` but runs on a docker target {hint}",
        f"madfile.yaml:4:5: error: models[1]: model 'b' has no `dockerfile` but runs on a docker target {hint}")


# --- what lock checks on inputs, validate checks first, at the line that named the file ---------------


def test_inline_model_script_missing(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\nmodels:\n  - name: m\n    scripts: scripts/nope/run.sh\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:4:5: error: models[0].scripts: model 'm': script 'scripts/nope/run.sh' does not exist "
        "(hint: paths are relative to the madfile (or, for packaged models, to the models.json that declares them))")


def test_packaged_model_script_missing(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\npackage: MAD\nmodels: [{select: all}]\n")
    write(tmp_path / "MAD/scripts/b/models.json", """\
        [
          {"name": "ok", "scripts": "run.sh"},
          {"name": "gone", "scripts": "gone.sh"}
        ]
        """)
    write(tmp_path / "MAD/scripts/b/run.sh", "")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "scripts/b/models.json:3: error: [1].scripts: model 'b/gone': script 'MAD/scripts/b/gone.sh' does not exist "
        "(hint: paths are relative to the madfile (or, for packaged models, to the models.json that declares them))")


def test_pre_script_missing(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\nmodels: [{name: m, scripts: run.sh}]\n"
                                     "contexts: {c: {pre_scripts: [{path: pre.sh, args: -x}]}}\n")
    write(tmp_path / "run.sh", "")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:3:30: error: contexts.c.pre_scripts[0]: pre-script 'pre.sh' does not exist "
        "(hint: paths are relative to the madfile)")


def test_build_context_missing(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", "version: 1\nmodels:\n  - name: m\n    scripts: run.sh\n"
                                     "    dockerfile: docker/m\n    dockercontext: nowhere\n"
                                     "targets: {box: {backend: docker}}\n")
    write(tmp_path / "run.sh", "")
    write(tmp_path / "docker/m.ubuntu.Dockerfile", "FROM scratch\n")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:6:5: error: models[0].dockercontext: model 'm': build context 'nowhere' is not a directory "
        "(hint: `dockercontext` names a directory of the package)")


def test_fields_that_nothing_would_read_are_refused(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", """\
        version: 1
        models:
          - {name: m, scripts: run.sh, url: "https://x", skip_gpu_arch: gfx90a}
        contexts:
          c: {docker_gpus: "0,1"}
        """)
    write(tmp_path / "run.sh", "")
    assert_config_error(
        run_cli("validate", cwd=tmp_path),
        "madfile.yaml:3:32: error: models[0].url: unknown key `url` (hint: `url` is not read by madengine; "
        "keep it in a comment)",
        "madfile.yaml:3:50: error: models[0].skip_gpu_arch: unknown key `skip_gpu_arch` (hint: madengine does not "
        "detect GPU architectures, so it cannot skip one; leave the model out of the run instead)",
        "madfile.yaml:5:7: error: contexts.c.docker_gpus: unknown key `docker_gpus` (hint: madengine gives each "
        "job free GPUs itself; set the target's `gpus`)")


def test_docker_mounts_on_a_local_target_are_named_not_ignored(run_cli: RunCli, tmp_path: Path) -> None:
    write(tmp_path / "madfile.yaml", """\
        version: 1
        models: [{name: m, scripts: run.sh}]
        contexts: {c: {docker_mounts: {/data: /data}}}
        targets: {here: {backend: local}, box: {backend: docker}}
        runs: [{models: [m], targets: [here], repeat: 2}]
        """)
    write(tmp_path / "run.sh", "")
    code, out, err = run_cli("validate", cwd=tmp_path)
    assert (code, out) == (0, "madfile.yaml: ok (1 model entries, 1 contexts, 2 targets -> 0 images, 2 jobs)\n")
    assert err == ("madfile.yaml:3:16: warning: contexts.c.docker_mounts: docker_mounts are not used by jobs on "
                   "local target `here` (hint: a local job sees the host's files where they are)\n")
