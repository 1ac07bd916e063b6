"""`runner ssh|ansible` -> a madfile: one target of the inventory's nodes, the nodes' GPU vendor, parallelism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from madengine.compat.runner import RunnerArgs, gpu_vendor, madfile_text, parallelism
from madengine.errors import UsageError
from madengine.madfile.model import Host, Madfile


def hosts(*specs: tuple[str, int, str]) -> list[Host]:
    return [Host(name=name, address=f"10.0.0.{i}", gpus=gpus, gpu_vendor=vendor)  # type: ignore[arg-type]
            for i, (name, gpus, vendor) in enumerate(specs, 1)]


def test_one_target_of_the_inventory_and_the_models_by_tag(tmp_path: Path) -> None:
    nodes = hosts(("n1", 0, "AMD"), ("n2", 0, "AMD"), ("n3", 0, "AMD"))
    inventory = tmp_path / "nodes.yml"
    for backend in ("ssh", "ansible"):
        args = RunnerArgs("ssh" if backend == "ssh" else "ansible", inventory, nodes,
                          ["dummy", "dummy_perf:batch_size=8"], registry="localhost:5000")
        data = json.loads(madfile_text(args))
        assert data["targets"] == {backend: {"backend": backend, "inventory": str(inventory),
                                             "max_parallel_per_host": 1}}
        assert data["models"] == [{"select": ["dummy", "dummy_perf:batch_size=8"]}]
        assert data["registry"] == "localhost:5000" and data["package"] == "."
        assert data["contexts"] == {"default": {"gpu_vendor": "NONE", "guest_os": "UBUNTU"}}
        Madfile.model_validate(data)  # a valid madfile: its target is an ssh/ansible target with an inventory


def test_the_context_is_the_gpu_nodes_vendor() -> None:
    assert gpu_vendor(hosts(("a", 0, "AMD"), ("b", 0, "NVIDIA"))) == "NONE"  # no GPUs: their vendor is moot
    assert gpu_vendor(hosts(("a", 8, "NVIDIA"), ("b", 0, "AMD"))) == "NVIDIA"
    assert gpu_vendor(hosts(("a", 8, "AMD"), ("b", 4, "AMD"))) == "AMD"
    with pytest.raises(UsageError, match=r"several vendors \(AMD: a; NVIDIA: b, c\)"):
        gpu_vendor(hosts(("a", 8, "AMD"), ("b", 4, "NVIDIA"), ("c", 1, "NVIDIA")))


def test_one_job_per_node_by_default_else_spread_evenly(tmp_path: Path) -> None:
    nodes = hosts(("n1", 0, "AMD"), ("n2", 0, "AMD"), ("n3", 0, "AMD"))
    assert parallelism(RunnerArgs("ssh", tmp_path, nodes, ["x"])) == (3, 1)
    assert parallelism(RunnerArgs("ssh", tmp_path, nodes, ["x"], parallelism=1)) == (1, 1)
    assert parallelism(RunnerArgs("ssh", tmp_path, nodes, ["x"], parallelism=7)) == (7, 3)
    data = json.loads(madfile_text(RunnerArgs("ssh", tmp_path, nodes, ["x"], parallelism=7)))
    assert data["targets"]["ssh"]["max_parallel_per_host"] == 3


def test_no_tags_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no --tags"):
        madfile_text(RunnerArgs("ssh", tmp_path, hosts(("n1", 0, "AMD")), []))
