"""Madfile + package -> nodes: the cross product, defaults, Dockerfile selection, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.compile.ir import ScriptCall, run_dir_names
from madengine.errors import ConfigError, Diagnostic
from tests.unit.compile.conftest import MakeProject, compile_file


def test_defaults_give_local_target_default_context_and_every_model(make_project: MakeProject) -> None:
    path = make_project("version: 1\nmodels:\n  - {name: hello, scripts: run.sh}\n", {"run.sh": "echo\n"})
    project = compile_file(path)
    assert list(project.jobs) == ["job:hello@default/local#1"]
    assert project.images == {}
    job = project.jobs["job:hello@default/local#1"]
    assert job.image is None and job.script == "run.sh" and job.timeout == 7200


def test_params_matrix_repeat_and_args(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        models:
          - {name: mm, scripts: run.sh, args: "--iters 5", params: {size: [1, 2], dtype: fp16}}
        runs:
          - {models: [mm], repeat: 2}
        """, {"run.sh": "echo\n"})
    project = compile_file(path)
    assert sorted(project.jobs) == [
        "job:mm[dtype=fp16,size=1]@default/local#1", "job:mm[dtype=fp16,size=1]@default/local#2",
        "job:mm[dtype=fp16,size=2]@default/local#1", "job:mm[dtype=fp16,size=2]@default/local#2",
    ]
    job = project.jobs["job:mm[dtype=fp16,size=2]@default/local#1"]
    assert job.args == ("--iters", "5", "--dtype", "fp16", "--size", "2")
    assert job.params == (("dtype", "fp16"), ("size", "2"))


def test_select_from_package_with_tag_args_and_context_dockerfiles(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models:
          - select: "dummy:batch_size=8:fast"
        contexts:
          cpu: {gpu_vendor: NONE}
          gpu: {gpu_vendor: AMD, docker_build_arg: {BASE_DOCKER: "rocm/pytorch:6.4"}}
        targets:
          box: {backend: docker}
        """)
    project = compile_file(path)
    assert sorted(project.images) == ["image:dummy.ubuntu.amd@gpu", "image:dummy.ubuntu.none@cpu"]
    amd = project.images["image:dummy.ubuntu.amd@gpu"]
    assert amd.dockerfile == "pkg/docker/dummy.ubuntu.amd.Dockerfile"
    assert amd.build_context == "pkg/docker"
    assert amd.base == "rocm/pytorch:6.4"  # the build arg overrides the ARG default
    job = project.jobs["job:dummy[batch_size=8,fast]@cpu/box#1"]
    assert job.args == ("--batch_size", "8", "--fast")
    assert job.image == "image:dummy.ubuntu.none@cpu"
    assert job.script == "pkg/scripts/dummy/run.sh"


def test_models_sharing_a_dockerfile_share_one_image(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: dummies}]
        contexts: {cpu: {gpu_vendor: NONE}}
        targets: {box: {backend: docker}}
        """)
    project = compile_file(path)
    assert list(project.images) == ["image:dummy.ubuntu.none@cpu"]
    assert {j.image for j in project.jobs.values()} == {"image:dummy.ubuntu.none@cpu"}
    assert project.jobs["job:dummy2@cpu/box#1"].n_gpus == -1


def test_several_matching_dockerfiles_give_one_job_each(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: multi}]
        targets: {box: {backend: docker}}
        """)
    project = compile_file(path)
    assert sorted(project.jobs) == ["job:multi~multi.a@default/box#1", "job:multi~multi.b@default/box#1"]


def test_local_target_needs_no_dockerfile(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: dummy}]
        contexts: {gpu: {gpu_vendor: INTEL}}
        """)
    assert list(compile_file(path).jobs) == ["job:dummy@gpu/local#1"]


