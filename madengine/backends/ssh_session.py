"""A `Session` over SSH: one fabric/paramiko connection per host, shared by every job placed there.

The connection is opened once (lazily, under a lock) and each command runs on a channel of its own,
so several jobs run side by side on one host over one TCP connection. What is sent to the host's
shell is built here and nowhere else:

- `exec`: every word is quoted (`shlex.join`); the command runs in a session (so a process group) of
  its own (`setsid -w`) whose id is the first line the wrapper prints, read before any output is
  passed on and given to `cancel.started`. The environment never appears on a command line (it would
  show in the host's process list): it is the first line of the channel's stdin, every value octal
  escaped, read and evaluated by the constant `WRAPPER`. A cancel or a deadline stops the whole group
  through another channel (TERM, a grace period, KILL), and so does the end of the command for what
  it left running in the background.
- Host keys are checked strictly by default (the user's known_hosts and madengine's own, paramiko's
  RejectPolicy): an unknown key is refused with a hint naming `host_key_check: accept-new`, which
  accepts and remembers it in madengine's own known_hosts file (never the user's). A changed key is
  always refused (paramiko raises BadHostKeyException whatever the policy).
- A key file given is the only key tried (no agent, no ~/.ssh keys); with none, ssh's defaults.
- `put` sends a tree as one tar stream into `tar -x` on the host; `get` reads one file with `cat`.
- A host that cannot be reached raises `HostUnavailable` with one line: refused, unreachable, timed
  out, authentication refused, host key unknown or changed. Once refused, the session says so again
  without trying again until it is closed (one attempt per host and command).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
import select
import shlex
import socket
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from madengine.backends.session import Finished, HostInfo, HostUnavailable, RemotePath
from madengine.state.model import Status

if TYPE_CHECKING:
    import paramiko

    from madengine.backends.base import Cancel

HostKeyCheck = Literal["strict", "accept-new"]
CONNECT_TIMEOUT = 10.0
KILL_GRACE_SECONDS = 5.0
POLL = 0.05
CHUNK = 1 << 16
EOF_GRACE = 2.0  # seconds of quiet output after a command exited without EOF: a background process holds it
# Commands at once on one connection: OpenSSH allows 10 sessions (MaxSessions); 2 stay free for the short
# commands that stop them. The scheduler places no more jobs than this on a host (SshBackend.hosts), and the
# madfile refuses a larger `max_parallel_per_host` (madfile.model.MAX_PARALLEL_PER_HOST, the same number): a job
# never waits here while its timeout runs.
MAX_COMMANDS = 8
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
EXEC_NAME = "madengine-exec"  # $0 of the wrapper: names it in the host shell's own messages
NOT_STARTED = (126, 127)

# Run by `sh` on the host with: <cwd or ''> <argv...>, the environment line on stdin first.
# Prints its process group id (its own pid: `setsid` made it a session leader), then runs argv with
# stderr merged into stdout (one ordered stream, as a log wants). Its own complaints (no such
# directory, no such program) go to the channel's stderr, so they are never taken for output.
WRAPPER = """\
IFS= read -r madengine_env || madengine_env=
eval "$madengine_env"
unset madengine_env
printf '%s\\n' "$$"
if [ -n "$1" ] && ! cd "$1" 2>/dev/null; then printf '%s: no such directory\\n' "$1" >&2; exit 126; fi
shift
if ! command -v "$1" >/dev/null 2>&1; then printf '%s: command not found\\n' "$1" >&2; exit 127; fi
exec "$@" 2>&1
"""

# Stops a process group: TERM, then KILL after $2 tenths of a second. Nothing to stop is no error.
STOP = """\
kill -s TERM -- "-$1" 2>/dev/null || exit 0
i=0
while kill -s 0 -- "-$1" 2>/dev/null; do
  if [ "$i" -ge "$2" ]; then kill -s KILL -- "-$1" 2>/dev/null; exit 0; fi
  sleep 0.1
  i=$((i + 1))
