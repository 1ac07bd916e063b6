"""The real probe script, run by `sh`, with fake GPU tools first on PATH (small shell scripts that
print what the real tools print), under GNU coreutils/dash and under busybox; and on this machine.

Each fake host has its own root directory (the script's ROOT: /sys, /proc, /dev, /etc, /opt/rocm
and /usr/local/cuda under it), so what this machine has does not leak into the fake ones.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from madengine.backends.base import Cancel
from madengine.backends.session import Finished, HostInfo, HostUnavailable, Session
from madengine.facts import (
    SCRIPT,
    FactsCache,
    HostFacts,
    changed,
    parse,
    probe,
    probe_argv,
    probe_local,
    run_local,
    session_runner,
)
from madengine.state.model import Status
from tests.unit.facts import samples

BUSYBOX = shutil.which("busybox")
# dash + coreutils (Debian, Ubuntu), bash as sh + coreutils (RHEL, SLES), busybox (minimal hosts).
USERLANDS = ["gnu", *(["bash"] if shutil.which("bash") else []), *(["busybox"] if BUSYBOX else [])]
# What the script and the fakes use, and nothing else (no docker, nvcc... of this machine).
SYSTEM_TOOLS = ("sh", "uname", "sed", "timeout", "true", "sleep", "cat", "head", "tr")


@dataclass
class FakeHost:
    root: Path
    bin: Path
    env: dict[str, str]
    log: Path
    userland: str

    def tool(self, name: str, body: str) -> None:
        """A fake `name` on PATH: logs its arguments, then runs `body` (sh)."""
        path = self.bin / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >>"{self.log}"\n{body}\n', encoding="utf-8")
        path.chmod(0o755)

    def prints(self, name: str, text: str, status: int = 0) -> None:
        """A fake `name` that prints `text` (whatever its arguments) and exits `status`."""
        self.tool(name, f"cat <<'SAMPLE_END'\n{text}SAMPLE_END\nexit {status}")

    def file(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def probe(self, tool_timeout: int = 5) -> HostFacts:
        return probe_local(tool_timeout=tool_timeout, env=self.env, root=str(self.root))

    def calls(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []


def system_bin(path: Path, userland: str) -> Path:
    path.mkdir()
    for name in SYSTEM_TOOLS:
        if userland == "busybox":
            target = BUSYBOX
        elif name == "sh":
            target = shutil.which("bash" if userland == "bash" else "dash")
        else:
            target = shutil.which(name)
        assert target, f"{name} is needed by these tests"
        (path / name).symlink_to(target)
    return path


@pytest.fixture(params=USERLANDS)
def host(request: pytest.FixtureRequest, tmp_path: Path) -> FakeHost:
    fakes = tmp_path / "bin"
    fakes.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    sysbin = system_bin(tmp_path / "sys", request.param)
    env = {"PATH": f"{fakes}:{sysbin}", "HOME": str(tmp_path), "LC_ALL": "C"}
    return FakeHost(root=root, bin=fakes, env=env, log=tmp_path / "calls.log", userland=request.param)


def amd_smi(host: FakeHost, *, static: str = samples.AMD_SMI_STATIC_MI350X,
            version: str = samples.AMD_SMI_VERSION_64) -> None:
    host.tool("amd-smi", f"""case "$1" in
    static) cat <<'SAMPLE_END'
{static}SAMPLE_END
    ;;
    version) cat <<'SAMPLE_END'
{version}SAMPLE_END
    ;;
    *) exit 2 ;;
esac""")


def nvidia_smi(host: FakeHost, query: str = samples.NVIDIA_SMI_QUERY_A100) -> None:
    host.tool("nvidia-smi", f"""case "$1" in
    --query-gpu=name,driver_version,compute_cap) cat <<'SAMPLE_END'
{query}SAMPLE_END
    ;;
    "") cat <<'SAMPLE_END'
{samples.NVIDIA_SMI_HEADER}SAMPLE_END
    ;;
    *) exit 2 ;;
