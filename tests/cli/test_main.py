"""The `madengine` application itself: version, help, usage errors (exit 4) and the error boundary
(internal errors -> one line + .madengine/logs/crash.log; interrupts -> 130)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import pytest

from madengine import __version__
from madengine.cli import main
from tests.conftest import REPO_ROOT, RunCli

FAILURE, USAGE, INTERRUPTED = 1, 4, 130
COMMANDS = ["init", "validate", "lock", "graph", "discover"]


def listed_commands(help_text: str) -> list[str]:
    section = help_text.split("\nCommands:\n", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  (\S+)", section, re.MULTILINE)]


def test_version(run_cli: RunCli, tmp_path: Path) -> None:
    assert run_cli("--version", cwd=tmp_path) == (0, f"madengine {__version__}\n", "")


def test_help_lists_the_commands(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("--help", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith("Usage: ") and "--version" in out
    commands = listed_commands(out)
    assert [c for c in commands if c in COMMANDS] == COMMANDS  # in this order; later commands may follow


def test_no_arguments_prints_help_as_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli(cwd=tmp_path)
    assert (code, out) == (USAGE, "")
    assert err.startswith("Usage: ") and set(COMMANDS) <= set(listed_commands(err))


def test_unknown_command_exits_4_not_2(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("frobnicate", cwd=tmp_path)
    assert (code, out) == (USAGE, "")
    assert err.splitlines()[-1] == "Error: No such command 'frobnicate'."


def test_unknown_option_exits_4(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("lock", "--bogus", cwd=tmp_path)
    assert (code, out) == (USAGE, "")
    assert err.splitlines()[0].startswith("Usage: ") and err.splitlines()[-1] == "Error: No such option: --bogus"
    assert not (tmp_path / ".madengine").exists()  # a usage error is not a crash


# An unexpected exception, for real, in the real process: a `sitecustomize` put first on PYTHONPATH
# makes discovery raise a bare BaseException subclass, as a bug in madengine would. (A package's
# get_models_json.py cannot be the vehicle: it runs in a child process, and whatever it raises is a
# config error naming it; tests/hostile/test_get_models_json.py.) KeyboardInterrupt travels the same way.
SITECUSTOMIZE = """\
import madengine.mad.discover


class Boom(BaseException):
    pass


def discover_package(*args, **kwargs):
    raise {raise_}


madengine.mad.discover.discover_package = discover_package
"""


def raising_discovery(tmp_path: Path, raise_: str) -> dict[str, str]:
    """The environment for run_cli in which discovery raises `raise_`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE.format(raise_=raise_), encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}


def test_unexpected_exception_prints_one_line_and_writes_a_crash_log(run_cli: RunCli, tmp_path: Path) -> None:
    env = raising_discovery(tmp_path, 'Boom("kaboom")')
    assert run_cli("discover", cwd=tmp_path, env=env) == (
        FAILURE, "", "error: internal error: Boom: kaboom; details in .madengine/logs/crash.log "
                     "(hint: this is a bug in madengine; please report it with the crash log)\n")
    log = (tmp_path / ".madengine/logs/crash.log").read_text(encoding="utf-8")
    assert log.startswith(f"madengine {__version__} ") and log.splitlines()[0].endswith(" discover")
    assert "Traceback (most recent call last):" in log and 'raise Boom("kaboom")' in log
    assert log.rstrip().endswith("Boom: kaboom")


