"""`madengine runner ssh|ansible`: its flags, what it refuses, and its errors (before any host is reached).

Runs against the real hosts are in tests/infra/test_runner_ssh.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, RunCli


def package(tmp_path: Path) -> Path:
    root = tmp_path / "MAD"
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", root,
                    ignore=shutil.ignore_patterns("madfile.yaml", "madengine.lock", ".madengine"))
    return root


def test_help_names_the_runners_and_rocm_flags(run_cli: RunCli) -> None:
    code, out, _ = run_cli("runner", "--help")
    assert code == 0 and "ssh" in out and "ansible" in out
    for runner in ("ssh", "ansible"):
        code, out, _ = run_cli("runner", runner, "--help")
        assert code == 0
        for flag in ("--inventory", "--manifest-file", "--tags", "--report-output", "--timeout", "--parallelism",
                     "--live-output"):
            assert flag in out, (runner, flag)
        assert "--verbose" not in out and "--playbook" not in out  # refused: not advertised


@pytest.mark.parametrize("args", [
    ("ssh", "--verbose"), ("ssh", "-v"), ("ansible", "-v"), ("ssh", "--registry", "localhost:5000"),
    ("ssh", "--additional-context", "{}"), ("ansible", "--additional-context-file", "ctx.json"),
    ("ssh", "--node-selector", "gpu=mi300"), ("ansible", "--playbook", "madengine_distributed.yml"),
])
def test_rocm_flags_madengine_cannot_honour_are_refused_with_why(run_cli: RunCli, tmp_path: Path,
                                                                  args: tuple[str, ...]) -> None:
    code, out, err = run_cli("runner", *args, "--tags", "dummy", cwd=tmp_path)
    flag = {"-v": "--verbose"}.get(args[1], args[1])
    assert code == 4, out + err
    assert f"{flag} is not supported by madengine's runner" in err and "hint:" in err and "Traceback" not in err
    assert not (tmp_path / "runner_report.json").exists()


def test_unknown_flag_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    code, _, err = run_cli("runner", "ssh", "--inventry", "nodes.yml", cwd=tmp_path)
    assert code == 4 and "--inventry" in err


def test_a_bad_inventory_is_named_at_its_line_and_column(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    (root / "nodes.yml").write_text("nodes:\n  - hostname: gpu-1\n    adress: 10.0.0.5\n    gpu_count: many\n")
    code, out, err = run_cli("runner", "ssh", "--inventory", "nodes.yml", "--tags", "dummy", cwd=root)
    assert code == 5, out + err
    assert "nodes.yml:3:5: error: nodes[0].adress: unknown key `adress`" in err
    assert "nodes.yml:4:16: error: nodes[0].gpu_count: expected an integer" in err
    assert "Traceback" not in err and not (root / ".madengine").exists()


def test_a_missing_inventory_says_which_flag(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    code, _, err = run_cli("runner", "ansible", "--tags", "dummy", cwd=root)  # ROCm's default: inventory.yml
    assert code == 5 and "the inventory inventory.yml does not exist" in err and "--inventory FILE" in err


def nodes(root: Path, *specs: str) -> Path:
    path = root / "nodes.json"
    path.write_text(json.dumps({"nodes": [json.loads(s) for s in specs]}))
    return path


def test_a_missing_manifest_says_how_to_make_one(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    nodes(root, '{"hostname": "n1", "address": "10.0.0.1"}')
    code, _, err = run_cli("runner", "ssh", "-i", "nodes.json", cwd=root)  # neither --tags nor a manifest
    assert code == 4 and "the build manifest build_manifest.json does not exist" in err and "madengine build" in err
    code, _, err = run_cli("runner", "ssh", "-i", "nodes.json", "--manifest-file", "other.json", cwd=root)
    assert code == 4 and "other.json does not exist" in err


def test_nodes_of_two_gpu_vendors_are_refused(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    nodes(root, '{"hostname": "n1", "address": "10.0.0.1", "gpu_count": 8}',
          '{"hostname": "n2", "address": "10.0.0.2", "gpu_count": 8, "gpu_vendor": "NVIDIA"}')
    code, _, err = run_cli("runner", "ssh", "-i", "nodes.json", "--tags", "dummy", cwd=root)
    assert code == 4 and "several vendors (AMD: n1; NVIDIA: n2)" in err


def test_bad_numbers_are_usage_errors(run_cli: RunCli, tmp_path: Path) -> None:
    for args in (("--parallelism", "0"), ("--timeout", "-1"), ("-j", "x")):
        code, _, err = run_cli("runner", "ssh", "--tags", "dummy", *args, cwd=tmp_path)
        assert code == 4 and "Traceback" not in err, args


def test_a_report_output_that_is_a_directory_is_refused_before_anything_runs(run_cli: RunCli, tmp_path: Path) -> None:
    root = package(tmp_path)
    nodes(root, '{"hostname": "n1", "address": "10.0.0.1"}')
    (root / "out").mkdir()
    code, _, err = run_cli("runner", "ssh", "-i", "nodes.json", "--tags", "dummy", "--report-output", "out", cwd=root)
    assert code == 4 and "--report-output out is a directory" in err and not (root / ".madengine").exists()