done
"""


class Cancelled(Exception):
    """`run_simple` stopped by its cancel: the channel is closed, the command's outcome is unknown."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host}: interrupted")
        self.host = host


@dataclass(frozen=True)
class SshEndpoint:
    """How to reach one host: address, port, login user (None: ssh's default) and key file (None:
    ssh-agent and ~/.ssh's default keys; a path: that key only). Never key material."""

    address: str
    port: int = 22
    user: str | None = None
    key: str | None = None


def env_line(env: Mapping[str, str]) -> bytes:
    """The wrapper's first stdin line: `NAME=$(printf '<octal>x'); NAME=${NAME%x}; export NAME` per
    variable. Only validated names and octal escapes: evaluating it runs nothing else, and no value
    is ever on a command line."""
    parts = []
    for name, value in env.items():
        if not ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        octal = "".join(f"\\{b:03o}" for b in value.encode())
        parts.append(f"{name}=$(printf '{octal}x'); {name}=${{{name}%x}}; export {name}")
    return ("; ".join(parts) + "\n").encode()


def exec_command(argv: Sequence[str], cwd: RemotePath | None) -> str:
    """The command line for the login shell: `setsid -w sh -c WRAPPER` with every word quoted."""
    if not argv:
        raise ValueError("nothing to run")
    return shlex.join(["exec", "setsid", "-w", "sh", "-c", WRAPPER, EXEC_NAME, cwd or "", *argv])


def stop_command(pgid: str, grace: float = KILL_GRACE_SECONDS) -> str:
    return shlex.join(["sh", "-c", STOP, "madengine-stop", f"{int(pgid)}", str(int(grace * 10))])


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _first_line(err: bytes) -> str:
    """What a failed command said first (tar's last line only says that it failed)."""
    lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
    return _one_line(lines[0]) if lines else "no reason given"


class _AcceptNew:
    """paramiko's missing-host-key policy for `accept-new`: the key is trusted and appended to
    madengine's own known_hosts file (one line, under a lock: several hosts connect at once)."""

    _lock = threading.Lock()

    def __init__(self, remember: Path) -> None:
        self.remember = remember

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self._lock:
            self.remember.parent.mkdir(parents=True, exist_ok=True)
            with open(self.remember, "a", encoding="ascii") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def describe_connect_error(e: BaseException, endpoint: SshEndpoint, host_key_check: HostKeyCheck,
                           known_hosts: Sequence[Path]) -> tuple[str, str, bool]:
    """(reason, hint, transient) for a failed connection, in one line. Never the key's content."""
    import paramiko

    where = f"{endpoint.address}:{endpoint.port}"
    files = ", ".join(str(p) for p in known_hosts)
    if isinstance(e, paramiko.BadHostKeyException):
        return (f"the host key of {where} has CHANGED ({e.key.get_name()} {e.key.get_fingerprint().hex()} now, "
                f"not the one known_hosts has): refused, whatever host_key_check says",
                f"if the host was reinstalled, remove its old line from {files} (`ssh-keygen -R`); "
                "otherwise someone may be in the middle", False)
    if isinstance(e, paramiko.SSHException) and "not found in known_hosts" in str(e):
        hint = (f"add its key to {files} (`ssh-keyscan -p {endpoint.port} {endpoint.address}`, checked by hand), "
                "or set the target's `host_key_check: accept-new` to trust a host's first key")
        return (f"the host key of {where} is unknown (not in known_hosts): refused; add it to known_hosts, or set "
                "the target's `host_key_check: accept-new`", hint, False)
    if isinstance(e, paramiko.AuthenticationException):
        key = f"the key {endpoint.key}" if endpoint.key else "ssh-agent and the default keys"
        return (f"authentication refused for {endpoint.user or 'the login user'} at {where} with {key}",
                "check the host's `user` and `key` (the key's public half must be in the host's "
                "authorized_keys)", False)
    if isinstance(e, FileNotFoundError | PermissionError) or (
            isinstance(e, OSError) and e.filename and endpoint.key and str(e.filename) == endpoint.key):
        return f"cannot read the key file {endpoint.key}: {e.strerror or e}", "check the host's `key` path", False
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"connection refused at {where}", "is sshd running there, on this port?", True
    if isinstance(e, socket.timeout | TimeoutError):
        return f"connection to {where} timed out", "is the host up and reachable from here?", True
    if isinstance(e, socket.gaierror):
        return f"cannot resolve {endpoint.address}: {e.strerror or e}", "check the host's `address`", False
    if isinstance(e, OSError):
        return f"cannot connect to {where}: {e.strerror or e}", "is the host up and reachable from here?", True
    return f"cannot connect to {where}: {_one_line(str(e)) or type(e).__name__}", "", True


