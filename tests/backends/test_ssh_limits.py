"""What one host's SSH connection can do at once is what the scheduler is told (no job waits in the
session while its timeout runs), and a `max_parallel_per_host` beyond it is refused at validate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from madengine.backends.ssh_session import MAX_COMMANDS
from madengine.madfile.model import MAX_PARALLEL_PER_HOST
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)
from tests.conftest import RunCli

JOBS = MAX_COMMANDS + 2


def project(root: Path, sshd: PrivateSshd, **target_extra: Any) -> Path:
    host = {"address": sshd.address, "port": sshd.port, "user": sshd.user, "key": str(sshd.key)}
    target = {"backend": "ssh", "container": "none", "hosts": [host], "workdir": str(root.parent / "remote"),
              **target_extra}
    models = [{"name": f"m{i}", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh", "n_gpus": "0",
               "owner": "", "training_precision": "", "tags": ["t"], "args": ""} for i in range(JOBS)]
    files = {
        "models.json": json.dumps(models),
        "docker/a.ubuntu.Dockerfile": "FROM scratch\n",
        "scripts/m/run.sh": 'sleep 3\necho "performance: 1 x"\n',
        # each job runs 3 s: a timeout of 5 s is shorter than two rounds of them
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\ncontexts: {cpu: {gpu_vendor: NONE}}\n"
                        f"targets: {{lab: {json.dumps(target)}}}\nruns: [{{models: [t], timeout: 5}}]\n",
        ".madengine/ssh/known_hosts": sshd.known_hosts.read_text(),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_madfile_cap_is_the_connections() -> None:
    assert MAX_PARALLEL_PER_HOST == MAX_COMMANDS


def test_more_jobs_than_one_connection_runs_at_once_all_succeed_within_their_timeout(
        tmp_path: Path, private_sshd: PrivateSshd, run_cli: RunCli) -> None:  # noqa: F811
    root = project(tmp_path / "p", private_sshd)
    code, out, err = run_cli("apply", "--yes", "-j", str(JOBS), cwd=root, timeout=300)
    assert code == 0 and "TIMEOUT" not in out + err, out + err


def test_max_parallel_per_host_beyond_the_connection_is_refused_at_validate(
        tmp_path: Path, private_sshd: PrivateSshd, run_cli: RunCli) -> None:  # noqa: F811
    root = project(tmp_path / "p", private_sshd, max_parallel_per_host=MAX_COMMANDS + 4)
    code, out, err = run_cli("validate", cwd=root)
    assert code == 5, out + err
    line = next(ln for ln in err.splitlines() if "max_parallel_per_host" in ln)
    assert "madfile.yaml:" in line and f"{MAX_PARALLEL_PER_HOST}" in line and "hint:" in line, err
    assert "Traceback" not in err
