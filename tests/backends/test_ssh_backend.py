"""SshBackend's failures of one host, on the private loopback sshd (`container: none`): each fails that
host's jobs with `host: reason` in one line, and the target's other hosts go on."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.base import ATTEMPT_ENV, Cancel, Workspace
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.backends.ssh import SshBackend
from madengine.madfile.model import SshTarget
from madengine.state.model import Status
from tests.backends.sshd import PrivateSshd, private_sshd  # noqa: F401 (fixture)
from tests.infra.services import unavailable


def make(sshd: PrivateSshd, root: Path, hosts: list[dict[str, Any]], workdir: Path) -> SshBackend:
    (root / "scripts" / "m").mkdir(parents=True, exist_ok=True)
    (root / "scripts" / "m" / "run.sh").write_text('echo "performance: 1 x"\n')
    target = SshTarget.model_validate({"backend": "ssh", "container": "none", "workdir": str(workdir),
                                       "hosts": hosts})
    workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"t-{uuid.uuid4().hex[:8]}")
    return SshBackend("lab", target, workspace, known_hosts=(sshd.known_hosts,))


def host(sshd: PrivateSshd, name: str, **changes: Any) -> dict[str, Any]:
    return {"name": name, "address": sshd.address, "port": sshd.port, "user": sshd.user, "key": str(sshd.key),
            **changes}


def job(b: SshBackend, n: int, on: str) -> JobSpec:
    return JobSpec(address=f"job:m[n={n}]@cpu/lab#1", node_hash=f"sha256:{n:064x}", model="m", context="cpu",
                   target="lab", script="scripts/m/run.sh", args=(), env={ATTEMPT_ENV: str(n)}, n_gpus=0,
                   timeout=30, image_tag=None, image_digest=None,
                   log_path=b.workspace.logs / f"job-{n}.log", host=on)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs): a host whose disk is full."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs (root is needed): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_each_failing_host_fails_its_own_jobs_in_one_line_and_the_others_go_on(
        private_sshd: PrivateSshd, tmp_path: Path) -> None:  # noqa: F811
    hosts = [host(private_sshd, "good"),
             host(private_sshd, "wrong-key", key=str(private_sshd.other_key)),
             host(private_sshd, "no-key-file", key=str(tmp_path / "missing_key")),
             host(private_sshd, "refused", port=1)]
    b = make(private_sshd, tmp_path / "p", hosts, tmp_path / "remote")
    try:
        outcomes = {h["name"]: b.run(job(b, i, h["name"]), Cancel()) for i, h in enumerate(hosts)}
    finally:
        b.close()
    assert outcomes["good"].status is Status.SUCCESS, outcomes["good"]
    expected = {"wrong-key": "wrong-key: authentication refused", "refused": "refused: connection refused",
                "no-key-file": "no-key-file: cannot read the key file"}
    for name, start in expected.items():
        o = outcomes[name]
        assert o.status is Status.FAILURE and o.host == name and o.message.startswith(start), o
        assert "\n" not in o.message
    material = private_sshd.other_key.read_text().splitlines()[1]
    assert all(material not in o.message for o in outcomes.values())


def test_a_full_disk_on_the_host_fails_the_job_saying_so(private_sshd: PrivateSshd, tmp_path: Path,  # noqa: F811
                                                          tiny_disk: Path) -> None:
    b = make(private_sshd, tmp_path / "p", [host(private_sshd, "full")], tiny_disk)
    (tmp_path / "p" / "scripts" / "big.bin").write_bytes(b"\0" * (2 << 20))  # the package does not fit there
    try:
        outcome = b.run(job(b, 1, "full"), Cancel())
    finally:
        b.close()
    assert outcome.status is Status.FAILURE, outcome
    assert outcome.message.startswith("full: cannot prepare the run directory: ") and "\n" not in outcome.message
    assert "no space left on the device" in outcome.message, outcome.message


def test_a_job_on_a_host_that_did_not_get_its_image_fails_saying_why(private_sshd: PrivateSshd,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    b = make(private_sshd, tmp_path / "p", [host(private_sshd, "a")], tmp_path / "remote")
    b.container = "docker"
    b._undelivered["madengine/x:1", "a"] = "a: docker load: no space left on device"
    outcome = b.run(replace(job(b, 1, "a"), image_tag="madengine/x:1"), Cancel())
    assert outcome.status is Status.FAILURE
    assert outcome.message == "a: image madengine/x:1 was not delivered here: docker load: no space left on device"


def test_a_hostile_workdir_and_host_env_are_data_on_the_host(private_sshd: PrivateSshd,  # noqa: F811
                                                               tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    workdir = tmp_path / f"w $(touch {marker}); `touch {marker}` 'q\""
    env = {"HOSTILE": f"$(touch {marker})\n'\"", "ROCR_VISIBLE_DEVICES": "0,1"}
    b = make(private_sshd, tmp_path / "p", [host(private_sshd, "h", env=env)], workdir)
    script = 'printf "env<%s><%s>\\n" "$HOSTILE" "$ROCR_VISIBLE_DEVICES"\n'
    (tmp_path / "p" / "scripts" / "m" / "run.sh").write_text(script)
    try:
        j = job(b, 1, "h")
        outcome = b.run(j, Cancel())
    finally:
        b.close()
    assert outcome.status is Status.SUCCESS, outcome
    assert j.log_path is not None and f"env<{env['HOSTILE']}><0,1>\n" in j.log_path.read_text()
    assert not marker.exists() and workdir.is_dir()  # the directory of that very name


def test_a_failed_delivery_fails_the_jobs_placed_on_that_host(private_sshd: PrivateSshd,  # noqa: F811
                                                              tmp_path: Path) -> None:
    """A LOAD delivers to each host on its own: a host it failed on is remembered, and its jobs fail there."""
    b = make(private_sshd, tmp_path / "p", [host(private_sshd, "a")], tmp_path / "remote")
    b.container = "docker"
    tag = f"madengine/nowhere:{uuid.uuid4().hex[:12]}"
    image = ImageSpec(address="image:nowhere@cpu", node_hash="sha256:" + "1" * 64, tag=tag, dockerfile="Dockerfile",
                      build_context=".", build_args={}, base=None, base_digest=None, registry=None)
    b.workspace.logs.mkdir(parents=True, exist_ok=True)
    try:
        delivered = b.deliver(image, "a", b.workspace.logs / "load.log", Cancel())
        outcome = b.run(replace(job(b, 1, "a"), image_tag=tag), Cancel())
    finally:
        b.close()
    assert delivered.status is Status.FAILURE, delivered
    assert outcome.status is Status.FAILURE
    assert outcome.message == f"a: image {tag} was not delivered here: {delivered.message}", outcome.message