def test_runs_pick_models_by_tag_and_target(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: all}]
        contexts: {cpu: {gpu_vendor: NONE}}
        targets: {here: {backend: local}, box: {backend: docker}}
        runs:
          - {models: [smoke], targets: [box]}
          - {models: [dummy2], targets: [here], repeat: 2, timeout: 60}
        """)
    project = compile_file(path)
    assert sorted(project.jobs) == ["job:dummy2@cpu/here#1", "job:dummy2@cpu/here#2", "job:dummy@cpu/box#1"]
    assert project.jobs["job:dummy2@cpu/here#1"].timeout == 60


def _errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_file(path)
    return [d.render() for d in info.value.diagnostics]


def test_unknown_tag_is_reported_at_the_select(make_project: MakeProject) -> None:
    path = make_project("version: 1\npackage: pkg\nmodels:\n  - select: dumy\n")
    (error,) = _errors(path)
    assert "madfile.yaml:4:" in error and "dumy" in error and "dummy" in error


def test_unknown_run_model_and_unmatched_dockerfile_are_all_reported(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: dummy}]
        contexts: {nv: {gpu_vendor: NVIDIA}}
        targets: {box: {backend: docker}}
        runs:
          - {models: [dummy, nosuch]}
        """)
    errors = _errors(path)
    assert len(errors) == 2
    assert any("nosuch" in e and ":7:" in e for e in errors)
    assert any("no Dockerfile" in e and "nv" in e for e in errors)


def test_select_without_package_is_an_error(make_project: MakeProject) -> None:
    path = make_project("version: 1\nmodels:\n  - select: dummy\n")
    (error,) = _errors(path)
    assert "needs a MAD package" in error and ":3:" in error


def test_missing_package_directory(make_project: MakeProject) -> None:
    path = make_project("version: 1\npackage: nowhere\nmodels:\n  - select: dummy\n")
    (error,) = _errors(path)
    assert "nowhere" in error and ":2:" in error


def test_unbalanced_quote_in_args(make_project: MakeProject) -> None:
    path = make_project('version: 1\nmodels:\n  - {name: a, scripts: r.sh, args: "--x \'unclosed"}\n')
    (error,) = _errors(path)
    assert "cannot be split" in error


def test_context_timeout_multiplier(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        models: [{name: a, scripts: r.sh, timeout: 100}]
        contexts: {slow: {timeout_multiplier: 2.5}}
        """, {"r.sh": ""})
    assert compile_file(path).jobs["job:a@slow/local#1"].timeout == 250


def test_expect_must_name_a_model_the_run_runs(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        package: pkg
        models: [{select: all}]
        runs:
          - models: [dummies]
            expect:
              dummy2: {metric: x}
              dumy: {metric: x}
        """)
    (error,) = _errors(path)
    assert "madfile.yaml:8:" in error and "'dumy'" in error and "did you mean dummy" in error


def test_the_real_mad_models_json_compiles(tmp_path: Path) -> None:
    """ROCm MAD's root models.json (134 models; `data: huggingface` without a data.json) on `local`."""
    import shutil

    fixture = Path(__file__).resolve().parents[2] / "fixtures" / "mad" / "mad-models.json"
    (tmp_path / "MAD").mkdir()
    shutil.copy(fixture, tmp_path / "MAD" / "models.json")
    for entry in json.loads(fixture.read_text()):  # the scripts the models run (compile checks they exist)
        script = tmp_path / "MAD" / entry["scripts"]
        script = script if script.suffix == ".sh" else script / "run.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.touch()
    (tmp_path / "madfile.yaml").write_text("version: 1\npackage: MAD\nmodels: [{select: all}]\n")
    project = compile_file(tmp_path / "madfile.yaml")
    assert len(project.jobs) == 134
    vllm = next(j for j in project.jobs.values() if j.model == "pyt_vllm_deepseek-r1")
    assert vllm.env["MAD_DATANAME"] == "huggingface" and vllm.timeout == 7200 and vllm.n_gpus == -1


