"""Image transfers over `FabricSession.run_simple` (docker load/save/pull on the hosts): a cancel stops one
at once, whichever way its bytes go, and its limit is on silence, not on its length."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from madengine.backends.base import Cancel, Outcome
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec
from madengine.backends.ssh_session import Cancelled, FabricSession, SshEndpoint
from madengine.state.model import Status
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)

QUICK = 8.0  # seconds: "at once" for a cancel (the transfers here would never end by themselves)


@pytest.fixture
def session(private_sshd: PrivateSshd) -> Iterator[FabricSession]:  # noqa: F811
    s = FabricSession(HostInfo("lo", None, None), SshEndpoint(private_sshd.address, private_sshd.port,
                                                              private_sshd.user, str(private_sshd.key)),
                      known_hosts=(private_sshd.known_hosts,))
    yield s
    s.close()


class _Endless(io.RawIOBase):
    """A `docker save` that never ends: bytes, then nothing more, never EOF (it blocks)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return b"x" * 4096
        self.stop.wait(600)
        return b""


class _Sink(io.BytesIO):
    """Where a host's `docker save` goes: counts what arrived (keeps none), tells when the first bytes did."""

    def __init__(self) -> None:
        super().__init__()
        self.got = 0
        self.first = threading.Event()

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.got += len(data)
        self.first.set()
        return len(data)


def _cancelled(call: Callable[[Cancel], object], started: threading.Event) -> BaseException | None:
    """Run `call` on a thread, set its cancel once `started`: what it raised within QUICK (None: nothing,
    it returned or still runs)."""
    cancel = Cancel()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call(cancel)
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(QUICK * 4)
    cancel.event.set()
    thread.join(QUICK)
    return raised[0] if raised else None


def test_a_cancel_stops_a_load_whose_stream_never_ends(session: FabricSession) -> None:
    stream = _Endless()
    fed = threading.Event()
    original = stream.read

    def read(size: int = -1) -> bytes:
        data = original(size)
        fed.set()
        return data

    stream.read = read  # type: ignore[method-assign]
    try:
        raised = _cancelled(lambda c: session.run_simple("cat >/dev/null", stdin=stream, idle=3600, cancel=c), fed)
        assert isinstance(raised, Cancelled), raised
    finally:
        stream.stop.set()


def test_a_cancel_stops_a_save_that_streams_without_end(session: FabricSession) -> None:
    sink = _Sink()
    raised = _cancelled(lambda c: session.run_simple("exec cat /dev/zero", output=sink, idle=3600, cancel=c),
                        sink.first)
    assert isinstance(raised, Cancelled), raised
    # the host's command ended with the channel: the session runs other commands as before
    assert session.run_simple("echo ok", timeout=30)[:2] == (0, b"ok\n")


def test_the_transfer_limit_is_on_silence_not_on_length(session: FabricSession) -> None:
    # moves a byte every 0.3 s for longer than the idle limit: it goes on to its end
    code, out, _ = session.run_simple("for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.3; done", idle=1.5)
    assert code == 0 and out.split()[-1] == b"10"
    with pytest.raises(HostUnavailable, match=r"nothing moved for 1\.5 s"):
        session.run_simple("sleep 10", idle=1.5)


@pytest.mark.docker
def test_a_cancel_during_a_pull_on_the_host_interrupts_the_delivery_at_once(
        tmp_path: Path, private_sshd: PrivateSshd) -> None:  # noqa: F811
    """The host's engine pulls from a registry that accepts the connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    asked = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])
                asked.set()

    threading.Thread(target=accept, daemon=True).start()
    root = tmp_path / "p"
    b = private_sshd.backend(root, tmp_path / "remote", "d")
    image = ImageSpec(address="image:m", node_hash=f"sha256:{7:064x}", tag=f"madengine/m:{7:012x}",
                      dockerfile="docker/a", build_context=".", build_args={}, base=None, base_digest=None,
                      registry=f"127.0.0.1:{listener.getsockname()[1]}")
    outcome: list[Outcome] = []
    try:
        raised = _cancelled(lambda c: outcome.append(b.deliver(image, "lo", tmp_path / "deliver.log", c)), asked)
        assert raised is None and outcome, "the delivery did not end at once after the cancel"
        assert outcome[0].status is Status.INTERRUPTED, outcome[0]
    finally:
        b.close()
        listener.close()
        for s in held:
            s.close()
