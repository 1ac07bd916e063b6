"""Host facts end to end on the `local` backend, through the real CLI and the real probe: fake
`rocminfo` and `amd-smi` first on the PATH the probe runs with report a GPU architecture and a ROCm
version; apply records them; when the fake tools report another, `plan` reruns with old → new (or
not, as `rerun_on` says); models.json's `skip_gpu_arch` skips on a gfx908; `state show`,
`results --json` and perf.csv carry the facts. Without GPU tools (this machine), nothing reruns or
is skipped because of facts."""

from __future__ import annotations

import csv
import json
import os
import socket
import stat
import textwrap
from pathlib import Path

from madengine.facts import probe_local
from madengine.pipeline import realization
from tests.conftest import RunCli

HOST = socket.gethostname()
M, N = "job:m@cpu/here#1", "job:n@cpu/here#1"

ROCMINFO = """\
*******
Agent 1
*******
  Name:                    AMD EPYC 7402P 24-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    {arch}
  Marketing Name:          AMD Instinct MI250X/MI250
  Device Type:             GPU
"""


def tools(bin_dir: Path, *, arch: str = "gfx90a", rocm: str = "6.2.0") -> dict[str, str]:
    """Fake `rocminfo` (one GPU of `arch`) and `amd-smi` (`version`: ROCm `rocm`) in bin_dir; the env
    that puts them first on PATH."""
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "rocminfo": f"cat <<'END'\n{ROCMINFO.format(arch=arch)}END\n",
        "amd-smi": 'case "$1" in\n  version) echo "AMDSMI Tool: 24.6.2 | AMDSMI Library version: 24.6.2 | '
                   f'ROCm version: {rocm}" ;;\n  *) exit 2 ;;\nesac\n',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def project(root: Path, *, context: str = "{gpu_vendor: NONE}") -> Path:
    """Two models of a MAD package on `local`: m (skip_gpu_arch gfx906, gfx908) and n."""
    models = [{"name": name, "dockerfile": "docker/x", "scripts": "scripts/run.sh", "n_gpus": "1",
               "tags": ["t"], **extra} for name, extra in (("m", {"skip_gpu_arch": "gfx906, gfx908"}), ("n", {}))]
    (root / "pkg" / "scripts").mkdir(parents=True)
    (root / "pkg" / "models.json").write_text(json.dumps(models))
    (root / "pkg" / "scripts" / "run.sh").write_text("echo 'performance: 42 samples_per_second'\n")
    (root / "madfile.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        package: pkg
        models: [{{select: t}}]
        contexts: {{cpu: {context}}}
        targets: {{here: {{backend: local}}}}
        """))
    return root


def test_a_rocm_upgrade_reruns_what_succeeded_under_the_old_one(tmp_path: Path, run_cli: RunCli) -> None:
    root = project(tmp_path / "p")
    env = tools(tmp_path / "bin", arch="gfx90a", rocm="6.2.0")
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out + err
    env = tools(tmp_path / "bin", arch="gfx90a", rocm="6.3.1")
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 2, out + err
    assert f"~ rerun {M} ({HOST}: rocm 6.2.0 → 6.3.1)" in out.splitlines()
    assert f"~ rerun {N} ({HOST}: rocm 6.2.0 → 6.3.1)" in out.splitlines()
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out + err


def test_rerun_on_of_a_context_reaches_the_no_op_plan(tmp_path: Path, run_cli: RunCli) -> None:
    root = project(tmp_path / "p", context="{gpu_vendor: NONE, rerun_on: [gpu_arch]}")
    env = tools(tmp_path / "bin", arch="gfx90a", rocm="6.2.0")
    assert run_cli("apply", "--yes", cwd=root, env=env).code == 0
    # a fresh lock stands for the madfile: rerun_on comes from the freshness record
    r = realization(root / "madfile.yaml", locked=False, compile=False)
    assert r.project is None and r.rerun_on() == {("cpu", "here"): ("gpu_arch",)}
    env = tools(tmp_path / "bin", arch="gfx90a", rocm="6.3.1")
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out + err  # rocm does not count here
    env = tools(tmp_path / "bin", arch="gfx942", rocm="6.3.1")
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert f"~ rerun {N} ({HOST}: gpu_arch gfx90a → gfx942)" in out.splitlines(), out + err


def test_skip_gpu_arch_skips_on_a_gfx908(tmp_path: Path, run_cli: RunCli) -> None:
    root = project(tmp_path / "p")
    env = tools(tmp_path / "bin", arch="gfx908")
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert f"- skip {M} (gfx908 in skip_gpu_arch)" in out.splitlines(), out + err
    assert "Plan: 0 to build, 1 to run, 0 unchanged, 1 to skip." in out
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    code, out, err = run_cli("state", "show", M, "--json", cwd=root, env=env)
    [attempt] = json.loads(out)["attempts"]
    assert (attempt["status"], attempt["message"], attempt["log_path"]) == ("SKIPPED", "gfx908 in skip_gpu_arch",
                                                                            None)
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out + err
    assert f"- skipped {M} (gfx908 in skip_gpu_arch)" in out.splitlines()
    # on another architecture it runs
    code, out, err = run_cli("plan", cwd=root, env=tools(tmp_path / "bin", arch="gfx90a"))
    assert f"+ run {M} (skipped last time)" in out.splitlines(), out + err


def test_facts_are_shown_and_exported(tmp_path: Path, run_cli: RunCli) -> None:
    root = project(tmp_path / "p", context="{gpu_vendor: NONE, docker_env_vars: {MAD_SYSTEM_GPU_ARCHITECTURE: gfx9XX}}")
    (root / "madfile.yaml").write_text((root / "madfile.yaml").read_text().replace(
        "contexts: {cpu:", "contexts: {plain: {gpu_vendor: NONE}, cpu:"))
    env = tools(tmp_path / "bin", arch="gfx90a", rocm="6.2.0")
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    code, out, err = run_cli("state", "show", "job:n@plain/here#1", cwd=root, env=env)
    facts_lines = [line.strip() for line in out.splitlines() if line.strip().startswith("facts ")]
    assert len(facts_lines) == 1 and facts_lines[0].startswith(f"facts {HOST}: "), out + err
    assert "1 × AMD gfx90a (AMD Instinct MI250X/MI250)" in facts_lines[0] and "ROCm 6.2.0" in facts_lines[0]
    code, out, err = run_cli("results", "--json", "--csv", tmp_path / "perf.csv", cwd=root, env=env)
    assert code == 0, out + err
    by_address = {r["address"]: r for r in json.loads(out)}
    facts = by_address["job:n@plain/here#1"]["facts"]
    assert (facts["hostname"], facts["gpu_arch"], facts["rocm"], facts["gpu_count"]) == (HOST, "gfx90a", "6.2.0", 1)
    with (tmp_path / "perf.csv").open() as f:
        rows = {(r["model"], r["gpu_architecture"], r["machine_name"]) for r in csv.DictReader(f)}
    # the context's MAD_SYSTEM_GPU_ARCHITECTURE wins over the observed one
    assert rows == {("n", "gfx90a", HOST), ("n", "gfx9XX", HOST), ("m", "gfx90a", HOST), ("m", "gfx9XX", HOST)}


def test_a_machine_without_gpu_tools_reruns_and_skips_nothing_for_facts(tmp_path: Path, run_cli: RunCli) -> None:
    here = probe_local()
    root = project(tmp_path / "p")
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, out + err
    code, out, err = run_cli("results", "--json", cwd=root)
    recorded = {r["address"]: r["facts"] for r in json.loads(out)}
    assert recorded[M] == recorded[N] == here.to_dict()  # skip_gpu_arch did not skip m: no GPU here
    code, out, err = run_cli("plan", "--detailed-exitcode", cwd=root)
    assert code == 0, out + err
    assert "No changes: everything is up to date." in out
