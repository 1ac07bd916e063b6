"""Loading madfile.yaml: finding it, YAML problems, positions, and schema errors as diagnostics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic
from madengine.madfile.load import LoadedMadfile, load_and_check, load_madfile
from madengine.madfile.locate import display_path, find_madfile
from madengine.madfile.model import DockerTarget, InlineModel, SelectModels, SshTarget
from tests.unit.madfile.conftest import DESIGN_EXAMPLE, Errors, Load, Write, at, one


def raised(path: Path) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        load_madfile(path)
    return list(info.value.diagnostics)


# --- finding the file -----------------------------------------------------------------------------


def test_find_madfile_prefers_yaml_then_yml(tmp_path: Path) -> None:
    assert find_madfile(tmp_path, None) == tmp_path / "madfile.yaml"  # neither: the loader reports it
    (tmp_path / "madfile.yml").write_text("version: 1\n")
    assert find_madfile(tmp_path, None) == tmp_path / "madfile.yml"
    (tmp_path / "madfile.yaml").write_text("version: 1\n")
    assert find_madfile(tmp_path, None) == tmp_path / "madfile.yaml"


def test_find_madfile_file_is_relative_to_base_unless_absolute(tmp_path: Path) -> None:
    assert find_madfile(tmp_path, Path("sub/x.yaml")) == tmp_path / "sub/x.yaml"
    assert find_madfile(tmp_path, Path("/abs/x.yaml")) == Path("/abs/x.yaml")


def test_display_path_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "a" / "madfile.yaml") == os.path.join("a", "madfile.yaml")
    assert display_path(Path("b/madfile.yaml")) == os.path.join("b", "madfile.yaml")
    assert display_path(Path("/elsewhere/madfile.yaml")) == "/elsewhere/madfile.yaml"


# --- a valid file ---------------------------------------------------------------------------------


def test_design_example_loads(load: Load, tmp_path: Path) -> None:
    loaded = load(DESIGN_EXAMPLE)
    mf = loaded.madfile
    assert loaded.path == tmp_path / "madfile.yaml"
    assert loaded.root == tmp_path
    assert loaded.text == DESIGN_EXAMPLE
    assert [type(e) for e in mf.models] == [SelectModels, SelectModels, InlineModel]
    second = mf.models[1]
    assert isinstance(second, SelectModels) and second.tags() == ["dummy3:dummy_3:batch_size=512"]
    assert isinstance(mf.targets["box"], DockerTarget)
    lab = mf.targets["lab"]
    assert isinstance(lab, SshTarget) and lab.hosts is not None and lab.hosts[0].gpus == 8
    assert mf.contexts["mi300x"].docker_env_vars == {"HSA_ENABLE_SDMA": "0"}
    assert mf.runs[0].expect["matmul"].min == 10


def test_load_madfile_is_frozen_and_plain(load: Load) -> None:
    loaded = load("version: 1\nname: x\n")
    assert isinstance(loaded, LoadedMadfile)
    with pytest.raises(AttributeError):
        loaded.text = ""  # type: ignore[misc]
    assert type(loaded.data) is dict  # no ruamel types leak out


def test_yaml_values_become_plain_python(load: Load) -> None:
    loaded = load("""\
        version: 1
        models:
          - name: m
            scripts: s.sh
            n_gpus: "-1"
            params: {lr: [0.5, 1e-3], flag: [true], hex: [0x10], s: [a]}
        """)
    model = loaded.madfile.models[0]
    assert isinstance(model, InlineModel)
    assert model.n_gpus == -1
    params = loaded.data["models"][0]["params"]
    assert params == {"lr": [0.5, 0.001], "flag": [True], "hex": [16], "s": ["a"]}
    assert [type(v) for v in params["lr"] + params["flag"] + params["hex"]] == [float, float, bool, int]


def test_utf8_bom_is_accepted(write: Write) -> None:
    path = write("")
    path.write_bytes(b"\xef\xbb\xbfversion: 1\nname: caf\xc3\xa9\n")
    assert load_madfile(path).madfile.name == "café"


def test_anchors_and_merge_keys_work(load: Load) -> None:
    loaded = load("""\
        version: 1
        contexts:
          base: &base {gpu_vendor: AMD, guest_os: UBUNTU}
          big:
            <<: *base
            timeout_multiplier: 2
        """)
    assert loaded.madfile.contexts["big"].gpu_vendor == "AMD"
    assert loaded.madfile.contexts["big"].timeout_multiplier == 2


# --- positions ------------------------------------------------------------------------------------


POSITIONS = """\
version: 1
models:
  - select: dummy
  - name: m
    scripts: run.sh
    params: {size: [256, 512]}
