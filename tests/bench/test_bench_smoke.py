"""The benchmarks that drive madengine's own API still run (their figures are not judged here).

bench/ is outside the suite; but bench_gpu_slots.py calls the apply engine directly, so a change of that
API would break it silently. A tiny run (4 jobs, 1 host, 1/20 of the durations) catches that in a second.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_gpu_slot_benchmark_runs_on_the_current_engine() -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "bench_gpu_slots.py"), "--hosts", "1",
                           "--jobs", "4", "--scale", "0.05"], capture_output=True, text=True, timeout=120,
                          cwd=REPO_ROOT, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: over budget, which a tiny run may be
    assert "warm apply:" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr


def test_report_benchmark_runs_on_the_current_store(tmp_path: Path) -> None:
    """bench_report.py fills a store through StateStore's API: a tiny run (10 jobs, 2 applies) catches a change."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "bench_report.py"), "--jobs", "10", "--applies",
                           "2", "--runs", "1", "--out", str(tmp_path / "report")], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: over budget, which a loaded machine may be
    assert "report: median" in proc.stdout and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert (tmp_path / "report" / "report.html").is_file()
