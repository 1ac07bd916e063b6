"""`madengine apply` on a slurm target of the real SLURM of `dev/services` (partition `local`): an array of jobs,
jobs in their image pulled from the registry (also from a saved plan), an apply SIGKILLed while its jobs are
queued (the next plan waits for them, nothing runs twice), and a job scancel-ed outside madengine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from madengine.backends.base import workspace_id
from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry
from tests.infra.slurm import SlurmCluster, slurm_cluster  # noqa: F401 (fixture)

RUN_SH = 'echo "size $2"\nsleep "${SLEEP:-0}"\necho "performance: $2 x"\n'


def project(tmp_path: Path, target: str, *, sizes: str = "[1, 2, 3, 4, 5, 6, 7, 8]", extra: str = "",
            model: str = "") -> Path:
    root = tmp_path / "project"
    (root / "scripts" / "m").mkdir(parents=True, exist_ok=True)
    (root / "scripts" / "m" / "run.sh").write_text(RUN_SH)
    (root / "madfile.yaml").write_text(
        f"version: 1\n{extra}models:\n  - {{name: m, scripts: scripts/m/run.sh, n_gpus: 0, params: {{size: {sizes}}}"
        f"{model}}}\ntargets:\n  hpc: {{backend: slurm, partition: local, shared_dir: {tmp_path / 'shared'}, "
        f"{target}}}\n")
    return root


@pytest.fixture
def env(slurm_cluster: SlurmCluster) -> dict[str, str]:  # noqa: F811
    return {k: slurm_cluster.env[k] for k in ("SLURM_CONF", "DOCKER_HOST") if k in slurm_cluster.env}


def submissions(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "shared").glob("*/jobs/*.sbatch"))


def apply_until_queued(root: Path, env: dict[str, str], cluster: SlurmCluster, sleep: int, jobs: int,
                       state: str = "running") -> tuple[subprocess.Popen[str], list[str]]:
    """`madengine apply --yes` started with each job sleeping `sleep` s, and the SLURM ids of its `jobs` jobs
    once squeue lists them in `state` (all: any state)."""
    prefix = f"madengine-{workspace_id(root / '.madengine' / 'state.db')}-"
    full_env = {**os.environ, **env, "SLEEP": str(sleep), "PYTHONPATH": str(REPO_ROOT)}
    apply = subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root, env=full_env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while True:
        lines = cluster.run(["squeue", "-h", "-r", "-t", state, "-o", "%i %j"]).stdout.split("\n")
        ids = [line.split()[0] for line in lines if line.strip() and line.split()[1].startswith(prefix)]
        if len(ids) == jobs:
            return apply, ids
        assert apply.poll() is None and time.monotonic() < deadline, "the apply ended before its jobs were queued"
        time.sleep(0.1)


def test_an_array_of_eight_then_nothing_to_do(run_cli: RunCli, tmp_path: Path, env: dict[str, str]) -> None:
    root = project(tmp_path, "container: none")
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert "Apply success: 8 SUCCESS" in out
    assert len(submissions(tmp_path)) == 1, "the eight jobs are one job array"
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0 and "8 unchanged" in out, out + err
    code, out, _ = run_cli("results", "--json", cwd=root, env=env)
    assert sorted(p["performance"] for row in json.loads(out) for p in row["perf"]) == [float(n) for n in range(1, 9)]


@pytest.mark.docker  # built here, pushed, pulled by the job's node
def test_jobs_in_their_image_and_a_saved_plan_later(run_cli: RunCli, tmp_path: Path, env: dict[str, str],
                                                    registry: Registry) -> None:
    root = project(tmp_path, "container: docker", sizes="[1, 2]", extra=f"registry: {registry.address}\n",
                   model=", dockerfile: docker/m")
    (root / "docker").mkdir()
    (root / "docker" / "m.ubuntu.none.Dockerfile").write_text(  # an image of this test's own
        f"FROM {registry.base_image}\nLABEL test={uuid.uuid4().hex}\n")
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert "Apply success: 4 SUCCESS" in out  # image, push, two jobs
    # A plan saved now has nothing to do with the image: its job still finds it in the registry.
    madfile = root / "madfile.yaml"
    madfile.write_text(madfile.read_text().replace("size: [1, 2]", "size: [1, 2, 3]"))
    code, out, err = run_cli("plan", "-o", "plan.json", cwd=root, env=env)
    assert code == 0 and "1 to run" in out, out + err
    code, out, err = run_cli("apply", "plan.json", "--yes", cwd=root, env=env)
    assert code == 0 and "Apply success: 1 SUCCESS" in out, out + err


def test_a_killed_applys_jobs_are_waited_for_and_never_run_twice(run_cli: RunCli, tmp_path: Path,
                                                                  env: dict[str, str],
                                                                  slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    root = project(tmp_path, "container: none", sizes="[1, 2]")
    apply, _ = apply_until_queued(root, env, slurm_cluster, sleep=8, jobs=2, state="all")
    time.sleep(1)  # its handles are recorded the moment sbatch answers
    apply.send_signal(signal.SIGKILL)
    apply.communicate(timeout=30)
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert code == 0, out + err
    assert out.count("~ wait job:m[size=") == 2 and "(slurm " in out, out
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0 and "Apply success: 2 SUCCESS" in out, out + err
    assert len(submissions(tmp_path)) == 1, "nothing was submitted twice"


def test_a_job_cancelled_outside_madengine_is_replanned_with_why(run_cli: RunCli, tmp_path: Path,
                                                                  env: dict[str, str],
                                                                  slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    root = project(tmp_path, "container: none", sizes="[1]")
    apply, ids = apply_until_queued(root, env, slurm_cluster, sleep=60, jobs=1)
    slurm_cluster.cancel(*ids)
    out, _ = apply.communicate(timeout=60)
    assert apply.returncode == 3, out
    assert f"slurm {ids[0]} CANCELLED" in out and "cancelled outside madengine" in out, out
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert code == 0 and "cancelled outside madengine" in out and "--rerun-failed" in out, out + err


def test_ctrl_c_cancels_the_submitted_jobs(run_cli: RunCli, tmp_path: Path, env: dict[str, str],
                                           slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    root = project(tmp_path, "container: none", sizes="[1, 2]")
    apply, ids = apply_until_queued(root, env, slurm_cluster, sleep=120, jobs=2)
    apply.send_signal(signal.SIGINT)
    out, _ = apply.communicate(timeout=90)
    assert apply.returncode == 130, out
    assert slurm_cluster.states(ids[0].split("_")[0]) == dict.fromkeys(sorted(ids), "CANCELLED")
    code, out, err = run_cli("results", "--json", cwd=root, env=env)
    assert code == 0 and sorted(row["status"] for row in json.loads(out)) == ["INTERRUPTED"] * 2, out + err
