"""`madengine generate k8s -o DIR`, and the kubernetes target at validate."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import RunCli

pytestmark = pytest.mark.kubernetes

CONFIG, USAGE = 5, 4
MADFILE = """\
version: 1
registry: localhost:5000
models:
  - {name: dummy, dockerfile: docker/dummy, scripts: scripts/dummy/run.sh, n_gpus: 1, multiple_results: perf.csv,
     params: {batch: [8, 16]}}
contexts:
  mi300x: {gpu_vendor: AMD, docker_env_vars: {HSA_ENABLE_SDMA: "0", HF_TOKEN: "${env:MY_HF_TOKEN}"}}
targets:
  k8s:
    backend: kubernetes
    namespace: bench
    node_selector: {amd.com/gpu.product-name: MI300X}
    tolerations: [{key: amd.com/gpu, operator: Exists, effect: NoSchedule}]
    image_pull_secret: regcred
    ttl_seconds: 600
"""
ENV = {"MY_HF_TOKEN": "hf_never_written"}


def project(tmp_path: Path, madfile: str = MADFILE) -> Path:
    root = tmp_path / "proj"
    for rel, text in {"madfile.yaml": madfile, "scripts/dummy/run.sh": 'echo "performance: 1 x"\n',
                      "docker/dummy.ubuntu.amd.Dockerfile": "FROM busybox\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


def test_generate_writes_one_valid_file_per_job(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "k8s", "-o", "out", cwd=root, env=ENV)
    assert (code, err) == (0, ""), err
    assert out == "out/k8s/: 2 manifest files (target k8s)\n"
    files = sorted((root / "out" / "k8s").iterdir())
    assert [f.name[:-14] for f in files] == ["mad-dummy-batch-16-mi300x-k8s-1", "mad-dummy-batch-8-mi300x-k8s-1"]
    for f in files:
        text = f.read_text()
        assert "hf_never_written" not in text
        assert text.startswith("# job:dummy[batch=")
        assert "--from-literal=HF_TOKEN=..." in text.splitlines()[1]
        docs = list(yaml.safe_load_all(text))
        assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]
        for doc in docs:
            kubernetes_validate.validate(doc, "1.32", strict=True)
            assert doc["metadata"]["namespace"] == "bench"
        pod = docs[1]["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"].startswith("localhost:5000/madengine/dummy.ubuntu.amd:")
        assert pod["containers"][0]["resources"] == {"limits": {"amd.com/gpu": 1}}
        assert pod["nodeSelector"] == {"amd.com/gpu.product-name": "MI300X"}
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        assert docs[1]["spec"]["ttlSecondsAfterFinished"] == 600
        assert docs[0]["data"] == {"0000.run.sh": 'echo "performance: 1 x"\n'}


def test_generate_writes_what_the_backend_creates(run_cli: RunCli, tmp_path: Path) -> None:
    """The same render functions: a file is the backend's manifests for the job, dumped."""
    from madengine.backends import kubernetes_render as render
    from madengine.backends.base import Workspace
    from madengine.backends.kubernetes import KubernetesBackend
    from madengine.backends.specs import job_spec
    from madengine.madfile.model import KubernetesTarget
    from madengine.pipeline import lock_project

    root = project(tmp_path)
    assert run_cli("generate", "k8s", "-o", "out", cwd=root, env=ENV)[0] == 0
    locked = lock_project(root / "madfile.yaml", resolve=lambda ref: None)
    target = locked.project.targets["k8s"]
    assert isinstance(target, KubernetesTarget)
    b = KubernetesBackend("k8s", target, Workspace(root=root, state_dir=tmp_path / "state", workspace_id="generated"),
                          registry=locked.project.registry)
    for address in locked.lock["jobs"]:
        spec = job_spec(address, locked.lock, locked.project, environ=ENV)
        written = (root / "out" / "k8s" / f"{render.job_name(spec)}.yaml").read_text()
        assert list(yaml.safe_load_all(written)) == b.manifests(spec)


def test_generate_namespace_json_and_chdir(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "k8s", "-C", "proj", "--output-dir", "m", "--namespace", "team-a", "--json",
                             cwd=tmp_path, env=ENV)
    assert (code, err) == (0, ""), err
    files = json.loads(out)["targets"]["k8s"]["files"]
    assert len(files) == 2 and all(f.startswith("proj/m/k8s/") for f in files)
    for f in (root / "m" / "k8s").iterdir():
        assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(f.read_text())} == {"team-a"}


