"""The `madengine` application: command registration and the single error boundary.

Command modules are small and import their heavy dependencies inside the command function, so that
`madengine --help` loads nothing but typer.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import typer

from madengine import __version__
from madengine.errors import ExitCode, MadengineError

app = typer.Typer(
    name="madengine",
    help="Declarative, reproducible benchmarking of AI models: madfile.yaml -> lock -> plan -> apply.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (typer imports that code anyway: ~2 ms)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"madengine {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Declarative, reproducible benchmarking of AI models."""


def _register() -> None:
    from madengine.cli import commands

    commands.register(app)


def _crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected error where the user can find it; never raise."""
    try:
        log_dir = Path(os.environ.get("MADENGINE_LOG_DIR", ".madengine/logs"))
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "crash.log"
        with path.open("a", encoding="utf-8") as f:
            f.write(f"madengine {__version__} {' '.join(sys.argv)}\n")
            f.write("".join(traceback.format_exception(exc)))
            f.write("\n")
        return path
    except OSError:
        return None


def run(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning every expected error into a message and an exit code."""
    from madengine.cli import output

    _register()
    _terminate_as_interrupt()
    try:
        # With standalone_mode=False click returns a `typer.Exit(n)` code instead of raising it.
        code = _invoke(argv)
    except MadengineError as exc:
        output.print_diagnostics(exc.diagnostics)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        output.error("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    except SystemExit:
        raise
    except BaseException as exc:
        if _is_click_exception(exc):
            sys.exit(_handle_click_exception(exc))
        path = _crash_log(exc)
        where = f"; details in {path}" if path else ""
        output.error(f"internal error: {type(exc).__name__}: {exc}{where}",
                     hint="this is a bug in madengine; please report it with the crash log")
        sys.exit(int(ExitCode.FAILURE))
    sys.exit(code if isinstance(code, int) else 0)


def _terminate_as_interrupt() -> None:
    """SIGTERM (`kill`, a CI runner's timeout, systemd) stops madengine as Ctrl-C does: the command
    unwinds, its locks are released, what it did is recorded, exit 130. The default would end the
    process on the spot, silently, with nothing recorded."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def _invoke(argv: list[str] | None) -> Any:
    """The app, with an OSError that names a file the file system refused (full, read-only, not ours)
    made an expected error naming it: the user's to fix, not a bug of madengine. Only where the error
    has a file name: one without (a signal to a process, a socket) is not the file system's, and says
    nothing a user could act on. Commands that know what they were doing say so themselves."""
    from madengine.errors import FileSystemError

    try:
        return app(args=argv, prog_name="madengine", standalone_mode=False)
    except OSError as exc:
        error = FileSystemError.of(exc) if exc.filename else None
        if error is None:
            raise
        raise error from exc


def _is_click_exception(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("click", "typer"))


def _handle_click_exception(exc: BaseException) -> int:
    """Usage errors from the argument parser: print them like click would, exit 4 (DESIGN §9)."""
    name = type(exc).__name__
    if name == "Exit":
        return int(getattr(exc, "exit_code", 0))
    if name == "Abort":
        from madengine.cli import output

        output.error("aborted")
        return int(ExitCode.INTERRUPTED)
    _reword(exc)
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    return int(ExitCode.USAGE)


def _reword(exc: BaseException) -> None:
    """A bad value in madengine's words: typer (0.2x on) converts values with pydantic, whose wording
    ("Input should be a valid integer, unable to parse string as an integer") it passes through as the
    message of the usage error."""
    errors = getattr(exc.__cause__, "errors", None)
    if not callable(errors) or not isinstance(getattr(exc, "message", None), str):
        return
    try:
        first = errors()[0]
        message = _bad_value(first["type"], first.get("input"), first.get("ctx") or {})
    except (LookupError, TypeError, ValueError):
        return
    if message is not None:
        exc.message = message  # type: ignore[attr-defined]  # a click UsageError: checked above


def _bad_value(kind: str, value: object, ctx: dict[str, object]) -> str | None:
    """What madengine's options can get wrong: they take whole numbers (`int`), some with a lower bound
    (`min=`); text, paths and flags cannot be ill-formed, and `graph --format` checks its own value."""
    if kind == "greater_than_equal":
        return f"{value} is out of range: it must be at least {ctx['ge']}."
    if kind.startswith("int_"):
        return f"{value!r} is not a whole number."
    return None
