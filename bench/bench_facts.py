"""Host facts probe: how long observing this machine takes (issue 8: ≤ 0.3 s per host for connection
and facts together; the probe's own budget here is 0.2 s on a machine without GPU tools).

Runs the real probe script (`sh -c SCRIPT`) as a child process, N times after one untimed warm-up,
in three settings: this machine as it is (its docker CLI and daemon, its nvcc...), the same with no
tools on PATH (the floor: the script's own forks), and the whole `probe_local()` (script + parse).
Prints median / min / max against the budget, and this machine's facts.

    python bench/bench_facts.py [--runs 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.facts import parse, probe_argv, probe_local, run_local  # noqa: E402

BUDGET_S = 0.2


def timed(fn: Callable[[], object], runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each run; the children's CPU seconds (user + system, what load does not
    inflate) appended to `cpu`."""
    fn()  # warm-up: page cache, docker CLI config
    out = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if cpu is not None:
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return out


def bare_path() -> tuple[str, tempfile.TemporaryDirectory[str]]:
    """A PATH with only what the script itself needs (no docker, no GPU tools, no nvcc)."""
    tmp = tempfile.TemporaryDirectory(prefix="bench-facts-")
    for name in ("sh", "uname", "sed", "timeout", "true"):
        target = shutil.which("dash" if name == "sh" else name) or shutil.which(name)
        if target:
            os.symlink(target, os.path.join(tmp.name, name))
    return tmp.name, tmp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    argv = probe_argv()
    bare, keep = bare_path()
    bare_env = {"PATH": bare, "LC_ALL": "C"}
    cpu: dict[str, list[float]] = {"script, this machine": [], "script, no tools on PATH": []}
    rows = {
        "script, this machine": timed(lambda: run_local(argv), args.runs, cpu["script, this machine"]),
        "script, no tools on PATH": timed(lambda: run_local(argv, env=bare_env), args.runs,
                                          cpu["script, no tools on PATH"]),
        "probe_local() (script + parse)": timed(probe_local, args.runs),
    }
    keep.cleanup()
    output = run_local(argv)
    rows["parse() alone"] = timed(lambda: parse(output), args.runs)

    ok = True
    print(f"{'benchmark':34} {'median':>8} {'min':>8} {'max':>8}  budget {BUDGET_S:.2f} s")
    report = {}
    for name, samples in rows.items():
        median = statistics.median(samples)
        verdict = "PASS" if median <= BUDGET_S else "FAIL"
        ok = ok and verdict == "PASS"
        print(f"{name:34} {median:8.3f} {min(samples):8.3f} {max(samples):8.3f}  {verdict}")
        report[name] = {"median_s": median, "min_s": min(samples), "max_s": max(samples), "runs": len(samples),
                        "cpu_median_s": statistics.median(cpu[name]) if cpu.get(name) else None}
    for name, seconds in cpu.items():
        print(f"{name:34} CPU (children, median) {statistics.median(seconds):.3f} s")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    facts = probe_local()
    print("\nthis machine:", facts.to_json())
    print("rerun by hand:  time sh madengine/facts/probe.sh")
    if args.json:
        args.json.write_text(json.dumps({"budget_s": BUDGET_S, "results": report, "facts": facts.to_dict()},
                                        indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
