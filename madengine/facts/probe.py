"""Observing a host's facts: one constant, read-only `sh` script, run by whoever reaches the host.

`probe(run)` takes how to run an argument list on the host and return its stdout: `run_local` on
this machine (`local` and `docker` targets), a session's `exec` on another (`session_runner`). The
script is the same everywhere and nothing outside it is ever templated into it: its two
parameters (a per-tool timeout and, for tests, a root directory) are separate argv words.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import TYPE_CHECKING, Final

from madengine.facts.model import HostFacts
from madengine.facts.parsers import parse

if TYPE_CHECKING:
    from madengine.backends.session import Session

Runner = Callable[[Sequence[str]], bytes]  # argv -> what it printed on stdout

SCRIPT: Final[str] = resources.files(__package__).joinpath("probe.sh").read_text(encoding="utf-8")
DEFAULT_TOOL_TIMEOUT: Final[int] = 10  # seconds any one tool may take (amd-smi can be slow)
# The whole probe runs at most 8 tools one after another; past this, it is stopped.
_TOOLS = 8


def probe_argv(*, tool_timeout: int = DEFAULT_TOOL_TIMEOUT, root: str = "") -> list[str]:
    """`sh -c SCRIPT madengine-facts TIMEOUT [ROOT]`: what runs on the host."""
    if not 1 <= tool_timeout <= 3600:
        raise ValueError(f"tool_timeout must be 1..3600 seconds, not {tool_timeout}")
    argv = ["sh", "-c", SCRIPT, "madengine-facts", str(int(tool_timeout))]
    if root:
        argv.append(root)
    return argv


def probe(run: Runner, *, tool_timeout: int = DEFAULT_TOOL_TIMEOUT, root: str = "") -> HostFacts:
    """The facts of the host `run` reaches. Exceptions of `run` (a host that cannot be reached:
    HostUnavailable) propagate; anything the host prints is parsed, never trusted."""
    return parse(run(probe_argv(tool_timeout=tool_timeout, root=root)))


def run_local(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None) -> bytes:
    """Run `argv` on this machine in a process group of its own; its stdout (stderr is dropped).

    Past `timeout` seconds the whole group is killed (a tool's children included, which would
    otherwise hold the pipe open) and what was printed so far is returned.
    """
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=dict(env) if env is not None else None,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
    except BaseException:  # Ctrl-C: leave nothing behind
        _kill_group(proc)
        proc.wait()
        raise
    return out


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def probe_local(*, tool_timeout: int = DEFAULT_TOOL_TIMEOUT, env: Mapping[str, str] | None = None,
                root: str = "") -> HostFacts:
    """This machine's facts. `env` (default: this process's) is what the tools see: DOCKER_HOST,
    ROCM_PATH, PATH."""
    argv = probe_argv(tool_timeout=tool_timeout, root=root)
    return parse(run_local(argv, env=env, timeout=tool_timeout * _TOOLS + 5))


def session_runner(session: Session, *, timeout: float | None = None) -> Runner:
    """A `Runner` over a host's session (`Session.exec`): the ssh backend's way to `probe`.

    The script sends its own stderr to /dev/null, so exec's merged output is the probe's stdout.
    HostUnavailable from `exec` propagates. `timeout` (default: enough for every tool to time out)
    bounds the whole run.
    """

    def run(argv: Sequence[str]) -> bytes:
        limit = timeout if timeout is not None else DEFAULT_TOOL_TIMEOUT * _TOOLS + 5
        buffer = io.BytesIO()
        session.exec(argv, output=buffer, deadline=time.monotonic() + limit)
        return buffer.getvalue()

    return run


def probe_session(session: Session, *, tool_timeout: int = DEFAULT_TOOL_TIMEOUT) -> HostFacts:
    """The facts of the host an open session reaches (HostUnavailable propagates)."""
    return probe(session_runner(session, timeout=tool_timeout * _TOOLS + 5), tool_timeout=tool_timeout)


class FactsCache:
    """Facts observed once per host per command, whoever asks first (thread-safe: the hosts of a
    target are observed in parallel, and a host asked for twice at once is probed once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._facts: dict[str, HostFacts] = {}
        self._host_locks: dict[str, threading.Lock] = {}

    def get(self, host: str, observe: Callable[[], HostFacts]) -> HostFacts:
        """The facts of `host` (a key unique across targets, e.g. `target/host`), observing them
        with `observe` the first time. An exception of `observe` is not cached."""
        with self._lock:
            if host in self._facts:
                return self._facts[host]
            host_lock = self._host_locks.setdefault(host, threading.Lock())
        with host_lock:
            with self._lock:
                if host in self._facts:
                    return self._facts[host]
            facts = observe()
            with self._lock:
                self._facts[host] = facts
            return facts

    def get_all(self, observers: Mapping[str, Callable[[], HostFacts]]) -> dict[str, HostFacts | Exception]:
        """Every host's facts, the hosts not yet known observed in parallel (one thread each): a
        host that cannot be observed gets its exception (HostUnavailable...) in place of facts,
        and the others are not held up by it."""
        if not observers:
            return {}
        with ThreadPoolExecutor(max_workers=min(32, len(observers)), thread_name_prefix="facts") as pool:
            futures = {host: pool.submit(self.get, host, observe) for host, observe in observers.items()}
        out: dict[str, HostFacts | Exception] = {}
        for host, future in futures.items():
            error = future.exception()
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not a host's failure
            out[host] = error if error is not None else future.result()
        return out

    def known(self) -> dict[str, HostFacts]:
        """Every host observed so far."""
        with self._lock:
            return dict(self._facts)
