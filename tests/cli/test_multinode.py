"""`nnodes` (ROCm madengine's multi-node key, and a madfile field): in the lock only when a job spans
several nodes (single-node locks keep their bytes), and refused at plan on a target that runs a job on
one host."""

from __future__ import annotations

import json
from pathlib import Path

from madengine.errors import ExitCode
from tests.conftest import RunCli


def project(root: Path, nnodes: int) -> Path:
    (root / "run.sh").write_text('echo "performance: 1 x"\n')
    (root / "madfile.yaml").write_text(
        "version: 1\n"
        f"models: [{{name: one, scripts: run.sh, n_gpus: 0}}, {{name: many, scripts: run.sh, n_gpus: 0, "
        f"nnodes: {nnodes}}}]\n"
        "targets: {lab: {backend: local}}\n")
    return root


def test_nnodes_is_locked_only_for_jobs_of_several_nodes(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, 1)
    assert run_cli("lock", cwd=root)[0] == 0
    single = json.loads((root / "madengine.lock").read_text())["jobs"]
    assert all("nnodes" not in j for j in single.values())
    project(root, 3)
    assert run_cli("lock", cwd=root)[0] == 0
    jobs = json.loads((root / "madengine.lock").read_text())["jobs"]
    assert jobs["job:many@default/lab#1"]["nnodes"] == 3
    assert jobs["job:one@default/lab#1"] == single["job:one@default/lab#1"]  # untouched, hash included
    assert jobs["job:many@default/lab#1"]["hash"] != single["job:many@default/lab#1"]["hash"]


def test_a_multi_node_job_on_a_one_host_target_is_refused_at_plan(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("plan", cwd=project(tmp_path, 2))
    assert code == ExitCode.CONFIG, out + err
    assert "job:many@default/lab#1: needs 2 nodes, and a local target runs a job on one host" in err
    assert "slurm or kubernetes" in err and "Traceback" not in err


def test_a_job_of_more_nodes_than_a_slurm_target_has_is_refused_at_plan(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text('echo "performance: 1 x"\n')
    (tmp_path / "madfile.yaml").write_text(
        "version: 1\nmodels: [{name: many, scripts: run.sh, n_gpus: 0, nnodes: 3}]\n"
        f"targets: {{hpc: {{backend: slurm, container: none, max_nodes: 2, shared_dir: {tmp_path / 'shared'}}}}}\n")
    code, out, err = run_cli("plan", cwd=tmp_path)
    assert code == ExitCode.CONFIG, out + err
    assert "job:many@default/hpc#1: needs 3 nodes; target 'hpc' has 2 (max_nodes)" in err, err
