"""examples/ssh runs as documented against the SSH hosts of `dev/services`: a copy of it whose nodes.yml
names the three test hosts instead of its localhost placeholder (the madfile itself is unchanged)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT, RunCli
from tests.infra.ssh import SshServices
from tests.runner.test_runner_ssh import client_env

EXAMPLE = REPO_ROOT / "examples" / "ssh"


def nodes_yml(ssh: SshServices) -> str:
    lines = ["nodes:"]
    for host in ssh.nodes:
        lines += [f"  - hostname: {host.name}", f"    address: {host.address}", f"    port: {host.port}",
                  f"    username: {host.user}", f"    ssh_key_path: {host.key}", "    gpu_count: 0"]
    return "\n".join(lines) + "\n"


def test_the_placeholder_is_this_machine() -> None:
    text = (EXAMPLE / "nodes.yml").read_text()
    assert "address: 127.0.0.1" in text and "inventory: nodes.yml" in (EXAMPLE / "madfile.yaml").read_text()


def test_the_ssh_example_runs_on_the_test_hosts(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices) -> None:
    root = tmp_path / "ssh"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".madengine"))
    (root / "nodes.yml").write_text(nodes_yml(ssh_hosts))
    env = client_env(tmp_path, ssh_hosts)
    code, out, err = run_cli("apply", "--yes", "--locked", "-j", "3", cwd=root, env=env, timeout=300)
    assert code == 0, out + err  # --locked: the committed lock is current whatever hosts the inventory names
    code, out, err = run_cli("results", "--json", cwd=root, env=env)
    assert code == 0, out + err
    rows = json.loads(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"SUCCESS"}, rows
    assert {r["host"] for r in rows} <= {"node1", "node2", "node3"}
    code, out, err = run_cli("apply", "--yes", "--locked", cwd=root, env=env, timeout=300)
    assert code == 0 and "No changes" in out, out + err