esac""")


# --- the script itself ---

@pytest.mark.parametrize("shell", ["dash", "busybox", "bash"])
def test_the_script_is_valid_sh(shell: str) -> None:
    path = shutil.which(shell)
    if path is None:
        pytest.fail(f"{shell} is not installed (dev/services start installs busybox-static)")
    argv = [path, "sh", "-n", "-c", SCRIPT] if shell == "busybox" else [path, "-n", "-c", SCRIPT]
    assert subprocess.run(argv, capture_output=True).returncode == 0


def test_the_script_redirects_output_only_to_dev_null() -> None:
    code = "\n".join(line.split(" #")[0] for line in SCRIPT.splitlines() if not line.lstrip().startswith("#"))
    redirections = re.findall(r"\d?>>?\s*(&\d|[^\s;)]+)", code)
    assert redirections and set(redirections) <= {"/dev/null", "&1"}, redirections


def test_argv_carries_the_script_verbatim_and_its_parameters_as_words() -> None:
    assert probe_argv() == ["sh", "-c", SCRIPT, "madengine-facts", "10"]
    assert probe_argv(tool_timeout=3, root="/x y") == ["sh", "-c", SCRIPT, "madengine-facts", "3", "/x y"]
    for bad in (0, -1, 3601):
        with pytest.raises(ValueError):
            probe_argv(tool_timeout=bad)


# --- fake hosts ---

def test_amd_host(host: FakeHost) -> None:
    host.prints("rocminfo", samples.ROCMINFO_MI250)
    amd_smi(host)
    host.prints("rocm-smi", samples.ROCM_SMI_MI300X)
    host.prints("docker", samples.DOCKER_SERVER)
    host.file("etc/os-release", 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\n')
    host.file("opt/rocm/.info/version", "6.2.0-66\n")
    facts = host.probe()
    uname = os.uname()
    assert facts == HostFacts(
        hostname=uname.nodename, os="Ubuntu 22.04.4 LTS", kernel=uname.release, arch=uname.machine,
        docker="20.10.24+dfsg1", gpu_vendor="AMD", gpu_count=2, gpu_arch="gfx90a",
        gpu_product="AMD Instinct MI250X/MI250", driver="6.18.3", rocm="6.2.0", cuda=None)
    # amd-smi told the driver, so rocm-smi was not asked; the version file told ROCm, so amd-smi version wasn't.
    assert [c.split()[0:2] for c in host.calls()] == [["docker", "version"], ["rocminfo"], ["amd-smi", "static"]]


def test_with_the_amdgpu_module_version_amd_smi_is_not_asked(host: FakeHost) -> None:
    host.prints("rocminfo", samples.ROCMINFO_MI250)
    amd_smi(host)
    host.file("sys/module/amdgpu/version", "6.10.5\n")
    host.file("opt/rocm/.info/version", "6.2.0-66\n")
    facts = host.probe()
    assert (facts.gpu_arch, facts.driver, facts.rocm) == ("gfx90a", "6.10.5", "6.2.0")
    assert host.calls() == ["rocminfo "]


def test_rocm_upgrade_is_a_change(host: FakeHost) -> None:
    host.prints("rocminfo", samples.ROCMINFO_MI250)
    amd_smi(host, version="AMDSMI Tool: 24.6.2+2b02a07 | AMDSMI Library version: 24.6.2.0 | ROCm version: 6.2.0\n")
    before = host.probe()
    amd_smi(host, version="AMDSMI Tool: 24.7.1+0d8b5e3 | AMDSMI Library version: 24.7.1.0 | ROCm version: 6.3.1\n")
    after = host.probe()
    assert (before.rocm, after.rocm) == ("6.2.0", "6.3.1")
    assert changed(before, after) == ["rocm 6.2.0 → 6.3.1"]


def test_rocm_version_file_under_rocm_path(host: FakeHost) -> None:
    rocm = host.root / "rocm-6.3.1"
    host.file("rocm-6.3.1/.info/version", "6.3.1-48\n")
    host.env["ROCM_PATH"] = str(rocm)
    host.prints("rocminfo", samples.ROCMINFO_RX590)
    (rocm / "bin").mkdir()
    (host.bin / "rocminfo").rename(rocm / "bin" / "rocminfo")  # not on PATH: a non-login ssh shell's case
    facts = host.probe()
    assert (facts.rocm, facts.gpu_vendor, facts.gpu_arch) == ("6.3.1", "AMD", "gfx803")


def test_amd_host_with_only_the_kernel_driver(host: FakeHost) -> None:
    host.file("dev/kfd", "")
    host.file("sys/module/amdgpu/version", "6.8.5\n")
    nodes = "sys/class/kfd/kfd/topology/nodes"
    host.file(f"{nodes}/0/properties", samples.KFD_CPU_NODE)
    host.file(f"{nodes}/1/properties", samples.KFD_MI300X_NODE)
    host.file(f"{nodes}/2/properties", samples.KFD_MI300X_NODE)
    facts = host.probe()
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver, facts.rocm) == (
        "AMD", 2, "gfx942", "6.8.5", None)


def test_nvidia_host(host: FakeHost) -> None:
    nvidia_smi(host)
    facts = host.probe()
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.gpu_product, facts.driver, facts.cuda) == (
        "NVIDIA", 2, "sm_80", "NVIDIA A100-SXM4-40GB", "580.126.09", "13.0")


def test_nvidia_driver_before_510_without_compute_cap(host: FakeHost) -> None:
    host.tool("nvidia-smi", f"""case "$1" in
    --query-gpu=name,driver_version,compute_cap) printf '%s' '{samples.NVIDIA_SMI_BAD_FIELD}'; exit 2 ;;
    --query-gpu=name,driver_version) echo 'Tesla V100-SXM2-16GB, 470.103.01' ;;
    *) exit 2 ;;
