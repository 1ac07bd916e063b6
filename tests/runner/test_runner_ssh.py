"""`madengine runner ssh` over the three hosts of `dev/services` (node1..node3: own address, hostname, home and
Docker engine), end to end: the build manifest's models run on every host, the report says where and how; a host
that is down has its jobs run on the others; a second run has nothing to do."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry, service_env
from tests.infra.ssh import SshServices

MODELS = "dummy,dummy_perf,dummy_multi,dummy_dir/quick,dummy_dir/slow"  # 5 jobs, each on the first free host


def cpu_package(tmp_path: Path) -> Path:
    """The example MAD package with its models on CPU (n_gpus 0): the test hosts have no GPU."""
    root = tmp_path / "MAD"
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", root,
                    ignore=shutil.ignore_patterns("madfile.yaml", "madengine.lock", ".madengine"))
    for path in (root / "models.json", root / "scripts" / "dummy_dir" / "models.json"):
        models = json.loads(path.read_text())
        path.write_text(json.dumps([{**m, "n_gpus": "0"} for m in models], indent=2))
    return root


def client_env(tmp_path: Path, ssh: SshServices) -> dict[str, str]:
    """The services' environment, and a HOME whose ~/.ssh/known_hosts has the hosts' keys (strict checking
    trusts the user's known_hosts, as ssh does)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(ssh.known_hosts, home / ".ssh" / "known_hosts")
    return {**service_env(), "HOME": str(home)}


def inventory(root: Path, ssh: SshServices, names: Sequence[str] = ("node1", "node2", "node3")) -> Path:
    path = root / "nodes.json"  # ROCm's inventory, as JSON
    path.write_text(json.dumps({"nodes": [ssh[n].inventory_node(gpu_count=0) for n in names]}, indent=2))
    return path


def report(root: Path, name: str = "runner_report.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / name).read_text())
    return data


def by_model(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["model_tag"]: r for r in data["node_results"]}


def build(run_cli: RunCli, root: Path, registry: Registry, env: dict[str, str]) -> None:
    code, out, err = run_cli("build", "--tags", MODELS, "--registry", registry.address, "--additional-context",
                             '{"gpu_vendor": "NONE", "guest_os": "UBUNTU"}', cwd=root, env=env, timeout=600)
    assert code == 0, out + err


def test_runner_ssh_runs_the_manifest_on_every_host_and_reports(
        run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices, registry: Registry, docker_client: Any) -> None:
    root, env = cpu_package(tmp_path), client_env(tmp_path, ssh_hosts)
    inventory(root, ssh_hosts)
    build(run_cli, root, registry, env)
    code, out, err = run_cli("runner", "ssh", "--inventory", "nodes.json", "--manifest-file", "build_manifest.json",
                             "--report-output", "out/report.json", cwd=root, env=env, timeout=600)
    assert code == 0, out + err
    data = report(root, "out/report.json")
    assert (data["total_nodes"], data["successful_executions"], data["failed_executions"]) == (3, 5, 0)
    results = by_model(data)
    assert set(results) == {"dummy", "dummy_perf", "dummy_multi", "dummy_dir/quick", "dummy_dir/slow"}
    assert {r["node_id"] for r in results.values()} == {"node1", "node2", "node3"}  # one job per host at once
    assert all(r["status"] == "SUCCESS" and r["this_run"] for r in results.values())
    assert results["dummy"]["performance_metrics"] == {"performance": 123.4, "metric": "samples_per_second"}
    assert len(results["dummy_multi"]["performance"]) > 1  # a multiple_results CSV, fetched back from its host
    assert str(ssh_hosts.key) not in json.dumps(data) and ssh_hosts["node1"].address not in json.dumps(data)

    code, out, err = run_cli("runner", "ssh", "-i", "nodes.json", "--report-output", "out/report.json",
                             cwd=root, env=env, timeout=300)
    assert code == 0, out + err
    assert "No changes" in out  # idempotent: nothing runs the second time
    again = report(root, "out/report.json")
    assert again["successful_executions"] == 5 and not any(r["this_run"] for r in again["node_results"])
    assert {r["model_tag"]: r["node_id"] for r in again["node_results"]} == \
        {m: r["node_id"] for m, r in results.items()}


def test_the_jobs_of_a_host_that_is_down_run_on_the_others(
        run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices) -> None:
    root, env = cpu_package(tmp_path), client_env(tmp_path, ssh_hosts)
    inventory(root, ssh_hosts)
    with ssh_hosts.stopped("node2"):
        code, out, err = run_cli("runner", "ssh", "-i", "nodes.json", "--tags", MODELS, cwd=root, env=env,
                                 timeout=600)
    assert code == 0, out + err
    # The first jobs spread over the three hosts: the one placed on node2 failed to connect, and its retry
    # (and every later job) went to a host that answers.
    assert "node2: connection refused" in out and "(transient; retrying)" in out, out
    data = report(root)
    assert data["successful_executions"] == 5 and data["failed_executions"] == 0, data
    assert {r["node_id"] for r in data["node_results"]} <= {"node1", "node3"}

    code, out, err = run_cli("runner", "ssh", "-i", "nodes.json", "--tags", MODELS, cwd=root, env=env, timeout=600)
    assert code == 0, out + err
    assert "No changes" in out


def test_runner_ansible_runs_the_models_on_every_host(run_cli: RunCli, tmp_path: Path,
                                                      ssh_hosts: SshServices) -> None:
    root, env = cpu_package(tmp_path), client_env(tmp_path, ssh_hosts)
    inventory(root, ssh_hosts)
    code, out, err = run_cli("runner", "ansible", "-i", "nodes.json", "--tags", MODELS, cwd=root, env=env,
                             timeout=900)
    assert code == 0, out + err
    data = report(root)
    assert (data["total_nodes"], data["successful_executions"], data["failed_executions"]) == (3, 5, 0)
    assert {r["node_id"] for r in data["node_results"]} == {"node1", "node2", "node3"}
    assert {r["target"] for r in data["node_results"]} == {"ansible"}
    assert by_model(data)["dummy"]["performance_metrics"] == {"performance": 123.4, "metric": "samples_per_second"}


def test_ctrl_c_writes_the_report_with_what_finished(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices) -> None:
    root, env = cpu_package(tmp_path), client_env(tmp_path, ssh_hosts)
    inventory(root, ssh_hosts)
    script = root / "scripts" / "dummy_dir" / "run.sh"  # `slow` (--steps 50) now sleeps until stopped
    script.write_text(script.read_text() + '[ "$steps" -gt 10 ] && sleep 600\necho "performance: 1 steps_per_second"\n')
    proc = subprocess.Popen([sys.executable, "-m", "madengine", "runner", "ssh", "-i", "nodes.json", "--tags",
                             "dummy,dummy_dir/slow"], cwd=root,
                            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until `dummy` has its result and `slow` runs
            code, out, _ = run_cli("results", "--json", cwd=root, env=env)
            if code == 0 and any(r["status"] == "SUCCESS" for r in json.loads(out or "[]")):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    data = report(root)
    assert data["madengine"]["outcome"] == "INTERRUPTED" and data["madengine"]["exit_code"] == 130
    results = by_model(data)
    assert results["dummy"]["status"] == "SUCCESS" and results["dummy"]["this_run"]
    assert results["dummy_dir/slow"]["status"] in ("INTERRUPTED", "NOT_STARTED"), results
    assert data["successful_executions"] == 1 and data["failed_executions"] == 1


def test_live_output_streams_the_remote_log(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices) -> None:
    root, env = cpu_package(tmp_path), client_env(tmp_path, ssh_hosts)
    inventory(root, ssh_hosts, ["node3"])
    code, out, err = run_cli("runner", "ssh", "-i", "nodes.json", "--tags", "dummy", "--live-output",
                             "--timeout", "120", "-j", "2", cwd=root, env=env, timeout=300)
    assert code == 0, out + err
    assert "job:dummy@default/ssh#1 | performance: 123.4 samples_per_second" in out  # the job's own line, from node3
    assert by_model(report(root))["dummy"]["node_id"] == "node3"
