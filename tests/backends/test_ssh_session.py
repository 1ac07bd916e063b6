"""FabricSession against a real sshd on loopback (tests/backends/sshd.py): commands, files, host keys.

The sshd runs on this machine, so what a command leaves behind is looked for in this machine's /proc.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from madengine.backends.base import Cancel
from madengine.backends.session import HostInfo, HostUnavailable, Session
from madengine.backends.ssh_session import FabricSession, SshEndpoint
from madengine.state.model import Status
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)


def session_for(sshd: PrivateSshd, *, key: Path | None = None, known_hosts: tuple[Path, ...] | None = None,
                remember: Path | None = None, check: str = "strict", port: int | None = None) -> FabricSession:
    return FabricSession(HostInfo("lo", None), SshEndpoint(sshd.address, port or sshd.port, sshd.user,
                                                           str(key or sshd.key)),
                         known_hosts=known_hosts if known_hosts is not None else (sshd.known_hosts,),
                         remember=remember, host_key_check=check)  # type: ignore[arg-type]


@pytest.fixture
def session(private_sshd: PrivateSshd) -> Iterator[FabricSession]:  # noqa: F811
    s = session_for(private_sshd)
    yield s
    s.close()


def marked(marker: str) -> list[int]:
    """Live processes of this machine whose environment has MARK=marker."""
    wanted = f"MARK={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def eventually_empty(marker: str, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return marked(marker)


def test_it_is_a_session(session: FabricSession) -> None:
    assert isinstance(session, Session)


def test_hostile_words_env_and_cwd_arrive_literally(session: FabricSession, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    words = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", "it's \"q\"", "two\nlines", "$HOME",
             "", "-n", "*", "\\"]
    env = {"HOSTILE": f"$(touch {marker}) 'q\" \nline\n", "EMPTY": "", "TRAILING": "x\n\n"}
    workdir = tmp_path / "a dir; $(touch pwned)"
    workdir.mkdir()
    out = io.BytesIO()
    script = 'for a do printf "<%s>\\n" "$a"; done; printf "env<%s><%s><%s>\\n" "$HOSTILE" "$EMPTY" "$TRAILING"; pwd'
    done = session.exec(["sh", "-c", script, "sh", *words], cwd=str(workdir), env=env, output=out)
    assert done.status is Status.SUCCESS, (done, out.getvalue())
    expected = "".join(f"<{w}>\n" for w in words) + f"env<{env['HOSTILE']}><><{env['TRAILING']}>\n{workdir}\n"
    assert out.getvalue().decode() == expected
    assert not marker.exists() and not (workdir / "pwned").exists()


def test_exit_code_stderr_merged_and_stdin(session: FabricSession) -> None:
    out = io.BytesIO()
    done = session.exec(["sh", "-c", "cat; echo to-stderr >&2; exit 3"], output=out, stdin=io.BytesIO(b"from stdin\n"))
    assert (done.status, done.exit_code, done.started) == (Status.FAILURE, 3, True)
    assert out.getvalue() == b"from stdin\nto-stderr\n"


def test_a_missing_program_or_directory_never_started(session: FabricSession, tmp_path: Path) -> None:
    out = io.BytesIO()
    done = session.exec(["madengine-no-such-program", "x"], output=out)
    assert (done.status, done.exit_code, done.started) == (Status.FAILURE, 127, False)
    assert "madengine-no-such-program" in done.message and "\n" not in done.message
    done = session.exec(["true"], cwd=str(tmp_path / "missing"), output=out)
    assert (done.status, done.started) == (Status.FAILURE, False) and "missing" in done.message


def test_output_streams_while_the_command_runs(session: FabricSession, tmp_path: Path) -> None:
    """The command waits for a file that the test creates only once it has seen the first line: without
    streaming it would never end (and the deadline would say TIMEOUT)."""
    go = tmp_path / "go"

    class Sink(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            n = super().write(data)
            if b"first" in self.getvalue():
                go.touch()
            return n

    out = Sink()
    done = session.exec(["sh", "-c", 'echo first; while [ ! -e "$1" ]; do sleep 0.05; done; echo second', "sh",
                         str(go)], output=out, deadline=time.monotonic() + 30)
    assert done.status is Status.SUCCESS, (done, out.getvalue())
    assert out.getvalue() == b"first\nsecond\n"


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_and_deadline_stop_the_remote_group(session: FabricSession, how: str) -> None:
    marker = f"{how}-{os.getpid()}-{time.monotonic_ns()}"
    handles: list[str] = []
    cancel = Cancel(on_start=handles.append)
    out = io.BytesIO()
    deadline = None
    if how == "cancel":
        def stop_when_running() -> None:
            while not (handles and b"running" in out.getvalue()):
                time.sleep(0.02)
            cancel.event.set()

        threading.Thread(target=stop_when_running, daemon=True).start()
    else:
        deadline = time.monotonic() + 1.5
    # A child in the background too (stopped with the group), and a TERM-ignoring one (KILLed after the grace).
    done = session.exec(["sh", "-c", "sleep 60 & (trap '' TERM; sleep 61) & echo running; wait"], env={"MARK": marker},
                        output=out, cancel=cancel, deadline=deadline)
    assert done.status is (Status.INTERRUPTED if how == "cancel" else Status.TIMEOUT), (done, out.getvalue())
    assert handles and handles[0].isdigit()
    assert eventually_empty(marker) == []


def test_a_background_process_left_by_a_finished_command_is_stopped(session: FabricSession) -> None:
    marker = f"bg-{os.getpid()}-{time.monotonic_ns()}"
    done = session.exec(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo started"], env={"MARK": marker})
    assert done.status is Status.SUCCESS
    session.close()  # waits for the clean-up of what the command left
    assert marked(marker) == []


def test_several_commands_at_once_on_one_connection(session: FabricSession) -> None:
    def one(i: int) -> tuple[Status, bytes]:
        out = io.BytesIO()
        done = session.exec(["sh", "-c", 'sleep 0.3; echo "job $1"', "sh", str(i)], output=out)
        return done.status, out.getvalue()

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert results == [(Status.SUCCESS, f"job {i}\n".encode()) for i in range(6)]
    transport = session._connection.client.get_transport()
    assert transport is not None and transport.is_active()  # the one connection, still open


def test_put_and_get_trees_with_odd_names(session: FabricSession, tmp_path: Path) -> None:
    src = tmp_path / "src"
    odd = ["-starts-with-dash", "two\nlines", "sp ace", "q'uo\"te", "$(touch pwned)", "ünï", "*"]
    for name in odd:
        (src / "sub" / name).mkdir(parents=True)
        (src / "sub" / name / name).write_text(f"content of {name}\n")
    (src / "script.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "script.sh").chmod(0o755)
    (src / "link").symlink_to("script.sh")
    dest = tmp_path / "dest dir" / "tree"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from before\n")
    session.put(src, str(dest))
    assert not (dest / "stale.txt").exists()  # replaced, not merged
    for name in odd:
        assert (dest / "sub" / name / name).read_text() == f"content of {name}\n"
        fetched = tmp_path / "fetched" / "x"
        assert session.get(str(dest / "sub" / name / name), fetched) is True
        assert fetched.read_text() == f"content of {name}\n"
    assert os.access(dest / "script.sh", os.X_OK) and os.readlink(dest / "link") == "script.sh"
    assert not (tmp_path / "pwned").exists()
    assert session.get(str(dest / "no such file"), tmp_path / "nothing") is False
    assert not (tmp_path / "nothing").exists()
    single = tmp_path / "one.txt"
    single.write_text("one\n")
    session.put(single, str(tmp_path / "copied" / "renamed.txt"))
    assert (tmp_path / "copied" / "renamed.txt").read_text() == "one\n"


def test_expand(session: FabricSession) -> None:
    home = str(Path.home())  # the login user is this user, on this machine
    assert session.expand("~") == home
    assert session.expand("~/.madengine/runs") == f"{home}/.madengine/runs"
    assert session.expand("rel/x") == f"{home}/rel/x"
    assert session.expand("/abs/../y") == "/y"


# --- host keys and authentication ---------------------------------------------------------------------


def test_an_unknown_host_key_is_refused_with_a_hint(private_sshd: PrivateSshd, tmp_path: Path) -> None:  # noqa: F811
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    s = session_for(private_sshd, known_hosts=(empty,), remember=tmp_path / "own_known_hosts")
    with pytest.raises(HostUnavailable) as caught:
        s.open()
    e = caught.value
    assert e.host == "lo" and "unknown" in str(e) and "\n" not in str(e)
    assert "host_key_check: accept-new" in e.diagnostics[0].hint
    assert not (tmp_path / "own_known_hosts").exists()
    with pytest.raises(HostUnavailable):  # said again, without trying again
        s.exec(["true"])


def test_accept_new_remembers_the_key_in_madengines_own_file(private_sshd: PrivateSshd,  # noqa: F811
                                                             tmp_path: Path) -> None:
    users = tmp_path / "users_known_hosts"
    users.write_text("")
    own = tmp_path / "state" / "ssh" / "known_hosts"
    s = session_for(private_sshd, known_hosts=(users,), remember=own, check="accept-new")
    assert s.exec(["true"]).status is Status.SUCCESS
    s.close()
    assert users.read_text() == ""  # the user's file is never written
    assert f"[127.0.0.1]:{private_sshd.port} ssh-ed25519 " in own.read_text()
    strict = session_for(private_sshd, known_hosts=(users,), remember=own)  # now known: strict accepts it
    assert strict.exec(["true"]).status is Status.SUCCESS
    strict.close()


@pytest.mark.parametrize("check", ["strict", "accept-new"])
def test_a_changed_host_key_is_always_refused(private_sshd: PrivateSshd, tmp_path: Path,  # noqa: F811
                                              check: str) -> None:
    changed = tmp_path / "known_hosts"
    changed.write_text(private_sshd.other_host_key_line)
    own = tmp_path / "own"
    s = session_for(private_sshd, known_hosts=(changed,), remember=own, check=check)
    with pytest.raises(HostUnavailable) as caught:
        s.open()
    assert "CHANGED" in str(caught.value) and "\n" not in str(caught.value)
    assert "ssh-keygen -R" in caught.value.diagnostics[0].hint
    assert not own.exists()


def test_a_wrong_client_key_is_refused_in_one_line_without_the_key(private_sshd: PrivateSshd) -> None:  # noqa: F811
    s = session_for(private_sshd, key=private_sshd.other_key)
    with pytest.raises(HostUnavailable) as caught:
        s.open()
    text = f"{caught.value} {caught.value.diagnostics[0].hint}"
    assert "authentication refused" in text and str(private_sshd.other_key) in text and "\n" not in str(caught.value)
    material = private_sshd.other_key.read_text().splitlines()[1]
    assert material not in text


def test_nothing_listening_is_refused_in_one_line(private_sshd: PrivateSshd) -> None:  # noqa: F811
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: refused
        s = session_for(private_sshd, port=port)
        with pytest.raises(HostUnavailable) as caught:
            s.open()
    assert "connection refused" in str(caught.value) and caught.value.transient
