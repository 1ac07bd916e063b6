"""The ansible backend's rendered files (inventory, playbook, ansible.cfg, stop playbook) against reviewed
golden files in tests/fixtures/ansible/, and ansible's own syntax check of them.

Regenerate the golden files after an intended change with `MADENGINE_UPDATE_GOLDEN=1 pytest <this file>`,
then review the diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from madengine.backends import ansible_render as render
from madengine.backends.specs import JobSpec
from madengine.compile.ir import ScriptCall

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "ansible"


def job(**changes: object) -> JobSpec:
    fields: dict[str, object] = dict(
        address="job:dummy@mi300x/lab#1", node_hash="sha256:" + "ab" * 32, model="dummy", context="mi300x",
        target="lab", script="scripts/dummy/run.sh", args=("--batch", "8"),
        env={"MADENGINE_ATTEMPT": "42", "HSA_ENABLE_SDMA": "0", "HF_TOKEN": "hf_secret"}, n_gpus=2,
        timeout=600, image_tag="madengine/dummy.ubuntu.amd:0123456789ab", image_digest=None,
        multiple_results="perf.csv", gpu_vendor="AMD", gpu_ids=(0, 1),
        pre_scripts=(ScriptCall("scripts/common/pre.sh", ("--v",)),),
        post_scripts=(ScriptCall("scripts/common/post.sh"),),
        cmd_prefix=("rocprof", "--stats"), docker_options="--shm-size=16G")
    fields.update(changes)
    return JobSpec(**fields)  # type: ignore[arg-type]


HOSTS = [render.InventoryHost("gpu-1", "10.0.0.5", 22, "bench", "/home/bench/.ssh/id_ed25519"),
         render.InventoryHost("gpu-2", "10.0.0.6", 2200)]


def plays() -> list[render.PlayJob]:
    docker_job = job()
    name = render.job_name(docker_job.address)
    container = render.container_name("ws0123456789", "42", name)
    steps, env = render.docker_steps(docker_job, workspace_id="ws0123456789", container=container, system_gpus=8)
    secret = tuple(k for k in env if k == "HF_TOKEN")
    host_job = job(address="job:cpu_bench[size=256]@cpu/lab#2", model="cpu_bench", script="run.py",
                   args=("--size", "256"), gpu_vendor="NONE", gpu_ids=(), n_gpus=0, multiple_results="",
                   pre_scripts=(), post_scripts=(), cmd_prefix=(), env={"MADENGINE_ATTEMPT": "43"})
    host_name = render.job_name(host_job.address)
    return [
        render.PlayJob(address=docker_job.address, host="gpu-1", name=name, token="handoff", staging=f"runs/{name}",
                       fetch_dir=f"results/{name}", command=steps,
                       env=tuple((k, v) for k, v in env.items() if k not in secret), secret_env=secret,
                       results_csv="perf.csv", container=container),
        render.PlayJob(address=host_job.address, host="gpu-2", name=host_name, token="0123456789ab",
                       staging=f"/state/ansible/lab/{host_name}/run",
                       fetch_dir=f"/state/ansible/lab/{host_name}/fetch", command=render.host_steps(host_job),
                       env=(("MAD_MODEL_NAME", "cpu_bench"), ("MADENGINE_ATTEMPT", "43"))),
    ]


def rendered() -> dict[str, str]:
    jobs = plays()
    return {
        "inventory.yml": render.render_inventory(HOSTS),
        "playbook.yml": render.render_playbook(jobs, workdir=".madengine",
                                               extra_vars={"site": "lab-a", "ansible_become": False},
                                               fetch_log=True),
        "stop.yml": render.render_stop([render.Stop("gpu-1", jobs[0].name, jobs[0].container, jobs[0].fetch_dir),
                                        render.Stop("gpu-2", jobs[1].name)], workdir="~/.madengine"),
        "ansible.cfg": render.render_config(render.Config(known_hosts="/home/me/.ssh/known_hosts",
                                                          home="/project/.madengine/ansible/lab/home",
                                                          control_path_dir="/tmp/madengine-ansible-0", forks=2)),
        "ansible-accept-new.cfg": render.render_config(render.Config(known_hosts="/home/me/my hosts",
                                                                     host_key_check="accept-new")),
    }


@pytest.mark.parametrize("name", sorted(rendered()))
def test_golden(name: str) -> None:
    text = rendered()[name]
    path = GOLDEN / name
    if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_ansible_accepts_the_rendered_playbooks(tmp_path: Path) -> None:
    files = rendered()
    for name in ("inventory.yml", "playbook.yml", "stop.yml"):
        (tmp_path / name).write_text(files[name])
    (tmp_path / "ansible.cfg").write_text(render.render_config(render.Config(known_hosts=str(tmp_path / "kh"),
                                                                             home=str(tmp_path / "home"))))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for playbook in ("playbook.yml", "stop.yml"):
        done = subprocess.run(["ansible-playbook", "--syntax-check", "-i", "inventory.yml", playbook], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    listed = subprocess.run(["ansible-inventory", "-i", "inventory.yml", "--list"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert hostvars["gpu-2"]["ansible_port"] == 2200
    assert hostvars["gpu-1"]["ansible_host"] == {"__ansible_unsafe": "10.0.0.5"}  # never templated


def test_the_docker_run_leaves_the_run_directory_to_the_driver() -> None:
    argv, env = render.docker_steps(job(), workspace_id="w", container="c", system_gpus=8)
    assert argv[:3] == ("docker", "run", "auto") and "--volume" not in argv  # DOCKER_DRIVER mounts the run dir
    assert '-v "$d:/myworkspace/run_directory:rw"' in render.DOCKER_DRIVER
    # values never on the command line: `-e NAME`, the value in the run task's environment
    assert "--env" in argv and "HF_TOKEN" in argv and "hf_secret" not in " ".join(argv)
    assert env["HF_TOKEN"] == "hf_secret" and env["HIP_VISIBLE_DEVICES"] == "0,1"
    assert argv[argv.index("--shm-size") + 1] == "16G" and "--rm" in argv
    assert "--rm" not in render.docker_steps(job(keep_alive=True), workspace_id="w", container="c", system_gpus=8)[0]


@pytest.mark.parametrize("value", ["yes", "~", "010", "1e3", "null", "2001-01-01", "<<", "", "-1", ".5"])
def test_a_lone_unsafe_value_that_would_not_read_as_a_string_is_refused(value: str) -> None:
    # ansible 2.19 reads `!unsafe "yes"` as true: such values only go inside an !unsafe list or mapping
    with pytest.raises(ValueError, match="would not read as a string"):
        render.unsafe_value(value)
    assert render.unsafe_value([value]) == f"!unsafe [{json.dumps(value)}]"


@pytest.mark.parametrize("path", ["/a\nb", "/a ;b", " /a", "/a\r"])
def test_ansible_cfg_refuses_a_value_it_cannot_hold(path: str) -> None:
    with pytest.raises(ValueError, match=r"cannot be written into ansible\.cfg"):
        render.render_config(render.Config(known_hosts="/k", home=path))


def test_templates_are_found() -> None:
    assert {p.name for p in render.template_dir().iterdir()} >= {"inventory.yml.j2", "playbook.yml.j2",
                                                                 "ansible.cfg.j2", "stop.yml.j2"}


def test_nvidia_gpus_by_id_are_one_csv_field() -> None:
    argv, _ = render.docker_steps(job(gpu_vendor="NVIDIA", gpu_ids=(0, 3)), workspace_id="w", container="c",
                                  system_gpus=8)
    assert argv[argv.index("--gpus") + 1] == '"device=0,3"'
    argv, _ = render.docker_steps(job(gpu_vendor="NVIDIA", gpu_ids=(), n_gpus=-1), workspace_id="w", container="c",
                                  system_gpus=8)
    assert argv[argv.index("--gpus") + 1] == "all"


def test_containers_of_two_workspaces_are_named_apart() -> None:
    name = render.job_name("job:m@cpu/lab#1")
    assert render.container_name("ws1", "2", name) != render.container_name("ws2", "2", name)
