"""scripts/common/tools.json: reading it, and combining a context's tools as ROCm madengine does.

The fixture `tests/fixtures/mad/tools` has the shapes of ROCm madengine's shipped tools.json (empty
script lists, scripts without args, an empty cmd, wrappers shared by two tools, a shell-fragment cmd);
`examples/mad-package` has a small runnable one.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.tools import (
    ResolvedTools,
    Tool,
    ToolCall,
    check_tool_files,
    load_tools,
    resolve_tools,
    split_words,
)
from tests.unit.mad.conftest import FIXTURES, WritePackage

TOOLS_PKG = FIXTURES / "tools"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mad-package"
WHERE = "contexts.mi300x.tools"


def tools_json(tools: object, **top: object) -> dict[str, object]:
    return {"scripts/common/tools.json": {"tools": tools, **top}}


def rendered(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [d.render() for d in exc.value.diagnostics]


# --- load_tools -----------------------------------------------------------------------------------


def test_a_package_without_tools_json_has_no_tools(write_package: WritePackage) -> None:
    assert load_tools(write_package({"models.json": []})) == {}


def test_the_fixture_reads_with_every_shape() -> None:
    warnings: list[Diagnostic] = []
    tools = load_tools(TOOLS_PKG, warnings=warnings)

    assert warnings == []
    assert list(tools) == ["rpd", "rocprof", "rocprof_counters", "rocblas_trace", "miopen_trace",
                           "test_tools_A", "power_profiler"]
    rpd = tools["rpd"]
    assert rpd.pre_scripts == (ToolCall("scripts/common/pre_scripts/trace.sh", ("rpd",)),)
    assert rpd.post_scripts == (ToolCall("scripts/common/post_scripts/trace.sh", ("rpd",)),)
    assert rpd.cmd == "./tracer/runTracer.sh"
    assert rpd.env_vars == {"LD_LIBRARY_PATH": "./tracer:/opt/rocm/lib"}
    assert rpd.line == 3  # where `"rpd": {` is
    assert tools["rocprof"].pre_scripts == () and tools["rocprof"].env_vars == {}
    # a tool with only env_vars and cmd; a multi-word args string; scripts without args; an empty cmd
    assert tools["rocblas_trace"] == Tool("rocblas_trace", cmd="python3 ../scripts/common/tools/library_trace.py",
                                          env_vars={"ROCBLAS_TRACE": "1"})
    assert tools["test_tools_A"].pre_scripts[0].args == ("pre_script", "A")
    power = tools["power_profiler"]
    assert [c.path for c in power.pre_scripts] == ["scripts/common/pre_scripts/gpu_info_pre.sh",
                                                   "scripts/common/pre_scripts/power_start.sh"]
    assert power.pre_scripts[0].args == () and power.cmd == ""
    assert power.post_scripts[1] == ToolCall("scripts/common/post_scripts/gpu_info_post.sh", ("power_profiler",))


def test_a_tool_call_runs_its_copy_by_basename() -> None:
    call = ToolCall("scripts/common/pre_scripts/trace.sh", ("rpd", "--verbose"))
    assert call.argv == ("bash", "trace.sh", "rpd", "--verbose")


def test_invalid_json_is_pinned_to_its_line_and_column(write_package: WritePackage) -> None:
    root = write_package({"scripts/common/tools.json": '{\n  "tools": {\n    "a": {"cmd": "x",}\n  }\n}\n'})
    with pytest.raises(ConfigError) as exc:
        load_tools(root)
    assert rendered(exc) == ["scripts/common/tools.json:3:22: error: invalid JSON: Expecting property name "
                             "enclosed in double quotes (hint: check for a missing comma or quote, or a "
                             "trailing comma)"]


@pytest.mark.parametrize(("text", "message"), [
    ("[]\n", "scripts/common/tools.json:1:1: error: the top level must be a JSON object, not a list"),
    ('{"rocprof": {}}\n', "scripts/common/tools.json:1:1: error: tools.json has no `tools` object"),
    ('{\n  "tools": []\n}\n', "scripts/common/tools.json:2:3: error: `tools` must be an object of tools, not a list"),
])
def test_the_file_must_be_a_tools_object(write_package: WritePackage, text: str, message: str) -> None:
    root = write_package({"scripts/common/tools.json": text})
    with pytest.raises(ConfigError) as exc:
        load_tools(root)
    assert rendered(exc)[0].startswith(message)


def test_every_malformed_tool_is_reported_at_once_with_its_line(write_package: WritePackage) -> None:
    root = write_package(tools_json({
        "ok": {"cmd": "true"},
        "not_an_object": ["cmd"],
        "bad_pre": {"pre_scripts": "scripts/x.sh"},
        "no_path": {"post_scripts": [{"args": "x"}]},
        "escapes": {"pre_scripts": [{"path": "../outside.sh"}]},
        "bad_args": {"pre_scripts": [{"path": "scripts/x.sh", "args": "'unclosed"}]},
        "bad_cmd": {"cmd": 'rocprof "unclosed'},
        "bad_env": {"env_vars": {"BAD NAME": "1", "LIST": ["x"], "NUM": 3}},
    }))
    with pytest.raises(ConfigError) as exc:
        load_tools(root)
    lines = rendered(exc)
    assert len(lines) == 8
    text = (root / "scripts/common/tools.json").read_text().splitlines()
    for diag in exc.value.diagnostics:  # each on the line of the offending tool, or of its key
        assert diag.file == "scripts/common/tools.json" and diag.line is not None
        assert f'"{diag.key_path.split(".")[-1]}":' in text[diag.line - 1]
    joined = "\n".join(lines)
    assert "tool 'not_an_object' must be an object, not a list" in joined
    assert "tool 'bad_pre': `pre_scripts` must be a list of" in joined
    assert "tool 'no_path': post_scripts[0] has no `path`" in joined
    assert "tool 'escapes': pre_scripts[0]: `path` '../outside.sh' leads outside the package" in joined
    assert "tool 'bad_args': pre_scripts[0]: `args` cannot be split into arguments: No closing quotation" in joined
    assert "tool 'bad_cmd': `cmd` cannot be split into arguments" in joined
    assert "tool 'bad_env': `env_vars` has an invalid variable name 'BAD NAME'" in joined
    assert "tool 'bad_env': `env_vars.LIST` must be a string, not a list" in joined


def test_an_error_points_at_the_offending_key(write_package: WritePackage) -> None:
    root = write_package(tools_json({"a": {"pre_scripts": [], "cmd": 7}}))
    with pytest.raises(ConfigError) as exc:
        load_tools(root)
    (diag,) = exc.value.diagnostics
    text = (root / "scripts/common/tools.json").read_text().splitlines()
    assert diag.line is not None and diag.column is not None
    assert text[diag.line - 1][diag.column - 1:].startswith('"cmd": 7')
    assert diag.key_path == "tools.a.cmd"


def test_unknown_keys_are_kept_and_warned_about_once(write_package: WritePackage) -> None:
    root = write_package(tools_json({
        "a": {"cmd": "x", "description": "A", "pre_scripts": [{"path": "s.sh", "timeout": 5}]},
        "b": {"description": "B"},
    }, version=2))
    warnings: list[Diagnostic] = []
    tools = load_tools(root, warnings=warnings)

    assert tools["a"].extra == {"description": "A"} and tools["b"].extra == {"description": "B"}
    assert tools["a"].pre_scripts == (ToolCall("s.sh"),)
    assert {(w.key_path, w.message) for w in warnings} == {
        ("version", "unknown top-level key `version`; ignored"),
        ("description", "unknown key `description` in 2 tools; kept as extra"),
        ("pre_scripts[].timeout", "unknown key `pre_scripts[].timeout` in 1 tool; ignored"),
    }
    assert all(w.severity == "warning" and w.file == "scripts/common/tools.json" for w in warnings)


def test_numbers_in_env_vars_become_strings_as_in_rocm(write_package: WritePackage) -> None:
    root = write_package(tools_json({"a": {"env_vars": {"RATE": 0.1, "N": 2}}}))
    assert load_tools(root)["a"].env_vars == {"RATE": "0.1", "N": "2"}


def test_args_may_be_a_list_and_paths_are_normalized(write_package: WritePackage) -> None:
    root = write_package(tools_json({"a": {"pre_scripts": [{"path": " scripts/common/./x.sh ",
                                                            "args": ["two words", "$(literal)"]}]}}))
    assert load_tools(root)["a"].pre_scripts == (ToolCall("scripts/common/x.sh", ("two words", "$(literal)")),)


# --- resolve_tools --------------------------------------------------------------------------------


@pytest.fixture
def fixture_tools() -> dict[str, Tool]:
    return load_tools(TOOLS_PKG)


def test_no_tools_resolve_to_nothing(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([], fixture_tools, WHERE)
    assert resolved == ResolvedTools()
    assert resolved.command("scripts/dummy/run.sh", ["--n", "1"]) == ("bash", "run.sh", "--n", "1")
    assert resolved.command("scripts/dummy/run_perf.sh") == ("bash", "run_perf.sh")
    assert resolved.command("scripts/dummy") == ("bash", "run.sh")  # a directory: its run.sh, as in ROCm


def test_stacked_tools_follow_rocm_order(fixture_tools: dict[str, Tool]) -> None:
    """profiling.md: tools [A, B]: setup B then A, teardown A then B, A's cmd innermost."""
    resolved = resolve_tools([{"name": "rpd"}, {"name": "power_profiler"}, {"name": "rocprof"}],
                             fixture_tools, WHERE)

    assert resolved.names == ("rpd", "power_profiler", "rocprof")
    assert [c.path.rsplit("/", 1)[1] for c in resolved.pre_scripts] == [
        "gpu_info_pre.sh", "power_start.sh",  # power_profiler's, in its own order, before rpd's
        "trace.sh"]
    assert [(c.path.split("/")[2], c.args) for c in resolved.post_scripts] == [
        ("post_scripts", ("rpd",)), ("post_scripts", ()), ("post_scripts", ("power_profiler",)),
        ("post_scripts", ("rocprof",))]
    assert resolved.wrappers == (  # the last listed is outermost; power_profiler's "" wraps nothing
        ("bash", "../scripts/common/tools/prof_wrapper.sh", "--runtime-trace", "--"),
        ("./tracer/runTracer.sh",))
    assert resolved.command("scripts/dummy/run.sh", ["--batch_size", "8"]) == (
        "bash", "../scripts/common/tools/prof_wrapper.sh", "--runtime-trace", "--", "./tracer/runTracer.sh",
        "bash", "run.sh", "--batch_size", "8")
    assert resolved.env_vars == {"LD_LIBRARY_PATH": "./tracer:/opt/rocm/lib", "POWER_DEVICE": "all",
                                 "POWER_SAMPLING_RATE": "0.1", "POWER_DUAL_GCD": "false"}
    assert resolved.warnings == ()


