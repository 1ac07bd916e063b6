"""Tools (tools.json) and data (data.json) through compile, lock and a real local apply."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT, RunCli

MADFILE = """\
version: 1
package: pkg
models:
  - select: dummy
  - {name: reader, scripts: read.sh, n_gpus: 0, data: sample}
contexts:
  traced: {gpu_vendor: NONE, tools: [{name: trace}, {name: timer}], docker_env_vars: {FROM_CONTEXT: "yes"}}
targets: {here: {backend: local}}
"""

READ = """\
#!/bin/sh
echo "datahome=$MAD_DATAHOME dataname=$MAD_DATANAME"
cat "$MAD_DATAHOME/values.csv" | head -1
echo "performance: 1.5 rows_per_second"
"""


def setup(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "examples" / "mad-package", tmp_path / "pkg",
                    ignore=shutil.ignore_patterns("madengine.lock", ".madengine", "madfile.yaml"))
    (tmp_path / "madfile.yaml").write_text(MADFILE)
    (tmp_path / "read.sh").write_text(READ)
    return tmp_path


def test_tools_wrap_and_surround_the_run_and_data_is_mounted(run_cli: RunCli, tmp_path: Path) -> None:
    root = setup(tmp_path)
    code, out, err = run_cli("apply", "--yes", cwd=root)
    assert code == 0, out + err
    logs = {p.name.split("-")[0]: p.read_text() for p in (root / ".madengine" / "logs").rglob("*.log")}
    dummy = next(text for name, text in logs.items() if name.startswith("job_dummy"))
    # tools' pre-script, the model wrapped by the timer tool, then the post-script
    assert dummy.index("trace: start (MAD_TRACE=1)") < dummy.index("performance:") < dummy.index("timer:") \
        < dummy.index("trace: stop")
    reader = next(text for name, text in logs.items() if name.startswith("job_reader"))
    home = str(root / "pkg" / "data" / "sample")
    assert f"datahome={home} dataname=sample" in reader


def test_the_lock_hashes_tool_scripts_and_in_package_data(run_cli: RunCli, tmp_path: Path) -> None:
    root = setup(tmp_path)
    assert run_cli("lock", cwd=root).code == 0
    lock = json.loads((root / "madengine.lock").read_text())
    job = lock["jobs"]["job:dummy@traced/here#1"]
    assert job["tools"]["names"] == ["trace", "timer"]
    assert job["tools"]["cmd"] == ["sh", "../scripts/common/tools/timer.sh", "--"]
    assert job["env"]["MAD_TRACE"] == "1" and job["env"]["FROM_CONTEXT"] == "yes"
    reader = lock["jobs"]["job:reader@traced/here#1"]
    assert reader["data"]["provider_type"] == "local" and reader["data"]["mounts"][0]["sha256"]
    (root / "pkg/scripts/common/post_scripts/trace_stop.sh").write_text("echo changed\n")
    (root / "pkg/data/sample/values.csv").write_text("changed\n")
    code, _, err = run_cli("lock", "--check", cwd=root)
    assert code == 1
    assert "job:dummy@traced/here#1" in err and "job:reader@traced/here#1" in err


def test_unknown_tool_and_network_data_fail_at_validate(run_cli: RunCli, tmp_path: Path) -> None:
    root = setup(tmp_path)
    (root / "pkg" / "data.json").write_text('{"remote": {"minio": {"path": "s3://bucket/x"}}}\n')
    (root / "madfile.yaml").write_text(MADFILE.replace("{name: timer}", "{name: timr}")
                                       .replace("data: sample", "data: remote"))
    code, out, err = run_cli("validate", cwd=root)
    assert code == 5 and out == ""
    assert "timr" in err and "timer" in err  # close match
    assert "minio" in err and "network" in err
    assert "Traceback" not in err


def test_without_data_json_a_models_data_is_only_passed_on(run_cli: RunCli, tmp_path: Path) -> None:
    root = setup(tmp_path)
    (root / "pkg" / "data.json").unlink()
    (root / "madfile.yaml").write_text(MADFILE.replace("data: sample", "data: huggingface"))
    (root / "read.sh").write_text('echo "dataname=$MAD_DATANAME"\necho "performance: 1 x"\n')
    code, out, err = run_cli("apply", "--yes", "--select", "reader", cwd=root)
    assert code == 0, out + err
    log = next((root / ".madengine" / "logs").rglob("job_reader*.log")).read_text()
    assert "dataname=huggingface" in log
