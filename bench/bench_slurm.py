"""The slurm backend on the SLURM of dev/services (partition `local`, this machine as the one compute node):
what a job costs from submission to its result collected, for one job, an array of 8, and 20 jobs, against
the same array submitted by hand (`sbatch --array`) and waited for with `squeue`.

Issue 9's budget: 20 jobs, from apply to all results collected, ≤ 1.5 × the hand-run array's turnaround.

    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_slurm.py [--runs 3] [--json FILE]

Measured two ways: through the backend's own calls as apply makes them (submit, a poll of every handle each
`poll_interval`, collect as each finishes), and as `madengine apply --yes` of a madfile of 20 jobs (a fresh
project each run: lock, plan, submit, poll, collect, record). Each job sleeps 0.2 s and prints its result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.backends.base import ATTEMPT_ENV, Workspace  # noqa: E402
from madengine.backends.slurm import SlurmBackend  # noqa: E402
from madengine.backends.specs import JobSpec  # noqa: E402
from madengine.madfile.model import SlurmTarget  # noqa: E402

BUDGET = 1.5
RUN_SH = 'sleep 0.2\necho "performance: $2 x"\n'


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def by_hand(n: int, out: Path) -> float:
    """`sbatch --array=0-(n-1)` of the same work, then `squeue` every 0.2 s until the array is gone."""
    script = out / "hand.sbatch"
    script.write_text(f"#!/bin/bash\n#SBATCH -p local\n#SBATCH -o {out}/hand_%A_%a.out\n"
                      'sleep 0.2\necho "performance: $SLURM_ARRAY_TASK_ID x"\n')
    start = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable", f"--array=0-{n - 1}", str(script)], capture_output=True,
                         text=True, check=True).stdout.strip().split(";")[0]
    while subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True,
                         check=False).stdout.strip():
        time.sleep(0.2)
    return time.perf_counter() - start


def through_backend(n: int, out: Path) -> float:
    root = out / f"p{uuid.uuid4().hex[:6]}"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text(RUN_SH)
    ws = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"bench{uuid.uuid4().hex[:8]}")
    backend = SlurmBackend("hpc", SlurmTarget(backend="slurm", partition="local", container="none",
                                              shared_dir=str(out / "shared")), ws)
    jobs = [JobSpec(address=f"job:m[i={i}]@c/hpc#1", node_hash="sha256:x", model="m", context="c", target="hpc",
                    script="scripts/m/run.sh", args=("--i", str(i)), env={ATTEMPT_ENV: str(i + 1)}, n_gpus=0,
                    timeout=300, image_tag=None, image_digest=None, log_path=root / "logs" / f"{i}.log")
            for i in range(n)]
    start = time.perf_counter()
    handles = backend.submit(jobs)
    pending = {h: j for h, j in zip(handles, jobs, strict=True) if isinstance(h, str)}
    assert len(pending) == n, handles
    while pending:
        time.sleep(backend.poll_interval)
        for handle, state in backend.poll(list(pending)).items():
            if state.finished:
                backend.collect(pending.pop(handle), state)
    return time.perf_counter() - start


def through_apply(n: int, out: Path) -> float:
    root = out / f"a{uuid.uuid4().hex[:6]}"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text(RUN_SH)
    (root / "madfile.yaml").write_text(
        f"version: 1\nmodels:\n  - {{name: m, scripts: scripts/m/run.sh, n_gpus: 0, params: {{i: {list(range(n))}}}}}\n"
        f"targets:\n  hpc: {{backend: slurm, partition: local, container: none, shared_dir: {out / 'shared'}}}\n")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root, capture_output=True,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    took = time.perf_counter() - start
    if done.returncode != 0 or f"Apply success: {n} SUCCESS" not in done.stdout:
        sys.exit(f"apply failed:\n{done.stdout}\n{done.stderr}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        sys.exit("bench_slurm: SLURM_CONF is not set: `set -a; . /tmp/madengine-services/env; set +a`")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir="/tmp") as tmp:
        out = Path(tmp)
        cases: list[tuple[str, Callable[[int, Path], float], int]] = [
            ("backend, 1 job", through_backend, 1), ("backend, array of 8", through_backend, 8),
            ("backend, 20 jobs", through_backend, 20), ("apply, 20 jobs", through_apply, 20),
            ("by hand, array of 20", by_hand, 20)]
        for name, work, n in cases:
            times = [work(n, out) for _ in range(args.runs)]
            results[name] = {"median_s": median(times), "runs_s": times}
            print(f"{name:>22}: {median(times):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    ratio = results["apply, 20 jobs"]["median_s"] / results["by hand, array of 20"]["median_s"]
    results["apply_over_hand"] = ratio
    print(f"apply / by hand, 20 jobs: {ratio:.2f} (budget {BUDGET})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
