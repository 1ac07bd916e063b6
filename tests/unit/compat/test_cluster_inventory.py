"""ROCm's SLURM and Kubernetes runner inventories, read strictly into the target `runner slurm|k8s` means."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.compat.cluster_inventory import read_k8s_inventory, read_slurm_inventory
from madengine.errors import ConfigError

SLURM = """\
slurm_cluster:
  cluster_name: hpc
  login_node:
    hostname: login01
    address: login01.example.org
    username: me
    ssh_key_path: keys/id_ed25519
  partitions:
    - name: gpu
      max_time: "24:00:00"
      default_gpu_count: 8
      gpu_vendor: AMD
      account: proj42
      max_nodes: 4
      memory_per_node: 256G
  workspace:
    shared_filesystem: /scratch/me/madengine
  modules: [rocm/6.3]
  environment: {NCCL_DEBUG: INFO}
"""


def write(tmp_path: Path, text: str, name: str = "cluster.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_slurm_inventory_is_a_slurm_target_with_its_login_partition_and_shared_dir(tmp_path: Path) -> None:
    meant = read_slurm_inventory(write(tmp_path, SLURM))
    assert meant.name == "hpc" and meant.gpu_vendor == "AMD" and meant.env == {"NCCL_DEBUG": "INFO"}
    assert meant.target == {
        "backend": "slurm", "partition": "gpu", "shared_dir": "/scratch/me/madengine", "gpus_per_node": 8,
        "login": {"address": "login01.example.org", "port": 22, "user": "me",
                  "key": str(tmp_path / "keys" / "id_ed25519")},
        "time_limit": "24:00:00", "account": "proj42", "max_nodes": 4, "modules": ["rocm/6.3"],
        "extra_sbatch": ["--mem=256G"]}


def test_a_slurm_inventory_as_json_without_a_login_node_submits_here(tmp_path: Path) -> None:
    doc = {"slurm_cluster": {"partitions": [{"name": "debug"}], "workspace": {"shared_filesystem": "/tmp/x"}}}
    meant = read_slurm_inventory(write(tmp_path, json.dumps(doc, indent=2), "c.json"))
    assert "login" not in meant.target and meant.gpu_vendor == "NONE" and meant.name == "slurm"


@pytest.mark.parametrize(("text", "line", "message", "hint"), [
    (SLURM.replace("      account: proj42\n", "      account: proj42\n      gpu_types: [MI300X]\n"), 14,
     "unknown key `gpu_types`", "constraint"),
    (SLURM.replace("  modules:", "  execution: {max_retries: 3}\n  modules:"), 18, "unknown key `execution`",
     "retries"),
    (SLURM.replace("    - name: gpu\n", "    - name: gpu\n      partiton: x\n"), 10, "unknown key `partiton`", ""),
    (SLURM.replace("  workspace:\n    shared_filesystem: /scratch/me/madengine\n", ""), 1,
     "missing required key `workspace`", ""),
    (SLURM.replace("      account: proj42\n", "      account: proj42\n    - name: other\n"), 8,
     "lists several", "one target"),
])
def test_what_a_slurm_inventory_cannot_mean_is_refused_at_its_line(tmp_path: Path, text: str, line: int,
                                                                   message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_slurm_inventory(write(tmp_path, text))
    (d,) = caught.value.diagnostics
    assert d.file and d.file.endswith("cluster.yml") and d.line == line and message in d.message, d
    assert hint in d.hint, d


def test_a_k8s_inventory_is_a_kubernetes_target_with_its_gpu_resource_and_node_selector(tmp_path: Path) -> None:
    text = ("pods:\n  - name: bench\n    node_selector: {gpu-type: amd}\n"
            "    resources: {requests: {amd.com/gpu: \"2\"}}\n    gpu_vendor: AMD\nkubeconfig: kube/config\n")
    meant = read_k8s_inventory(write(tmp_path, text), namespace="prod")
    assert (meant.name, meant.gpu_vendor) == ("bench", "AMD")
    assert meant.target == {"backend": "kubernetes", "namespace": "prod", "gpu_resource": "amd.com/gpu",
                            "node_selector": {"gpu-type": "amd"}, "kubeconfig": str(tmp_path / "kube" / "config")}


def test_a_k8s_inventory_of_two_kinds_of_pod_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_k8s_inventory(write(tmp_path, "pods:\n  - name: a\n  - name: b\n"))
    (d,) = caught.value.diagnostics
    assert d.line == 1 and "kind of pod" in d.message


@pytest.mark.parametrize(("old", "new", "line"), [
    ('max_time: "24:00:00"', "max_time: 24h", 10),
    ("    - name: gpu\n", "    - name: gpu part\n", 9),
    ("memory_per_node: 256G", 'memory_per_node: "256 G"', 15),
])
def test_a_value_the_slurm_target_refuses_is_reported_at_the_inventory_line(tmp_path: Path, old: str, new: str,
                                                                          line: int) -> None:
    with pytest.raises(ConfigError) as caught:
        read_slurm_inventory(write(tmp_path, SLURM.replace(old, new)))
    (d,) = caught.value.diagnostics
    assert d.file and d.file.endswith("cluster.yml") and d.line == line, d
