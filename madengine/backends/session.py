"""A session per host: how a backend reaches one machine (pyinfra's connector, Terraform's `Close()`).

Every backend that runs something on a machine does it through a `Session`: `local` and `docker`
through a session on this machine, `ssh` through one SSH connection per host, opened once per command
and reused for every job placed there. What is done on a host (prepare a MAD run directory, run a
step, fetch the log and the performance CSVs) is written once, against this protocol.

Paths on the far side are POSIX strings (`RemotePath`), never `pathlib.Path`: they name a file on the
session's host, which may not be this machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

from madengine.errors import MadengineError
from madengine.state.model import Status

if TYPE_CHECKING:
    from madengine.backends.base import Cancel

RemotePath = str  # a POSIX path on the session's host


@dataclass(frozen=True)
class HostInfo:
    """One machine of a target, as apply's scheduler places jobs on it."""

    name: str  # unique within the target: recorded with every attempt and image placement
    gpus: int | None  # None: jobs are not limited by GPUs on this host
    max_parallel: int | None = None  # a cap on concurrent jobs besides GPUs (None: none)


@dataclass(frozen=True)
class Finished:
    """How a command run by `Session.exec` ended."""

    status: Status  # SUCCESS, FAILURE, TIMEOUT or INTERRUPTED
    exit_code: int | None  # None when it never ran to an end (stopped, or could not start)
    message: str = ""  # one line, empty on success
    started: bool = True  # False: the program could not be started (missing, not executable)


class HostUnavailable(MadengineError):
    """A host cannot be used: unreachable, authentication refused, host key unknown or changed...

    Fails the jobs placed on that host only, with `host` and the reason in one line."""

    def __init__(self, host: str, reason: str, *, hint: str = "", transient: bool = False) -> None:
        super().__init__(f"{host}: {reason}", hint=hint)
        self.host = host
        self.reason = reason
        self.transient = transient


@runtime_checkable
class Session(Protocol):
    """One open line to one host. Not thread-safe unless the implementation says so: a backend
    serializes what it sends through one session, or opens channels that can run side by side."""

    host: HostInfo

    def open(self) -> None:
        """Connect (idempotent). Raises HostUnavailable with a one-line reason."""
        ...

    def close(self) -> None:
        """Release the connection; a closed session can be opened again."""
        ...

    def exec(self, argv: Sequence[str], *, cwd: RemotePath | None = None, env: Mapping[str, str] | None = None,
             output: BinaryIO | None = None, stdin: BinaryIO | None = None, cancel: Cancel | None = None,
             deadline: float | None = None) -> Finished:
        """Run `argv` (a list, never a shell string: a remote session quotes every word) to its end.

        Its stdout and stderr go to `output` as they come. It runs in a process group of its own,
        whose handle (the group id, as text) is given to `cancel.started` before anything else happens;
        when `cancel` is set or `deadline` (a `time.monotonic()` value) passes, the whole group is
        stopped and the status says INTERRUPTED or TIMEOUT. Raises HostUnavailable when the host
        cannot be reached; a command that cannot start is a FAILURE with exit code 127 or 126 and
        `started` False.
        """
        ...

    def put(self, local: Path, remote: RemotePath) -> None:
        """Copy a file or a directory tree to the host, replacing what `remote` held."""
        ...

    def get(self, remote: RemotePath, local: Path) -> bool:
        """Copy one file from the host; False when it does not exist there."""
        ...

    def expand(self, path: str) -> RemotePath:
        """`path` as an absolute path on the host: `~` is the login user's home there, and a relative
        path is relative to it."""
        ...
