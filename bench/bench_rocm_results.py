"""ROCm's results commands on the largest perf.csv madengine accepts (MADENGINE_MAX_PERF_CSV_BYTES, 64 MB):
`report to-html`, and `database update-table` into SQLite (a fresh table, then the same file again: every
row already there). Each runs in a process of its own; prints wall seconds and peak memory (RSS).

The perf.csv is written by madengine's writer (results/perfcsv.py), every column filled as a Docker run
on a gfx942 host fills it, ROWS rows over 500 models (200,000 rows are ~50 MB).

    python bench/bench_rocm_results.py [--rows 200000] [--dir bench/out/rocm_results]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.results.perfcsv import PERF_CSV_COLUMNS, write_perf_csv  # noqa: E402

ROW = {c: "" for c in PERF_CSV_COLUMNS} | {
    "n_gpus": "8", "nnodes": "1", "gpus_per_node": "8", "training_precision": "fp16",
    "args": "--batch-size 32 --iterations 100", "tags": "pyt,llm,training",
    "docker_file": "docker/pyt_huggingface.ubuntu.amd.Dockerfile", "base_docker": "rocm/pytorch:latest",
    "docker_sha": "sha256:9c1e00d4", "docker_image": "madengine/pyt_huggingface.ubuntu.amd:fdafa146f350",
    "machine_name": "bench-01", "deployment_type": "docker", "launcher": "docker", "gpu_architecture": "gfx942",
    "metric": "samples_per_second", "status": "SUCCESS", "build_duration": "312.5", "test_duration": "1201.25",
    "additional_docker_run_options": "--shm-size=64g",
}

TO_HTML = """
import sys
from pathlib import Path
from madengine.compat import rocm_csv, rocm_report
path = Path(sys.argv[1])
table = rocm_csv.read_csv(path)
rocm_report.write_html(rocm_report.html_path(path), rocm_report.render_table(table, path.stem))
"""


def run(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv}: exit {proc.returncode}\n{proc.stderr}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dir", type=Path, default=REPO / "bench" / "out" / "rocm_results")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    perf = args.dir / "perf.csv"
    write_perf_csv(perf, (ROW | {"model": f"model_{i % 500}", "performance": f"{1000 + i * 0.25:g}"}
                          for i in range(args.rows)))
    print(f"perf.csv: {args.rows:,} rows, {perf.stat().st_size / 2**20:.1f} MB")
    # ru_maxrss of children is the largest of all children so far: each figure is "at most", in order
    for name, argv in (("report to-html", [sys.executable, "-c", TO_HTML, str(perf)]),
                       ("database update-table (new table)", [sys.executable, "-m", "madengine", "database",
                                                              "update-table"]),
                       ("database update-table (all there)", [sys.executable, "-m", "madengine", "database",
                                                              "update-table"])):
        wall, rss = run(argv, args.dir)
        print(f"{name:36} {wall:6.2f} s   peak RSS so far {rss:7.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
