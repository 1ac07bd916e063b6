"""scripts/<dir>/get_models_json.py: CustomModel from both import paths, update_model, isolation, errors."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic
from madengine.mad.discover import discover_package
from madengine.utils.discover_models import CustomModel
from tests.unit.mad.conftest import WritePackage

ROCM_DUMMY3 = '''\
    """Model template for dummy3 model (as in ROCm madengine's tests/fixtures/dummy)."""
    from madengine.utils.discover_models import CustomModel

    Model3Data = CustomModel(
        name="model3",
        dockerfile="docker/dummy",
        scripts="run.sh",
        n_gpus="-1",
        owner="mad.support@amd.com",
        training_precision="",
        tags=["dummies", "dummy_test_group_3"],
        args="",
        multiple_results="",
    )

    class Dummy3CustomModel(CustomModel):
        def update_model(self):
            self.dockerfile="docker/dummy"
            self.scripts="run.sh"
            self.n_gpus = "-1"
            self.owner = "mad.support@amd.com"
            self.training_precision = ""
            self.args = ""
            self.multiple_results = ""

    Model4Data = Dummy3CustomModel(
        name="model4",
        tags = ["dummies", "dummy_test_group_3"]
    )

    def list_models():
        return [Model3Data, Model4Data]
'''


def errors_of(root: Path) -> list[Diagnostic]:
    with pytest.raises(ConfigError) as caught:
        discover_package(root)
    return list(caught.value.diagnostics)


def test_rocm_madengines_dummy3_fixture_discovers_as_it_does_there(write_package: WritePackage) -> None:
    root = write_package({"scripts/dummy3/get_models_json.py": ROCM_DUMMY3})

    model3, model4 = discover_package(root).models

    assert (model3.name, model4.name) == ("dummy3/model3", "dummy3/model4")
    for model in (model3, model4):
        assert model.dockerfile == "scripts/dummy3/docker/dummy"  # relative to the directory, as in ROCm
        assert model.scripts == "scripts/dummy3/run.sh"
        assert (model.n_gpus, model.timeout, model.owner) == (-1, 7200, "mad.support@amd.com")
        assert model.tags == ("dummies", "dummy_test_group_3")
        assert model.directory == "dummy3"
        assert model.origin is not None and model.origin.file == "scripts/dummy3/get_models_json.py"
    assert [m.origin.index for m in (model3, model4) if m.origin] == [0, 1]


@pytest.mark.parametrize("module", ["madengine.utils.discover_models", "madengine.tools.discover_models"])
def test_both_import_paths_of_custom_model_work(write_package: WritePackage, module: str) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": f"""\
        from {module} import CustomModel

        def list_models():
            return [CustomModel(name="m", dockerfile="../../docker/m", scripts="run.sh", n_gpus="2")]
        """})

    (model,) = discover_package(root).models

    assert (model.name, model.dockerfile, model.n_gpus) == ("dyn/m", "docker/m", 2)
    assert model.scripts == "scripts/dyn/run.sh"


def test_the_two_import_paths_are_one_class() -> None:
    from madengine.tools.discover_models import CustomModel as OldCustomModel

    assert OldCustomModel is CustomModel


def test_update_model_sees_the_prefixed_name_and_cannot_change_name_or_tags(
        write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        from madengine.tools.discover_models import CustomModel

        class Derived(CustomModel):
            def update_model(self):
                self.args = "--name " + self.name
                self.scripts = self.name.split("/")[1] + ".sh"
                self.dockerfile = "../../docker/shared"
                self.name = "renamed"
                self.tags.append("added")

        def list_models():
            return [Derived(name="d", tags=["t"])]
        """})

    (model,) = discover_package(root).models

    assert model.args == "--name dyn/d"
    assert model.scripts == "scripts/dyn/d.sh" and model.dockerfile == "docker/shared"
    assert model.name == "dyn/d" and model.tags == ("t",)


def test_list_models_may_return_dicts_and_subclasses_with_extra_fields(write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        from dataclasses import dataclass
        from madengine.utils.discover_models import CustomModel

        @dataclass
        class WithLauncher(CustomModel):
            launcher: str = "torchrun"

        def list_models():
            return [
                {"name": "as_dict", "dockerfile": "../../docker/m", "scripts": "run.sh", "n_gpus": "1"},
                WithLauncher(name="sub", dockerfile="../../docker/m", scripts="run.sh"),
            ]
        """})

    package = discover_package(root)

    as_dict, sub = package.models
    assert (as_dict.name, as_dict.n_gpus, as_dict.timeout) == ("dyn/as_dict", 1, -1)
    assert sub.extra == {"launcher": "torchrun"}
    (warning,) = package.warnings
    assert warning.file == "scripts/dyn/get_models_json.py" and warning.key_path == "launcher"


def test_custom_model_keeps_rocm_madengines_fields_defaults_and_to_dict() -> None:
    names = [f.name for f in dataclasses.fields(CustomModel)]
    assert names == ["name", "dockerfile", "dockercontext", "scripts", "url", "cred", "owner", "data",
                     "n_gpus", "timeout", "training_precision", "tags", "args", "multiple_results",
                     "skip_gpu_arch"]
    model = CustomModel(name="m", tags=["a"])
    assert (model.n_gpus, model.timeout, model.skip_gpu_arch) == ("-1", 7200, "")
    as_dict = model.to_dict()
    assert as_dict == dataclasses.asdict(model)
    as_dict["tags"].append("b")
    assert model.tags == ["a"]  # to_dict copies lists, as asdict does
    CustomModel(name="m").update_model()  # overridable, does nothing


def test_helper_modules_next_to_the_script_are_importable_and_forgotten(write_package: WritePackage) -> None:
    """Two packages with a helpers.py each: each script sees its own, and nothing stays behind."""
    script = """\
        import helpers
        from madengine.utils.discover_models import CustomModel

        def list_models():
            return [CustomModel(name=helpers.NAME, dockerfile="d", scripts="s")]
        """
    first = write_package({"scripts/dyn/get_models_json.py": script,
                           "scripts/dyn/helpers.py": "NAME = 'one'\n"})
    second = write_package({"scripts/dyn/get_models_json.py": script,
                            "scripts/dyn/helpers.py": "NAME = 'two'\n"})
    path_before, modules_before = list(sys.path), set(sys.modules)

    assert [m.name for m in discover_package(first).models] == ["dyn/one"]
    assert [m.name for m in discover_package(second).models] == ["dyn/two"]

    assert sys.path == path_before
    assert "helpers" not in sys.modules
    assert not [name for name in set(sys.modules) - modules_before if "dynamic" in name or name == "helpers"]


def test_no_bytecode_is_written_into_the_package(write_package: WritePackage, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as for a user without PYTHONDONTWRITEBYTECODE
    root = write_package({"scripts/dyn/get_models_json.py": "import helper\n" + textwrap.dedent(ROCM_DUMMY3),
                          "scripts/dyn/helper.py": "X = 1\n"})

    discover_package(root)
    again = discover_package(root)  # the second time from the bytecode cache

    assert [m.name for m in again.models] == ["dyn/model3", "dyn/model4"]
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    assert list((tmp_path / "cache" / "bytecode").glob("*.pyc"))  # cached outside, in MADENGINE_CACHE_DIR
    assert sys.dont_write_bytecode is False


def test_a_changed_script_is_not_served_from_the_bytecode_cache(write_package: WritePackage) -> None:
    script = """\
        from madengine.utils.discover_models import CustomModel
        def list_models():
            return [CustomModel(name="{name}", dockerfile="d", scripts="s")]
        """
    root = write_package({"scripts/dyn/get_models_json.py": script.format(name="before")})
    assert [m.name for m in discover_package(root).models] == ["dyn/before"]

    (root / "scripts/dyn/get_models_json.py").write_text(script.format(name="after").replace("        ", ""))

    assert [m.name for m in discover_package(root).models] == ["dyn/after"]


def test_the_bytecode_cache_can_be_turned_off(write_package: WritePackage, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MADENGINE_CACHE_DIR", "")
    root = write_package({"scripts/dyn/get_models_json.py": ROCM_DUMMY3})

    assert len(discover_package(root).models) == 2
    assert not (tmp_path / "cache").exists()


# --- errors ---------------------------------------------------------------------------------------


def test_a_script_that_raises_is_reported_at_its_line_without_a_traceback(
        write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        from madengine.utils.discover_models import CustomModel

        SIZES = {"small": 1}
        DEFAULT = SIZES["large"]
        """})

    (error,) = errors_of(root)

    assert (error.file, error.line) == ("scripts/dyn/get_models_json.py", 4)
    assert error.message == "running the script raised KeyError: 'large'"
    assert "Traceback" not in error.render()


def test_an_exception_raised_in_a_helper_is_reported_at_the_scripts_line(write_package: WritePackage) -> None:
    root = write_package({
        "scripts/dyn/get_models_json.py":
            "import broken_helper\n\ndef list_models():\n    return broken_helper.x()\n",
        "scripts/dyn/broken_helper.py": "def x():\n    return 1 / 0\n",
    })

    (error,) = errors_of(root)

    assert (error.file, error.line) == ("scripts/dyn/get_models_json.py", 4)
    assert error.message == "list_models() raised ZeroDivisionError: division by zero"


def test_a_syntax_error_is_reported_at_its_line_and_column(write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": "def list_models():\n    return [\n\nx = )\n"})

    (error,) = errors_of(root)

    assert error.file == "scripts/dyn/get_models_json.py" and error.line is not None
    assert error.message.startswith("running the script raised SyntaxError: ")


def test_sys_exit_in_a_script_is_an_error_not_an_exit(write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": "import sys\nsys.exit('no models here')\n"})

    (error,) = errors_of(root)

    assert (error.line, error.message) == (2, "running the script raised SystemExit: no models here")


@pytest.mark.parametrize(("script", "message"), [
    ("MODELS = []\n", "the script defines no `list_models()` function"),
    ("list_models = ['not', 'callable']\n", "the script defines no `list_models()` function"),
    ("def list_models():\n    return {'name': 'm'}\n", "list_models() returned a dict, not a list"),
    ("def list_models():\n    return None\n", "list_models() returned a NoneType, not a list"),
    ("def list_models():\n    return ['m1']\n", "list_models()[0] is a str, not a CustomModel"),
])
def test_a_list_models_that_does_not_return_models_is_an_error(write_package: WritePackage, script: str,
                                                                message: str) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": script})

    (error,) = errors_of(root)

    assert (error.file, error.message) == ("scripts/dyn/get_models_json.py", message)


def test_update_model_that_raises_is_an_error_naming_the_model(write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        from madengine.utils.discover_models import CustomModel

        class Broken(CustomModel):
            def update_model(self):
                raise RuntimeError("no config for " + self.name)

        def list_models():
            return [CustomModel(name="fine", dockerfile="d", scripts="s"), Broken(name="broken")]
        """})

    (error,) = errors_of(root)

    assert (error.file, error.line) == ("scripts/dyn/get_models_json.py", 5)
    assert error.message == "model 'dyn/broken': update_model() raised RuntimeError: no config for dyn/broken"


def test_a_dynamic_model_with_a_bad_value_or_a_duplicate_name_is_an_error(
        write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        from madengine.utils.discover_models import CustomModel

        def list_models():
            return [CustomModel(name="a", n_gpus="eight"), CustomModel(name="b"), CustomModel(name="b")]
        """})

    errors = errors_of(root)

    assert [(e.file, e.line) for e in errors] == [("scripts/dyn/get_models_json.py", None)] * 2
    messages = sorted(e.message for e in errors)
    assert messages[0].startswith(
        "duplicate model name 'dyn/b': also declared at scripts/dyn/get_models_json.py")
    assert messages[1].startswith("model 'dyn/a': `n_gpus` must be an integer")


def test_a_dict_without_a_name_is_named_by_its_position(write_package: WritePackage) -> None:
    root = write_package({"scripts/dyn/get_models_json.py": """\
        def list_models():
            return [42, {"name": "ok", "dockerfile": "d", "scripts": "s"}, {"dockerfile": "d"}]
        """})

    errors = sorted(e.message for e in errors_of(root))

    assert errors == ["list_models()[0] is a int, not a CustomModel", "list_models()[2] has no `name`"]