class FabricSession:
    """One host over one SSH connection. Thread-safe: each command is a channel of its own."""

    def __init__(self, host: HostInfo, endpoint: SshEndpoint, *, known_hosts: Sequence[Path] = (),
                 remember: Path | None = None, host_key_check: HostKeyCheck = "strict",
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        """`known_hosts`: the files trusted host keys are read from (missing ones are skipped);
        `remember`: madengine's own known_hosts, read too, where `accept-new` writes."""
        self.host = host
        self.endpoint = endpoint
        self.host_key_check = host_key_check
        self.remember = remember
        self.known_hosts = tuple(known_hosts) + ((remember,) if remember is not None else ())
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._connection: Any = None  # fabric.Connection
        self._refused: HostUnavailable | None = None
        self._home: str | None = None
        self._stopping: list[threading.Thread] = []
        self._commands = threading.BoundedSemaphore(MAX_COMMANDS)
        self.connect_seconds: float | None = None  # how long the last open took (for bench/)

    # --- the connection ----------------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._refused is not None:
                raise self._refused
            if self._connection is not None and self._transport_alive():
                return
            self._close_locked()
            started = time.monotonic()
            try:
                self._connection = self._connect()
            except Exception as e:
                reason, hint, transient = describe_connect_error(e, self.endpoint, self.host_key_check,
                                                                 self.known_hosts)
                self._refused = HostUnavailable(self.host.name, reason, hint=hint, transient=transient)
                raise self._refused from None
            self.connect_seconds = time.monotonic() - started

    def _connect(self) -> Any:
        import fabric
        import paramiko

        kwargs: dict[str, Any] = {}
        if self.endpoint.key is not None:  # this key only: no agent, no ~/.ssh keys tried before it
            kwargs = {"key_filename": [self.endpoint.key], "look_for_keys": False, "allow_agent": False}
            with open(self.endpoint.key, "rb"):  # unreadable: said as such, not as "authentication failed"
                pass
        conn = fabric.Connection(self.endpoint.address, user=self.endpoint.user, port=self.endpoint.port,
                                 connect_timeout=int(self.connect_timeout), connect_kwargs=kwargs)
        client = conn.client
        for path in self.known_hosts:
            if path.is_file():
                client.load_system_host_keys(str(path))
        if self.host_key_check == "accept-new" and self.remember is not None:
            client.set_missing_host_key_policy(_AcceptNew(self.remember))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            conn.open()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        transport = conn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)  # a host that vanishes is found out, not waited on forever
        return conn

    def _transport_alive(self) -> bool:
        transport = self._connection.client.get_transport() if self._connection is not None else None
        return bool(transport is not None and transport.is_active())

    def close(self) -> None:
        with self._lock:
            stopping, self._stopping = self._stopping, []
        for thread in stopping:
            thread.join(KILL_GRACE_SECONDS + 15)
        with self._lock:
            self._close_locked()
            self._refused = None
            self._home = None

    def _close_locked(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _channel(self) -> paramiko.Channel:
        """A new channel on the open connection; HostUnavailable when there is none to be had."""
        self.open()
        with self._lock:
            transport = self._connection.client.get_transport() if self._connection is not None else None
        import paramiko

        delay = 0.05
        give_up = time.monotonic() + 60
        while True:
            try:
                if transport is None or not transport.is_active():
                    raise OSError("the connection is closed")
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.ChannelException as e:
                # The server's limit of sessions per connection (OpenSSH's MaxSessions, 10 by default):
                # a channel frees up when a command ends.
                if time.monotonic() > give_up:
                    raise self._lost(f"the host refuses more channels ({e})") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception as e:
                raise self._lost(e) from None

    def _lost(self, e: BaseException | str) -> HostUnavailable:
        text = e if isinstance(e, str) else (_one_line(str(e)) or type(e).__name__)
        return HostUnavailable(self.host.name, f"connection lost: {text}", transient=True,
                               hint="is the host up? a re-apply runs only the jobs that did not finish")

    # --- commands ------------------------------------------------------------------------------------

    def exec(self, argv: Sequence[str], *, cwd: RemotePath | None = None, env: Mapping[str, str] | None = None,
             output: BinaryIO | None = None, stdin: BinaryIO | None = None, cancel: Cancel | None = None,
             deadline: float | None = None, reap: bool = True) -> Finished:
        """The protocol's `exec`; `reap` False: nothing is left in the group to look for afterwards (a
        `docker run` in the foreground: its container is the job, removed by its own --rm)."""
        command = exec_command(argv, cwd)
        head = env_line(env or {})
        if cancel is not None and cancel.is_set():
            return Finished(Status.INTERRUPTED, None, "interrupted", started=False)
        with self._commands:  # long-lived channels: room is left for the short ones that stop them
            chan = self._channel()
            try:
                return self._run(chan, command, head, argv, output, stdin, cancel, deadline, reap)
            finally:
                chan.close()

    def _run(self, chan: paramiko.Channel, command: str, head: bytes, argv: Sequence[str], output: BinaryIO | None,
             stdin: BinaryIO | None, cancel: Cancel | None, deadline: float | None, reap: bool) -> Finished:
        try:
            chan.exec_command(command)
            chan.sendall(head)
        except Exception as e:
            raise self._lost(e) from None
        feeder = _feed(chan, stdin) if stdin is not None else None
        if feeder is None:
            with contextlib.suppress(Exception):
                chan.shutdown_write()
        pgid: str | None = None
        pending = b""  # stdout before the group id line: held back until the handle is given
        errors = bytearray()
        stopped: tuple[Status, str] | None = None
        quiet_since = time.monotonic()
        while True:
            got = False
            if chan.recv_ready():
                data = chan.recv(CHUNK)
                got = bool(data)
                if pgid is None:
                    pending += data
                    line, nl, rest = pending.partition(b"\n")
                    if nl:
                        pgid, pending = line.decode(errors="replace").strip(), b""
                        if cancel is not None and pgid.isdigit():
                            cancel.started(pgid)
                        if rest and output is not None:
                            output.write(rest)
                elif output is not None and data:
                    output.write(data)
            if chan.recv_stderr_ready():
                errors += chan.recv_stderr(CHUNK)
                got = True
            if stopped is None and pgid is not None and pgid.isdigit():
                if cancel is not None and cancel.is_set():
                    stopped = (Status.INTERRUPTED, "interrupted")
                elif deadline is not None and time.monotonic() > deadline:
                    stopped = (Status.TIMEOUT, "timed out")
                if stopped is not None:
                    self._stop_group(pgid)
            if got:
                quiet_since = time.monotonic()
            elif _drained(chan, quiet_since):
                break
            else:
                select.select([chan], [], [], POLL)
        if feeder is not None:
            feeder.join(1)
        transport = chan.get_transport()
        code = chan.recv_exit_status()
        if code == -1 or (transport is not None and not transport.is_active() and stopped is None):
            raise self._lost("the channel closed without an exit status")
        if reap and pgid is not None and pgid.isdigit() and stopped is None:
            self._stop_later(pgid)  # whatever the command left running in the background
        if pending and output is not None:
            output.write(pending)
        if stopped is not None:
            return Finished(stopped[0], code, stopped[1])
        complaint = errors.decode(errors="replace").strip()
        if code in NOT_STARTED and complaint:  # the wrapper's: the program never ran
            return Finished(Status.FAILURE, code, _one_line(complaint), started=False)
        if complaint and output is not None:  # anything else the host's shell said before the program
            output.write(errors)
        if code != 0:
            return Finished(Status.FAILURE, code, f"{argv[0]} exited with code {code}")
        return Finished(Status.SUCCESS, 0)

    def _stop_later(self, pgid: str) -> None:
        """Stop what a finished command left in its group, on a thread: the caller does not wait for a
        round trip that almost always finds nothing (`close` waits for them all)."""
        thread = threading.Thread(target=self._stop_group, args=(pgid,), name=f"stop {pgid}", daemon=True)
        with self._lock:
            self._stopping = [t for t in self._stopping if t.is_alive()] + [thread]
        thread.start()

    def _stop_group(self, pgid: str) -> None:
        """TERM, grace, KILL the group, through another channel (the command's own is busy)."""
        with contextlib.suppress(HostUnavailable):
            self.run_simple(stop_command(pgid), timeout=KILL_GRACE_SECONDS + 10)

    def run_simple(self, command: str, *, stdin: bytes | BinaryIO | io.RawIOBase | None = None,
                   output: BinaryIO | None = None, timeout: float | None = None, idle: float | None = None,
                   cancel: Cancel | None = None) -> tuple[int, bytes, bytes]:
        """A command line (already quoted) run to its end on its own channel: (exit code, stdout, stderr),
        stdout kept unless `output` takes it. For madengine's own commands (stop, probe, docker).
        `timeout`: seconds in all; `idle`: seconds without a byte moved either way (a transfer of any
        size goes on while it moves). A set `cancel` closes the channel at once (the host's command
        reads EOF or loses its output, a stdin being fed stops) and raises `Cancelled`."""
        if cancel is not None and cancel.is_set():
            raise Cancelled(self.host.name)
        chan = self._channel()
        out, err = bytearray(), bytearray()
        moved = [time.monotonic()]  # the last time a byte went either way (the feeder writes it too)
        try:
            try:
                chan.exec_command(command)
            except Exception as e:
                raise self._lost(e) from None
            feeder = None
            if isinstance(stdin, bytes):
                with contextlib.suppress(Exception):
                    chan.sendall(stdin)
            elif stdin is not None:
                feeder = _feed(chan, stdin, moved)
            if feeder is None:
                with contextlib.suppress(Exception):
                    chan.shutdown_write()
            limit = None if timeout is None else time.monotonic() + timeout
            quiet_since = time.monotonic()
            while True:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(self.host.name)  # the channel is closed below, which stops the transfer
                if idle is not None and time.monotonic() - moved[0] > idle:
                    raise HostUnavailable(self.host.name, f"the transfer stalled: nothing moved for {idle:g} s",
                                          transient=True, hint="is the host's docker engine (or its disk) busy?")
                got = False
                if chan.recv_ready():
                    data = chan.recv(CHUNK)
                    got = bool(data)
                    if output is not None:
                        output.write(data)
                    else:
                        out += data
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(CHUNK)
                    got = True
                if got:
                    quiet_since = moved[0] = time.monotonic()
                elif _drained(chan, quiet_since):
                    break
                if limit is not None and time.monotonic() > limit:
                    raise self._lost(f"no answer within {timeout:g} s")
                if not got:
                    select.select([chan], [], [], POLL)
            if feeder is not None:
                feeder.join()
            code = chan.recv_exit_status()
            if code == -1:
                raise self._lost("the channel closed without an exit status")
            return code, bytes(out), bytes(err)
        finally:
            chan.close()

    # --- files ------------------------------------------------------------------------------------------

    def put(self, local: Path, remote: RemotePath) -> None:
        """One tar stream into `tar -x` on the host: `remote` is replaced by `local` (a file or a tree)."""
        remote = posixpath.normpath(remote)
        if not remote.startswith("/") or remote == "/":
            raise ValueError(f"put: {remote!r} is not an absolute path below /")
        parent, name = posixpath.split(remote)
        command = (f"rm -rf -- {shlex.quote(remote)} && mkdir -p -- {shlex.quote(parent)} && "
                   f"exec tar -x --no-same-owner -f - -C {shlex.quote(parent)}")
        reader = _TarStream(local, name)
        try:
            code, _, err = self.run_simple(command, stdin=reader)
        finally:
            reader.close()  # a writer still producing (the host's tar failed early) stops
        if reader.error is not None:
            raise reader.error
        if code != 0:
            raise OSError(f"{self.host.name}: cannot write {remote}: {self._write_failure(parent, err)}")

    def put_many(self, entries: Sequence[tuple[str, Path]], remote_dir: RemotePath, *,
                 replace_all: bool = False) -> None:
        """Several local files or trees, each under its name, into `remote_dir` in one tar stream: each
        replaces what had its name there; `replace_all`: `remote_dir` holds nothing else afterwards."""
        remote_dir = posixpath.normpath(remote_dir)
        if not remote_dir.startswith("/") or remote_dir == "/":
            raise ValueError(f"put: {remote_dir!r} is not an absolute path below /")
        clear = ([f"rm -rf -- {shlex.quote(remote_dir)}"] if replace_all else
                 [f"rm -rf -- {shlex.join([posixpath.join(remote_dir, n) for n, _ in entries])}"] if entries else [])
        command = " && ".join([*clear, f"mkdir -p -- {shlex.quote(remote_dir)}",
                               f"exec tar -x --no-same-owner -f - -C {shlex.quote(remote_dir)}"])
        reader = _TarStream(None, "", entries=entries)
        try:
            code, _, err = self.run_simple(command, stdin=reader)
        finally:
            reader.close()
        if reader.error is not None:
            raise reader.error
        if code != 0:
            raise OSError(f"{self.host.name}: cannot write {remote_dir}: {self._write_failure(remote_dir, err)}")

    def _write_failure(self, where: RemotePath, err: bytes) -> str:
        """Why writing under `where` failed: what the command said first, and whether the disk is full
        (tar says only "Wrote only 7168 of 10240 bytes")."""
        reason = _first_line(err)
        with contextlib.suppress(HostUnavailable, ValueError, IndexError):
            code, out, _ = self.run_simple(f"df -Pk -- {shlex.quote(where)} | tail -n 1", timeout=30)
            free_kib = int(out.split()[3])
            if code == 0 and free_kib < 1024:
                return f"no space left on the device ({free_kib} KiB free): {reason}"
        return reason

    def get(self, remote: RemotePath, local: Path) -> bool:
        command = f"[ -f {shlex.quote(remote)} ] || exit 66; exec cat -- {shlex.quote(remote)}"
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".part")
        with open(partial, "wb") as f:
            code, _, err = self.run_simple(command, output=f)
        if code == 66:
            partial.unlink()
            return False
        if code != 0:
            partial.unlink()
            raise OSError(f"{self.host.name}: cannot read {remote}: {_one_line(err.decode(errors='replace'))}")
        os.replace(partial, local)
        return True

    def expand(self, path: str) -> RemotePath:
        if path.startswith("/"):
            return posixpath.normpath(path)
        if self._home is None:
            code, out, err = self.run_simple('printf "%s" "$HOME"', timeout=30)
            home = out.decode(errors="replace").strip()
            if code != 0 or not home.startswith("/"):
                raise HostUnavailable(self.host.name, f"cannot tell the login user's home directory "
                                      f"({_one_line(err.decode(errors='replace')) or 'no $HOME'})")
            self._home = home
        if path == "~" or path.startswith("~/"):
            path = path[2:]
        elif path.startswith("~"):
            raise ValueError(f"{path}: only `~` (the login user's home) is understood, not `~user`")
        return posixpath.normpath(posixpath.join(self._home, path))


