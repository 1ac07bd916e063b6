"""`plan` asks whether a job recorded RUNNING is being run now by a live apply, without touching the
workspace lock (a probe of the lock makes a concurrent apply's `acquire` fail), and by what the holder
is doing (its recorded kind), never by the wording of its command."""

from __future__ import annotations

import fcntl
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from madengine.plan.observe import _live_apply
from madengine.state.lock import WorkspaceLock
from madengine.state.store import StateStore
from tests.unit.state.children import Child

HOLD = """
    import sys, time
    from pathlib import Path
    from madengine.state.lock import WorkspaceLock

    held = WorkspaceLock.for_store(Path(sys.argv[1])).acquire(sys.argv[3], kind=sys.argv[2])
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def store(tmp_path: Path) -> Any:
    """A store with one job recorded RUNNING (the only case in which plan asks)."""
    with StateStore.open(tmp_path / ".madengine" / "state.db") as s:
        s.start_attempt(s.begin_apply("sha256:lock"), "job:a@cpu/here#1", "sha256:a", {}, "here", "log")
        yield s


@pytest.fixture
def flocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every flock the lock module takes, passed on to the real one."""
    taken: list[int] = []
    real = fcntl.flock

    def flock(fd: int, op: int) -> None:
        taken.append(op)
        real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)  # the module madengine.state.lock calls
    return taken


def test_a_live_local_apply_is_seen_without_touching_the_lock(store: Any, flocks: list[int]) -> None:
    with Child(HOLD, str(store.path), "apply", "madengine apply") as apply:
        apply.expect("locked")
        holder = _live_apply(store, store.observed())
        assert holder is not None and holder.pid == apply.pid and holder.kind == "apply"
        assert flocks == []  # not even a shared probe: an apply starting now would have failed
    assert _live_apply(store, store.observed()) is None  # dead (reaped): its pid answers ESRCH


@pytest.mark.parametrize(("kind", "command", "live"), [("forget", "madengine state forget", False),
                                                       ("apply", "madengine state-of-the-art run", True)])
def test_what_the_holder_does_is_its_recorded_kind(store: Any, kind: str, command: str, live: bool) -> None:
    with Child(HOLD, str(store.path), kind, command) as holder:
        holder.expect("locked")
        assert (_live_apply(store, store.observed()) is not None) is live


def test_a_holder_on_another_host_is_asked_through_the_lock(store: Any) -> None:
    lock = WorkspaceLock.for_store(store.path)
    record = {"pid": 1, "host": f"not-{socket.gethostname()}", "since": "2026-11-28T10:00:00Z", "kind": "apply"}
    lock.path.write_text(json.dumps(record))  # its pid means nothing here; no one holds the flock
    assert lock.live_holder() is None and _live_apply(store, store.observed()) is None
