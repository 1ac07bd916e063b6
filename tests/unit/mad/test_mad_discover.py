"""discover_package: root and scripts/<dir>/models.json, coercion, errors pinned to file and line."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.discover import discover_package
from madengine.mad.model import MadModel, Origin
from tests.unit.mad.conftest import WritePackage, entry


def errors_of(root: Path) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as caught:
        discover_package(root)
    return list(caught.value.diagnostics)


def only_error(root: Path) -> Diagnostic:
    errors = errors_of(root)
    assert len(errors) == 1, errors
    return errors[0]


# --- the root models.json ---------------------------------------------------------------------------


def test_root_models_are_read_in_file_order_with_mad_strings_coerced(write_package: WritePackage) -> None:
    root = write_package({"models.json": [
        entry("b_model", n_gpus="-1", tags=["pyt", "fp16"], timeout=600, skip_gpu_arch="gfx90a, gfx942",
              args="--batch 8", multiple_results="perf.csv", url="https://example.org/b.git"),
        entry("a_model", n_gpus="8"),
    ]})

    package = discover_package(root)

    assert [m.name for m in package.models] == ["b_model", "a_model"]
    first, second = package.models
    assert first.n_gpus == -1 and second.n_gpus == 8
    assert first.tags == ("pyt", "fp16")
    assert first.timeout == 600 and second.timeout == -1 and second.effective_timeout == 7200
    assert first.skip_gpu_arch == ("gfx90a", "gfx942")
    assert first.args == "--batch 8" and first.multiple_results == "perf.csv"
    assert first.dockerfile == "docker/dummy" and first.scripts == "scripts/b_model/run.sh"
    assert first.directory == "" and first.extra == {}
    assert first.origin == Origin("models.json", 0, 2)
    assert package.root == os.path.abspath(root) and package.warnings == ()


def test_numbers_given_as_numbers_and_lists_as_strings_are_accepted(write_package: WritePackage) -> None:
    root = write_package({"models.json": [
        entry("m", n_gpus=4, timeout="900", tags="pyt, vllm,", skip_gpu_arch=["gfx906"],
              env_vars={"HIP_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": 4}, owner=None),
    ]})

    (model,) = discover_package(root).models

    assert (model.n_gpus, model.timeout) == (4, 900)
    assert model.tags == ("pyt", "vllm")
    assert model.skip_gpu_arch == ("gfx906",)
    assert model.env_vars == {"HIP_VISIBLE_DEVICES": "0", "OMP_NUM_THREADS": "4"}
    assert model.owner == ""


def test_paths_of_the_root_file_are_normalized(write_package: WritePackage) -> None:
    root = write_package({"models.json": [
        entry("m", dockerfile="./docker//dummy", scripts="scripts/x/../m/run.sh", dockercontext="docker/")]})

    (model,) = discover_package(root).models

    assert model.dockerfile == "docker/dummy"
    assert (model.scripts, model.dockercontext) == ("scripts/m/run.sh", "docker")


def test_unknown_keys_are_kept_and_warned_about_once_per_key(write_package: WritePackage) -> None:
    root = write_package({"models.json": """\
        [
            {"name": "a", "dockerfile": "docker/a", "scripts": "a.sh", "is_deprecated": true},
            {"name": "b", "dockerfile": "docker/a", "scripts": "b.sh", "is_deprecated": false,
             "maintainer_notes": ["x"]}
        ]
        """})

    package = discover_package(root)

    assert package.models[0].extra == {"is_deprecated": True}
    assert package.models[1].extra == {"is_deprecated": False, "maintainer_notes": ["x"]}
    warnings = sorted(package.warnings)
    assert [(w.file, w.line, w.key_path, w.severity) for w in warnings] == [
        ("models.json", 2, "is_deprecated", "warning"), ("models.json", 3, "maintainer_notes", "warning")]
    assert "2 entries" in warnings[0].message and "1 entry" in warnings[1].message


def test_a_utf8_byte_order_mark_is_accepted(write_package: WritePackage) -> None:
    root = write_package({})
    (root / "models.json").write_text('\ufeff[{"name": "m", "dockerfile": "d", "scripts": "s"}]',
                                      encoding="utf-8")

    assert [m.name for m in discover_package(root).models] == ["m"]


def test_models_built_for_speed_equal_models_built_by_the_constructor(write_package: WritePackage) -> None:
    root = write_package({"models.json": [entry("m", n_gpus="2", tags=["t"], extra_key=1)]})

    (model,) = discover_package(root).models

    rebuilt = MadModel(**{f.name: getattr(model, f.name) for f in dataclasses.fields(MadModel)})
    assert model == rebuilt and hash(model.origin) == hash(rebuilt.origin) and repr(model) == repr(rebuilt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.name = "x"  # type: ignore[misc]


# --- scripts/<dir>/models.json ----------------------------------------------------------------------


def test_directory_models_are_named_and_resolved_relative_to_their_directory(
        write_package: WritePackage) -> None:
    root = write_package({
        "models.json": [entry("top")],
        "scripts/dummy/models.json": [
            entry("dummy_multi", dockerfile="../../docker/dummy", scripts="run_multi.sh", tags=["dummies"]),
            entry("in_dir", dockerfile="docker/local", scripts="", dockercontext="ctx"),
        ],
        "scripts/dummy/ctx/.keep": "",
    })

    package = discover_package(root)

    assert [m.name for m in package.models] == ["top", "dummy/dummy_multi", "dummy/in_dir"]
    multi, in_dir = package.models[1:]
    assert (multi.dockerfile, multi.scripts) == ("docker/dummy", "scripts/dummy/run_multi.sh")
    assert multi.directory == "dummy"
    assert multi.tags == ("dummies",)  # tags are not prefixed
    assert multi.origin == Origin("scripts/dummy/models.json", 0, 2)
    # an empty `scripts` is the directory itself (madengine then runs its run.sh)
    assert (in_dir.dockerfile, in_dir.scripts) == ("scripts/dummy/docker/local", "scripts/dummy")
    assert in_dir.dockercontext == "scripts/dummy/ctx"


def test_dockercontext_falls_back_to_the_package_root_as_rocm_madengine_reads_it(
        write_package: WritePackage) -> None:
    root = write_package({
        "scripts/d/models.json": [entry("m", dockerfile="../../docker/m", dockercontext="docker")],
        "docker/m.ubuntu.none.Dockerfile": "FROM scratch\n",
    })

    (model,) = discover_package(root).models

    assert model.dockercontext == "docker"


def test_a_package_without_a_root_models_json_is_read_from_its_directories(
        write_package: WritePackage) -> None:
    root = write_package({"scripts/only/models.json": [entry("m")]})

    assert [m.name for m in discover_package(root).models] == ["only/m"]


def test_directories_are_read_in_sorted_order(write_package: WritePackage) -> None:
    names = ["zeta", "alpha", "Mid", "beta_2", "beta"]
    root = write_package({f"scripts/{name}/models.json": [entry("m")] for name in names})
    (root / "scripts" / "no_models").mkdir()
    (root / "scripts" / "a_file.txt").write_text("not a directory")

    package = discover_package(root)

    assert [m.directory for m in package.models] == sorted(names)


def test_a_path_leading_outside_the_package_is_a_warning(write_package: WritePackage) -> None:
    root = write_package({"scripts/d/models.json": [entry("m", dockerfile="../../../shared/docker/m")]})

    package = discover_package(root)

    assert package.models[0].dockerfile == "../shared/docker/m"
    (warning,) = package.warnings
    assert warning.severity == "warning" and warning.file == "scripts/d/models.json" and warning.line == 2
    assert "outside the package" in warning.message


# --- errors ---------------------------------------------------------------------------------------


def test_invalid_json_names_file_line_and_column(write_package: WritePackage) -> None:
    root = write_package({"models.json": """\
        [
            {"name": "a", "dockerfile": "d", "scripts": "s"}
            {"name": "b", "dockerfile": "d", "scripts": "s"}
        ]
        """})

    error = only_error(root)

    assert (error.file, error.line, error.column) == ("models.json", 3, 5)
    assert error.message == "invalid JSON: Expecting ',' delimiter"


@pytest.mark.parametrize(("text", "line", "column"), [
    ('[{"name": "a",}]', 1, 15),
    ('[\n  {"name": "a"},\n]', 3, 1),
    ('[{"name": "a"}] x', 1, 17),
    ("", 1, 1),
    ('[{"name": "a"}', 1, 15),
    ('[{"name": "a"}, ', 1, 17),
])
def test_every_kind_of_invalid_json_is_located(write_package: WritePackage, text: str, line: int,
                                                column: int) -> None:
    root = write_package({"scripts/d/models.json": text})
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)

    error = only_error(root)

    assert (error.file, error.line, error.column) == ("scripts/d/models.json", line, column)
    assert error.message == f"invalid JSON: {expected.value.msg}"  # the wording users know from json


def test_a_top_level_that_is_not_a_list_is_an_error(write_package: WritePackage) -> None:
    root = write_package({"models.json": {"name": "m", "dockerfile": "d", "scripts": "s"}})

    error = only_error(root)

    assert (error.file, error.line) == ("models.json", 1)
    assert "must be a list" in error.message and "JSON object" in error.message


def test_an_entry_that_is_not_an_object_is_an_error_at_its_line(write_package: WritePackage) -> None:
    root = write_package({"models.json": """\
        [
            {"name": "ok", "dockerfile": "d", "scripts": "s"},
            "pyt_model",
            ["a", "list"]
        ]
        """})

    errors = errors_of(root)

    assert [(e.file, e.line, e.column) for e in errors] == [("models.json", 3, 5), ("models.json", 4, 5)]
    assert errors[0].message == "entry 1 is a JSON string, not an object"
    assert errors[1].message == "entry 2 is a JSON list, not an object"


def test_an_entry_without_a_name_is_an_error_at_its_line(write_package: WritePackage) -> None:
    root = write_package({"models.json": """\
        [
            {"name": "ok", "dockerfile": "d", "scripts": "s"},
            {"dockerfile": "d",
             "scripts": "s"},
            {"dockerfile": "d",
             "name": 42}
        ]
        """})

    errors = errors_of(root)

    assert [(e.line, e.key_path) for e in errors] == [(3, "[1].name"), (6, "[2].name")]
    assert errors[0].message == "entry 1 has no `name`"
    assert errors[1].message == "entry 2 has a `name` that is a number, not a string"


def test_a_value_of_the_wrong_type_is_an_error_at_the_line_of_its_key(write_package: WritePackage) -> None:
    root = write_package({"scripts/d/models.json": """\
        [
            {
                "name": "m",
                "dockerfile": "../../docker/m",
                "scripts": "run.sh",
                "n_gpus": "all of them",
                "tags": ["ok", 7],
                "timeout": true,
                "args": ["--a", "1"],
                "env_vars": {"A": {"nested": 1}}
            }
        ]
        """})

    errors = errors_of(root)

    assert [(e.file, e.line, e.key_path) for e in errors] == [
        ("scripts/d/models.json", 6, "[0].n_gpus"), ("scripts/d/models.json", 7, "[0].tags"),
        ("scripts/d/models.json", 8, "[0].timeout"), ("scripts/d/models.json", 9, "[0].args"),
        ("scripts/d/models.json", 10, "[0].env_vars")]
    assert errors[0].message.startswith("model 'm': `n_gpus` must be an integer number of GPUs")
    assert "not string 'all of them'" in errors[0].message
    assert errors[2].message.endswith("not boolean True")


def test_duplicate_names_are_an_error_naming_both_places(write_package: WritePackage) -> None:
    root = write_package({
        "models.json": """\
            [
                {"name": "m", "dockerfile": "d", "scripts": "s"},
                {"name": "d/x", "dockerfile": "d", "scripts": "s"},
                {"name": "m", "dockerfile": "d", "scripts": "s"}
            ]
            """,
        "scripts/d/models.json": [entry("x")],
    })

    errors = errors_of(root)

    assert [(e.file, e.line) for e in errors] == [("models.json", 4), ("scripts/d/models.json", 2)]
    assert errors[0].message == "duplicate model name 'm': also declared at models.json:2"
    assert errors[1].message == "duplicate model name 'd/x': also declared at models.json:3"


def test_a_directory_with_both_models_json_and_get_models_json_is_an_error(
        write_package: WritePackage) -> None:
    root = write_package({
        "scripts/both/models.json": [entry("m")],
        "scripts/both/get_models_json.py": "def list_models():\n    return []\n",
    })

    error = only_error(root)

    assert error.file == "scripts/both/get_models_json.py"
    assert "has both models.json and get_models_json.py" in error.message


def test_every_error_of_the_package_is_reported_at_once(write_package: WritePackage) -> None:
    root = write_package({
        "models.json": '[{"name": "m", "dockerfile": "d", "scripts": "s", "n_gpus": "x"}]',
        "scripts/a/models.json": "[",
        "scripts/b/get_models_json.py": "raise ValueError('nope')\n",
        "scripts/c/models.json": "{}",
    })

    errors = errors_of(root)

    assert [e.file for e in errors] == [
        "models.json", "scripts/a/models.json", "scripts/b/get_models_json.py", "scripts/c/models.json"]


def test_a_missing_or_empty_package_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        discover_package(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="not a MAD package"):
        discover_package(tmp_path)


def test_a_file_that_is_not_utf8_is_an_error(write_package: WritePackage) -> None:
    root = write_package({})
    (root / "models.json").write_bytes(b'[{"name": "caf\xe9"}]')

    error = only_error(root)

    assert error.file == "models.json" and "not UTF-8" in error.message


@pytest.mark.parametrize("n_gpus", ["--1", "\u00b2", "", "1.5", " ", "0x8"])
def test_strings_that_are_not_integers_are_not_gpu_counts(write_package: WritePackage, n_gpus: str) -> None:
    root = write_package({"models.json": [entry("m", n_gpus=n_gpus)]})

    error = only_error(root)

    assert error.key_path == "[0].n_gpus" and error.line == 6


@pytest.mark.parametrize(("n_gpus", "expected"), [(" 8 ", 8), ("-1", -1), ("0", 0), (2.0, 2), (None, 1)])
def test_integer_strings_with_spaces_and_integral_numbers_are_gpu_counts(
        write_package: WritePackage, n_gpus: object, expected: int) -> None:
    root = write_package({"models.json": [entry("m", n_gpus=n_gpus)]})

    assert discover_package(root).models[0].n_gpus == expected


@pytest.mark.parametrize(("nnodes", "expected"), [("2", 2), (4, 4), (None, 1)])
def test_nnodes_is_read_as_rocm_madengine_writes_it(write_package: WritePackage, nnodes: object,
                                                     expected: int) -> None:
    root = write_package({"models.json": [entry("m", nnodes=nnodes)]})

    model = discover_package(root).models[0]
    assert model.nnodes == expected and "nnodes" not in model.extra


@pytest.mark.parametrize("nnodes", ["0", -1, "two", 70000])
def test_an_nnodes_that_is_no_node_count_is_an_error_at_its_key(write_package: WritePackage, nnodes: object) -> None:
    root = write_package({"models.json": [entry("m", nnodes=nnodes)]})

    error = only_error(root)

    assert error.key_path == "[0].nnodes" and error.line == 13 and "nnodes" in error.message, error