def test_generate_refuses_a_bad_namespace(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "k8s", "-o", "out", "--namespace", "Team_A", cwd=root, env=ENV)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: --namespace 'Team_A' is not a Kubernetes namespace name (hint: ")


def test_generate_a_multi_node_job(run_cli: RunCli, tmp_path: Path) -> None:
    madfile = MADFILE.replace("n_gpus: 1,", "n_gpus: 1, nnodes: 2,")
    assert madfile != MADFILE
    root = project(tmp_path, madfile)
    assert run_cli("generate", "k8s", "-o", "out", cwd=root, env=ENV)[0] == 0
    for f in (root / "out" / "k8s").iterdir():
        docs = list(yaml.safe_load_all(f.read_text()))
        assert [d["kind"] for d in docs] == ["ConfigMap", "Job", "Service"]
        for doc in docs:
            kubernetes_validate.validate(doc, "1.32", strict=True)


def test_generate_without_a_kubernetes_target_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\nmodels: []\n")
    code, out, err = run_cli("generate", "k8s", "-o", "out", cwd=root)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: no jobs on a kubernetes target (hint: ")


def test_a_kubernetes_target_without_a_registry_is_a_config_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, MADFILE.replace("registry: localhost:5000\n", ""))
    for command in (("validate",), ("generate", "k8s", "-o", "out")):
        code, out, err = run_cli(*command, cwd=root, env=ENV)
        assert (code, out) == (CONFIG, "")
        assert err == ("madfile.yaml:9:14: error: targets.k8s.backend: target `k8s` (kubernetes) pulls its images "
                       "from a registry, and the madfile names none (hint: set `registry:` at the top of the madfile "
                       "(e.g. `registry: localhost:5000`): images are pushed there and the cluster's nodes pull "
                       "them)\n"), err


@pytest.mark.parametrize(("key", "error"), [
    ("namespace: Bench", "madfile.yaml:11:16: error: targets.k8s.namespace: `Bench` is not a Kubernetes namespace "
                         "name"),
    ("gpu_resource: 'amd gpu'", "madfile.yaml:11:19: error: targets.k8s.gpu_resource: `amd gpu` is not a "
                                "Kubernetes qualified name"),
    ("node_selector: {a: 'b c'}", "madfile.yaml:11:20: error: targets.k8s.node_selector: `b c` (of `a`) is not a "
                                  "Kubernetes label value"),
    ("tolerations: [{key: k, tolerationSeconds: 5}]",
     "madfile.yaml:11:28: error: targets.k8s.tolerations[0].tolerationSeconds: unknown key `tolerationSeconds` "
     "(hint: did you mean `toleration_seconds`?)"),
    ("image_pull_secret: {name: x}", "madfile.yaml:11:24: error: targets.k8s.image_pull_secret: expected a string, "
                                     "found a mapping"),
    ("rerun_on: [rocm]", "madfile.yaml:11:5: error: targets.k8s.rerun_on: unknown key `rerun_on`"),
    ("pod_template: {}", "madfile.yaml:11:5: error: targets.k8s.pod_template: unknown key"),
])
def test_the_kubernetes_target_is_strict(run_cli: RunCli, tmp_path: Path, key: str, error: str) -> None:
    text = MADFILE[:MADFILE.index("    namespace: bench")] + f"    {key}\n"
    root = project(tmp_path, text)
    code, out, err = run_cli("validate", cwd=root, env=ENV)
    assert (code, out) == (CONFIG, ""), err
    assert err.startswith(error), err
    assert "Traceback" not in err


def test_placement_keys_are_not_hashed(run_cli: RunCli, tmp_path: Path) -> None:
    """Another cluster, namespace or clean-up does not rerun jobs; other nodes or devices do."""
    def hashes(madfile: str) -> dict[str, str]:
        root = project(tmp_path / str(len(list(tmp_path.iterdir()))), madfile)
        assert run_cli("lock", cwd=root, env=ENV)[0] == 0
        return {a: j["hash"] for a, j in json.loads((root / "madengine.lock").read_text())["jobs"].items()}

    base = hashes(MADFILE)
    moved = MADFILE.replace("namespace: bench", "namespace: other\n    context: prod\n    kubeconfig: ~/.kube/x\n"
                            "    service_account: runner").replace("ttl_seconds: 600", "ttl_seconds: 5")
    assert hashes(moved) == base
    assert hashes(MADFILE.replace("MI300X}", "MI325X}")) != base
    assert hashes(MADFILE.replace("namespace: bench", "gpu_resource: amd.com/gpu-xgmi")) != base


def test_generate_golden_is_reviewable(run_cli: RunCli, tmp_path: Path) -> None:
    """The files hold scripts as literal blocks (readable in review), keys in the API's usual order."""
    root = project(tmp_path)
    assert run_cli("generate", "k8s", "-o", "out", cwd=root, env=ENV)[0] == 0
    text = sorted((root / "out" / "k8s").iterdir())[0].read_text()
    assert "\n        - |\n          src=$$1 dst=$$2 csv=$$3 mark=$$4\n" in text
    assert text.index("apiVersion: v1\nkind: ConfigMap") < text.index("apiVersion: batch/v1\nkind: Job")
    assert os.linesep == "\n"


def test_a_kubernetes_target_without_the_client_is_refused_at_validate(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['kubernetes'] = None\n")
    from tests.conftest import REPO_ROOT

    code, out, err = run_cli("validate", cwd=root, env={**ENV, "PYTHONPATH": f"{hide}{os.pathsep}{REPO_ROOT}"})
    assert (code, out) == (CONFIG, "")
    assert err == ("madfile.yaml:10:14: error: targets.k8s.backend: backend `kubernetes` cannot work here: the "
                   "Python module `kubernetes` is not installed (hint: pip install 'madengine[kubernetes]')\n"), err
