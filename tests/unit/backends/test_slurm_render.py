"""The slurm backend's sbatch scripts (one job, a job array, a multi-node job; docker, apptainer, host
processes) against reviewed golden files in tests/fixtures/slurm/, bash's syntax check of each, and a
script run by bash outside SLURM (host processes): the model's arguments arrive as they were given.

Regenerate the golden files after an intended change with `MADENGINE_UPDATE_GOLDEN=1 pytest <this file>`,
then review the diff."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from madengine.backends import slurm_render as render
from madengine.backends.base import node_file_name
from madengine.backends.specs import JobSpec
from madengine.compile.ir import ScriptCall

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"
REF = "localhost:5000/madengine/dummy.ubuntu.amd:0123456789ab"


def job(n: int = 1, **changes: object) -> JobSpec:
    fields: dict[str, object] = dict(
        address=f"job:dummy[size={n}]@mi300x/hpc#1", node_hash="sha256:" + "ab" * 32, model="dummy",
        context="mi300x", target="hpc", script="scripts/dummy/run.sh", args=("--size", str(n), "$(reboot); `id`"),
        env={"MADENGINE_ATTEMPT": str(41 + n), "HSA_ENABLE_SDMA": "0", "HF_TOKEN": "hf_secret"}, n_gpus=2,
        timeout=600, image_tag="madengine/dummy.ubuntu.amd:0123456789ab", image_digest=None,
        multiple_results="perf.csv", gpu_vendor="AMD", pre_scripts=(ScriptCall("scripts/common/pre.sh", ("--v",)),),
        post_scripts=(ScriptCall("scripts/common/post.sh"),), cmd_prefix=("rocprof", "--stats"),
        docker_options="--shm-size=16G")
    fields.update(changes)
    return JobSpec(**fields)  # type: ignore[arg-type]


CLUSTER = render.Cluster(target="hpc", workspace_id="ws0123456789", base="/scratch/me/madengine/ws0123456789-hpc",
                         container="docker", partition="gpu", account="proj42", qos="normal", exclusive=True,
                         constraint="mi300x&ib", modules=("rocm/6.3", "gcc/13"), extra_sbatch=("--mem=64G",),
                         gpus_per_node=8)


def task(j: JobSpec, cluster: render.Cluster = CLUSTER, ref: str | None = REF) -> render.Task:
    run_dir = f"{cluster.runs}/{node_file_name(j.address)}"
    return render.Task(j, run_dir, ref if cluster.container != "none" else None, ("docker", "scripts"))


def scripts() -> dict[str, render.Script]:
    none = replace(CLUSTER, container="none", partition="cpu", account=None, qos=None, exclusive=False,
                   constraint=None, modules=(), extra_sbatch=(), gpus_per_node=None, time_limit="2:00:00")
    host_job = job(gpu_vendor="NONE", n_gpus=0, timeout=0, env={"MADENGINE_ATTEMPT": "7"}, multiple_results="",
                   docker_options="", pre_scripts=(), post_scripts=(), cmd_prefix=())
    apptainer = replace(CLUSTER, container="apptainer", exclusive=False, constraint=None, extra_sbatch=())
    return {
        "single.sbatch": render.render([task(job())], CLUSTER),
        "array.sbatch": render.render([task(job(n)) for n in (1, 2, 3)], CLUSTER),
        "multinode.sbatch": render.render([task(job(nnodes=2, n_gpus=-1))], CLUSTER),
        "apptainer.sbatch": render.render([task(job(n)) for n in (1, 2)], apptainer),
        "none.sbatch": render.render([task(host_job, none)], none),
        "none-multinode.sbatch": render.render([task(replace(host_job, nnodes=3), none)], none),
    }


@pytest.mark.parametrize("name", sorted(scripts()))
def test_golden(name: str) -> None:
    text = scripts()[name].text
    path = GOLDEN / name
    if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(scripts()))
def test_bash_accepts_every_script(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(scripts()[name].text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr


def test_secrets_are_never_in_a_script_but_in_sbatch_environment() -> None:
    script = scripts()["array.sbatch"]
    assert "hf_secret" not in script.text
    assert script.secrets == {"MADENGINE_SECRET_0_HF_TOKEN": "hf_secret", "MADENGINE_SECRET_1_HF_TOKEN": "hf_secret",
                              "MADENGINE_SECRET_2_HF_TOKEN": "hf_secret"}


def test_an_array_holds_jobs_of_one_image_and_shape_and_a_multi_node_job_stands_alone() -> None:
    jobs = [job(1), job(2, timeout=7200), job(3), job(4, image_tag="madengine/other:0123456789ab"), job(5, nnodes=2),
            job(6)]
    groups = render.group(jobs, CLUSTER)
    assert [[j.address.split("=")[1][0] for j in g] for g in groups] == [["1", "3", "6"], ["2"], ["4"], ["5"]]
    assert [len(g) for g in render.group(jobs, replace(CLUSTER, array=False))] == [1] * 6
    many = render.group([job(n) for n in range(render.MAX_ARRAY + 2)], CLUSTER)
    assert [len(g) for g in many] == [render.MAX_ARRAY, 2]


def test_handles_and_outputs_are_known_from_the_job_id() -> None:
    array, single = scripts()["array.sbatch"], scripts()["single.sbatch"]
    assert [array.handle("4242", i) for i in range(3)] == ["4242_0", "4242_1", "4242_2"]
    assert single.handle("4243", 0) == "4243"
    assert render.output(CLUSTER, "4242_1") == "/scratch/me/madengine/ws0123456789-hpc/logs/4242_1.out"
    assert "#SBATCH --output=/scratch/me/madengine/ws0123456789-hpc/logs/%A_%a.out\n" in array.text
    assert "#SBATCH --output=/scratch/me/madengine/ws0123456789-hpc/logs/%j.out\n" in single.text


def test_the_time_limit_is_the_timeout_in_whole_minutes() -> None:
    assert render.time_option(job(timeout=60), CLUSTER) == "1"
    assert render.time_option(job(timeout=61), CLUSTER) == "2"
    assert render.time_option(job(timeout=1), CLUSTER) == "1"
    assert render.time_option(job(timeout=0), CLUSTER) is None
    assert render.time_option(job(timeout=0), replace(CLUSTER, time_limit="1-00:00")) == "1-00:00"


def test_a_job_name_or_address_with_a_line_break_stays_in_its_comment() -> None:
    evil = job(address="job:x[a=1\nreboot]@c/hpc#1")
    text = render.render([task(evil)], CLUSTER).text
    assert "#   0: job:x[a=1\\nreboot]@c/hpc#1\n" in text
    assert text.count("\nreboot") == 1 and "'madengine.address=job:x[a=1\nreboot]@c/hpc#1'" in text  # quoted


def test_an_apptainer_container_cannot_be_given_what_only_docker_gives() -> None:
    apptainer = replace(CLUSTER, container="apptainer")
    assert render.validate(job(docker_options="--privileged --user 1000"), apptainer) == [
        "additional_docker_run_options: apptainer cannot give a container --user, --privileged (run it with "
        "`container: docker`)"]
    assert render.validate(job(), apptainer) == []


def test_host_processes_get_the_model_arguments_as_given(tmp_path: Path) -> None:
    """The rendered script run by bash (as a compute node would, outside SLURM): nothing of the arguments is
    run by a shell, and the environment is the job's."""
    run_dir = tmp_path / "runs" / "job"
    run_dir.mkdir(parents=True)
    (run_dir / "run.sh").write_text('for a do printf "<%s>\\n" "$a"; done; echo "attempt=$MADENGINE_ATTEMPT '
                                    'token=$HF_TOKEN model=$MAD_MODEL_NAME"\n')
    cluster = render.Cluster(target="hpc", workspace_id="ws", base=str(tmp_path), container="none")
    j = job(gpu_vendor="NONE", n_gpus=0, env={"MADENGINE_ATTEMPT": "7", "HF_TOKEN": "t0k"}, multiple_results="",
            docker_options="", pre_scripts=(), post_scripts=(), cmd_prefix=(), script="scripts/dummy/run.sh",
            args=("$(touch pwned)", "a b", "`touch pwned2`", "'"))
    script = render.render([render.Task(j, str(run_dir))], cluster)
    path = tmp_path / "job.sbatch"
    path.write_text(script.text)
    env = {"PATH": os.environ["PATH"], **script.secrets}
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=30, check=False, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "<$(touch pwned)>\n<a b>\n<`touch pwned2`>\n<'>\nattempt=7 token=t0k model=dummy\n"
    assert not list(tmp_path.rglob("pwned*"))


