"""A `Session` on this machine: processes by `subprocess`, files by `shutil` (no connection).

Each command is a process group of its own (`start_new_session`), so a timeout or Ctrl-C stops all it
started, and an apply killed with SIGKILL leaves a group that the next apply can find by its leader's
environment and stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from madengine.backends.credentials import job_environ
from madengine.backends.session import Finished, HostInfo, RemotePath
from madengine.facts.model import HostFacts
from madengine.facts.probe import FactsCache, probe_local
from madengine.state.model import Status

if TYPE_CHECKING:
    from madengine.backends.base import Cancel

KILL_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.05


class LocalSession:
    """This machine, as a host. Thread-safe: every call is independent."""

    def __init__(self, host: HostInfo | None = None) -> None:
        self.host = host or HostInfo(socket.gethostname(), None)

    def open(self) -> None:
        pass  # nothing to connect

    def close(self) -> None:
        pass

    def exec(self, argv: Sequence[str], *, cwd: RemotePath | None = None, env: Mapping[str, str] | None = None,
             output: BinaryIO | None = None, stdin: BinaryIO | None = None, cancel: Cancel | None = None,
             deadline: float | None = None) -> Finished:
        # An argument list, never a shell string: nothing from a model reaches a shell parser.
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env={**job_environ(), **(env or {})},
                                    stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                    stdout=output if output is not None else subprocess.DEVNULL,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:  # the program is missing or not executable: as a shell says it (127/126)
            code = 127 if isinstance(e, FileNotFoundError) else 126
            return Finished(Status.FAILURE, code, f"{argv[0]}: {e.strerror or e}", started=False)
        if cancel is not None:
            cancel.started(str(proc.pid))
        while True:
            try:
                code = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                stop_group(proc)
                return Finished(Status.INTERRUPTED, proc.returncode, "interrupted")
            if deadline is not None and time.monotonic() > deadline:
                stop_group(proc)
                return Finished(Status.TIMEOUT, proc.returncode, "timed out")
        stop_group(proc)  # whatever the command left running in the background
        if code != 0:
            return Finished(Status.FAILURE, code, f"{argv[0]} exited with code {code}")
        return Finished(Status.SUCCESS, 0)

    def put(self, local: Path, remote: RemotePath) -> None:
        target = Path(remote)
        if target.resolve() == local.resolve():
            return  # already there: this machine's run directory is its own staging copy
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, symlinks=True)
        else:
            shutil.copy2(local, target)

    def get(self, remote: RemotePath, local: Path) -> bool:
        source = Path(remote)
        if not source.is_file():
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != local.resolve():
            shutil.copyfile(source, local)
        return True

    def expand(self, path: str) -> RemotePath:
        return str(Path.home() / Path(path).expanduser())  # an absolute path stays itself


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, then SIGKILL what is still there after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(proc.pid):
            return
        time.sleep(POLL_SECONDS)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_env(pid: int) -> dict[str, str]:
    """The environment a process of this machine started with (empty when it is gone or not ours)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def this_machine_facts(cache: FactsCache, host: str, docker_host: str | None = None) -> HostFacts:
    """This machine's facts, observed once per command whoever asks (`local` and `docker` targets
    share one probe); `docker_host` (a docker target's engine, when not the default) is what the probe's
    `docker version` asks, so the Docker version is that engine's."""
    env = None if docker_host is None else {**os.environ, "DOCKER_HOST": docker_host}
    return cache.get(f"this machine\0{docker_host or ''}\0{host}", lambda: probe_local(env=env))
