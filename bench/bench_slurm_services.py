"""The SLURM cluster of dev/services, by hand (no madengine): what a job's turnaround is on each partition, and
the hand-made baseline of issue 9's budget (an array of 20 jobs submitted with `sbatch` and waited for with
`squeue`; madengine's apply of the same 20 jobs is to take ≤ 1.5 × that).

    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_slurm_services.py [--runs 10] [--array 20] [--json FILE]

Turnaround: `sbatch --parsable` of a job that does nothing, until `scontrol show job -o` says COMPLETED
(polled every 20 ms). slurmctld starts batch jobs on its once-a-second background tick (Slurm 22.05, not
configurable), so expect about 1 s whatever the partition.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.02


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
                          timeout=30).stdout


def sbatch(*args: str) -> str:
    return run("sbatch", "--parsable", "-o", "/dev/null", *args).strip().split(";")[0]


def turnaround(partition: str) -> float:
    start = time.perf_counter()
    job = sbatch("-p", partition, "--wrap", "true")
    while "JobState=COMPLETED" not in run("scontrol", "show", "job", "-o", job):
        time.sleep(POLL_S)
    return time.perf_counter() - start


def hand_array(size: int) -> float:
    """An array of `size` jobs on the default partition, waited for with squeue (until none is queued)."""
    start = time.perf_counter()
    job = sbatch(f"--array=0-{size - 1}", "--wrap", "true")
    while run("squeue", "-h", "-j", job).strip():
        time.sleep(POLL_S)
    return time.perf_counter() - start


def summary(xs: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(xs), "min_s": min(xs), "max_s": max(xs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--array", type=int, default=20)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    if not os.environ.get("SLURM_CONF"):
        sys.exit("bench_slurm_services: SLURM_CONF not set: `set -a; . /tmp/madengine-services/env; set +a`")
    results: dict[str, Any] = {}
    for partition in ("local", "nodes"):
        results[f"turnaround_{partition}"] = summary([turnaround(partition) for _ in range(opts.runs)])
    results[f"hand_array_{opts.array}"] = summary([hand_array(opts.array) for _ in range(max(1, opts.runs // 3))])
    for name, r in results.items():
        print(f"{name:<22} median {r['median_s']:.2f} s  (min {r['min_s']:.2f}, max {r['max_s']:.2f})")
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
