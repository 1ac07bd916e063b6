"""docker_render: container arguments and the run command, without a daemon (DESIGN §3, §6)."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from madengine.backends import docker_render as render
from madengine.backends.base import Workspace
from madengine.backends.docker import DockerBackend
from madengine.backends.session import HostInfo
from madengine.backends.specs import JobSpec
from madengine.compile.ir import DataMount, ScriptCall
from madengine.madfile.model import DockerTarget

HOSTILE = ["$(touch /tmp/pwned)", "a; rm -rf /", "it's \"quoted\"", "two\nlines", "`id`", "${HOME}", "*", ""]


def job(**changes: Any) -> JobSpec:
    base = JobSpec(address="job:dummy@cpu/box#1", node_hash="sha256:abc", model="dummy", context="cpu",
                   target="box", script="scripts/dummy/run.sh", args=("--batch", "8"),
                   env={"MADENGINE_ATTEMPT": "42"}, n_gpus=0, timeout=60,
                   image_tag="madengine/dummy:0123456789ab", image_digest=None)
    return replace(base, **changes)


CTX = render.RunContext(workspace_id="ws1", run_dir_host="/p/.madengine/runs/r1", project_root="/p",
                        package_entries=(("scripts", "/p/scripts"), ("models.json", "/p/models.json")),
                        network="none", system_gpus=8)


def test_golden_amd_job() -> None:
    j = job(gpu_vendor="AMD", n_gpus=2, gpu_ids=(2, 3), multiple_results="perf.csv",
            pre_scripts=(ScriptCall("scripts/common/pre.sh", ("--v",)),),
            post_scripts=(ScriptCall("scripts/common/post.sh"),), cmd_prefix=("rocprof", "--stats"),
            data_mounts=(DataMount("data/x", "/data", in_project=True),),
            mounts={"/mnt/cache": "/cache:ro"}, docker_options="--shm-size=16G --ulimit memlock=-1:-1 -e A=1")
    assert render.run_arguments(j, CTX) == {
        "command": ["/myworkspace/run_directory",
                    "pre", "3", "bash", "pre.sh", "--v",
                    "main", "6", "rocprof", "--stats", "bash", "run.sh", "--batch", "8",
                    "post", "2", "bash", "post.sh"],
        "devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"],
        "entrypoint": ["sh", "-c", render.DRIVER, "madengine-run"],
        "environment": {"A": "1", "HIP_VISIBLE_DEVICES": "2,3", "MADENGINE_ATTEMPT": "42",
                        "MAD_DATAHOME": "/data", "MAD_GPU_VENDOR": "AMD", "MAD_GUEST_OS": "UBUNTU",
                        "MAD_MODEL_NAME": "dummy", "MAD_OUTPUT_CSV": "perf.csv", "MAD_RUNTIME_NGPUS": "2",
                        "MAD_SYSTEM_NGPUS": "8"},
        "group_add": ["video"],
        "image": "madengine/dummy:0123456789ab",
        "ipc_mode": "host",
        "labels": {"madengine.address": "job:dummy@cpu/box#1", "madengine.attempt": "42",
                   "madengine.node": "sha256:abc", "madengine.target": "box", "madengine.workspace": "ws1"},
        "network_mode": "none",
        "security_opt": ["seccomp=unconfined"],
        "shm_size": "16G",
        "ulimits": [{"name": "memlock", "soft": -1, "hard": -1}],
        "volumes": ["/p/.madengine/runs/r1:/myworkspace/run_directory:rw",
                    "/p/models.json:/myworkspace/models.json:ro",
                    "/p/scripts:/myworkspace/scripts:ro",
                    "/mnt/cache:/cache:ro",
                    "/p/data/x:/data:ro"],
    }


@pytest.mark.parametrize(("vendor", "n_gpus", "gpu_ids", "expected"), [
    ("NONE", 0, (), {}),
    ("NONE", 4, (), {}),
    ("INTEL", 1, (), {"devices": ["/dev/dri:/dev/dri:rwm"]}),
    ("AMD", 1, (), {"devices": ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"], "group_add": ["video"],
                    "ipc_mode": "host", "security_opt": ["seccomp=unconfined"]}),
    ("NVIDIA", 0, (), {}),
    ("NVIDIA", 2, (), {"device_requests": [{"count": 2, "capabilities": [["gpu"]]}]}),
    ("NVIDIA", -1, (), {"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]}),
    ("NVIDIA", 2, (4, 5), {"device_requests": [{"device_ids": ["4", "5"], "capabilities": [["gpu"]]}]}),
])
def test_vendor_options(vendor: str, n_gpus: int, gpu_ids: tuple[int, ...], expected: dict[str, Any]) -> None:
    assert render.vendor_arguments(job(gpu_vendor=vendor, n_gpus=n_gpus, gpu_ids=gpu_ids)) == expected


def test_none_vendor_gets_no_device_options_and_no_gpu_env() -> None:
    args = render.run_arguments(job(), CTX)
    assert not {"devices", "device_requests", "group_add", "ipc_mode", "security_opt"} & set(args)
    assert "HIP_VISIBLE_DEVICES" not in args["environment"]


def test_runtime_gpus() -> None:
    assert render.environment(job(n_gpus=-1), 8)["MAD_RUNTIME_NGPUS"] == "8"
    assert render.environment(job(n_gpus=-1, gpu_ids=(0, 1, 2)), 8)["MAD_RUNTIME_NGPUS"] == "3"
    assert render.environment(job(n_gpus=2), None)["MAD_SYSTEM_NGPUS"] == "2"


def test_job_env_wins_over_mad_defaults_and_options() -> None:
    j = job(env={"MAD_MODEL_NAME": "mine", "A": "job"}, docker_options="-e A=opt -e B=opt")
    env = render.run_arguments(j, CTX)["environment"]
    assert (env["MAD_MODEL_NAME"], env["A"], env["B"]) == ("mine", "job", "opt")


def test_network_option_overrides_target_network() -> None:
    assert render.run_arguments(job(docker_options="--network host"), CTX)["network_mode"] == "host"
    assert render.run_arguments(job(), CTX)["network_mode"] == "none"
    assert "network_mode" not in render.run_arguments(job(), replace(CTX, network=None))


def test_no_keep_alive_label_unless_kept() -> None:
    assert "madengine.keep-alive" not in render.run_arguments(job(), CTX)["labels"]
    assert render.run_arguments(job(keep_alive=True), CTX)["labels"]["madengine.keep-alive"] == "1"


@pytest.mark.parametrize(("text", "expected"), [
    ("--shm-size 64G", {"shm_size": "64G"}),
    ("--shm-size=64G", {"shm_size": "64G"}),
    ("--ulimit memlock=-1 --ulimit nofile=1024:2048",
     {"ulimits": [{"name": "memlock", "soft": -1, "hard": -1}, {"name": "nofile", "soft": 1024, "hard": 2048}]}),
    ("--cap-add SYS_PTRACE --cap-add=SYS_ADMIN", {"cap_add": ["SYS_PTRACE", "SYS_ADMIN"]}),
    ("--device /dev/infiniband", {"devices": ["/dev/infiniband"]}),
    ("-e A=1 --env B='x y' -eC=3", {"environment": {"A": "1", "B": "x y", "C": "3"}}),
    ("-v /a:/b -v /c:/d:ro --volume=/e:/f", {"volumes": ["/a:/b:rw", "/c:/d:ro", "/e:/f:rw"]}),
    ("--privileged", {"privileged": True}),
    ("--ipc=host --network host", {"ipc_mode": "host", "network_mode": "host"}),
    ("--net=none", {"network_mode": "none"}),
    ("--group-add render --security-opt seccomp=unconfined", {"group_add": ["render"],
                                                              "security_opt": ["seccomp=unconfined"]}),
    ("-u 1000:1000", {"user": "1000:1000"}),
    ("", {}),
])
def test_parse_docker_options(text: str, expected: dict[str, Any]) -> None:
    assert render.parse_docker_options(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("--rm", "unsupported docker option '--rm'"),
    ("--mount type=bind,src=/a,dst=/b", "unsupported docker option '--mount'"),
    ("--shm-size", "--shm-size needs a value"),
    ("-e A", "give a value"),
    ("-e 1A=2", "not a variable name"),
    ("-v data:/data", "named volumes are not supported"),
    ("-v /a", "expected /host/path"),
    ("-v /a:/b:z", "mode must be ro or rw"),
    ("--ulimit nofile", "expected name=soft"),
    ("--privileged=false", "only --privileged"),
    ("--env 'unterminated", "cannot split"),
])
def test_parse_docker_options_errors(text: str, message: str) -> None:
    with pytest.raises(render.DockerOptionsError, match=message.replace("(", r"\(").replace("[", r"\[")):
        render.parse_docker_options(text)


def test_command_is_an_argument_list_with_values_as_positional_parameters() -> None:
    entrypoint, command = render.run_command(job(args=tuple(HOSTILE)))
    assert entrypoint == ["sh", "-c", render.DRIVER, "madengine-run"]
    assert command == ["/myworkspace/run_directory", "main", str(2 + len(HOSTILE)), "bash", "run.sh", *HOSTILE]
    # The shell program is a constant: no value of the job is ever part of it.
    assert all(value not in render.DRIVER for value in HOSTILE if len(value) > 1)


def test_python_scripts_run_with_python3() -> None:
    assert render.run_steps(job(script="scripts/x/run.py", args=()))[2:] == ["python3", "run.py"]


def _drive(tmp_path: Path, j: JobSpec, scripts: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the rendered entrypoint + command with the host's sh, in a run dir holding `scripts`."""
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    entrypoint, command = render.run_command(j, str(tmp_path))
    return subprocess.run([*entrypoint, *command], capture_output=True, text=True, timeout=30, check=False)


