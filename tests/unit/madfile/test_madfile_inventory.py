"""`inventory:` reads ROCm madengine's SSH/Ansible inventory into the same typed hosts as `hosts:`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from madengine.errors import ConfigError
from madengine.madfile.inventory import read_inventory, target_hosts
from madengine.madfile.model import Host, SshTarget
from tests.unit.madfile.conftest import Errors, Load, at, one

# ROCm madengine's documented example (its `labels` left out: madengine refuses them).
ROCM_EXAMPLE = """\
nodes:
  - hostname: "gpu-node-1"
    address: "192.168.1.101"
    port: 22
    username: "madengine"
    ssh_key_path: "~/.ssh/id_rsa"
    gpu_count: 4
    gpu_vendor: "AMD"
    environment:
      ROCR_VISIBLE_DEVICES: "0,1,2,3"

  - hostname: "gpu-node-2"
    address: "192.168.1.102"
    gpu_count: 8
"""

MADFILE = "version: 1\ntargets:\n  lab: {backend: ssh, inventory: %s}\n"


def test_the_rocm_example_maps_to_hosts(tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text(ROCM_EXAMPLE)
    first, second = read_inventory(tmp_path / "nodes.yml")
    assert first == Host(address="192.168.1.101", port=22, user="madengine", key="~/.ssh/id_rsa", gpus=4,
                         name="gpu-node-1", env={"ROCR_VISIBLE_DEVICES": "0,1,2,3"}, gpu_vendor="AMD")
    # ROCm madengine's defaults: port 22, username root, no key, one GPU, AMD.
    assert second == Host(address="192.168.1.102", port=22, user="root", key=None, gpus=8, name="gpu-node-2",
                          env={}, gpu_vendor="AMD")


def test_json_and_gpu_nodes_are_read(tmp_path: Path) -> None:
    nodes = [{"hostname": "n1", "address": "10.0.0.1", "gpu_count": 2}]
    (tmp_path / "inv.json").write_text(json.dumps({"gpu_nodes": nodes}, indent="\t"))
    (host,) = read_inventory(tmp_path / "inv.json")
    assert (host.name, host.address, host.gpus) == ("n1", "10.0.0.1", 2)


def test_json_syntax_errors_are_json_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inv.json").write_text('{"nodes": [\n  {"hostname": "n1",}\n]}')
    with pytest.raises(ConfigError) as info:
        read_inventory(tmp_path / "inv.json")
    d = one(list(info.value.diagnostics))
    assert d.message.startswith("invalid JSON: ") and (d.file, d.line) == ("inv.json", 2)


def test_target_hosts_names_and_resolves_keys(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "nodes.yml").write_text(
        "nodes:\n  - {hostname: a, address: h1, ssh_key_path: keys/id}\n  - {hostname: b, address: h2, "
        "ssh_key_path: ~/id}\n  - {hostname: c, address: h3, ssh_key_path: /k}\n")
    hosts = target_hosts(SshTarget(backend="ssh", inventory="lab/nodes.yml"), tmp_path)
    assert [(h.name, h.key) for h in hosts] == [
        ("a", str(tmp_path / "lab" / "keys" / "id")), ("b", os.path.expanduser("~/id")), ("c", "/k")]
    listed = target_hosts(SshTarget(backend="ssh", hosts=[Host(address="h9", key="k")]), tmp_path)
    assert [(h.name, h.key) for h in listed] == [("h9", str(tmp_path / "k"))]


def test_the_inventory_is_read_again_for_the_backend(tmp_path: Path) -> None:
    target = SshTarget(backend="ssh", inventory="nodes.yml")
    (tmp_path / "nodes.yml").write_text("nodes: [{hostname: a, address: h1}]\n")
    assert [h.name for h in target_hosts(target, tmp_path)] == ["a"]
    (tmp_path / "nodes.yml").write_text("nodes: [{hostname: a, address: h1}, {hostname: b, address: h2}]\n")
    assert [h.name for h in target_hosts(target, tmp_path)] == ["a", "b"]


def test_validate_reads_the_inventory(load: Load, tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text(ROCM_EXAMPLE)
    target = load(MADFILE % "nodes.yml").madfile.targets["lab"]
    assert isinstance(target, SshTarget) and target.inventory == "nodes.yml" and target.hosts is None


@pytest.mark.parametrize(("inventory", "message", "pos", "path"), [
    ("nodes:\n  - {hostname: a, address: h, labels: {tier: x}}\n", "unknown key `labels`", (2, 31),
     "nodes[0].labels"),
    ("nodes:\n  - {hostname: a, address: h, user: x}\n", "unknown key `user`", (2, 31), "nodes[0].user"),
    ("nodes:\n  - {hostname: a, address: h, gpu_count: '4'}\n", "expected an integer, found the string '4'",
     (2, 42), "nodes[0].gpu_count"),
    ("nodes:\n  - {hostname: a, address: h, port: true}\n", "expected an integer, found `true`", (2, 37),
     "nodes[0].port"),
    ("nodes:\n  - {hostname: a, address: h, gpu_vendor: amd}\n", "expected one of AMD, NVIDIA, INTEL, found "
     "the string 'amd'", (2, 43), "nodes[0].gpu_vendor"),
    ("nodes:\n  - {hostname: a, address: h, environment: {X: 1}}\n", "expected a string, found the number 1",
     (2, 48), "nodes[0].environment.X"),
    ("nodes:\n  - {hostname: a}\n", "missing required key `address`", (2, 5), "nodes[0]"),
    ("nodes:\n  - {hostname: a/b, address: h}\n", "`a/b` cannot name a host (its name names files and labels)",
     (2, 16), "nodes[0].hostname"),
    ("nodes: []\n", "must not be empty", (1, 1), "nodes"),
    ("hosts: [{hostname: a, address: h}]\n", "unknown key `hosts`", (1, 1), "hosts"),
    ("nodes: [{hostname: a, address: h}]\ngpu_nodes: [{hostname: b, address: h}]\n",
     "an inventory lists its hosts under exactly one of `nodes:` and `gpu_nodes:`", (1, 1), ""),
    ("nodes:\n  - {hostname: a, address: h1}\n  - {hostname: A, address: h2}\n",
     "duplicate host name `A` (first at line 2:16)", (3, 16), "nodes[1].hostname"),
])
def test_inventory_errors_name_the_inventory(errors: Errors, tmp_path: Path, inventory: str, message: str,
                                             pos: tuple[int, int], path: str) -> None:
    (tmp_path / "nodes.yml").write_text(inventory)
    d = one(errors(MADFILE % "nodes.yml"))
    assert (d.file, d.message, at(d), d.key_path) == ("nodes.yml", message, pos, path)


def test_a_key_in_the_inventory_is_never_shown(errors: Errors, tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - hostname: a\n    address: h\n    ssh_key_path: |\n"
                                        "      -----BEGIN OPENSSH PRIVATE KEY-----\n      c2VjcmV0\n")
    d = one(errors(MADFILE % "nodes.yml"))
    assert d.message == "`key` holds a private key itself; it must be the path of a key file"
    assert d.key_path == "nodes[0].ssh_key_path" and "c2VjcmV0" not in d.render()


def test_a_missing_inventory_is_shown_at_the_madfile(errors: Errors) -> None:
    d = one(errors(MADFILE % "nowhere.yml"))
    assert (d.file, d.key_path, at(d)) == ("madfile.yaml", "targets.lab.inventory", (3, 34))
    assert d.message == "the inventory nowhere.yml does not exist"


def test_many_inventory_errors_at_once(errors: Errors, tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {hostname: a, address: h, port: x}\n"
                                        "  - {hostname: b, address: h, colour: red}\n")
    assert [d.line for d in errors(MADFILE % "nodes.yml")] == [2, 3]


def test_inventory_vendor_is_checked_against_contexts(errors: Errors, tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {hostname: a, address: h}\n")  # AMD by default
    d = one(errors("version: 1\ncontexts:\n  nv: {gpu_vendor: NVIDIA}\n"
                   "targets:\n  lab: {backend: ssh, inventory: nodes.yml}\n"))
    assert d.message == "host `a` is declared gpu_vendor AMD, but context `nv` (NVIDIA) runs on it"
    assert (d.file, at(d)) == ("nodes.yml", (2, 5)) and "AMD unless it says otherwise" in d.hint


def test_a_secret_in_the_inventory_environment(errors: Errors, tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {hostname: a, address: h, environment: {HF_TOKEN: hf_abc}}\n")
    d = one(errors(MADFILE % "nodes.yml"))
    assert (d.file, d.key_path, at(d)) == ("nodes.yml", "nodes[0].environment.HF_TOKEN", (2, 55))
    assert d.message == "`HF_TOKEN` looks like a secret written as a literal value" and "hf_abc" not in d.render()
