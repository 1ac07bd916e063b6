"""docker_cli: a job's `docker run` command line (the ssh backend's), golden-tested without an engine."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

import pytest

from madengine.backends import docker_cli
from madengine.backends import docker_render as render
from madengine.backends.specs import JobSpec
from madengine.compile.ir import DataMount, ScriptCall

CTX = render.RunContext(workspace_id="ws1", run_dir_host="/home/b/.madengine/ws1/runs/r1",
                        project_root="/home/b/.madengine/ws1/package",
                        package_entries=(("scripts", "/home/b/.madengine/ws1/package/scripts"),),
                        network="none", system_gpus=8)


def job(**changes: Any) -> JobSpec:
    base = JobSpec(address="job:dummy@cpu/lab#1", node_hash="sha256:abc", model="dummy", context="cpu",
                   target="lab", script="scripts/dummy/run.sh", args=("--batch", "8"),
                   env={"MADENGINE_ATTEMPT": "42"}, n_gpus=0, timeout=60,
                   image_tag="madengine/dummy:0123456789ab", image_digest=None)
    return replace(base, **changes)


def test_golden_amd_job() -> None:
    j = job(gpu_vendor="AMD", n_gpus=2, gpu_ids=(2, 3), multiple_results="perf.csv",
            pre_scripts=(ScriptCall("scripts/common/pre.sh", ("--v",)),), cmd_prefix=("rocprof", "--stats"),
            data_mounts=(DataMount("data/x", "/data", in_project=True),), mounts={"/mnt/cache": "/cache:ro"},
            docker_options="--shm-size=16G --ulimit memlock=-1:-1 -e A=1 --privileged",
            env={"MADENGINE_ATTEMPT": "42", "PATH": "/opt/bin:/usr/bin", "TOKEN": "s3cret"})
    argv, env = docker_cli.run_argv(j, CTX, name="madengine-ws1-42-x")
    assert argv == [
        "docker", "run", "--name", "madengine-ws1-42-x", "--pull", "never", "--rm",
        "--device", "/dev/kfd:/dev/kfd:rwm", "--device", "/dev/dri:/dev/dri:rwm",
        "--group-add", "video", "--ipc", "host", "--network", "none", "--privileged",
        "--security-opt", "seccomp=unconfined", "--shm-size", "16G", "--ulimit", "memlock=-1:-1",
        "--volume", "/home/b/.madengine/ws1/runs/r1:/myworkspace/run_directory:rw",
        "--volume", "/home/b/.madengine/ws1/package/scripts:/myworkspace/scripts:ro",
        "--volume", "/mnt/cache:/cache:ro",
        "--volume", "/home/b/.madengine/ws1/package/data/x:/data:ro",
        "--label", "madengine.address=job:dummy@cpu/lab#1", "--label", "madengine.attempt=42",
        "--label", "madengine.node=sha256:abc", "--label", "madengine.target=lab",
        "--label", "madengine.workspace=ws1",
        "--env", "A", "--env", "HIP_VISIBLE_DEVICES", "--env", "MADENGINE_ATTEMPT", "--env", "MAD_DATAHOME",
        "--env", "MAD_GPU_VENDOR", "--env", "MAD_GUEST_OS", "--env", "MAD_MODEL_NAME", "--env", "MAD_OUTPUT_CSV",
        "--env", "MAD_RUNTIME_NGPUS", "--env", "MAD_SYSTEM_NGPUS", "--env", "PATH=/opt/bin:/usr/bin",
        "--env", "TOKEN",
        "--entrypoint", "sh", "madengine/dummy:0123456789ab", "-c", render.DRIVER, "madengine-run",
        "/myworkspace/run_directory", "pre", "3", "bash", "pre.sh", "--v",
        "main", "6", "rocprof", "--stats", "bash", "run.sh", "--batch", "8"]
    # Values are never on the command line (the host's process list shows it), except the CLI's own.
    assert env == {"A": "1", "HIP_VISIBLE_DEVICES": "2,3", "MADENGINE_ATTEMPT": "42", "MAD_DATAHOME": "/data",
                   "MAD_GPU_VENDOR": "AMD", "MAD_GUEST_OS": "UBUNTU", "MAD_MODEL_NAME": "dummy",
                   "MAD_OUTPUT_CSV": "perf.csv", "MAD_RUNTIME_NGPUS": "2", "MAD_SYSTEM_NGPUS": "8", "TOKEN": "s3cret"}
    assert "s3cret" not in shlex.join(argv)


@pytest.mark.parametrize(("changes", "gpus"), [
    ({"gpu_ids": (0, 1)}, '"device=0,1"'), ({"n_gpus": -1}, "all"), ({"n_gpus": 2}, "2")])
def test_nvidia_gpus(changes: dict[str, Any], gpus: str) -> None:
    argv, _ = docker_cli.run_argv(job(gpu_vendor="NVIDIA", **changes), CTX, name="n")
    assert argv[argv.index("--gpus") + 1] == gpus


def test_kept_alive_is_not_removed_and_labelled() -> None:
    argv, _ = docker_cli.run_argv(job(keep_alive=True), CTX, name="n", remove=False)
    assert "--rm" not in argv and "madengine.keep-alive=1" in argv


def test_every_sdk_keyword_has_a_cli_form_or_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = render.run_arguments
    monkeypatch.setattr(render, "run_arguments", lambda j, c: {**real(j, c), "oom_kill_disable": True})
    with pytest.raises(ValueError, match="oom_kill_disable"):
        docker_cli.run_argv(job(), CTX, name="n")


def test_hostile_words_stay_single_arguments() -> None:
    hostile = ("$(touch /tmp/pwned)", "a; rm -rf /", "two\nlines", "")
    argv, _ = docker_cli.run_argv(job(args=hostile, model="m$(x)"), CTX, name="n")
    assert list(hostile) == argv[-len(hostile):]


def test_container_names_are_valid_and_per_attempt() -> None:
    a = docker_cli.container_name("ws/1 x", job())
    b = docker_cli.container_name("ws/1 x", job(env={"MADENGINE_ATTEMPT": "43"}))
    assert a != b and all(c.isalnum() or c in "_.-" for c in a)