def test_the_context_overrides_cmd_and_merges_env_vars(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([
        {"name": "rocprof_counters", "cmd": "rocprofv3 --kernel-trace --", "env_vars": {"RCCL_DEBUG": "TRACE"}},
        {"name": "power_profiler", "env_vars": {"POWER_DEVICE": "0,1"}, "cmd": None},
    ], fixture_tools, WHERE)

    assert resolved.wrappers == (("rocprofv3", "--kernel-trace", "--"),)
    assert resolved.env_vars == {"RCCL_DEBUG": "TRACE", "HSA_ENABLE_SDMA": "0", "POWER_DEVICE": "0,1",
                                 "POWER_SAMPLING_RATE": "0.1", "POWER_DUAL_GCD": "false"}
    # the loaded tools are not changed by a context's overrides (ROCm edits them in place)
    assert fixture_tools["rocprof_counters"].env_vars["RCCL_DEBUG"] == "INFO"


def test_later_tools_win_on_env_vars(write_package: WritePackage) -> None:
    tools = load_tools(write_package(tools_json({"a": {"env_vars": {"X": "a", "A": "1"}},
                                                 "b": {"env_vars": {"X": "b"}}})))
    assert resolve_tools([{"name": "a"}, {"name": "b"}], tools, WHERE).env_vars == {"X": "b", "A": "1"}
    assert resolve_tools([{"name": "b"}, {"name": "a"}], tools, WHERE).env_vars == {"X": "a", "A": "1"}


def test_an_empty_cmd_override_removes_the_wrapper(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([{"name": "rocprof", "cmd": ""}], fixture_tools, WHERE)
    assert resolved.wrappers == () and len(resolved.post_scripts) == 1


def test_a_wrapper_shared_by_two_tools_wraps_once(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([{"name": "rocblas_trace"}, {"name": "miopen_trace"}], fixture_tools, WHERE)
    assert resolved.wrappers == (("python3", "../scripts/common/tools/library_trace.py"),)
    assert resolved.env_vars == {"ROCBLAS_TRACE": "1", "MIOPEN_TRACE": "1"}


def test_a_tool_listed_twice_sets_up_and_tears_down_twice(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([{"name": "rpd"}, {"name": "rpd"}], fixture_tools, WHERE)
    assert len(resolved.pre_scripts) == 2 and len(resolved.post_scripts) == 2 and len(resolved.wrappers) == 1


def test_an_unknown_tool_names_close_matches_and_the_known_tools(fixture_tools: dict[str, Tool]) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_tools([{"name": "rpd"}, {"name": "rocprf"}], fixture_tools, WHERE)
    assert rendered(exc) == [
        "error: contexts.mi300x.tools[1].name: unknown tool 'rocprf' (hint: did you mean rocprof? known tools: "
        "miopen_trace, power_profiler, rocblas_trace, rocprof, rocprof_counters, rpd, test_tools_A)"]


def test_without_tools_json_the_hint_says_where_tools_come_from() -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_tools([{"name": "rocprof"}], {}, WHERE)
    (diag,) = exc.value.diagnostics
    assert diag.message == "unknown tool 'rocprof'"
    assert "the package has no scripts/common/tools.json; ROCm madengine ships its own" in diag.hint


def test_every_bad_entry_is_reported_at_once(fixture_tools: dict[str, Tool]) -> None:
    with pytest.raises(ConfigError) as exc:
        resolve_tools(["rocprof", {"cmd": "x"}, {"name": "rocprof", "cmd": 3},  # type: ignore[list-item]
                       {"name": "rpd", "env_vars": {"1BAD": "x"}},
                       {"name": "rocprof", "cmd": "rocprof 'unclosed"}, {"name": "nope"}],
                      fixture_tools, WHERE)
    assert [(d.key_path, d.message) for d in exc.value.diagnostics] == [
        ("contexts.mi300x.tools[0]", "a tool entry must be an object such as {name: rocprof}, not a string"),
        ("contexts.mi300x.tools[1].name", "a tool entry needs a `name`"),
        ("contexts.mi300x.tools[2].cmd", "tool 'rocprof': `cmd` must be a string, not a number"),
        ("contexts.mi300x.tools[3].env_vars", "tool 'rpd': `env_vars` has an invalid variable name '1BAD'"),
        ("contexts.mi300x.tools[4].cmd", "tool 'rocprof': `cmd` cannot be split into arguments: No closing "
                                         "quotation"),
        ("contexts.mi300x.tools[5].name", "unknown tool 'nope'"),
    ]


def test_other_keys_of_an_entry_are_ignored_with_a_warning(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([{"name": "rocprof", "pre_scripts": [{"path": "x.sh"}]}], fixture_tools, WHERE)
    assert resolved.pre_scripts == ()
    (warning,) = resolved.warnings
    assert (warning.severity, warning.key_path, warning.message) == (
        "warning", "contexts.mi300x.tools[0].pre_scripts", "tool 'rocprof': `pre_scripts` is ignored")


def test_shell_syntax_in_cmd_is_warned_about_and_stays_literal(fixture_tools: dict[str, Tool]) -> None:
    resolved = resolve_tools([{"name": "test_tools_A"}], fixture_tools, WHERE)
    assert resolved.wrappers == (("echo", "cmd_A", "&&"),)
    (warning,) = resolved.warnings
    assert warning.message == ("tool 'test_tools_A': `cmd` 'echo cmd_A && ' contains shell syntax (&&) that is "
                               "passed literally: madengine runs it without a shell")


def test_a_cmd_injection_stays_literal_in_the_argv(fixture_tools: dict[str, Tool], tmp_path: Path) -> None:
    """Nothing from a cmd reaches a shell: run the command exactly as a backend would, without one."""
    resolved = resolve_tools([{"name": "rocprof", "cmd": "echo $(touch x) `touch y`; touch z"}],
                             fixture_tools, WHERE)
    argv = resolved.command("scripts/m/run.sh", ["$(touch w)"])
    assert argv == ("echo", "$(touch", "x)", "`touch", "y`;", "touch", "z", "bash", "run.sh", "$(touch w)")
    assert "`touch" in resolved.warnings[0].message and "$(touch" in resolved.warnings[0].message

    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout == "$(touch x) `touch y`; touch z bash run.sh $(touch w)\n"
    assert list(tmp_path.iterdir()) == []


def test_files_to_hash_and_to_check(fixture_tools: dict[str, Tool], tmp_path: Path) -> None:
    resolved = resolve_tools([{"name": "rocprof_counters"}, {"name": "rpd"}, {"name": "rocprof"}],
                             fixture_tools, WHERE)
    assert resolved.script_files == ("scripts/common/pre_scripts/trace.sh", "scripts/common/post_scripts/trace.sh")
    # `../x` is relative to the run directory, a child of the package root; ./ paths are made at run time
    assert resolved.cmd_files == ("scripts/common/tools/prof_wrapper.sh", "scripts/common/tools/counters.txt")
    check_tool_files(resolved, TOOLS_PKG, WHERE)  # all present

    with pytest.raises(ConfigError) as exc:
        check_tool_files(resolved, tmp_path, WHERE)
    assert rendered(exc) == [
        f"error: {WHERE}: tool script {path} does not exist in the package (hint: add it, or fix its `path` in "
        "scripts/common/tools.json)" for path in resolved.script_files]


# --- the example package, run the way MAD runs it -------------------------------------------------


def test_the_example_tools_run_as_mad_runs_them(tmp_path: Path) -> None:
    """Pre-scripts, the wrapped model and post-scripts in a run directory under a copy of the package."""
    package = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns(".madengine"))
    tools = load_tools(package)
    assert list(tools) == ["trace", "timer"]
    resolved = resolve_tools([{"name": "trace"}, {"name": "timer"}], tools, WHERE)
    check_tool_files(resolved, package, WHERE)
    assert resolved.cmd_files == ("scripts/common/tools/timer.sh",)
    assert (package / resolved.cmd_files[0]).is_file()

    run_dir = package / "run_directory"  # MAD's default run directory, a child of the package root
    shutil.copytree(package / "scripts" / "dummy", run_dir)
    env = {"PATH": "/usr/bin:/bin", **resolved.env_vars, "MAD_MODEL_NAME": "dummy"}
    output = []
    for call in resolved.pre_scripts:
        shutil.copy(package / call.path, run_dir)
        output.append(subprocess.run(call.argv, cwd=run_dir, env=env, capture_output=True, text=True,
                                     check=True).stdout)
    model = subprocess.run(resolved.command("scripts/dummy/run.sh"), cwd=run_dir, env=env,
                           capture_output=True, text=True, check=True)
    for call in resolved.post_scripts:
        shutil.copy(package / call.path, run_dir)
        output.append(subprocess.run(call.argv, cwd=run_dir, env=env, capture_output=True, text=True,
                                     check=True).stdout)

    assert output[0] == "trace: start (MAD_TRACE=1)\n"
    assert output[1].startswith("trace: stop after ") and output[1].endswith(" s\n")
    assert model.stdout.startswith("model: dummy gpus: 0\nperformance: 123.4 samples_per_second\ntimer: ")
    assert model.stdout.endswith(" s, exit status 0\n")


@pytest.mark.parametrize("text", [
    "", "  ", "a b\tc\r\nd", "--x=1 ; echo $HOME && `id` # not a comment", "a\x0bb\x0cc\xa0d\u2003e\x85f",
    "é\x00 (x) | y > z", "'a b' c", 'a "b c"', "a\\ b", "a 'b",
])
def test_split_words_is_shlex_split(text: str) -> None:
    try:
        expected: tuple[str, ...] | type[ValueError] = tuple(shlex.split(text))
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            split_words(text)
    else:
        assert split_words(text) == expected