# --- streams ---------------------------------------------------------------------------------------------


def _drained(chan: paramiko.Channel, quiet_since: float) -> bool:
    """Has a command ended and all its output arrived? The exit status can come before the last of the
    output (the server holds what the client's window did not take yet): wait for EOF too, or for the
    output to have been quiet a while (a process the command left in the background may hold it open)."""
    if not chan.exit_status_ready() or chan.recv_ready() or chan.recv_stderr_ready():
        return False
    return chan.eof_received or chan.closed or time.monotonic() - quiet_since > EOF_GRACE


def _feed(chan: paramiko.Channel, stdin: BinaryIO | io.RawIOBase, moved: list[float] | None = None) -> threading.Thread:
    """Copy `stdin` into the channel on a thread of its own, then send EOF; `moved[0]`: when it last sent."""

    def copy() -> None:
        try:
            while True:
                data = stdin.read(CHUNK)
                if not data:
                    break
                chan.sendall(data)
                if moved is not None:
                    moved[0] = time.monotonic()
        except Exception:  # the command ended first, or the reader failed: said by the reader
            pass
        finally:
            with contextlib.suppress(Exception):
                chan.shutdown_write()

    thread = threading.Thread(target=copy, name="ssh stdin", daemon=True)
    thread.start()
    return thread


