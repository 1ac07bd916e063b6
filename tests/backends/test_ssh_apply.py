"""The ssh backend end to end through the CLI: plan, apply, re-apply, on the private loopback sshd and
this machine's dockerd (the loopback host's engine), with the registry of dev/services."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)
from tests.conftest import RunCli
from tests.infra.services import Registry, registry, service_env  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

RUN = """\
#!/bin/bash
echo "token length ${#HF_TOKEN}"
echo "performance: ${PERF:-10.5} samples_per_second"
"""


def project(root: Path, sshd: PrivateSshd, base: str, *, container: str | None = None) -> Path:
    own = f"LABEL madengine.test={uuid.uuid4().hex}\n"  # an image of this test's own
    host: dict[str, Any] = {"address": sshd.address, "port": sshd.port, "user": sshd.user, "key": str(sshd.key)}
    target: dict[str, Any] = {"backend": "ssh", "hosts": [host], "workdir": str(root.parent / "remote")}
    if container is not None:
        target["container"] = container
    files = {
        "models.json": json.dumps([{"name": "m1", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh",
                                    "n_gpus": "0", "owner": "", "training_precision": "", "tags": ["t"], "args": ""}]),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\n{own}",
        "scripts/m/run.sh": RUN,
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\n"
                        "contexts: {cpu: {gpu_vendor: NONE, docker_env_vars: {HF_TOKEN: '${env:HF_TOKEN}'}}}\n"
                        f"targets: {{lab: {json.dumps(target)}}}\n",
        # madengine's own known_hosts (where accept-new would remember keys): strict checking reads it
        ".madengine/ssh/known_hosts": sshd.known_hosts.read_text(),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def statuses(root: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(root / ".madengine" / "state.db") as db:
        return [(a, s) for a, s in db.execute("SELECT address, status FROM attempts ORDER BY id")]


def test_apply_on_an_ssh_host_then_nothing_to_do_and_no_secret_anywhere(
        run_cli: RunCli, tmp_path: Path, private_sshd: PrivateSshd, registry: Registry) -> None:  # noqa: F811
    root = project(tmp_path / "p", private_sshd, registry.base_image)
    secret = f"hf_{uuid.uuid4().hex}"
    env = {**service_env(), "HF_TOKEN": secret}
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert [s for _, s in statuses(root)] == ["SUCCESS", "SUCCESS"], statuses(root)  # the image, the job
    log = next((root / ".madengine" / "logs").rglob("job_*.log")).read_text()
    assert f"token length {len(secret)}" in log and "performance: 10.5 samples_per_second" in log
    code, out2, err2 = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0 and len(statuses(root)) == 2, out2 + err2  # nothing ran again
    # Neither the job's secret nor the key's material is written anywhere (the key's path may be).
    material = private_sshd.key.read_text().splitlines()[1]
    for text in (out, err, out2, err2):
        assert secret not in text and material not in text
    for path in [*root.rglob("*"), *(tmp_path / "remote").rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and material.encode() not in data, path


def test_an_unknown_host_key_fails_the_hosts_jobs_with_the_hint(
        run_cli: RunCli, tmp_path: Path, private_sshd: PrivateSshd, registry: Registry) -> None:  # noqa: F811
    root = project(tmp_path / "p", private_sshd, registry.base_image)
    (root / ".madengine" / "ssh" / "known_hosts").write_text("")
    code, out, err = run_cli("apply", "--yes", "--keep-going", cwd=root, env={**service_env(), "HF_TOKEN": "x"})
    assert code == 3, out + err  # a run failure: the job failed, on its host
    line = next(ln for ln in out.splitlines() if ln.startswith("FAILURE") and "job:m1@cpu/lab#1" in ln)
    assert f"127.0.0.1: the host key of 127.0.0.1:{private_sshd.port} is unknown" in line, out
    assert "host_key_check: accept-new" in line and "transient" not in line
    assert [s for _, s in statuses(root)] == ["SUCCESS", "FAILURE"]  # built here; the job failed, not skipped
    assert "Traceback" not in out + err


def test_a_docker_job_cancelled_as_soon_as_it_is_handed_over_leaves_no_container(
        tmp_path: Path, private_sshd: PrivateSshd, registry: Registry) -> None:  # noqa: F811
    """The container's name is given before the container exists: a cancel at that very moment must still
    remove the container that `docker run` creates right after."""
    import docker

    from madengine.backends.base import ATTEMPT_ENV, Cancel
    from madengine.backends.specs import JobSpec
    from madengine.state.model import Status

    client = docker.from_env()
    root = tmp_path / "p"
    (root / "scripts").mkdir(parents=True)
    (root / "scripts" / "run.sh").write_text("sleep 30\n")
    b = private_sshd.backend(root, tmp_path / "remote", "c")
    workspace = b.workspace
    label = f"madengine.workspace={workspace.workspace_id}"
    try:
        for n in range(3):
            cancel = Cancel()
            cancel.on_start = lambda handle, c=cancel: c.event.set()
            job = JobSpec(address=f"job:m[n={n}]@cpu/lab#1", node_hash=f"sha256:{n:064x}", model="m",
                          context="cpu", target="lab", script="scripts/run.sh", args=(), env={ATTEMPT_ENV: str(n)},
                          n_gpus=0, timeout=0, image_tag=registry.base_image, image_digest=None,
                          log_path=workspace.logs / f"{n}.log", host="lo")
            assert b.run(job, cancel).status is Status.INTERRUPTED
            assert client.containers.list(all=True, filters={"label": label}) == []
    finally:
        b.close()
        for c in client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