def test_each_job_carries_its_gate_and_where_it_is_written(make_project: MakeProject) -> None:
    from madengine.results.gates import Gate

    path = make_project("""\
        version: 1
        models: [{name: m, scripts: r.sh, params: {size: [1, 2]}}, {name: free, scripts: r.sh}]
        runs:
          - models: [m, free]
            repeat: 2
            expect:
              m: {metric: score, min: 1}
              "m[size=2]": {metric: score, max: 5}
        """, {"r.sh": ""})
    jobs = compile_file(path).jobs
    gates = {address: job.expect for address, job in jobs.items()}
    # a metric whose name says nothing: its bounds do (only a max is a ceiling: lower is better)
    one = Gate(metric="score", better="higher", min=1.0, where="madfile.yaml:7:7")
    two = Gate(metric="score", better="lower", max=5.0, where="madfile.yaml:8:7")  # the instance's own wins
    assert gates == {"job:free@default/local#1": None, "job:free@default/local#2": None,
                     "job:m[size=1]@default/local#1": one, "job:m[size=1]@default/local#2": one,
                     "job:m[size=2]@default/local#1": two, "job:m[size=2]@default/local#2": two}


def test_a_tolerance_alone_takes_its_direction_as_compare_does(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        models: [{name: a, scripts: r.sh}, {name: b, scripts: r.sh}, {name: c, scripts: r.sh},
                 {name: d, scripts: r.sh}, {name: e, scripts: r.sh}, {name: f, scripts: r.sh}]
        results: {better: {score: lower}}
        runs:
          - models: [a, b, c, d, e, f]
            expect:
              a: {metric: latency_ms, tolerance: 150%}
              b: {metric: score, tolerance: 5%, baseline: main, min: 1, max: 9}
              c: {metric: widgets, tolerance: 5%}
              d: {metric: latency_ms, min: 1, max: 50, tolerance: 10%}
              e: {metric: widgets, max: 5, tolerance: 5%}
              f: {metric: widgets, better: lower, min: 1, max: 5}
        """, {"r.sh": "", "baselines/main.json": "{}"})
    jobs = compile_file(path).jobs
    assert {j.model: (j.expect.better, j.expect.tolerance, j.expect.baseline) for j in jobs.values() if j.expect} == {
        "a": ("lower", 1.5, None),  # by its name, as compare says it; so 150% is allowed
        "b": ("lower", 0.05, "main"),  # by the madfile's `results.better`, whatever the bounds
        "c": ("higher", 0.05, None),  # nothing says: higher
        "d": ("lower", 0.1, None),  # a range says nothing: the name does (it read higher: latency improved)
        "e": ("lower", 0.05, None),  # only a max, on a metric nothing else says anything of: a ceiling
        "f": ("lower", None, None)}  # `better:` wins over everything


def test_a_gates_baseline_must_be_saved(make_project: MakeProject) -> None:
    path = make_project("""\
        version: 1
        models: [{name: a, scripts: r.sh}]
        runs:
          - models: [a]
            expect: {a: {metric: x, tolerance: 5%, baseline: nightly}}
        """, {"r.sh": "", "baselines/main.json": "{}", "baselines/old.json": "{}"})
    (error,) = _errors(path)
    assert error.endswith("madfile.yaml:5:54: error: runs[0].expect.a.baseline: no baseline 'nightly' (baselines/"
                     "nightly.json does not exist) (hint: saved baselines: main, old)"), error


def test_run_dir_names_never_give_two_scripts_one_name() -> None:
    pre = (ScriptCall("common/pre/trace.sh", ("rpd",)), ScriptCall("a/x.sh"), ScriptCall("b/x.sh"))
    post = (ScriptCall("a/x.sh"), ScriptCall("common/post/trace.sh"), ScriptCall("c/x.sh"))
    assert run_dir_names(pre, post) == (("trace.sh", "x.sh", "pre-x.sh"), ("x.sh", "post-trace.sh", "post-x.sh"))


def test_many_reports_each_distinct_problem_once() -> None:
    a, b = Diagnostic("f", 2, 1, "b"), Diagnostic("f", 1, 1, "a")
    assert ConfigError.many([a, b, a, b, a]).diagnostics == (b, a)