targets:
  lab:
    backend: ssh
    hosts: [{address: h1, gpus: 8}]
"""


def test_locate_keys_and_items(load: Load) -> None:
    loaded = load(POSITIONS)
    assert loaded.locate(()) == (1, 1)
    assert loaded.locate(("version",)) == (1, 1)
    assert loaded.locate(("models",)) == (2, 1)
    assert loaded.locate(("models", 0)) == (3, 5)
    assert loaded.locate(("models", 0, "select")) == (3, 5)
    assert loaded.locate(("models", 1, "params", "size")) == (6, 14)
    assert loaded.locate(("models", 1, "params", "size", 1)) == (6, 26)
    assert loaded.locate(("targets", "lab", "hosts", 0, "gpus")) == (10, 27)
    assert loaded.source.locate_value(("models", 0, "select")) == (3, 13)


def test_locate_missing_key_falls_back_to_nearest_parent(load: Load) -> None:
    loaded = load(POSITIONS)
    host = ("targets", "lab", "hosts", 0)
    assert loaded.locate((*host, "user")) == loaded.locate(host) == (10, 13)
    assert loaded.locate(("targets", "nope", "x")) == (7, 1)
    assert loaded.locate(("contexts",)) == (1, 1)
    # the value of a missing key falls back to the parent's key, not into its block value
    assert loaded.source.locate_value(("targets", "lab", "workdir")) == (8, 3)


def test_diagnostic_pins_message_to_key(load: Load) -> None:
    loaded = load(POSITIONS)
    d = loaded.diagnostic(("models", 0, "select"), "tag `dummy` selects nothing", "try `all`")
    assert d.render() == ("madfile.yaml:3:5: error: models[0].select: tag `dummy` selects nothing "
                          "(hint: try `all`)")
    assert at(d) == (3, 5)
    assert d.key_path == "models[0].select"
    assert at(loaded.diagnostic(("models", 0, "select"), "x", at="value")) == (3, 13)


# --- YAML-level problems (all exit 5) -------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    d = one(raised(tmp_path / "madfile.yaml"))
    assert "does not exist" in d.message
    assert d.line is None and "madengine init" in d.hint


def test_directory_instead_of_file(tmp_path: Path) -> None:
    d = one(raised(tmp_path))
    assert "is a directory" in d.message and "-f" in d.hint


def test_empty_file(write: Write) -> None:
    d = one(raised(write("# only a comment\n")))
    assert d.message == "the madfile is empty" and at(d) == (1, 1) and "version: 1" in d.hint


@pytest.mark.parametrize(("text", "found"), [("- a\n- b\n", "a list"), ("just text\n", "the string")])
def test_top_level_must_be_mapping(write: Write, text: str, found: str) -> None:
    d = one(raised(write("# comment\n" + text)))
    assert "top level must be a mapping" in d.message and found in d.message
    assert at(d) == (2, 1)


def test_yaml_syntax_error_position(write: Write) -> None:
    d = one(raised(write("version: 1\nmodels: [a, b\ncontexts: {}\n")))
    assert d.message.startswith("invalid YAML: expected ',' or ']'")
    assert "started at 2:9" in d.message
    assert at(d) == (3, 9)


def test_tab_indentation_hint(write: Write) -> None:
    d = one(raised(write("version: 1\nmodels:\n\t- select: a\n")))
    assert at(d) == (3, 1) and "tabs" in d.hint


def test_two_documents(write: Write) -> None:
    d = one(raised(write("version: 1\n---\nversion: 1\n")))
    assert "more than one document" in d.message and at(d) == (2, 1)


def test_control_character(write: Write) -> None:
    d = one(raised(write("version: 1\nname: a\x07\n")))
    assert "U+0007" in d.message and at(d) == (2, 8)


def test_non_utf8_bytes_position(write: Write) -> None:
    path = write("")
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    d = one(raised(path))
    assert "not valid UTF-8" in d.message and "0xe9" in d.message
    assert at(d) == (2, 10) and "UTF-8" in d.hint


def test_duplicate_keys_all_reported_with_both_positions(write: Write) -> None:
    diags = raised(write("""\