def test_driver_passes_arguments_literally(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    args = (f"$(touch {marker})", f"; touch {marker}", "it's \"quoted\"", "two\nlines", "`id`", "${HOME}", "*", "")
    echo_args = 'for a in "$@"; do printf "<%s>\\n" "$a"; done\n'
    proc = _drive(tmp_path, job(script="run.sh", args=args), {"run.sh": echo_args})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"<{a}>\n" for a in args)
    assert not marker.exists()


def test_driver_runs_pre_main_post_in_order_in_the_run_dir(tmp_path: Path) -> None:
    j = job(script="run.sh", args=("m1",), pre_scripts=(ScriptCall("s/pre.sh", ("p 1",)),),
            post_scripts=(ScriptCall("s/post.sh", ("q",)),), cmd_prefix=("env", "WRAP=yes"))
    scripts = {"pre.sh": 'echo "pre $1 $(pwd)"\n', "run.sh": 'echo "main $1 $WRAP"\n', "post.sh": 'echo "post $1"\n'}
    proc = _drive(tmp_path, j, scripts)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"pre p 1 {tmp_path}\nmain m1 yes\npost q\n"


def test_driver_failure_skips_the_rest_but_runs_post_scripts(tmp_path: Path) -> None:
    j = job(script="run.sh", args=(), pre_scripts=(ScriptCall("pre.sh"),), post_scripts=(ScriptCall("post.sh"),))
    proc = _drive(tmp_path, j, {"pre.sh": "echo pre; exit 4\n", "run.sh": "echo main\n", "post.sh": "echo post\n"})
    assert (proc.returncode, proc.stdout) == (4, "pre\npost\n")
    proc = _drive(tmp_path, j, {"pre.sh": "echo pre\n", "run.sh": "echo main; exit 3\n", "post.sh": "exit 9\n"})
    assert (proc.returncode, proc.stdout) == (3, "pre\nmain\n")
    proc = _drive(tmp_path, j, {"pre.sh": "echo pre\n", "run.sh": "echo main\n", "post.sh": "exit 9\n"})
    assert proc.returncode == 9


