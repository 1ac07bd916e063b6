"""The real ROCm MAD files (tests/fixtures/mad) and the example package (examples/mad-package)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from madengine.mad.discover import discover_package
from madengine.mad.dockerfiles import DockerfileIndex, base_image, select_dockerfiles
from madengine.mad.tags import select_models
from tests.unit.mad.conftest import FIXTURES, WritePackage

REAL_MODELS = json.loads((FIXTURES / "mad-models.json").read_text())
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "mad-package"
# DESIGN §3: the first match of this pattern in a run log gives the value and the metric.
PERFORMANCE = re.compile(r"performance:\s+([+\-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?)"
                         r"(?:,?\s*/[a-zA-Z]+\s*,?|,)?\s+([^\s,]+)")


@pytest.fixture
def real_package(write_package: WritePackage) -> Path:
    root = write_package({})
    shutil.copy(FIXTURES / "mad-models.json", root / "models.json")
    (root / "scripts" / "dummy").mkdir(parents=True)
    shutil.copy(FIXTURES / "mad-dir-models.json", root / "scripts" / "dummy" / "models.json")
    return root


def test_the_real_root_models_json_loads_as_a_package(real_package: Path) -> None:
    package = discover_package(real_package)

    assert len(package.models) == 135 and package.warnings == ()
    root_models = [m for m in package.models if m.directory == ""]
    assert [m.name for m in root_models] == [e["name"] for e in REAL_MODELS]
    for model, raw in zip(root_models, REAL_MODELS, strict=True):
        assert model.n_gpus == int(raw["n_gpus"])
        assert model.tags == tuple(raw["tags"])
        assert model.dockerfile == raw["dockerfile"] and model.scripts == raw["scripts"]
        assert model.timeout == raw.get("timeout", -1)
        skip = raw.get("skip_gpu_arch")
        assert model.skip_gpu_arch == (tuple(skip.split(",")) if skip else ())


def test_every_real_entry_knows_its_line(real_package: Path) -> None:
    lines = (real_package / "models.json").read_text().splitlines()

    for model in discover_package(real_package).models[:134]:
        assert model.origin is not None and model.origin.line is not None
        assert lines[model.origin.line - 1].strip() == "{"
        assert lines[model.origin.line].strip() == f'"name": {json.dumps(model.name)},'


def test_the_real_directory_models_json_resolves_its_relative_paths(real_package: Path) -> None:
    model = discover_package(real_package).models[-1]

    assert model.name == "dummy/dummy_multi"
    assert (model.dockerfile, model.scripts) == ("docker/dummy", "scripts/dummy/run_multi.sh")
    assert (model.n_gpus, model.multiple_results, model.tags) == (1, "perf_dummy.csv", ("dummies",))


def test_the_real_models_are_selectable_by_their_tags(write_package: WritePackage) -> None:
    root = write_package({})
    shutil.copy(FIXTURES / "mad-models.json", root / "models.json")
    models = discover_package(root).models

    def expected(*tags: str) -> list[str]:
        return [e["name"] for e in REAL_MODELS if any(t in e["tags"] or t == e["name"] for t in tags)]

    assert len(select_models(models, "all")) == 134
    for tag in ("pyt", "vllm", "vllm_default", "jax", "inference", "primus"):
        assert [s.model.name for s in select_models(models, tag)] == expected(tag), tag
    assert len(expected("vllm")) == 30 and len(expected("vllm_default")) == 13
    both = [s.model.name for s in select_models(models, "vllm_default,jax")]
    assert sorted(both) == sorted(expected("vllm_default", "jax")) and len(both) == 13 + 19
    (selected,) = select_models(models, "pyt_vllm_deepseek-r1:max_tokens=64")
    assert selected.args == ("--model_repo deepseek-ai/DeepSeek-R1-0528 --config configs/default.yaml"
                             " --max_tokens 64")


def test_the_example_package_is_a_working_mad_package() -> None:
    package = discover_package(EXAMPLE)

    assert package.warnings == ()
    assert [m.name for m in package.models] == ["dummy", "dummy_perf", "dummy_multi", "dummy_dir/quick",
                                                "dummy_dir/slow", "dyn/small", "dyn/large"]
    index = DockerfileIndex(EXAMPLE)
    for model in package.models:
        assert (EXAMPLE / model.scripts).is_file(), model.name
        files = index.find(model.dockerfile)
        assert [f.stem for f in files] == ["dummy.ubuntu.amd", "dummy.ubuntu.none"]
        for f in files:
            assert base_image(EXAMPLE / f.path) == "localhost:5000/madengine/busybox:1"
    cpu = select_dockerfiles(index.find("docker/dummy"), {"gpu_vendor": "NONE", "guest_os": "UBUNTU"})
    assert [f.path for f in cpu] == ["docker/dummy.ubuntu.none.Dockerfile"]
    assert not list(EXAMPLE.rglob("__pycache__"))


def test_the_example_scripts_print_performance_under_posix_sh(tmp_path: Path) -> None:
    package = discover_package(EXAMPLE)
    results: dict[str, tuple[float, str]] = {}
    for selected in select_models(package.models, ["all", "dummy_perf:batch_size=64"]):
        run_dir = tmp_path / f"run{len(results)}"
        shutil.copytree((EXAMPLE / selected.model.scripts).parent, run_dir)
        script = Path(selected.model.scripts).name
        env = {"MAD_MODEL_NAME": selected.model.name, "PATH": "/usr/bin:/bin"}
        if selected.model.multiple_results:
            env["MAD_OUTPUT_CSV"] = selected.model.multiple_results
        done = subprocess.run(["sh", script, *selected.args.split()], cwd=run_dir, env=env,
                              capture_output=True, text=True, timeout=30, check=True)
        match = PERFORMANCE.search(done.stdout)
        assert match is not None, done.stdout
        results[selected.model.name + selected.args] = (float(match.group(1)), match.group(2))
        if selected.model.multiple_results:
            rows = (run_dir / selected.model.multiple_results).read_text().splitlines()
            assert rows[0] == "model,performance,metric" and len(rows) == 3

    assert results["dummy"] == (123.4, "samples_per_second")
    assert results["dummy_perf--batch_size 32 --iterations 10"] == (128.5, "samples_per_second")
    swept = results["dummy_perf--batch_size 32 --iterations 10 --batch_size 64"]
    assert swept == (256.5, "samples_per_second")
    assert results["dyn/large--size 1024"] == (512.25, "gflops")
    assert results["dummy_dir/slow--steps 50"] == (20.0, "steps_per_second")
