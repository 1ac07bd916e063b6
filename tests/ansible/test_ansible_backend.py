"""The ansible backend against a real sshd on loopback, through ansible-runner: host processes
(`container: none`), a failing model, a host that cannot be reached beside one that can, timeout and
cancel (and what they started on the host is stopped), a host key that does not match."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.ansible import AnsibleBackend
from madengine.backends.base import ATTEMPT_ENV, Backend, Cancel, Outcome, Workspace
from madengine.backends.session import HostUnavailable
from madengine.backends.specs import JobSpec
from madengine.facts.model import HostFacts
from madengine.madfile.model import AnsibleTarget
from madengine.state.model import Status
from tests.conftest import REPO_ROOT, RunCli
from tests.infra.ssh import SshHost, SshServices

SCRIPT = """\
echo "running on $(hostname) as $MAD_MODEL_NAME, secret=$MY_TOKEN, host env=$FROM_HOST"
for a in "$@"; do printf 'arg[%s]\\n' "$a"; done
printf 'model,performance,metric\\nsub,1.5,items/s\\n' > out.csv
case "$1" in fail) exit 3 ;; sleep) echo "madengine-test-sleeper $2"; sleep "$2" ;; esac
echo "performance: 42 items/s"
"""
HOSTILE = ["yes", "010", "{{ lookup('pipe', 'touch PWNED') }}", "$(touch PWNED)", "$HOME", "~", "a\"b'c", "x\ny"]


def host(h: SshHost, **changes: Any) -> dict[str, Any]:
    return {**h.madfile_host(name="lo", env={"FROM_HOST": "yes"}), **changes}


def backend(tmp_path: Path, *hosts: dict[str, Any], workdir: str | None = None, **keys: Any) -> AnsibleBackend:
    root = tmp_path / "proj"
    (root / "scripts" / "m").mkdir(parents=True, exist_ok=True)
    (root / "scripts" / "m" / "run.sh").write_text(SCRIPT)
    target = AnsibleTarget.model_validate({"backend": "ansible", "hosts": list(hosts), "container": "none",
                                           "workdir": workdir or str(tmp_path / "remote"), **keys})
    return AnsibleBackend("lab", target, Workspace(root, root / ".madengine", "ws-test"))


def job(b: AnsibleBackend, *args: str, host: str = "lo", attempt: int = 1, timeout: int = 120,
        **changes: Any) -> JobSpec:
    fields: dict[str, Any] = dict(
        address=f"job:m@cpu/lab#{attempt}", node_hash="sha256:00", model="m", context="cpu", target="lab",
        script="scripts/m/run.sh", args=args, env={ATTEMPT_ENV: str(attempt), "MY_TOKEN": "s3cr3t-value"},
        n_gpus=0, timeout=timeout, image_tag=None, image_digest=None, multiple_results="out.csv",
        log_path=b.workspace.state_dir / "logs" / f"{attempt}.log", host=host)
    fields.update(changes)
    return JobSpec(**fields)


def test_a_job_runs_as_host_processes(tmp_path: Path, ssh_hosts: SshServices, known_hosts: Path) -> None:
    b = backend(tmp_path, host(ssh_hosts.loopback))
    j = job(b, "--n", *HOSTILE)
    outcome = b.run(j, Cancel())
    assert (outcome.status, outcome.exit_code, outcome.host, outcome.message) == (Status.SUCCESS, 0, "lo", "")
    log = j.log_path.read_text() if j.log_path else ""
    assert "as m, secret=s3cr3t-value, host env=yes" in log and "performance: 42 items/s" in log
    assert re.findall(r"arg\[(.*?)\]\n", log, re.DOTALL) == ["--n", *HOSTILE]
    assert not list(tmp_path.rglob("PWNED")) and not (Path.home() / "PWNED").exists()
    assert outcome.artifacts is not None and outcome.artifacts.perf_csv is not None
    assert outcome.artifacts.perf_csv.read_text() == "model,performance,metric\nsub,1.5,items/s\n"
    assert outcome.artifacts.run_dir.startswith(str(tmp_path / "remote" / "runs") + "/")
    # the secret reached the process, and no file of madengine's
    assert not [p for p in b.workspace.state_dir.rglob("*") if p.is_file() and p != j.log_path
                and b"s3cr3t-value" in p.read_bytes()]


def test_a_failing_model_fails_with_its_exit_code(tmp_path: Path, ssh_hosts: SshServices, known_hosts: Path) -> None:
    b = backend(tmp_path, host(ssh_hosts.loopback))
    outcome = b.run(job(b, "fail"), Cancel())
    assert (outcome.status, outcome.exit_code, outcome.message) == (Status.FAILURE, 3, "exit code 3")


def test_an_unreachable_host_fails_only_its_job(tmp_path: Path, ssh_hosts: SshServices, known_hosts: Path) -> None:
    with socketless_port() as dead:
        b = backend(tmp_path, host(ssh_hosts.loopback), host(ssh_hosts.loopback, name="gone", port=dead))
        outcomes: dict[str, Outcome] = {}
        jobs = [job(b, host="lo", attempt=1), job(b, host="gone", attempt=2)]
        threads = [threading.Thread(target=lambda j=j: outcomes.__setitem__(str(j.host), b.run(j, Cancel())))
                   for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    assert outcomes["lo"].status is Status.SUCCESS
    gone = outcomes["gone"]
    assert gone.status is Status.FAILURE and gone.host == "gone" and gone.exit_code is None
    assert gone.message == f"gone: unreachable: connect to host 127.0.0.1 port {dead}: Connection refused", gone.message
    assert "\n" not in gone.message
    assert gone.message in (jobs[1].log_path.read_text() if jobs[1].log_path else "")


def test_a_changed_host_key_is_refused(tmp_path: Path, ssh_hosts: SshServices, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = ssh_hosts.known_hosts_with_changed_key(tmp_path / "known_hosts", "loopback")
    monkeypatch.setenv("MADENGINE_SSH_KNOWN_HOSTS", str(wrong))
    b = backend(tmp_path, host(ssh_hosts.loopback))
    outcome = b.run(job(b), Cancel())
    assert outcome.status is Status.FAILURE and outcome.exit_code is None
    assert outcome.message.startswith("lo: unreachable: its host key has changed: refused"), outcome.message


def test_an_unknown_host_key_is_refused_with_a_hint(tmp_path: Path, ssh_hosts: SshServices,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    monkeypatch.setenv("MADENGINE_SSH_KNOWN_HOSTS", str(empty))
    b = backend(tmp_path, host(ssh_hosts.loopback))
    outcome = b.run(job(b), Cancel())
    assert outcome.status is Status.FAILURE
    assert outcome.message.startswith("lo: unreachable: its host key is not in known_hosts: refused (add it: "
                                      "ssh-keyscan"), outcome.message
    assert empty.read_text() == ""  # strict: nothing was added


def test_accept_new_adds_an_unknown_host_key(tmp_path: Path, ssh_hosts: SshServices,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    monkeypatch.setenv("MADENGINE_SSH_KNOWN_HOSTS", str(known))
    b = backend(tmp_path, host(ssh_hosts.loopback), host_key_check="accept-new")
    assert b.run(job(b), Cancel()).status is Status.SUCCESS
    assert " ssh-ed25519 " in known.read_text()  # remembered (ssh may hash the host's name)
    strict = backend(tmp_path, host(ssh_hosts.loopback))
    assert strict.run(job(strict, attempt=2), Cancel()).status is Status.SUCCESS  # and trusted from now on


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_timeout_and_cancel_stop_the_job_on_its_host(tmp_path: Path, ssh_hosts: SshServices, known_hosts: Path,
                                                     how: str) -> None:
    b = backend(tmp_path, host(ssh_hosts.loopback))
    marker = f"{time.time_ns() % 10**9 + 1000}"  # seconds `sleep` is given: unique, found in the process list
    cancel = Cancel()
    j = job(b, "sleep", marker, timeout=3 if how == "timeout" else 0)
    if how == "cancel":
        def later() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not sleeping(marker):
                time.sleep(0.2)
            cancel.event.set()
        threading.Thread(target=later, daemon=True).start()
    outcome = b.run(j, cancel)
    expected = Status.TIMEOUT if how == "timeout" else Status.INTERRUPTED
    assert outcome.status is expected, outcome
    assert not sleeping(marker), "the model's process was left running on the host"
    log = j.log_path.read_text() if j.log_path else ""
    assert f"madengine-test-sleeper {marker}" in log  # the log so far was fetched
    assert "stopped on lo" in log


def sleeping(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, check=False).returncode == 0


class socketless_port:
    """A loopback port that nothing listens on (bound, never listening, for the test's length)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_killed_applys_job_is_stopped_on_its_host_by_the_next(run_cli: RunCli, tmp_path: Path,
                                                                 ssh_hosts: SshServices, known_hosts: Path) -> None:
    marker = f"{time.time_ns() % 10**9 + 1000}"
    root = tmp_path / "proj"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text(f'[ -e "{tmp_path}/slow" ] && sleep {marker}\n'
                                                   'echo "performance: 1 x"\n')
    (tmp_path / "slow").touch()
    lo = ssh_hosts.loopback
    (root / "madfile.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        models: [{{name: m, scripts: scripts/m/run.sh, n_gpus: 0}}]
        targets:
          lab: {{backend: ansible, container: none, workdir: {tmp_path}/remote,
                hosts: [{{name: lo, address: {lo.address}, port: {lo.port}, user: {lo.user}, key: {lo.key}}}]}}
        """))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    apply = subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not sleeping(marker) and time.monotonic() < deadline and apply.poll() is None:
            time.sleep(0.2)
        assert sleeping(marker), "the job never started on the host"
    finally:
        apply.kill()  # SIGKILL: the apply cannot stop anything
        apply.wait(30)
    assert sleeping(marker)  # left running on the host
    (tmp_path / "slow").unlink()
    code, out, err = run_cli("apply", "--yes", cwd=root, timeout=300)
    assert code == 0, out + err
    assert "cleaned up job_m_" in out and " on lo" in out, out
    assert not sleeping(marker)
    assert "SUCCESS     job:m@default/lab#1" in out


def test_the_backend_speaks_the_protocol_and_observes_facts(tmp_path: Path, ssh_hosts: SshServices,
                                                             known_hosts: Path) -> None:
    with socketless_port() as dead:
        b: Backend = backend(tmp_path, host(ssh_hosts.loopback), host(ssh_hosts.loopback, name="gone", port=dead))
        assert isinstance(b, Backend)
        assert [h.name for h in b.hosts()] == ["lo", "gone"]
        try:
            facts = b.observe_facts()
        finally:
            b.close()
    assert isinstance(facts["lo"], HostFacts) and facts["lo"].hostname  # observed through ssh, as `ssh` does
    assert isinstance(facts["gone"], HostUnavailable)  # in place of its facts: the plan goes on