def test_driver_fails_when_the_run_dir_is_missing(tmp_path: Path) -> None:
    entrypoint, command = render.run_command(job(script="run.sh"), str(tmp_path / "missing"))
    proc = subprocess.run([*entrypoint, *command], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2, proc.stderr  # cd's failure, not a syntax error of the driver
    assert f"can't cd to {tmp_path / 'missing'}" in proc.stderr


def test_mount_specs() -> None:
    assert render.mount_specs({"/b": "/y:rw", "/a": "/x"}) == ["/a:/x:rw", "/b:/y:rw"]
    with pytest.raises(ValueError, match="absolute"):
        render.mount_specs({"rel": "/x"})
    with pytest.raises(ValueError, match="absolute"):
        render.mount_specs({"/a:b": "/x"})


def test_data_mounts_are_read_only_unless_readwrite() -> None:
    j = job(data_mounts=(DataMount("/srv/d", "/d"), DataMount("data", "/e", readwrite=True, in_project=True)))
    assert render.data_mount_specs(j, "/p") == ["/srv/d:/d:ro", "/p/data:/e:rw"]


def test_run_arguments_need_an_image() -> None:
    with pytest.raises(ValueError, match="needs an image"):
        render.run_arguments(job(image_tag=None), CTX)


def backend(gpus: int | None = None) -> DockerBackend:
    ws = Workspace(root=Path("/p"), state_dir=Path("/p/.madengine"), workspace_id="ws1")
    return DockerBackend("box", DockerTarget(backend="docker", gpus=gpus), ws, credentials={})


def test_validate_without_io() -> None:
    assert backend(gpus=8).validate(job(n_gpus=8)) == []
    assert backend().validate(job(n_gpus=64)) == []  # no gpus declared: not limited
    [too_many] = backend(gpus=4).validate(job(n_gpus=8))
    assert "needs 8 GPUs but target box has 4" in too_many.message
    [bad_option] = backend().validate(job(docker_options="--shm-size 1G --rm"))
    assert "additional_docker_run_options: unsupported docker option '--rm'" in bad_option.message
    assert bad_option.message.startswith("job:dummy@cpu/box#1: ")
    [bad_mount] = backend().validate(job(mounts={"relative": "/x"}))
    assert "absolute" in bad_mount.message


def test_hosts_are_named_as_the_engines_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")  # an engine on this host: its name
    assert backend(gpus=8).hosts() == [HostInfo(socket.gethostname(), 8)]
    assert backend().hosts() == [HostInfo(socket.gethostname(), None)]


def test_push_reference() -> None:
    from madengine.backends.credentials import RegistryCredentials, Secret
    from madengine.backends.specs import ImageSpec

    spec = ImageSpec(address="image:dummy@cpu", node_hash="sha256:1", tag="madengine/dummy.ubuntu:0123456789ab",
                     dockerfile="d", build_context=".", build_args={}, base=None, base_digest=None,
                     registry="localhost:5000")
    assert backend().push_reference(spec) == ("localhost:5000/madengine/dummy.ubuntu", "0123456789ab")
    # Docker Hub credentials that name a repository: one repository, a tag per image (ROCm madengine's way).
    hub = RegistryCredentials("dockerhub", "u", Secret("p"), repository="my-org/mad")
    ws = Workspace(root=Path("/p"), state_dir=Path("/p/.madengine"), workspace_id="ws1")
    b = DockerBackend("box", DockerTarget(backend="docker"), ws, credentials={"dockerhub": hub})
    assert b.push_reference(replace(spec, registry="docker.io")) == ("docker.io/my-org/mad",
                                                                     "dummy.ubuntu-0123456789ab")