def test_interrupt_exits_130_without_a_crash_log(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("discover", cwd=tmp_path, env=raising_discovery(tmp_path, "KeyboardInterrupt"))
    assert (code, out) == (INTERRUPTED, "") and "Traceback" not in err
    assert not (tmp_path / ".madengine/logs/crash.log").exists()


# --- in-process: the boundary around a command that raises an ordinary exception ----------------------


@pytest.fixture
def broken_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """`madengine lock` replaced by a command that fails with a RuntimeError, on a fresh command list."""
    from madengine.cli import cmd_lock

    def lock() -> None:
        raise RuntimeError("the lock exploded")

    monkeypatch.setattr(cmd_lock, "lock", lock)
    monkeypatch.setattr(main.app, "registered_commands", [])
    monkeypatch.setattr("sys.argv", ["madengine", "lock"])


@pytest.mark.usefixtures("broken_lock")
def test_runtime_error_in_a_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MADENGINE_LOG_DIR", str(tmp_path / "logs"))
    with pytest.raises(SystemExit) as exit_info:
        main.run(["lock"])
    assert exit_info.value.code == FAILURE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"error: internal error: RuntimeError: the lock exploded; details in {tmp_path}/logs/crash.log "
                   "(hint: this is a bug in madengine; please report it with the crash log)\n")
    log = (tmp_path / "logs/crash.log").read_text(encoding="utf-8")
    assert "Traceback (most recent call last):" in log and log.rstrip().endswith("RuntimeError: the lock exploded")


@pytest.mark.usefixtures("broken_lock")
def test_crash_log_that_cannot_be_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    monkeypatch.setenv("MADENGINE_LOG_DIR", str(tmp_path / "file" / "logs"))  # under a file: mkdir fails
    with pytest.raises(SystemExit) as exit_info:
        main.run(["lock"])
    assert exit_info.value.code == FAILURE
    assert capsys.readouterr().err == ("error: internal error: RuntimeError: the lock exploded "
                                       "(hint: this is a bug in madengine; please report it with the crash log)\n")


# --- a file system that refuses: named without claiming a write it may not have been -------------------


@pytest.mark.parametrize(("exc", "path", "doing", "message"), [
    (PermissionError(13, "Permission denied"), None, None, "permission denied"),
    (PermissionError(13, "Permission denied", "/w/x.db"), None, None, "permission denied: /w/x.db"),
    (PermissionError(1, "Operation not permitted"), "/w/x.db", "read", "cannot read /w/x.db: permission denied"),
    (PermissionError(13, "Permission denied"), "/w/x.db", "write", "cannot write /w/x.db: permission denied"),
    (PermissionError(13, "Permission denied"), None, "write", "cannot write: permission denied"),
    (OSError(30, "Read-only file system", "/w/x.db"), None, None, "cannot write /w/x.db: read-only file system"),
    (OSError(30, "Read-only file system"), None, None, "read-only file system"),
    (OSError(28, "No space left on device", "/w/x.db"), None, None, "no space left on the device of /w/x.db"),
    (OSError(122, "Disk quota exceeded"), None, None, "no space left on the device"),
])
def test_a_file_system_error_says_what_errno_says(exc: OSError, path: str | None,
                                                  doing: Literal["read", "write"] | None,
                                                  message: str) -> None:
    from madengine.errors import FileSystemError

    error = FileSystemError.of(exc, path, doing=doing)
    assert error is not None and str(error) == message
    assert "  " not in error.diagnostics[0].render() and " :" not in str(error)


def test_other_os_errors_are_not_file_system_errors() -> None:
    from madengine.errors import FileSystemError

    assert FileSystemError.of(FileNotFoundError(2, "No such file or directory", "/w/x")) is None


def test_an_os_error_naming_a_file_is_named_one_without_is_a_bug(run_cli: RunCli, tmp_path: Path) -> None:
    env = raising_discovery(tmp_path, 'PermissionError(13, "Permission denied", "/w/models.json")')
    assert run_cli("discover", cwd=tmp_path, env=env) == (
        FAILURE, "", "error: permission denied: /w/models.json (hint: check its permissions and owner "
                     "(`ls -l /w/models.json`))\n")
    (tmp_path / "site").rename(tmp_path / "site1")
    env = raising_discovery(tmp_path, 'PermissionError(1, "Operation not permitted")')  # e.g. os.killpg
    code, out, err = run_cli("discover", cwd=tmp_path, env=env)
    assert (code, out) == (FAILURE, "") and err.startswith("error: internal error: PermissionError: [Errno 1]"), err
