"""A package's get_models_json.py is untrusted code: it runs, but cannot hang madengine, end it
silently, or write into its machine-readable output. Each failure is a config error naming the file."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.conftest import RunCli

CONFIG = 5
FILE = "scripts/dyn/get_models_json.py"
MODEL = """\
    from madengine.utils.discover_models import CustomModel

    def list_models():
        return [CustomModel(name="m", dockerfile="d", scripts="s", tags=["t"])]
    """


def package(tmp_path: Path, script: str) -> Path:
    (tmp_path / "scripts" / "dyn").mkdir(parents=True)
    (tmp_path / FILE).write_text(textwrap.dedent(script))
    (tmp_path / "madfile.yaml").write_text("version: 1\npackage: .\nmodels: [{select: all}]\n")
    return tmp_path


def test_a_script_that_sleeps_forever_times_out(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "import time\n\ndef list_models():\n    print('waiting', flush=True)\n    time.sleep(3600)\n")
    code, _, err = run_cli("discover", cwd=tmp_path, env={"MADENGINE_SCRIPT_TIMEOUT": "1"}, timeout=60)
    assert code == CONFIG
    assert f"{FILE}: error: the script did not finish within 1 s; its last output: waiting" in err


def test_the_madfile_sets_the_timeout(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "import time\n\ndef list_models():\n    time.sleep(3600)\n")
    (tmp_path / "madfile.yaml").write_text("version: 1\npackage: .\nlimits: {script_timeout: 0.5}\n")
    code, _, err = run_cli("validate", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert "did not finish within 0.5 s" in err and "limits.script_timeout" in err


def test_os_exit_0_in_a_script_does_not_end_madengine_silently(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "import os\nprint('bye')\nos._exit(0)\n")
    code, _, err = run_cli("validate", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert f"{FILE}: error: the script ended the process (exit code 0) before list_models() returned; " \
           "its last output: bye" in err


def test_what_a_script_prints_never_reaches_discover_json(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "import os\nprint('noise')\nos.write(1, b'raw noise\\n')\n" + textwrap.dedent(MODEL))
    code, out, err = run_cli("discover", "--json", cwd=tmp_path, timeout=60)
    assert code == 0, err
    assert [m["name"] for m in json.loads(out)] == ["dyn/m"]
    assert "noise" in err and "raw noise" in err


def test_a_script_that_raises_is_named_with_its_line(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "def list_models():\n    raise ValueError('boom')\n")
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert f"{FILE}:2: error: list_models() raised ValueError: boom" in err


def test_a_script_that_returns_garbage_is_named(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "def list_models():\n    return [{'name': 'x', 'tags': {1, 2}}, object()]\n")
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert f"{FILE}: error: list_models()[0] holds a value that is not JSON data" in err
    assert f"{FILE}: error: list_models()[1] is a object, not a CustomModel" in err


def test_a_subclass_overriding_update_model_still_follows_the_mad_protocol(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, """\
        from madengine.tools.discover_models import CustomModel

        class Mine(CustomModel):
            def update_model(self):
                self.args = "--from " + self.name

        def list_models():
            return [Mine(name="m", dockerfile="d", scripts="s")]
        """)
    code, out, err = run_cli("discover", "--json", cwd=tmp_path, timeout=60)
    assert code == 0, err
    assert json.loads(out)[0]["args"] == "--from dyn/m"


def test_a_script_that_raises_a_base_exception_is_its_error_not_an_internal_error(
        tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, "class Boom(BaseException):\n    pass\n\ndef list_models():\n    raise Boom('kaboom')\n")
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert code == CONFIG
    assert f"{FILE}: error: the script ended the process (exit code 1) before list_models() returned; " \
           "its last output:" in err and "Boom: kaboom" in err
    assert "internal error" not in err and not (tmp_path / ".madengine/logs/crash.log").exists()


def test_a_script_that_returns_values_nested_past_64_levels_is_named(tmp_path: Path, run_cli: RunCli) -> None:
    script = ("def list_models():\n    x = []\n    for _ in range({}):\n        x = [x]\n"
              "    return [{{'name': 'm', 'dockerfile': 'd', 'scripts': 's', 'extra': x}}]\n")
    package(tmp_path, script.format(62))  # the model, then 63 lists: 64 levels
    code, out, err = run_cli("discover", "--json", cwd=tmp_path, timeout=60)
    assert code == 0 and [m["name"] for m in json.loads(out)] == ["dyn/m"], err
    (tmp_path / FILE).write_text(script.format(63))
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert (code, err) == (CONFIG, f"{FILE}: error: list_models()[0] holds a value that is not JSON data: nested "
                                   "more than 64 levels deep (hint: a model's fields are strings, numbers, "
                                   "booleans, lists and dicts)\n")


def test_a_script_timeout_beyond_a_day_is_refused_where_it_is_set(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, MODEL)  # 1e12 s was an internal error: "timestamp out of range" in the selector
    (tmp_path / "madfile.yaml").write_text("version: 1\npackage: .\nlimits: {script_timeout: 1e12}\n")
    code, _, err = run_cli("validate", cwd=tmp_path, timeout=60)
    assert (code, err.splitlines()[0]) == (
        CONFIG, "madfile.yaml:3:26: error: limits.script_timeout: must be at most 86400, found 1000000000000.0"), err
    code, _, err = run_cli("discover", cwd=tmp_path, env={"MADENGINE_SCRIPT_TIMEOUT": "1e300"}, timeout=60)
    assert (code, err.splitlines()[0]) == (
        CONFIG, "error: MADENGINE_SCRIPT_TIMEOUT='1e300' is not a finite number of seconds above 0 and at most "
                "86400 (hint: unset MADENGINE_SCRIPT_TIMEOUT for the default (30))"), err


def test_an_answer_over_the_input_limit_is_refused_naming_the_script(tmp_path: Path, run_cli: RunCli) -> None:
    package(tmp_path, MODEL.replace('tags=["t"]', 'tags=["t" * 20_000_000]'))  # was read (quadratically) for 30 s
    code, _, err = run_cli("discover", cwd=tmp_path, timeout=60)
    assert (code, err) == (CONFIG, f"{FILE}: error: the script answered more than 8.0 MB of models; the limit is "
                                   "8.0 MB (hint: set MADENGINE_MAX_INPUT_BYTES (in bytes) to raise it)\n")
    package(tmp_path / "small", MODEL)
    code, _, err = run_cli("discover", cwd=tmp_path / "small", env={"MADENGINE_MAX_INPUT_BYTES": "50"}, timeout=60)
    assert code == CONFIG and "the script answered more than 50 bytes of models; the limit is 50 bytes" in err, err