class _TarStream(io.RawIOBase):
    """A tar archive of local files, produced as it is read (never the whole archive in memory)."""

    def __init__(self, local: Path | None, name: str, entries: Sequence[tuple[str, Path]] = ()) -> None:
        self._buffer = bytearray()
        self._done = False
        self.error: BaseException | None = None
        members = list(entries) if local is None else [(name, local)]
        self._writer = threading.Thread(target=self._write, args=(members,), daemon=True)
        self._cond = threading.Condition()
        self._writer.start()

    def _write(self, members: list[tuple[str, Path]]) -> None:
        sink: Any = _Sink(self)
        try:
            with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, path in members:
                    tar.add(str(path), arcname=name, recursive=True)
        except BaseException as e:
            self.error = e
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def push(self, data: bytes) -> None:
        with self._cond:
            while len(self._buffer) > 4 * CHUNK and not self.closed:
                self._cond.wait(0.5)
            if self.closed:
                raise BrokenPipeError("the host stopped reading")
            self._buffer += data
            self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._buffer and not self._done:
                self._cond.wait(0.5)
            n = len(self._buffer) if size is None or size < 0 else min(size, len(self._buffer))
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            self._cond.notify_all()
            return data


class _Sink:
    def __init__(self, stream: _TarStream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.push(bytes(data))
        return len(data)


KNOWN_HOSTS_ENV = "MADENGINE_SSH_KNOWN_HOSTS"  # a known_hosts file read before the user's own


def known_hosts_files() -> tuple[Path, ...]:
    """The known_hosts files host keys are checked against: $MADENGINE_SSH_KNOWN_HOSTS if set, then the
    user's, as ssh reads them by default (the `ssh` and `ansible` backends read the same ones)."""
    home = Path.home() / ".ssh"
    extra = os.environ.get(KNOWN_HOSTS_ENV)
    return (*([Path(extra).expanduser()] if extra else []), home / "known_hosts", home / "known_hosts2")

