"""Child Python processes for the state tests: real processes, so locks and SIGKILL are real."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from types import TracebackType

from tests.conftest import REPO_ROOT


class Child:
    """`python -c CODE ARGS...` with the checkout on its path; read its stdout line by line, then kill it."""

    def __init__(self, code: str, *args: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.pid = self.proc.pid

    def line(self, timeout: float = 60) -> str:
        """The child's next line of output (without the newline); fails if it exits or stays silent."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"child {self.pid} printed nothing in {timeout} s")
        text = self.proc.stdout.readline()
        if not text:
            raise AssertionError(f"child {self.pid} exited ({self.proc.wait()}): {self.stderr()}")
        return text.rstrip("\n")

    def expect(self, wanted: str, timeout: float = 60) -> None:
        got = self.line(timeout)
        assert got == wanted, (got, self.stderr() if self.proc.poll() is not None else "")

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def sigkill(self) -> None:
        """SIGKILL, and reap it: once this returns, the kernel has dropped its locks."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sigkill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


HOLD_LOCK = """
    import sys, time
    from pathlib import Path
    from madengine.state.lock import WorkspaceLock

    held = WorkspaceLock(Path(sys.argv[1])).acquire("madengine apply (test)")
    print("locked", flush=True)
    time.sleep(600)
"""


def hold_lock(state_dir: str) -> Child:
    """A child that takes the workspace lock of `state_dir` and keeps it until killed."""
    child = Child(HOLD_LOCK, state_dir)
    child.expect("locked")
    return child


HOLD_STORE_LOCK = """
    import sys, time
    from pathlib import Path
    from madengine.state.lock import WorkspaceLock
    from madengine.state.store import state_path

    held = WorkspaceLock.for_store(state_path(Path.cwd(), sys.argv[1], environ={})).acquire("madengine apply (test)")
    print("locked", flush=True)
    time.sleep(600)
"""


def hold_store_lock(location: str) -> Child:
    """A child that takes the workspace lock of the store at `location` (a path or a URL) until killed."""
    child = Child(HOLD_STORE_LOCK, location)
    child.expect("locked")
    return child


def elapsed(start: float) -> float:
    return time.monotonic() - start


def count_rows(location: object, table: str) -> int:
    """How many rows `table` of a store has, asked of the database directly (not through the store)."""
    import sqlite3
    from pathlib import Path

    from madengine.state.location import PgLocation

    if isinstance(location, PgLocation):
        import psycopg

        with psycopg.connect(location.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None
            return int(row[0])
    with sqlite3.connect(Path(str(location))) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
