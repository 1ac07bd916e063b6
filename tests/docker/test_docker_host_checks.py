"""What a target's host cannot do is said at plan, with the reason, and never retried as transient:
a device its context needs (an AMD context where there is no /dev/kfd), an engine that is not there."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.base import Cancel
from madengine.backends.docker import transient
from madengine.state.model import Status
from tests.backends.test_conformance import artifacts_of
from tests.conftest import RunCli
from tests.docker.test_apply_docker import make, model
from tests.docker.test_docker_backend import TINY_TAG, Project, make_project, tiny_image  # noqa: F401 (a fixture)
from tests.infra.services import Registry, service_env

pytestmark = pytest.mark.docker


def attempts(root: Path) -> int:
    try:
        with sqlite3.connect(root / ".madengine" / "state.db") as db:
            return int(db.execute("SELECT count(*) FROM attempts").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def engine_runtimes(docker_client: Any) -> set[str]:
    return set(docker_client.info().get("Runtimes") or {})


@pytest.mark.parametrize(("vendor", "n_gpus", "why", "hint"), [
    ("AMD", "0", "target box cannot run AMD containers: /dev/kfd", "run AMD contexts on a host with AMD GPUs"),
    ("NVIDIA", "1", "target box cannot give NVIDIA GPUs to containers: the engine has no nvidia runtime",
     "install the NVIDIA Container Toolkit")])
def test_a_context_needing_a_device_the_host_lacks_is_refused_at_plan(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any, vendor: str, n_gpus: str,
        why: str, hint: str) -> None:
    can = Path("/dev/kfd").exists() if vendor == "AMD" else "nvidia" in engine_runtimes(docker_client)
    if can:
        pytest.skip(f"this host can run {vendor} containers")
    root = make(tmp_path, registry.base_image, [model("m1", "gpu", n_gpus=n_gpus)])
    (root / "docker/gpu.ubuntu.Dockerfile").write_text(
        f"# CONTEXT {{'gpu_vendor': '{vendor}'}}\nFROM {registry.base_image}\n")
    madfile = root / "madfile.yaml"
    madfile.write_text(madfile.read_text().replace("gpu_vendor: NONE", f"gpu_vendor: {vendor}"))
    env = service_env()
    for command in (["plan"], ["apply", "--yes"]):
        code, out, err = run_cli(*command, cwd=root, env=env)
        assert code == 5, out + err
        assert f"job:m1@cpu/box#1: {why}" in err
        assert f"hint: {hint}" in err and "500" not in out + err
    assert attempts(root) == 0  # nothing was tried, so nothing was retried


@pytest.mark.usefixtures("tiny_image")
def test_an_engine_error_for_what_the_host_lacks_is_not_retried(tmp_path: Path, registry: Registry,
                                                                docker_client: Any) -> None:
    project: Project = make_project(tmp_path, registry.base_image)
    # A path that exists but is no device: the engine refuses it with a 500, as it refuses a missing /dev/kfd.
    job = project.job("perf", docker_options="--device /etc/hostname")
    outcome = project.backend.run(job, Cancel())
    assert outcome.status is Status.FAILURE and not outcome.transient, outcome
    assert "/etc/hostname" in outcome.message
    assert project.containers() == []
    import docker

    container = docker_client.containers.create(TINY_TAG, devices=["/dev/kfd:/dev/kfd:rwm"])
    try:
        with pytest.raises(docker.errors.APIError) as refused:
            container.start()
    finally:
        container.remove(force=True)
    assert refused.value.status_code == 500 and not transient(str(refused.value), local=True, status=500)


@pytest.mark.usefixtures("tiny_image")
def test_a_missing_device_option_is_named_before_the_engine_is_asked(
        tmp_path: Path, registry: Registry, docker_client: Any) -> None:
    project: Project = make_project(tmp_path, registry.base_image)
    job = project.job("perf", docker_options="--device /dev/madengine-no-such-device")
    outcome = project.backend.run(job, Cancel())
    assert outcome.status is Status.FAILURE and not outcome.transient
    assert outcome.message.startswith("/dev/madengine-no-such-device: no such device on this host")
    assert "no such device" in (job.log_path.read_text() if job.log_path else "")


@pytest.mark.parametrize("kind", ["missing", "nobody listens"])
def test_a_dead_docker_socket_is_named_at_plan_not_retried(run_cli: RunCli, tmp_path: Path,
                                                           registry: Registry, kind: str) -> None:
    root = make(tmp_path / "p", registry.base_image, [model("m1")])
    sock = tmp_path / "engine.sock"
    if kind == "nobody listens":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock))
        listener.close()  # the file stays; nothing listens on it
    env = {**service_env(), "DOCKER_HOST": f"unix://{sock}"}
    why = "does not exist" if kind == "missing" else "nothing listens on the socket"
    for command in (["plan"], ["apply", "--yes"]):
        code, out, err = run_cli(*command, cwd=root, env=env)
        assert code == 1, out + err
        [error] = [line for line in err.splitlines() if line.startswith("error:")]
        assert error.startswith(f"error: target box: no Docker engine at unix://{sock}: "), err
        assert why in error and "hint: start dockerd" in error
    assert attempts(root) == 0


@pytest.mark.usefixtures("tiny_image")
def test_a_lost_log_stream_is_recorded_in_the_outcome_not_silent(tmp_path: Path, registry: Registry,
                                                                 docker_client: Any) -> None:
    project: Project = make_project(tmp_path, registry.base_image)
    # The log cannot be written (a full disk: /dev/full answers every write with ENOSPC): the container's
    # output is lost, and the outcome says so, where before it said nothing and "no performance" followed.
    job = project.job("perf", log_path=Path("/dev/full"))
    outcome = project.backend.run(job, Cancel())
    assert outcome.exit_code == 0, outcome
    assert "log stream was lost" in outcome.message and "No space left on device" in outcome.message
    assert artifacts_of(outcome).log_lost in outcome.message
    assert project.containers() == []
