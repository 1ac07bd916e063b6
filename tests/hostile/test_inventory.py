"""Hostile inventory files (`inventory:` of an ssh or ansible target): each a config error naming the
inventory (or the madfile's `inventory:` that names it), at the position, within the madfile's budgets;
never a hang, a traceback or an internal error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, RunCli

CONFIG = 5
FUTURE_BACKENDS = REPO_ROOT / "tests" / "fixtures" / "plugins"  # registers `ssh` by name (not shipped yet)
MADFILE = "version: 1\ntargets:\n  lab: {backend: ssh, inventory: nodes.yml}\n"


def validate(tmp_path: Path, run_cli: RunCli, inventory: bytes | None, **env: str) -> str:
    (tmp_path / "madfile.yaml").write_text(MADFILE)
    if inventory is not None:
        (tmp_path / "nodes.yml").write_bytes(inventory)
    code, out, err = run_cli("validate", cwd=tmp_path, timeout=60,
                             env={"PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(FUTURE_BACKENDS))), **env})
    assert (code, out) == (CONFIG, ""), (code, out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def test_an_alias_bomb(tmp_path: Path, run_cli: RunCli) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    err = validate(tmp_path, run_cli, bomb.encode())
    assert "nodes.yml:6:4: error: YAML aliases expand this to more than 200,000 values" in err


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes:\n" + b"  - {hostname: a, address: h}\n" * 20_000)
    assert "targets.lab.inventory: nodes.yml is 586 KB; the limit is 64 KB" in err
    assert "MADENGINE_MAX_MADFILE_BYTES" in err


def test_not_utf8(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes:\n  - {hostname: \xff, address: h}\n")
    assert "nodes.yml:2:16: error: not valid UTF-8: byte 0xff cannot be decoded" in err


def test_a_directory(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "nodes.yml").mkdir()
    err = validate(tmp_path, run_cli, None)
    assert "madfile.yaml:3:34: error: targets.lab.inventory: nodes.yml is a directory" in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_not_opened(tmp_path: Path, run_cli: RunCli) -> None:
    os.mkfifo(tmp_path / "nodes.yml")  # reading it would wait for a writer forever
    err = validate(tmp_path, run_cli, None)
    assert "madfile.yaml:3:34: error: targets.lab.inventory: nodes.yml is not a regular file" in err


def test_wrong_types_and_unknown_keys_at_once(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes:\n  - hostname: [a]\n    address: 10.0.0.5\n    port: '22'\n"
                                      b"    sudo: true\n")
    assert "nodes.yml:2:15: error: nodes[0].hostname: expected a string, found a list" in err
    assert "nodes.yml:4:11: error: nodes[0].port: expected an integer, found the string '22'" in err
    assert "nodes.yml:5:5: error: nodes[0].sudo: unknown key `sudo`" in err


def test_duplicate_host_names(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes:\n  - {hostname: gpu-1, address: a}\n  - {hostname: gpu-1, address: b}\n")
    assert "nodes.yml:3:16: error: nodes[1].hostname: duplicate host name `gpu-1` (first at line 2:16)" in err


def test_duplicate_keys_and_tags(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes:\n  - hostname: a\n    hostname: b\n    address: h\n")
    assert "nodes.yml:3:5: error: nodes[0].hostname: duplicate key `hostname` (first defined at nodes.yml:2:5)" in err
    err = validate(tmp_path, run_cli, b"nodes:\n  - hostname: a\n    address: !!python/name:os.system\n")
    assert "nodes.yml:3:14: error: nodes[0].address: unsupported YAML tag `!!python/name:os.system`" in err


def test_nesting_past_the_limit(tmp_path: Path, run_cli: RunCli) -> None:
    err = validate(tmp_path, run_cli, b"nodes: " + b"[" * 200 + b"]" * 200 + b"\n")
    assert "nodes.yml:1:" in err and "nested more than 64 levels deep" in err


def test_json_of_the_wrong_shape(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "madfile.yaml").write_text(MADFILE.replace("nodes.yml", "nodes.json"))
    (tmp_path / "nodes.json").write_text('[{"hostname": "a", "address": "h"}]')
    code, _, err = run_cli("validate", cwd=tmp_path,
                           env={"PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(FUTURE_BACKENDS)))})
    assert code == CONFIG and "nodes.json:1:1: error: the top level must be a mapping with `nodes:`, found a list" \
        in err, err


def test_lock_reports_the_inventory_too(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "madfile.yaml").write_text(MADFILE)
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {hostname: a, address: h, gpu_count: -1}\n")
    code, _, err = run_cli("lock", cwd=tmp_path,
                           env={"PYTHONPATH": os.pathsep.join((str(REPO_ROOT), str(FUTURE_BACKENDS)))})
    assert code == CONFIG and "nodes.yml:2:42: error: nodes[0].gpu_count: must be at least 0, found -1" in err, err
    assert not (tmp_path / "madengine.lock").exists()