version: 1
contexts:
  cpu: {}
  gpu: {guest_os: A, guest_os: B}
  cpu: {}
"""))
    assert [(at(d), d.key_path) for d in diags] == [((4, 22), "contexts.gpu.guest_os"),
                                                    ((5, 3), "contexts.cpu")]
    assert diags[0].message == "duplicate key `guest_os` (first defined at madfile.yaml:4:9)"
    assert diags[1].message == "duplicate key `cpu` (first defined at madfile.yaml:3:3)"
    assert diags[0].hint == "a key may appear once per mapping: remove or merge one of them"


def test_duplicate_keys_reported_with_schema_errors(write: Write) -> None:
    diags = raised(write("version: 1\nname: a\nname: b\nbogus: 1\n"))
    assert [d.message.split(" (")[0] for d in diags] == ["duplicate key `name`", "unknown key `bogus`"]


def test_custom_yaml_tag_is_an_error(write: Write) -> None:
    d = one(raised(write("version: 1\nname: !vault x\n")))
    assert d.message == "unsupported YAML tag `!vault`" and at(d) == (2, 7)


def test_standard_yaml_tag_is_fine(write: Write) -> None:
    assert load_madfile(write("version: 1\nname: !!str 5\n")).madfile.name == "5"


# --- version --------------------------------------------------------------------------------------


def test_missing_version(write: Write) -> None:
    d = one(raised(write("name: x\n")))
    assert d.message == "missing `version`" and at(d) == (1, 1) and "version: 1" in d.hint


def test_missing_version_reported_with_other_errors(write: Write) -> None:
    diags = raised(write("name: x\nbogus: 1\n"))
    assert {d.message for d in diags} == {"missing `version`", "unknown key `bogus`"}


def test_future_version_stops_there(write: Write) -> None:
    d = one(raised(write("version: 2\nsomething_new: {}\n")))
    assert at(d) == (1, 10)
    assert d.hint == "this madengine reads madfile version 1; upgrade madengine"


@pytest.mark.parametrize(("value", "message"), [
    ('"1"', "must be the number 1, found the string '1'"),
    ("1.0", "must be the number 1, found the number 1.0"),
    ("0", "unknown madfile version 0"),
    ("true", "must be the number 1, found `true`"),
])
def test_bad_version_values(write: Write, value: str, message: str) -> None:
    d = one(raised(write(f"version: {value}\n")))
    assert d.message == message and at(d) == (1, 10) and d.key_path == "version"


# --- schema errors --------------------------------------------------------------------------------


def test_unknown_key_points_at_key_with_did_you_mean(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {gpu_vender: AMD}\n"))
    assert d.message == "unknown key `gpu_vender`" and d.key_path == "contexts.c.gpu_vender"
    assert at(d) == (3, 7) and d.hint == "did you mean `gpu_vendor`?"


def test_misplaced_key_says_where_it_belongs(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  t: {backend: docker, gpu_vendor: AMD}\n"))
    assert d.hint == "`gpu_vendor` belongs in a context (contexts.<name>) or a host (hosts: [{address: ...}])"
    d = one(errors("version: 1\ntargets:\n  t: {backend: local, partition: gpu}\n"))
    assert d.hint == "`partition` belongs in a slurm target"
    d = one(errors("version: 1\nmodels:\n  - select: a\n    timeout: 5\n"))
    assert "belongs in an inline model" in d.hint and "a run" in d.hint


def test_misplaced_and_misspelt_key_gets_both_hints(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  t: {backend: docker, hosts: []}\n"))
    assert d.hint == "did you mean `host`? (`hosts` belongs in an ssh or ansible target)"


def test_free_form_context_key_goes_under_match(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {ctx_test: '1'}\n"))
    assert "under `match:`" in d.hint


def test_unknown_key_without_match_lists_allowed_keys(errors: Errors) -> None:
    d = one(errors("version: 1\nruns:\n  - models: [a]\n    zzz: 1\n"))
    assert d.hint.startswith("allowed keys: models, contexts, targets, repeat, timeout, expect")


def test_type_error_points_at_value(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  lab:\n    backend: ssh\n    hosts: [{address: h, gpus: many}]\n"))
    assert d.key_path == "targets.lab.hosts[0].gpus"
    assert d.message == "expected an integer, found the string 'many'"
    assert at(d) == (5, 32)


def test_number_where_string_expected_hints_quotes(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {docker_env_vars: {HSA_ENABLE_SDMA: 0}}\n"))
    assert d.message == "expected a string, found the number 0" and d.hint == 'quote it: "0"'


def test_string_where_list_expected_hints_list(errors: Errors) -> None:
    d = one(errors("version: 1\nruns:\n  - models: dummy\n"))
    assert d.message == "expected a list, found the string 'dummy'" and d.hint == "write a list: [dummy]"
    assert at(d) == (3, 13)


def test_null_value(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n"))
    assert d.message == "expected a list, found nothing (null)" and at(d) == (2, 1)
    assert d.hint == "give `models` a value, or remove it"


def test_models_entry_dispatch_has_no_per_member_noise(errors: Errors) -> None:
    # An inline entry with one bad key: one error, about an inline model only.
    d = one(errors("version: 1\nmodels:\n  - {name: m, scripts: s, bogus: 1}\n"))
    assert d.message == "unknown key `bogus`" and d.key_path == "models[0].bogus"
    # A select entry with inline keys: errors about the select entry only.
    d = one(errors("version: 1\nmodels:\n  - {select: a, scripts: s}\n"))
    assert d.key_path == "models[0].scripts" and "belongs in an inline model" in d.hint


def test_models_entry_string_hints_select(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - dummy\n"))
    assert d.message == "expected a mapping, found the string 'dummy'" and at(d) == (3, 5)
    assert d.hint == "to pick models from the package by tag, write `- select: dummy`"


def test_misspelt_select_is_one_error(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - selct: dummy\n"))
    assert d.message == "unknown key `selct`" and d.hint == "did you mean `select`?"


def test_inline_model_missing_scripts(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - name: m\n"))
    assert d.message == "missing required key `scripts`" and d.key_path == "models[0]"
    assert at(d) == (3, 5) and "`select:`" in d.hint


def test_union_keeps_the_branch_that_fits(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - select: [dummy, 3]\n"))
    assert d.key_path == "models[0].select[1]" and d.message == "expected a string, found the number 3"
    assert at(d) == (3, 21)


def test_union_of_scalars_merged_into_one_error(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - select: {a: 1}\n"))
    assert d.message == "expected a string or a list, found a mapping" and d.key_path == "models[0].select"
    d = one(errors("version: 1\ncontexts:\n  c: {match: {ctx: [1]}}\n"))
    assert d.message == "expected a string, a number or a boolean, found a list"
    d = one(errors("version: 1\nmodels:\n  - {select: a, params: {x: [[1]]}}\n"))
    assert d.key_path == "models[0].params.x[0]" and "found a list" in d.message


def test_target_without_backend(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  lab: {hosts: []}\n"))
    assert d.message == "target `lab` has no `backend`" and at(d) == (3, 3)
    assert d.hint == "add `backend:` with one of: local, docker, ssh, ansible, slurm, kubernetes"


def test_target_with_unknown_backend(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  lab: {backend: sshh, hosts: [{address: h}]}\n"))
    assert d.message == "unknown backend `sshh`" and d.key_path == "targets.lab.backend" and at(d) == (3, 18)
    assert d.hint.startswith("did you mean `ssh`? (backends: local, docker, ssh")


def test_target_as_a_string(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  here: local\n"))
    assert d.message == "expected a mapping, found the string 'local'"
    assert d.hint == "write `here: {backend: local}`"


def test_literal_error_with_case_hint(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {gpu_vendor: amd}\n"))
    assert d.message == "expected one of AMD, NVIDIA, INTEL, NONE, found the string 'amd'"
    assert d.hint == "did you mean `AMD`?" and at(d) == (3, 19)


def test_numeric_constraints(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {timeout_multiplier: 0}\n"))
    assert d.message == "must be greater than 0, found 0"
    d = one(errors("version: 1\ntargets:\n  t: {backend: ssh, hosts: [{address: h, port: 70000}]}\n"))
    assert d.message == "must be at most 65535, found 70000"


def test_empty_list_where_one_is_needed(errors: Errors) -> None:
    d = one(errors("version: 1\nruns:\n  - models: []\n"))
    assert d.message == "must not be empty" and d.key_path == "runs[0].models"


@pytest.mark.parametrize(("tolerance", "message"), [
    ("5", "`5` is not a percentage: write it with `%` (`5%`, or `500%` for a fraction)"),
    ("0.05", "`0.05` is not a percentage: write it with `%` (`0.05%`, or `5%` for a fraction)"),
    ("'5 %'", "`5 %` is not a percentage such as `2%` or `0.5%`"),
    ("1e3%", "`1e3%` is not a percentage such as `2%` or `0.5%`"),
    ("-1%", "`-1%` is not a percentage such as `2%` or `0.5%`"),  # every result would have to improve
    ("1001%", "`1001%` is more than 1000%"),
    ("true", "expected a percentage such as `2%`, found bool"),
])
def test_a_tolerance_is_a_percentage_with_its_sign(errors: Errors, tolerance: str, message: str) -> None:
    d = one(errors(f"version: 1\nruns:\n  - models: [m]\n    expect: {{m: {{metric: x, tolerance: {tolerance}}}}}\n"))
    assert (d.line, d.column, d.key_path) == (4, 40, "runs[0].expect.m.tolerance")
    assert (d.message, d.hint) == (message, "a percentage with its % sign: `tolerance: 5%`")


@pytest.mark.parametrize(("gate", "key", "message"), [
    ("{metric: x, tolerance: 100%}", "tolerance", "tolerance 100% on a higher-is-better metric lets any result pass "
                                                  "(its bound is 0 or below)"),
    ("{metric: x, min: 1, tolerance: 150%}", "tolerance", "tolerance 150% on a higher-is-better metric lets any "
                                                          "result pass (its bound is 0 or below)"),
    ("{metric: x, baseline: main}", "baseline", "a `baseline` without a `tolerance` checks nothing"),
    ("{metric: x, tolerance: 5%, baseline: ../main}", "baseline", "baseline name '../main' is a path: a baseline "
                                                                  "is named, its file is baselines/<name>.json"),
    ("{metric: x, tolerance: 5%, baseline: .main}", "baseline", "baseline name '.main' is not a plain name"),
])
def test_tolerances_no_result_can_fail_or_pass_are_refused(errors: Errors, gate: str, key: str, message: str) -> None:
    d = one(errors(f"version: 1\nruns:\n  - models: [m]\n    expect: {{m: {gate}}}\n"))
    assert (d.line, d.key_path, d.message) == (4, f"runs[0].expect.m.{key}", message)


@pytest.mark.parametrize("gate", ["{metric: x, tolerance: 5%}", "{metric: x, tolerance: 0%}",
                                  "{metric: x, better: lower, tolerance: 150%}", "{metric: x, max: 9, tolerance: 300%}",
                                  "{metric: x, min: 1, tolerance: 2.5%}"])
def test_tolerances_that_can_fail_and_pass_are_valid(load: Load, gate: str) -> None:
    expect = load(f"version: 1\nruns:\n  - models: [m]\n    expect: {{m: {gate}}}\n").madfile.runs[0].expect["m"]
    assert expect.tolerance is not None and expect.tolerance >= 0


@pytest.mark.parametrize(("gate", "message"), [
    ("{metric: x, min: 5, max: 1}", "min 5 is above max 1: no result can meet this gate"),
    ("{metric: x, better: higher, max: 1}", "a gate on a higher-is-better metric with only a `max` fails only "
                                           "when the result improves"),
    ("{metric: x, better: lower, min: 1}", "a gate on a lower-is-better metric with only a `min` fails only "
                                          "when the result improves"),
    ("{metric: x, min: .nan}", "expected a finite number, found the number nan"),
    ("{metric: x, min: true}", "expected a number, found `true`"),
    ("{metric: x, max: '5'}", "expected a number, found the string '5'"),
    ("{metric: 'giga flops'}", "metric `giga flops` can never be reported"),
    ("{metric: ''}", "an empty metric can never be reported"),
])
def test_gates_no_result_can_meet_or_that_catch_only_improvements(errors: Errors, gate: str, message: str) -> None:
    d = one(errors(f"version: 1\nruns:\n  - models: [m]\n    expect:\n      m: {gate}\n"))
    assert d.message == message and d.line == 5 and d.key_path.startswith("runs[0].expect.m")


@pytest.mark.parametrize("gate", ["{metric: x}", "{metric: x, max: 1}", "{metric: x, better: lower, max: 1}",
                                  "{metric: x, better: higher, min: 1, max: 9}", "{metric: x, min: 1}"])
def test_gates_that_can_be_met(load: Load, gate: str) -> None:
    assert load(f"version: 1\nruns:\n  - models: [m]\n    expect:\n      m: {gate}\n").madfile.runs[0].expect


def test_non_string_key(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  1: {}\n"))
    assert d.message == "keys must be strings, found the number 1" and at(d) == (3, 3)
    assert d.key_path == "contexts.1" and d.hint == 'quote the key: "1"'


def test_many_errors_reported_at_once_in_file_order(errors: Errors) -> None:
    diags = errors("""\
        version: 1
        bogus: 1
        models:
          - select: 3
        contexts:
          c: {gpu_vendor: amd}
        targets:
          t: {backend: nope}
        runs:
          - models: [a]
            contexts: [gpu]
            repeat: 0
        """)
    assert [d.line for d in diags] == [2, 4, 6, 8, 11, 12]
    assert {d.file for d in diags} == {"madfile.yaml"}


def test_load_madfile_skips_semantic_checks(write: Write) -> None:
    path = write("version: 1\nruns:\n  - models: [a]\n    contexts: [nope]\n")
    assert load_madfile(path).madfile.runs[0].contexts == ["nope"]
    with pytest.raises(ConfigError, match="unknown context"):
        load_and_check(path)


def test_no_pydantic_wording_leaks(errors: Errors) -> None:
    diags = errors("""\
        version: 1
        models: [{select: 1}, x, {name: 1, scripts: [], n_gpus: x}]
        contexts: {c: []}
        targets: {t: {backend: 1}}
        runs: [{models: {}}]
        """)
    for d in diags:
        text = d.render()
        for word in ("Input should", "union[", "list[", "SelectModels", "InlineModel", "function-after"):
            assert word not in text, text


def test_non_string_key_in_a_model(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {1: x}\n"))
    assert d.message == "keys must be strings, found the number 1" and at(d) == (3, 7)
    assert d.key_path == "contexts.c.1"


def test_misplaced_key_is_not_guessed_as_a_loose_look_alike(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - {select: a, args: --x}\n"))
    assert d.hint.startswith("`args` belongs in an inline model")
