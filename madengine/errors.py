"""Expected errors and their exit codes (DESIGN §9).

Every error a user can cause is a `MadengineError`; the CLI's single error boundary turns it into
one line per diagnostic and the exit code below. Anything else is a bug and goes to the crash log.
"""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    BUILD_FAILURE = 2
    RUN_FAILURE = 3
    USAGE = 4
    CONFIG = 5
    EXPECTATION = 6
    INTERRUPTED = 130


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem, pinned to a place in a file where there is one.

    `line` and `column` are 1-based. `key_path` is the dotted path of the offending key
    (`targets.lab.hosts[0].gpus`), empty where the problem is not about a key.
    """

    file: str | None
    line: int | None
    column: int | None
    message: str
    key_path: str = ""
    hint: str = ""
    severity: str = field(default="error", compare=False)

    def location(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def render(self) -> str:
        """The one-line form: `file:line:col: error: key: message (hint: ...)`."""
        parts = []
        loc = self.location()
        if loc:
            parts.append(f"{loc}:")
        parts.append(f"{self.severity}:")
        if self.key_path:
            parts.append(f"{self.key_path}:")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" (hint: {self.hint})"
        return _one_line(text)


def _one_line(text: str) -> str:
    """A diagnostic is one line: a newline or other control character from a value is shown escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class MadengineError(Exception):
    """An expected failure: rendered as one line per diagnostic, never as a traceback."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str = "", file: str | None = None,
                 line: int | None = None, column: int | None = None,
                 diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics) or (
            Diagnostic(file=file, line=line, column=column, message=message, hint=hint),
        )

    @classmethod
    def many(cls, diagnostics: Iterable[Diagnostic]) -> MadengineError:
        # One line per distinct problem: a check repeated per context, target or repeat (the
        # compiler's loops) says the same thing each time.
        diags = sorted(dict.fromkeys(diagnostics), key=_diagnostic_order)
        first = diags[0].message if diags else "error"
        return cls(first, diagnostics=diags)


def _diagnostic_order(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.file or "", d.line or 0, d.column or 0, d.message)


class ConfigError(MadengineError):
    """The madfile, the MAD package or the lockfile is wrong (exit 5)."""

    exit_code = ExitCode.CONFIG


class UsageError(MadengineError):
    """The command line is wrong (exit 4)."""

    exit_code = ExitCode.USAGE


class StaleLockError(MadengineError):
    """`lock --check` or `--locked` found a lockfile that does not match its inputs (exit 1)."""

    exit_code = ExitCode.FAILURE


class StateError(MadengineError):
    """The state store cannot be used: unreadable, or written by a newer madengine (exit 1)."""

    exit_code = ExitCode.FAILURE


class StateLockedError(StateError):
    """Another process holds the workspace lock: one apply at a time per state store (exit 1)."""

    exit_code = ExitCode.FAILURE


class FileSystemError(MadengineError):
    """The file system refused a read or a write: full, read-only, or not ours (exit 1). Not a bug:
    the message names the path and what to do."""

    exit_code = ExitCode.FAILURE
    ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})

    @classmethod
    def of(cls, exc: OSError, path: str | os.PathLike[str] | None = None, also: str = "",
           doing: Literal["read", "write"] | None = None) -> FileSystemError | None:
        """The error for `exc` if its errno is one of ERRNOS, else None (then it is something else).
        `doing` is what was refused, where the caller knows: a full or read-only file system refuses
        only writes, but a permission may refuse either. `also` is appended to the hint (e.g. where
        else the state can go)."""
        if exc.errno not in cls.ERRNOS:
            return None
        where = os.fspath(path) if path is not None else (os.fsdecode(exc.filename) if exc.filename else "")
        parent = os.path.dirname(where) or "."
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            message = f"no space left on the device of {where}" if where else "no space left on the device"
            hint = (f"free some space (`df -h {parent}`) and run the command again; what was recorded is kept"
                    if where else "free some space and run the command again; what was recorded is kept")
        elif exc.errno == errno.EROFS:
            message = f"cannot write {where}: read-only file system" if where else "read-only file system"
            hint = "make it writable, or run where you can write"
        else:
            if doing is None:
                message = f"permission denied: {where}" if where else "permission denied"
            else:
                message = f"cannot {doing} {where}: permission denied" if where else \
                    f"cannot {doing}: permission denied"
            hint = "check its permissions and owner" + (f" (`ls -l {where}`)" if where else "") + (
                ", or run where you can write" if doing == "write" else "")
        return cls(message, hint=hint + (f"; {also}" if also else ""))