def test_a_task_index_the_script_does_not_hold_fails_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "job.sbatch"
    path.write_text(scripts()["array.sbatch"].text)
    done = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": os.environ["PATH"], "SLURM_ARRAY_TASK_ID": "3"})
    assert done.returncode == 2
    assert done.stderr == "madengine: no task 3 in this job\n"


def test_submit_sh_copies_then_submits_in_order(tmp_path: Path) -> None:
    s = scripts()
    text = render.render_submit([("jobs/a b.sbatch", s["single.sbatch"]), ("jobs/b.sbatch", s["array.sbatch"])],
                                CLUSTER)
    path = GOLDEN / "submit.sh"
    if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    (tmp_path / "submit.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "submit.sh")], check=False, timeout=30).returncode == 0


def test_node_variables_expand_only_their_references() -> None:
    assert render.double_quoted("${SLURM_NODEID}") == '"${SLURM_NODEID}"'
    assert render.double_quoted('a "b" `c` $d \\ ${E}') == '"a \\"b\\" \\`c\\` \\$d \\\\ ${E}"'
    exports = dict(render.node_exports(job(nnodes=2, n_gpus=-1), CLUSTER))
    assert list(exports) == ["NNODES", "NPROC_PER_NODE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT",
                             "MAD_MULTI_NODE_RUNNER"]
    assert exports["NPROC_PER_NODE"] == '"8"' and exports["NODE_RANK"] == '"${SLURM_NODEID}"'
