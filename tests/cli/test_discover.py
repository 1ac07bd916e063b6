"""`madengine discover` through the real entry point, in a copy of examples/mad-package and over the real
MAD root models.json (tests/fixtures/mad/mad-models.json, 134 models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, RunCli

CONFIG = 5
EXAMPLE = REPO_ROOT / "examples" / "mad-package"
MAD_MODELS = REPO_ROOT / "tests" / "fixtures" / "mad" / "mad-models.json"
# The keys of a MAD models.json entry (DESIGN §3) that every listed model carries.
MODELS_JSON_KEYS = {"name", "dockerfile", "scripts", "n_gpus", "owner", "training_precision", "tags", "args",
                    "multiple_results", "timeout", "url", "data", "skip_gpu_arch", "cred", "dockercontext",
                    "additional_docker_run_options", "env_vars"}
HEADER = "MODEL       GPUS  TAGS             DOCKERFILE    ARGS"


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A private copy of the example package, without what earlier runs left in it."""
    dest = tmp_path / "mad-package"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("madengine.lock", ".madengine", "__pycache__"))
    return dest


@pytest.fixture
def mad(tmp_path: Path) -> Path:
    """A package whose root models.json is the real MAD one (discovery needs no Dockerfiles)."""
    (tmp_path / "MAD").mkdir()
    shutil.copyfile(MAD_MODELS, tmp_path / "MAD" / "models.json")
    return tmp_path / "MAD"


def names(stdout: str) -> list[str]:
    """The MODEL column of the table; the last line is the count."""
    lines = stdout.splitlines()
    return [line.split()[0] for line in lines[1:-1]]


def test_all_models_by_default(run_cli: RunCli, package: Path) -> None:
    code, out, err = run_cli("discover", cwd=package)
    assert (code, err) == (0, "")
    assert names(out) == ["dummy", "dummy_perf", "dummy_multi", "dummy_dir/quick", "dummy_dir/slow",
                          "dyn/small", "dyn/large"]
    assert out.splitlines()[-1] == "7 models selected"


def test_tags_repeated_and_comma_separated_are_the_same(run_cli: RunCli, package: Path) -> None:
    expected = "\n".join([
        HEADER,
        "dyn/small   1     dummies,dynamic  docker/dummy  --size 256",
        "dummy_perf  1     dummies,perf     docker/dummy  --batch_size 32 --iterations 10",
        "dummy       1     dummies,smoke    docker/dummy",
        "3 models selected",
    ]) + "\n"
    # In the order of the tags; a model selected twice (`dummy`, `smoke`) is listed once.
    assert run_cli("discover", "--tags", "dyn/small", "-t", "dummy_perf", "-t", "dummy", "-t", "smoke",
                   cwd=package) == (0, expected, "")
    assert run_cli("discover", "--tags", "dyn/small,dummy_perf,dummy,smoke", cwd=package) == (0, expected, "")


def test_tag_arguments_are_appended(run_cli: RunCli, package: Path) -> None:
    code, out, err = run_cli("discover", "-t", "dummy_perf:batch_size=64:fast", "-t", "dummy_dir/all", cwd=package)
    assert (code, err) == (0, "")
    assert out == "\n".join([
        "MODEL            GPUS  TAGS               DOCKERFILE    ARGS",
        "dummy_perf       1     dummies,perf       docker/dummy  "
        "--batch_size 32 --iterations 10 --batch_size 64 --fast",
        "dummy_dir/quick  1     dummies,dir_group  docker/dummy  --steps 5",
        "dummy_dir/slow   1     dir_group          docker/dummy  --steps 50",
        "3 models selected",
    ]) + "\n"


def test_json_lists_models_json_entries(run_cli: RunCli, package: Path) -> None:
    code, out, err = run_cli("discover", "--json", "-t", "dummy_perf:batch_size=64", "-t", "dyn/large", cwd=package)
    assert (code, err) == (0, "")
    models = json.loads(out)
    assert [m["name"] for m in models] == ["dummy_perf", "dyn/large"]
    assert all(set(m) >= MODELS_JSON_KEYS for m in models)
    perf, large = models
    # As ROCm madengine lists them: strings where models.json has strings, tag args appended.
    assert (perf["args"], perf["n_gpus"], perf["tags"], perf["timeout"], perf["training_precision"]) == (
        "--batch_size 32 --iterations 10 --batch_size 64", "1", ["dummies", "perf"], 600, "fp16")
    # A model of a get_models_json.py: its update_model() has filled it in.
    assert (large["dockerfile"], large["scripts"], large["args"]) == ("docker/dummy", "scripts/dyn/run.sh",
                                                                      "--size 1024")


def test_unknown_tag_is_a_config_error_with_close_matches(run_cli: RunCli, package: Path) -> None:
    assert run_cli("discover", "-t", "dummies,dumy", cwd=package) == (
        CONFIG, "", "error: tag 'dumy' selects no model; did you mean 'dummy'? "
                    "(hint: run `madengine discover` to list the package's models and tags)\n")


def test_package_and_chdir_options(run_cli: RunCli, package: Path) -> None:
    code, out, _ = run_cli("discover", "-C", package.parent, "-p", package.name, "-t", "dyn/all",
                           cwd=package / "scripts")  # -C, not the working directory, is the base
    assert code == 0 and names(out) == ["dyn/small", "dyn/large"]


def test_the_real_mad_models_json(run_cli: RunCli, mad: Path) -> None:
    code, out, err = run_cli("discover", "-t", "all", cwd=mad)
    assert (code, err) == (0, "")
    listed = names(out)
    assert len(listed) == 134 == len(set(listed)) and out.splitlines()[-1] == "134 models selected"
    assert listed == [m["name"] for m in json.loads(MAD_MODELS.read_text(encoding="utf-8"))]

    code, out, err = run_cli("discover", "--json", "-t", "pyt_huggingface_gpt2:batch_size=8", "-C", "MAD",
                             cwd=mad.parent)
    assert (code, err) == (0, "")
    (gpt2,) = json.loads(out)
    # ROCm madengine appends ` --k v` to the args as they are, so an empty args gains a leading space.
    assert (gpt2["name"], gpt2["n_gpus"], gpt2["args"]) == ("pyt_huggingface_gpt2", "-1", " --batch_size 8")
