"""Semantic checks (check.py): each check, its position and hint; and that they run with schema errors."""

from __future__ import annotations

import pytest

from madengine.madfile.check import check, check_madfile
from madengine.madfile.load import load_madfile
from tests.unit.madfile.conftest import DESIGN_EXAMPLE, Errors, Load, Write, at, one

CONTEXTS_TARGETS = """\
version: 1
models:
  - name: a
    scripts: a.sh
  - name: b
    scripts: b.sh
contexts:
  cpu: {}
  mi300x: {gpu_vendor: AMD}
targets:
  box: {backend: docker}
  lab: {backend: ssh, hosts: [{address: h1}]}
runs:
"""


def test_design_example_has_no_semantic_problems(write: Write) -> None:
    assert check_madfile(load_madfile(write(DESIGN_EXAMPLE))) == []


def test_unknown_context_in_run(errors: Errors) -> None:
    d = one(errors(CONTEXTS_TARGETS + "  - models: [a]\n    contexts: [cpu, mi300]\n"))
    assert d.message == "unknown context `mi300`" and d.key_path == "runs[0].contexts[1]"
    assert at(d) == (15, 21) and d.hint == "did you mean `mi300x`?"


def test_unknown_context_lists_declared_ones(errors: Errors) -> None:
    d = one(errors(CONTEXTS_TARGETS + "  - models: [a]\n    contexts: [zzz]\n"))
    assert d.hint == "declared contexts: cpu, mi300x"


def test_unknown_target_in_run(errors: Errors) -> None:
    d = one(errors(CONTEXTS_TARGETS + "  - models: [a]\n    targets: [labb]\n"))
    assert d.message == "unknown target `labb`" and d.key_path == "runs[0].targets[0]"
    assert at(d) == (15, 15) and d.hint == "did you mean `lab`?"


def test_implicit_context_and_target_may_be_named(load: Load, errors: Errors) -> None:
    load("version: 1\nruns:\n  - models: [a]\n    contexts: [default]\n    targets: [local]\n")
    d = one(errors("version: 1\nruns:\n  - models: [a]\n    targets: [box]\n"))
    assert d.message == "unknown target `box`" and d.hint == "declared targets: local"


