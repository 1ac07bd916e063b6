"""A no-op `madengine plan` of 1,000 jobs on a slurm target whose results are all recorded, on the SLURM
of dev/services (partition `local`). Issue 9's budget: ≤ 0.5 s, and no SLURM command at all (nothing is in
flight: the plan has nothing to ask the queue).

    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_slurm_plan.py [--jobs 1000] [--runs 7] [--json FILE]

The project (one model, `--jobs` parameter values, host processes: `container: none`) is applied once,
untimed: the jobs run on the cluster as job arrays. Then `plan` runs `--runs` times as a user runs it (the
CLI in a child process) with SLURM's commands on PATH replaced by a wrapper that counts its calls, so the
bench fails if a no-op plan asks the queue anything. Median wall and CPU time (of the child) are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_core import run_once  # noqa: E402

BUDGET = 0.5
COMMANDS = ("sbatch", "squeue", "scontrol", "sacct", "scancel", "sinfo")


def project(root: Path, jobs: int) -> None:
    (root / "run.sh").write_text('echo "performance: $2 x"\n')
    sizes = json.dumps(list(range(jobs)))
    (root / "madfile.yaml").write_text(
        "version: 1\n"
        f"models: [{{name: m, scripts: run.sh, n_gpus: 0, params: {{size: {sizes}}}}}]\n"
        f"targets: {{hpc: {{backend: slurm, partition: local, container: none, shared_dir: {root / 'shared'}}}}}\n")


def counting_path(directory: Path, log: Path) -> str:
    """A PATH whose SLURM commands log each call, then run the real one."""
    directory.mkdir()
    for name in COMMANDS:
        real = shutil.which(name)
        if real is None:
            raise SystemExit(f"{name} is not installed: run `bash dev/services start`")
        wrapper = directory / name
        wrapper.write_text(f'#!/bin/sh\necho {name} >> "{log}"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if "SLURM_CONF" not in os.environ:
        raise SystemExit("SLURM_CONF is not set: run `bash dev/services start`, then "
                         "`set -a; . /tmp/madengine-services/env; set +a`")
    cli = [sys.executable, "-m", "madengine"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-plan-", dir="/tmp") as tmp:
        root = Path(tmp) / "p"
        root.mkdir()
        project(root, args.jobs)
        applied = run_once([*cli, "apply", "--yes"], root, env, timeout=3600)
        if applied.returncode != 0:
            raise SystemExit(f"apply failed ({applied.returncode}):\n{applied.stderr[-2000:]}")
        calls = Path(tmp) / "calls.log"
        counted = {**env, "PATH": counting_path(Path(tmp) / "bin", calls)}
        samples = [run_once([*cli, "plan"], root, counted, timeout=120) for _ in range(args.runs)]
        asked = calls.read_text().split() if calls.exists() else []
    for s in samples:
        if s.returncode != 0 or "No changes" not in s.stdout:
            raise SystemExit(f"plan was not a no-op ({s.returncode}):\n{s.stdout[-1000:]}\n{s.stderr[-1000:]}")
    wall = statistics.median(s.seconds for s in samples)
    cpu = statistics.median(s.cpu_seconds for s in samples)
    verdict = "PASS" if wall <= BUDGET and not asked else "OVER" if not asked else "ASKED THE QUEUE"
    print(f"no-op plan, {args.jobs} jobs on a slurm target, all recorded: median {wall:.3f} s wall, {cpu:.3f} s "
          f"CPU over {args.runs} runs; SLURM commands run by the plans: {len(asked)} "
          f"({', '.join(sorted(set(asked))) or 'none'}); budget {BUDGET} s and none: {verdict}")
    print(f"apply of the {args.jobs} jobs (untimed setup) took {applied.seconds:.1f} s; load average "
          f"{os.getloadavg()[0]:.1f}; rerun: python bench/bench_slurm_plan.py --jobs {args.jobs} --runs {args.runs}")
    if args.json:
        args.json.write_text(json.dumps({"jobs": args.jobs, "wall": wall, "cpu": cpu, "budget": BUDGET,
                                         "slurm_calls": len(asked)}) + "\n")


if __name__ == "__main__":
    main()
