#!/usr/bin/env python3
"""`madengine report` over a big store: 1,000 jobs x 20 applies (budget: <= 2 s, <= 5 MB of HTML).

Fills a real state store through StateStore's API (untimed): `--applies` applies, each running every one
of `--jobs` jobs on 2 contexts x 2 targets, each reporting one figure (two metrics between them) that
drifts from apply to apply (0.5% noise); in the last apply 1% of the jobs change an input (their args) and
slow down by 10%, and another 1% fail with a 200-line log. Then runs the real CLI (`python -m madengine report -o`)
`--runs` times after one untimed warm-up, and prints median / min / max wall time, peak RSS and the
page's size against the budgets, and the command to rerun it by hand.

    python bench/bench_report.py [--jobs 1000] [--applies 20] [--runs 3] [--out DIR]

Exit status: 0 within budget, 1 not.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from madengine.state.model import PerfRow, Status  # noqa: E402
from madengine.state.store import StateStore  # noqa: E402

BUDGET_S = 2.0
BUDGET_BYTES = 5 * 1024 * 1024
CONTEXTS = ("cpu", "gpu")
TARGETS = ("box", "lab")


def _inputs(model: str, context: str, target: str, args: list[str]) -> dict[str, object]:
    return {"model": model, "context": context, "target": target, "args": args, "repeat": 1, "n_gpus": 1,
            "env": {"MAD_MODEL_NAME": model}, "script": {"path": f"scripts/{model}/run.sh", "sha256": "sha256:b93e"},
            "image": None, "image_hash": None, "params": {}, "timeout": 7200, "hash": "sha256:" + "ab" * 32}


def fill(root: Path, jobs: int, applies: int, seed: int = 0) -> Path:
    """A store of `applies` applies of `jobs` jobs each, written as apply writes it."""
    rng = random.Random(seed)
    db = root / ".madengine" / "state.db"
    logs = root / ".madengine" / "logs"
    if root.exists():
        shutil.rmtree(root)
    logs.mkdir(parents=True)
    base = [rng.uniform(10, 1000) for _ in range(jobs)]
    with StateStore.open(db) as store:
        for n in range(1, applies + 1):
            apply_id = store.begin_apply(f"sha256:{n:064x}")
            for j in range(jobs):
                model = f"model{j:04d}"
                context, target = CONTEXTS[j % 2], TARGETS[(j // 2) % 2]
                address = f"job:{model}@{context}/{target}#1"
                args = ["--batch", "64" if j % 100 == 3 and n == applies else "32"]
                failed = n == applies and j % 100 == 7
                log = None
                if failed:
                    log = f"logs/{apply_id}/{model}.log"
                    (logs / str(apply_id)).mkdir(exist_ok=True)
                    (root / ".madengine" / log).write_text("".join(f"{model} step {i}: loss 0.{i:03d}\n"
                                                                    for i in range(200)))
                node_hash = "sha256:" + hashlib.sha256(address.encode()).hexdigest()
                attempt = store.start_attempt(apply_id, address, node_hash, _inputs(model, context, target, args),
                                              f"node{j % 8}", log)
                metric = "samples_per_second" if j % 3 else "latency_ms"
                value = base[j] * (1 + 0.005 * rng.gauss(0, 1)) * (0.9 if args[1] == "64" else 1.0)
                store.finish_attempt(attempt, Status.FAILURE if failed else Status.SUCCESS,
                                     exit_code=1 if failed else 0, message="exit code 1" if failed else "",
                                     perf=() if failed else (PerfRow(model, round(value, 3), metric),))
            store.finish_apply(apply_id, "FAILURE" if n == applies else "SUCCESS")
    return db


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--applies", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "report")
    opts = parser.parse_args()

    started = time.perf_counter()
    fill(opts.out, opts.jobs, opts.applies)
    print(f"store: {opts.jobs} jobs x {opts.applies} applies written in {time.perf_counter() - started:.1f} s "
          f"({opts.out / '.madengine' / 'state.db'})")
    page = opts.out / "report.html"
    command = [sys.executable, "-m", "madengine", "report", "-o", str(page), "-C", str(opts.out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    times, cpu, peak = [], [], 0
    for run in range(opts.runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        out, err = proc.communicate()
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"report failed: {err.strip()}", file=sys.stderr)
            return 1
        if run:  # the first run warms the page cache and the bytecode
            times.append(elapsed)
            cpu.append(usage.ru_utime + usage.ru_stime)
            peak = max(peak, usage.ru_maxrss * 1024)
    size = page.stat().st_size
    median = statistics.median(times)
    ok = median <= BUDGET_S and size <= BUDGET_BYTES
    print(f"report: median {median:.2f} s (min {min(times):.2f}, max {max(times):.2f}; {opts.runs} runs), "
          f"budget {BUDGET_S:.1f} s; CPU median {statistics.median(cpu):.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"page: {size / 1024 / 1024:.2f} MB, budget {BUDGET_BYTES / 1024 / 1024:.0f} MB; peak RSS "
          f"{peak / 1024 / 1024:.0f} MB; {out.strip()}")
    print("PASS" if ok else "FAIL")
    print("rerun: " + shlex.join([sys.executable, "bench/bench_report.py", "--jobs", str(opts.jobs), "--applies",
                                  str(opts.applies), "--runs", str(opts.runs)]))
    print("by hand: " + shlex.join(["env", f"PYTHONPATH={REPO}", *command]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
