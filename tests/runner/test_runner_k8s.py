"""`madengine runner k8s` with ROCm's Kubernetes inventory, against the API emulator (the test plays the Job
controller and runs each pod here): the build manifest's models become Jobs pulling the pushed images, the
report says how, and the manifests `generate k8s --manifest-file --inventory` wrote for review are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.infra.kube import KubeFixture, kube  # noqa: F401 (fixture)
from tests.infra.services import Registry, service_env
from tests.runner.test_runner_ssh import MODELS, build, cpu_package, report

pytestmark = pytest.mark.kubernetes


def test_runner_k8s_runs_the_manifest_checks_the_reviewed_manifests_and_reports(
        run_cli: RunCli, tmp_path: Path, registry: Registry, kube: KubeFixture) -> None:  # noqa: F811
    root = cpu_package(tmp_path)
    env = service_env()
    (root / "k8s.yml").write_text(f"pods:\n  - name: bench\n    gpu_vendor: AMD\nkubeconfig: {kube.kube.kubeconfig}\n")
    build(run_cli, root, registry, env)
    code, out, err = run_cli("generate", "k8s", "--manifest-file", "build_manifest.json", "--inventory", "k8s.yml",
                             "--namespace", "bench", "-o", "reviewed", cwd=root, env=env)
    assert code == 0, out + err
    manifests = sorted((root / "reviewed" / "kubernetes").glob("*.yaml"))
    assert len(manifests) == 5 and all("namespace: bench" in p.read_text() for p in manifests)

    code, out, err = run_cli("runner", "k8s", "-i", "k8s.yml", "--namespace", "bench", "--manifests-dir", "reviewed",
                             cwd=root, env=env, timeout=600)
    assert code == 0, out + err
    data = report(root)
    assert (data["total_nodes"], data["successful_executions"], data["failed_executions"]) == (1, 5, 0), data
    results = {r["model_tag"]: r for r in data["node_results"]}
    assert set(results) == set(MODELS.split(",")) and {r["target"] for r in results.values()} == {"kubernetes"}
    assert results["dummy"]["performance_metrics"] == {"performance": 123.4, "metric": "samples_per_second"}

    code, out, err = run_cli("runner", "k8s", "-i", "k8s.yml", "--namespace", "other", "--manifests-dir", "reviewed",
                             cwd=root, env=env, timeout=300)
    assert code == 1 and "is not what the runner submits now" in err, out + err  # reviewed for another namespace