def test_names_in_runs_not_checked_when_section_is_malformed(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts: [cpu]\nruns:\n  - models: [a]\n    contexts: [cpu]\n"))
    assert d.key_path == "contexts" and d.message == "expected a mapping, found a list"


def test_duplicate_inline_model_names(errors: Errors) -> None:
    d = one(errors("version: 1\nmodels:\n  - {name: m, scripts: a}\n  - select: x\n"
                   "  - {name: m, scripts: b}\n"))
    assert d.message == "duplicate model name `m`" and d.key_path == "models[2].name"
    assert at(d) == (5, 12) and d.hint == "models[0] (line 3) already declares it; rename one"


@pytest.mark.parametrize(("name", "shown"), [("dir/m", "`/`"), ("m:k=v", "`:`"), ("a b", "whitespace"),
                                             ("m@x", "`@`")])
def test_inline_model_name_with_tag_syntax(errors: Errors, name: str, shown: str) -> None:
    d = one(errors(f"version: 1\nmodels:\n  - name: '{name}'\n    scripts: s\n"))
    assert d.message == f"model name `{name}` contains {shown}" and at(d) == (3, 11)
    assert "`/` scopes a directory" in d.hint


def test_select_entries_may_use_tag_syntax(load: Load) -> None:
    load("version: 1\nmodels:\n  - select: dir/m\n  - select: 'm:k=v'\n")


@pytest.mark.parametrize("entry", ["{select: a, params: {bs: []}}",
                                   "{name: m, scripts: s, params: {bs: []}}"])
def test_empty_params_matrix(errors: Errors, entry: str) -> None:
    d = one(errors(f"version: 1\nmodels:\n  - {entry}\n"))
    assert d.message == "empty matrix: `bs` has no values" and d.key_path == "models[0].params.bs"
    assert d.hint == "give `bs` at least one value, or remove it"
    assert d.column == entry.index("[]") + 5


def test_repeat_must_be_at_least_one(errors: Errors) -> None:
    d = one(errors("version: 1\nruns:\n  - models: [a]\n    repeat: 0\n"))
    assert d.message == "repeat must be at least 1, found 0"
    assert at(d) == (4, 13) and d.key_path == "runs[0].repeat"


@pytest.mark.parametrize(("where", "text"), [
    ("models[0].timeout", "version: 1\nmodels:\n  - {name: m, scripts: s, timeout: -5}\n"),
    ("runs[0].timeout", "version: 1\nruns:\n  - {models: [a], timeout: -5}\n"),
])
def test_negative_timeout_other_than_minus_one(errors: Errors, where: str, text: str) -> None:
    d = one(errors(text))
    assert d.key_path == where and d.message == "timeout must be -1 or at least 0, found -5"
    assert "-1 for the default" in d.hint


def test_timeout_minus_one_and_zero_are_fine(load: Load) -> None:
    load("version: 1\nmodels:\n  - {name: m, scripts: s, timeout: -1}\n"
         "runs:\n  - {models: [m], timeout: 0}\n")


def test_duplicate_hosts_in_a_target(errors: Errors) -> None:
    d = one(errors("""\
        version: 1
        targets:
          lab:
            backend: ansible
            hosts:
              - {address: n1, gpus: 4}
              - {address: n2}
              - {address: N1, port: 22}
              - {address: n1, port: 2222, name: n1-alt}
        """))
    assert d.message == "duplicate host `N1` in target `lab`" and d.key_path == "targets.lab.hosts[2].address"
    assert at(d) == (8, 19) and d.hint.startswith("hosts[0] is the same host")


@pytest.mark.parametrize(("section", "path"), [
    ("models:\n  - name: m\n    scripts: s\n    env_vars: {HF_TOKEN: hf_abcdef}\n",
     "models[0].env_vars.HF_TOKEN"),
    ("contexts:\n  c: {docker_env_vars: {MAD_SECRETS_HFTOKEN: x}}\n",
     "contexts.c.docker_env_vars.MAD_SECRETS_HFTOKEN"),
    ("contexts:\n  c: {docker_build_arg: {db_password: hunter2}}\n",
     "contexts.c.docker_build_arg.db_password"),
    ("contexts:\n  c: {tools: [{name: t, env_vars: {API_KEY: k}}]}\n",
     "contexts.c.tools[0].env_vars.API_KEY"),
])
def test_secret_written_as_literal(errors: Errors, section: str, path: str) -> None:
    d = one(errors("version: 1\n" + section))
    key = path.rsplit(".", 1)[1]
    assert d.key_path == path and d.message == f"`{key}` looks like a secret written as a literal value"
    assert d.hint == f"secrets are references resolved at apply time: write `{key}: ${{env:{key}}}`"
    for secret in ("hf_abcdef", "hunter2"):
        assert secret not in d.render()


def test_secret_hint_reuses_a_shell_style_name(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {docker_env_vars: {HF_TOKEN: $MY_TOKEN}}\n"))
    assert d.hint.endswith("write `HF_TOKEN: ${env:MY_TOKEN}`")


def test_secret_references_and_non_secrets_are_fine(load: Load) -> None:
    load("""\
        version: 1
        contexts:
          c:
            docker_env_vars:
              HF_TOKEN: ${env:HF_TOKEN}
              GH_TOKEN: ${credential:github}
              EMPTY_TOKEN: ""
              MAX_TOKENS: "128"
              TOKENIZERS_PARALLELISM: "false"
              HSA_ENABLE_SDMA: "0"
        """)


def test_private_key_in_host_key(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  t:\n    backend: ssh\n    hosts:\n      - address: h\n"
                   "        key: '-----BEGIN OPENSSH PRIVATE KEY----- abc'\n"))
    assert d.key_path == "targets.t.hosts[0].key" and "must be the path of a key file" in d.message
    assert "abc" not in d.render()


def test_credentials_in_registry(errors: Errors) -> None:
    d = one(errors("version: 1\nregistry: me:s3cret@registry.example.org\n"))
    assert d.message == "`registry` contains credentials" and at(d) == (2, 11)
    assert "s3cret" not in d.render()


@pytest.mark.parametrize("name", ["a/b", "a@b", "a#b", "a b", "-x"])
def test_context_and_target_names_fit_in_addresses(errors: Errors, name: str) -> None:
    d = one(errors(f"version: 1\ncontexts:\n  '{name}': {{}}\n"))
    assert d.message == f"context name `{name}` cannot be used in node addresses" and at(d) == (3, 3)
    d = one(errors(f"version: 1\ntargets:\n  '{name}': {{backend: local}}\n"))
    assert d.message == f"target name `{name}` cannot be used in node addresses"


def test_semantic_and_schema_errors_reported_together(errors: Errors) -> None:
    diags = errors(CONTEXTS_TARGETS + "  - models: [a]\n    contexts: [gpu]\n    repeat: 0\n    bogus: 1\n")
    assert sorted(d.message for d in diags) == sorted([
        "unknown context `gpu`", "repeat must be at least 1, found 0", "unknown key `bogus`"])


def test_check_tolerates_any_shape(write: Write) -> None:
    # Checks run on raw data even when the schema failed: wrong shapes must not crash them.
    from madengine.madfile.source import SourceMap

    source = SourceMap("madfile.yaml")
    for data in ({"models": 3, "runs": "x", "contexts": [1], "targets": {"t": 5}},
                 {"models": [None, {"name": 5, "params": [1]}], "runs": [{"contexts": 1, "expect": []}]},
                 {"targets": {"t": {"hosts": [{"address": None}, 7]}}, "registry": 5}):
        assert check(data, source) == []


def test_schema_errors_never_echo_a_secret_value(errors: Errors) -> None:
    d = one(errors("version: 1\ncontexts:\n  c: {docker_env_vars: {HF_TOKEN: 9876543}}\n"))
    assert d.message == "expected a string, found a number" and "9876543" not in d.render()
    d = one(errors("version: 1\nmodels:\n  - {select: a, params: {api_key: [{x: 1}]}}\n"))
    assert "found a mapping" in d.message


@pytest.mark.parametrize(("name", "shown"), [("a\\nb", "\\n"), ("a\\tb", "\\t"), ("a\\x7fb", "\\x7f")])
def test_inline_model_name_with_a_control_character(errors: Errors, name: str, shown: str) -> None:
    d = one(errors(f'version: 1\nmodels:\n  - name: "{name}"\n    scripts: s\n'))
    assert d.message.endswith(f"contains {shown}") and at(d) == (3, 11)
    assert "\n" not in d.render()  # a diagnostic is one line, whatever the value holds


@pytest.mark.parametrize("where", [
    "contexts: {c: {docker_build_arg: {KEY: v}}}",
    "contexts: {c: {tools: [{name: t, env_vars: {KEY: v}}]}}",
    "models: [{name: m, scripts: s, env_vars: {KEY: v}}]",
])
@pytest.mark.parametrize("key", ["A=B", "", "1X", "A B"])
def test_environment_names_in_every_environment_map(errors: Errors, where: str, key: str) -> None:
    d = one(errors("version: 1\n" + where.replace("KEY", f'"{key}"') + "\n"))
    assert d.message in (f"`{key}` is not a valid environment variable name", "an environment variable name is empty")
    assert d.line == 2 and d.hint == "use letters, digits and `_`, not starting with a digit"


def test_nul_and_64_bit_limits_anywhere(errors: Errors) -> None:
    diags = errors(f'version: 1\nname: "a\\0"\ncontexts: {{c: {{match: {{k: {2**63}, "\\0": 1}}}}}}\n'
                   f"runs: [{{models: [m], repeat: {-2**63 - 1}}}]\n")
    assert sorted((d.key_path, d.message.split(" (")[0]) for d in diags) == [
        ("contexts.c.match.\x00", "the key contains a NUL byte"),
        ("contexts.c.match.k", "the number is too large"),
        ("name", "contains a NUL byte"),
        ("runs[0].repeat", "repeat must be at least 1, found -9223372036854775809"),
        ("runs[0].repeat", "the number is too large")]
