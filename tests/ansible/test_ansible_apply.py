"""`madengine apply` on an ansible target over a real sshd on loopback, jobs in their image on the host
(the host's Docker engine is the shared dockerd of dev/services), and `generate ansible`'s playbook run
by hand with ansible-playbook on the same host."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.infra.services import service_env
from tests.infra.ssh import SshHost, SshServices

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_client")]


def project(tmp_path: Path, h: SshHost) -> Path:
    root = tmp_path / "proj"
    files = {
        "docker/m.ubuntu.none.Dockerfile": f"FROM {service_env()['MADENGINE_BASE_IMAGE']}\n",
        "scripts/m/run.sh": 'echo "args: $*"\nprintf "model,performance,metric\\nsub,2.5,x/s\\n" > out.csv\n'
                            'echo "performance: 42 items/s"\n',
        "madfile.yaml": f"""\
            version: 1
            models:
              - {{name: m, dockerfile: docker/m, scripts: scripts/m/run.sh, n_gpus: 0, args: "--a yes ~ 010",
                 multiple_results: out.csv}}
            contexts:
              cpu: {{gpu_vendor: NONE}}
            targets:
              lab:
                backend: ansible
                hosts: [{{address: {h.address}, port: {h.port}, user: {h.user}, key: {h.key}}}]
                workdir: {tmp_path / "remote"}
            """,
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_apply_runs_a_job_in_its_image_on_the_host(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices,
                                                  known_hosts: Path) -> None:
    root = project(tmp_path, ssh_hosts.loopback)
    env = {"MADENGINE_SSH_KNOWN_HOSTS": str(known_hosts)}
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env, timeout=600)
    assert code == 0, out + err
    assert "SUCCESS     job:m@cpu/lab#1" in out and "2.5 x/s" in out  # the CSV fetched back, judged
    logs = "".join(p.read_text() for p in (root / ".madengine" / "logs").rglob("*.log"))
    assert "args: --a yes ~ 010" in logs
    assert "127.0.0.1: madengine/m.ubuntu.none:" in logs  # the build saw to the host's image (here: its engine's)
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert (code, err) == (0, ""), out  # observed on the host: the image is there, the job up to date


def test_the_generated_playbook_runs_by_hand(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices,
                                             known_hosts: Path) -> None:
    root = project(tmp_path, ssh_hosts.loopback)
    env = {"MADENGINE_SSH_KNOWN_HOSTS": str(known_hosts)}
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env, timeout=600)  # builds and delivers the image
    assert code == 0, out + err
    code, out, err = run_cli("generate", "ansible", "-o", "handoff", cwd=root, env=env)
    assert code == 0, err
    lab = root / "handoff" / "lab"
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(["ansible-playbook", "-i", "inventory.yml", "playbook.yml"], cwd=lab, capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stdout + done.stderr
    (result,) = (lab / "results").iterdir()
    assert "performance: 42 items/s" in (result / "log").read_text()
    assert (result / "results.csv").read_text() == "model,performance,metric\nsub,2.5,x/s\n"
