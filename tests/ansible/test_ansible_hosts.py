"""The ansible backend on dev/services' three hosts (own address, hostname, home and Docker engine each):
jobs in their image on every host (the image built here, loaded into each host's engine), and a host that
is down fails only the jobs placed on it, one line each naming it; a re-apply runs only those."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.infra.services import service_env
from tests.infra.ssh import SshServices

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("docker_client")]
RUN_FAILURE = 3


def project(tmp_path: Path, hosts: SshServices, jobs: int) -> Path:
    root = tmp_path / "proj"
    madfile = {
        "version": 1,
        "models": [{"name": "m", "dockerfile": "docker/m", "scripts": "scripts/m/run.sh", "n_gpus": 0,
                    "params": {"i": list(range(jobs))}}],
        "contexts": {"cpu": {"gpu_vendor": "NONE"}},
        "targets": {"lab": {"backend": "ansible", "max_parallel_per_host": 1,
                            "hosts": [h.madfile_host(env={"NODE": h.name}) for h in hosts.nodes]}},
    }
    files = {
        "docker/m.ubuntu.none.Dockerfile": f"FROM {service_env()['MADENGINE_BASE_IMAGE']}\n",
        "scripts/m/run.sh": 'echo "on $NODE"\necho "performance: $2 items/s"\n',  # a host's env reaches its jobs
        "madfile.yaml": json.dumps(madfile, indent=1),  # JSON is YAML
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_jobs_run_in_their_image_on_every_host(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices,
                                               known_hosts: Path) -> None:
    root = project(tmp_path, ssh_hosts, jobs=6)
    code, out, err = run_cli("apply", "--yes", "-j", "3", cwd=root, timeout=900)
    assert code == 0, out + err
    assert out.count("SUCCESS     job:m[i=") == 6
    logs = "".join(p.read_text() for p in (root / ".madengine" / "logs").rglob("*.log"))
    assert {f"on {h.name}" for h in ssh_hosts.nodes} <= set(re.findall(r"on node\d", logs))  # each host ran jobs
    for h in ssh_hosts.nodes:  # each host's own engine got the image
        assert any(i.startswith("madengine/m.ubuntu.none:") for i in h.images()), h.name


def test_a_host_that_is_down_fails_only_its_jobs(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices,
                                                 known_hosts: Path) -> None:
    root = project(tmp_path, ssh_hosts, jobs=6)
    code, out, err = run_cli("apply", "--yes", "-j", "3", cwd=root, timeout=900)  # the image on every host
    assert code == 0, out + err
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace('"i"', '"j"'))  # 6 new jobs
    with ssh_hosts.stopped("node2") as down:
        code, out, err = run_cli("apply", "--yes", "-j", "3", "--keep-going", cwd=root, timeout=900)
    assert code == RUN_FAILURE, out + err
    failed = [line for line in out.splitlines() if line.startswith("FAILURE")]
    assert failed and out.count("SUCCESS     job:m[j=") == 6 - len(failed), out
    for line in failed:
        assert f"node2: unreachable: connect to host {down.address} port 22: Connection refused" in line, line
    code, out, err = run_cli("apply", "--yes", "--rerun-failed", cwd=root, timeout=900)
    assert code == 0, out + err
    assert out.count("SUCCESS     job:m[j=") == len(failed)  # only those that failed ran again


def test_a_host_that_lost_the_image_gets_it_again(run_cli: RunCli, tmp_path: Path, ssh_hosts: SshServices,
                                                  known_hosts: Path) -> None:
    root = project(tmp_path, ssh_hosts, jobs=3)
    code, out, err = run_cli("apply", "--yes", "-j", "3", cwd=root, timeout=900)
    assert code == 0, out + err
    node2 = ssh_hosts["node2"]
    (tag,) = [i for i in node2.images() if i.startswith("madengine/m.ubuntu.none:")]
    node2.docker("rmi", tag)
    code, out, err = run_cli("plan", cwd=root, timeout=300)
    assert code == 0, out + err
    assert "lab/node2" in out and "lab/node1" not in out, out  # observed per host: only node2 lacks it
    code, out, err = run_cli("apply", "--yes", cwd=root, timeout=900)
    assert code == 0, out + err
    assert tag in node2.images()