esac""")
    host.prints("nvcc", samples.NVCC_12_2)
    facts = host.probe()
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver, facts.cuda) == (
        "NVIDIA", 1, None, "470.103.01", "12.2")


def test_nvidia_driver_without_nvidia_smi(host: FakeHost) -> None:
    host.file("proc/driver/nvidia/version", samples.NVIDIA_PROC_OPEN)
    host.file("proc/driver/nvidia/gpus/0000:10:1c.0/information", "Model: NVIDIA A100\n")
    facts = host.probe()
    assert (facts.gpu_vendor, facts.gpu_count, facts.driver) == ("NVIDIA", 1, "565.57.01")


def test_no_tools_at_all(host: FakeHost) -> None:
    facts = host.probe()
    uname = os.uname()
    assert facts == HostFacts(hostname=uname.nodename, kernel=uname.release, arch=uname.machine)
    assert (facts.gpu_vendor, facts.gpu_count) == ("NONE", 0)


def test_broken_tools_fail_only_their_own_facts(host: FakeHost, tmp_path: Path) -> None:
    pid_file = tmp_path / "hung.pid"
    host.tool("rocminfo", "echo 'Name: gfx90a'; echo 'Device Type: GPU'; echo '\x01\x02 segfault'; exit 1")
    host.tool("amd-smi", "printf 'GPU: 0\\n  ASIC:\\n    TARGET_GRAPHICS_VERSION: \\033[31mgfx\\377\\n'; kill -SEGV $$")
    host.tool("rocm-smi", "head -c 3000 /dev/zero | tr '\\0' '\\377'; exit 0")
    if host.userland != "busybox":
        # Hangs, with a child that holds its stdout open: coreutils' timeout stops the whole group.
        host.tool("nvidia-smi", f'sleep 600 & echo $! >"{pid_file}"; wait')
    else:
        # busybox's timeout kills the tool only (a child would hold the probe until its deadline).
        host.tool("nvidia-smi", f'echo $$ >"{pid_file}"; exec sleep 600')
    host.tool("docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.'; exit 1")
    host.prints("nvcc", samples.NVCC_12_2)  # runs after the hung nvidia-smi: the probe went on
    facts = host.probe(tool_timeout=1)
    assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.docker) == ("NONE", 0, None, None)
    assert facts.cuda == "12.2"
    assert facts.hostname == os.uname().nodename
    hung = int(pid_file.read_text())
    for _ in range(100):  # the killed sleep is reaped by init soon after
        if not _alive(hung):
            break
        time.sleep(0.05)
    assert not _alive(hung)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def test_hostile_parameters_are_not_interpreted(host: FakeHost, tmp_path: Path) -> None:
    for name in ("$(touch pwned1)", "`touch pwned2`", "x; touch pwned3", "' \"; touch pwned4"):
        facts = probe_local(tool_timeout=2, env={**host.env, "PWD": str(tmp_path)}, root=str(tmp_path / name))
        assert facts.hostname == os.uname().nodename
    assert not list(tmp_path.rglob("pwned*"))
    assert not list(Path.cwd().glob("pwned*"))


def test_a_bad_timeout_word_falls_back_to_the_default(host: FakeHost) -> None:
    out = run_local(["sh", "-c", SCRIPT, "madengine-facts", "1; touch /tmp/never", str(host.root)], env=host.env)
    assert parse(out).hostname == os.uname().nodename


def test_the_probe_writes_nothing(host: FakeHost, tmp_path: Path) -> None:
    host.prints("rocminfo", samples.ROCMINFO_MI250)
    host.file("etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')

    def snapshot() -> dict[str, tuple[int, int]]:
        return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*")
                if p != host.log}

    before = snapshot()
    host.env["TMPDIR"] = str(tmp_path)
    host.probe()
    assert snapshot() == before


# --- this machine ---

def test_this_machine() -> None:
    facts = probe_local()
    uname = os.uname()
    assert (facts.hostname, facts.kernel, facts.arch) == (uname.nodename, uname.release, uname.machine)
    pretty = next((line.split("=", 1)[1].strip().strip('"') for line in
                   Path("/etc/os-release").read_text().splitlines() if line.startswith("PRETTY_NAME=")), None)
    assert facts.os == pretty
    has_gpu = Path("/dev/kfd").exists() or Path("/proc/driver/nvidia").exists()
    if not has_gpu:  # this project's CI machines: no GPU, and the facts say so
        assert (facts.gpu_vendor, facts.gpu_count, facts.gpu_arch, facts.driver) == ("NONE", 0, None, None)
    docker = shutil.which("docker")
    if docker:
        real = subprocess.run([docker, "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
        assert facts.docker == (real.stdout.strip() if real.returncode == 0 else None)
    else:
        assert facts.docker is None


# --- runners ---

class SubprocessSession:
    """A Session whose exec runs on this machine: what the ssh backend's session does on its host."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.host = HostInfo(name="here", gpus=None)
        self.env = dict(env)
        self.argvs: list[list[str]] = []

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def put(self, local: Path, remote: str) -> None:
        shutil.copy(local, remote)

    def get(self, remote: str, local: Path) -> bool:
        if not Path(remote).exists():
            return False
        shutil.copy(remote, local)
        return True

    def expand(self, path: str) -> str:
        return str(Path(path).expanduser().absolute())

    def exec(self, argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None,
             output: BinaryIO | None = None, stdin: BinaryIO | None = None, cancel: Cancel | None = None,
             deadline: float | None = None) -> Finished:
        self.argvs.append(list(argv))
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done = subprocess.run(list(argv), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
        assert output is not None
        output.write(done.stdout)
        return Finished(Status.SUCCESS if done.returncode == 0 else Status.FAILURE, done.returncode)


def test_a_session_runs_the_same_probe(host: FakeHost) -> None:
    nvidia_smi(host)
    session = SubprocessSession(host.env)
    assert isinstance(session, Session)
    facts = probe(session_runner(session), root=str(host.root))
    assert facts == host.probe()
    assert session.argvs == [probe_argv(root=str(host.root))]
    assert facts.gpu_vendor == "NVIDIA"


def test_run_local_stops_the_whole_group_at_its_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    out = run_local(["sh", "-c", f'echo started; sleep 600 & echo $! >"{pid_file}"; wait'], timeout=1)
    assert out == b"started\n"
    pid = int(pid_file.read_text())
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    assert not _alive(pid)


# --- the cache ---

def test_the_cache_observes_each_host_once_even_when_asked_at_once() -> None:
    cache = FactsCache()
    calls: list[str] = []
    started = threading.Barrier(8)

    def observe(name: str) -> HostFacts:
        calls.append(name)
        time.sleep(0.05)
        return HostFacts(hostname=name)

    def ask(name: str) -> None:
        started.wait()
        assert cache.get(name, lambda: observe(name)).hostname == name

    threads = [threading.Thread(target=ask, args=(f"gpu-{i % 2}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == ["gpu-0", "gpu-1"]
    assert set(cache.known()) == {"gpu-0", "gpu-1"}


def test_the_cache_does_not_keep_a_failure() -> None:
    cache = FactsCache()

    def fail() -> HostFacts:
        raise OSError("unreachable")

    with pytest.raises(OSError):
        cache.get("gpu-1", fail)
    assert cache.get("gpu-1", lambda: HostFacts(hostname="gpu-1")).hostname == "gpu-1"
    assert cache.get("gpu-1", fail).hostname == "gpu-1"


@pytest.fixture(autouse=True)
def _no_stray_files() -> Iterator[None]:
    yield
    assert not Path("/tmp/never").exists()


def test_get_all_observes_hosts_in_parallel_and_keeps_each_hosts_failure() -> None:
    cache = FactsCache()
    cache.get("gpu-0", lambda: HostFacts(hostname="cached"))
    together = threading.Barrier(2, timeout=5)  # gpu-1 and gpu-2 must be observed at the same time

    def observe(name: str) -> HostFacts:
        together.wait()
        return HostFacts(hostname=name)

    def unreachable() -> HostFacts:
        raise HostUnavailable("gpu-3", "connection refused")

    out = cache.get_all({"gpu-0": lambda: observe("never"), "gpu-1": lambda: observe("gpu-1"),
                         "gpu-2": lambda: observe("gpu-2"), "gpu-3": unreachable})
    assert {k: v.hostname for k, v in out.items() if isinstance(v, HostFacts)} == {
        "gpu-0": "cached", "gpu-1": "gpu-1", "gpu-2": "gpu-2"}
    assert isinstance(out["gpu-3"], HostUnavailable) and "connection refused" in str(out["gpu-3"])
    assert cache.get_all({}) == {}


def test_get_all_lets_an_interrupt_through() -> None:
    def interrupted() -> HostFacts:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FactsCache().get_all({"gpu-1": interrupted})
