"""`madengine runner slurm` on the real SLURM of dev/services (partition `local`), in a MAD package with ROCm's
SLURM inventory: the build manifest's models run as SLURM jobs pulling the pushed images, the report says how;
the scripts `generate slurm --manifest-file --inventory` wrote for review are checked to be what is submitted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import RunCli
from tests.infra.services import Registry, service_env
from tests.infra.slurm import SlurmCluster, slurm_cluster  # noqa: F401 (fixture)
from tests.runner.test_runner_ssh import MODELS, build, cpu_package, report

INVENTORY = """\
slurm_cluster:
  cluster_name: dev
  partitions:
    - {{name: local, max_time: "0:30:00", default_gpu_count: 0}}
  workspace:
    shared_filesystem: {shared}
  environment: {{MAD_BENCH_NOTE: from-the-inventory}}
"""


def test_runner_slurm_runs_the_manifest_checks_the_reviewed_scripts_and_reports(
        run_cli: RunCli, tmp_path: Path, registry: Registry, slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    root = cpu_package(tmp_path)
    env = {**service_env(), **slurm_cluster.env}
    (root / "cluster.yml").write_text(INVENTORY.format(shared=tmp_path / "shared"))
    build(run_cli, root, registry, env)
    code, out, err = run_cli("generate", "slurm", "--manifest-file", "build_manifest.json", "--inventory",
                             "cluster.yml", "--output-dir", "reviewed", cwd=root, env=env)
    assert code == 0, out + err
    scripts = sorted((root / "reviewed" / "slurm" / "jobs").glob("*.sbatch"))
    assert scripts and all("--partition=local" in p.read_text() for p in scripts)

    code, out, err = run_cli("runner", "slurm", "-i", "cluster.yml", "--job-scripts-dir", "reviewed", cwd=root,
                             env=env, timeout=600)
    assert code == 0, out + err
    data = report(root)
    assert (data["total_nodes"], data["successful_executions"], data["failed_executions"]) == (1, 5, 0), data
    results = {r["model_tag"]: r for r in data["node_results"]}
    assert set(results) == set(MODELS.split(","))
    assert results["dummy"]["performance_metrics"] == {"performance": 123.4, "metric": "samples_per_second"}
    assert {r["target"] for r in results.values()} == {"slurm"}

    code, out, err = run_cli("runner", "slurm", "-i", "cluster.yml", cwd=root, env=env, timeout=300)
    assert code == 0 and "No changes" in out, out + err

    edited = scripts[0]
    edited.write_text(edited.read_text().replace("--partition=local", "--partition=other"))
    code, out, err = run_cli("runner", "slurm", "-i", "cluster.yml", "--job-scripts-dir", "reviewed", cwd=root,
                             env=env, timeout=300)
    assert code == 1, out + err
    assert f"reviewed/slurm/jobs/{edited.name} is not what the runner submits now" in err
    assert "madengine generate slurm" in err and "Traceback" not in err


def test_generate_from_a_manifest_needs_its_inventory(run_cli: RunCli, tmp_path: Path) -> None:
    root = cpu_package(tmp_path)
    (root / "build_manifest.json").write_text(json.dumps({"built_images": {}, "built_models": {}}))
    code, out, err = run_cli("generate", "slurm", "--manifest-file", "build_manifest.json", "-o", "x", cwd=root)
    assert code == 4 and "--manifest-file needs --inventory too" in err, out + err
    code, out, err = run_cli("generate", "slurm", "--environment", "hpc", "-o", "x", cwd=root)
    assert code == 4 and "--environment is not supported" in err, out + err


def test_runner_slurm_with_tags_builds_pushes_to_the_registry_given_and_runs(
        run_cli: RunCli, tmp_path: Path, registry: Registry, slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    root = cpu_package(tmp_path)
    env = {**service_env(), **slurm_cluster.env}
    (root / "cluster.yml").write_text(INVENTORY.format(shared=tmp_path / "shared"))
    code, out, err = run_cli("runner", "slurm", "-i", "cluster.yml", "--tags", "dummy", cwd=root, env=env)
    assert code == 4 and "must be in a registry its nodes pull from" in err and "--registry" in err, out + err
    code, out, err = run_cli("runner", "slurm", "-i", "cluster.yml", "--tags", "dummy", "--registry",
                             registry.address, cwd=root, env=env, timeout=600)
    assert code == 0, out + err
    assert report(root)["successful_executions"] == 1
