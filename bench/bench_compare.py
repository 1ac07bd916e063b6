"""`madengine compare` over 10,000 result rows a side (issue 10: ≤ 0.5 s).

Fills a real state store through StateStore's API: two applies of JOBS jobs × REPEAT repeats, each
reporting METRICS figures (10,000 perf rows per apply by default), their images recorded; between the
two, every 20th job's args change and its figures drop 10% (a regression with a cause), the rest move
within noise. Then times, N times after one untimed warm-up:

- load: both sides resolved (`resultset.resolve("previous"/"latest")` through one `resultset.Snapshot`):
  the store's reads (its latest attempts, the attempts of the applies it must look back into) and the
  result sets made of them
- compare: the pure comparison of the two result sets (verdicts, changed inputs)
- total: load + compare, what the command does beyond Python's start (the budget). It is judged on
  the median of its CPU time: the work is single-threaded and waits on nothing but the page cache, so on
  an idle machine its wall time is its CPU time, while on a shared one other processes inflate the wall
  time at random (both are printed, with the load average)
- cli: `madengine compare --json` as a user runs it (Python start and imports included; not judged)

    python bench/bench_compare.py [--jobs 2500] [--repeat 2] [--metrics 2] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.mad.fastbuild import gc_paused  # noqa: E402
from madengine.results import compare as cmp  # noqa: E402
from madengine.results import resultset  # noqa: E402
from madengine.state.model import ImageRecord, PerfRow, Status  # noqa: E402
from madengine.state.store import StateStore  # noqa: E402

BUDGET_S = 0.5
IMAGES = 50


def job_inputs(i: int, args: list[str]) -> dict[str, object]:
    image = f"image:m{i % IMAGES}.ubuntu.none@cpu"
    return {"model": f"m{i}", "params": {}, "context": "cpu", "context_sha256": "sha256:c", "target": "box",
            "target_sha256": "sha256:t", "repeat": 1, "image": image, "image_hash": f"sha256:i{i % IMAGES}",
            "script": {"path": f"scripts/m{i}/run.sh", "sha256": "sha256:s", "dir_sha256": "sha256:d"},
            "args": args, "env": {"MAD_MODEL_NAME": f"m{i}", "OMP_NUM_THREADS": "8"}, "n_gpus": 1,
            "timeout": 7200, "multiple_results": None, "data": None, "tools": None, "depends_on": [image],
            "hash": f"sha256:h{i}", "meta": {"tags": ["bench"], "backend": "docker"}}


def fill(db: Path, jobs: int, repeat: int, metrics: int) -> int:
    """Two applies into the store at `db`; returns the perf rows of one apply."""
    rng = random.Random(0)
    facts = {"hostname": "bench-01", "gpu_vendor": "AMD", "gpu_count": 8, "gpu_arch": "gfx942", "rocm": "6.2.0"}
    rows = 0
    with StateStore.open(db) as store:
        for apply_no in (1, 2):
            apply_id = store.begin_apply(f"sha256:lock{apply_no}")
            if apply_no == 1:
                for n in range(IMAGES):
                    store.record_image(ImageRecord(
                        address=f"image:m{n}.ubuntu.none@cpu", target="box", node_hash=f"sha256:i{n}",
                        tag=f"madengine/m{n}:1", image_id="sha256:e", digest=None,
                        inputs={"dockerfile": {"path": f"docker/m{n}.Dockerfile", "sha256": "sha256:f"},
                                "base": {"ref": "rocm/pytorch:latest", "digest": "sha256:b"}, "build_args": {},
                                "context": {"path": "docker", "sha256": "sha256:x"}, "hash": f"sha256:i{n}",
                                "tag": f"madengine/m{n}:1"},
                        built_at="2026-12-01T00:00:00Z"), apply_id)
            for i in range(jobs):
                regressed = apply_no == 2 and i % 20 == 0
                args = ["--steps", "5" if not regressed else "1"]
                for r in range(1, repeat + 1):
                    address = f"job:m{i}@cpu/box#{r}"
                    attempt = store.start_attempt(apply_id, address, f"sha256:h{i}", job_inputs(i, args),
                                                  host="bench-01", log_path=f"logs/{apply_id}/{i}.log", facts=facts)
                    perf = [PerfRow(f"m{i}", (100.0 + m) * (0.9 if regressed else 1.0) * rng.uniform(0.995, 1.005),
                                    ("samples_per_second", "latency_ms", "gflops", "tokens_per_second")[m % 4])
                            for m in range(metrics)]
                    store.finish_attempt(attempt, Status.SUCCESS, perf=perf, image_digest="sha256:dg")
                    rows += len(perf) if apply_no == 1 else 0
            store.finish_apply(apply_id, "SUCCESS")
    return rows


def timed(runs: int, fn: object, cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each run (after an untimed warm-up); this process's CPU seconds appended to `cpu`."""
    assert callable(fn)
    fn()  # warm-up: imports, the store's page check, the page cache
    out = []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.process_time() - start_cpu)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--metrics", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="fill the store in this directory and leave it there")
    args = parser.parse_args()

    tmp = None
    if args.keep is not None:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-compare-")
        root = Path(tmp.name)
    db = root / ".madengine" / "state.db"
    if db.exists():
        sys.exit(f"{db} exists: give --keep an empty directory")
    start = time.perf_counter()
    rows = fill(db, args.jobs, args.repeat, args.metrics)
    print(f"store: 2 applies of {args.jobs} jobs × {args.repeat} repeats × {args.metrics} metrics = {rows:,} perf "
          f"rows per apply ({db.stat().st_size / 1e6:.1f} MB), filled in {time.perf_counter() - start:.1f} s")

    with StateStore.open(db, readonly=True) as store:
        sides: dict[str, resultset.ResultSet] = {}

        def load() -> None:  # as the command does: one Snapshot of the store for both sides, the collector paused
            with gc_paused():
                reader = resultset.Snapshot(store)
                sides["a"] = resultset.resolve("previous", reader)
                sides["b"] = resultset.resolve("latest", reader)

        def compare() -> None:  # the last one kept only: a bench holding every run's rows would slow the collector
            with gc_paused():
                comparison[:] = [cmp.compare(sides["a"], sides["b"])]

        loads = timed(args.runs, load)
        comparison: list[cmp.Comparison] = []
        compares = timed(args.runs, compare)
        total_cpu: list[float] = []
        def total() -> None:
            load()
            compare()

        totals = timed(args.runs, total, total_cpu)
    counts = comparison[-1].counts()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = timed(max(1, args.runs // 2), lambda: subprocess.run(
        [sys.executable, "-m", "madengine", "compare", "--json", "--state", str(db)], cwd=root, env=env,
        stdout=subprocess.DEVNULL, check=True))
    if tmp is not None:
        tmp.cleanup()

    def line(name: str, values: list[float]) -> str:
        return (f"{name:<8} median {statistics.median(values):.3f} s  min {min(values):.3f}  max {max(values):.3f}"
                f"  ({len(values)} runs)")

    print(line("load", loads) + "  (the store's reads and the result sets)")
    print(line("compare", compares))
    print(line("total", totals) + f"  wall; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(line("cpu", total_cpu) + f"  CPU of the same runs; budget {BUDGET_S} s on its median")
    print(line("cli", cli) + "  (Python start and imports included; not judged)")
    print(f"verdicts: {', '.join(f'{n} {v}' for v, n in counts.items() if n)}")
    print("rerun: python bench/bench_compare.py " + " ".join(sys.argv[1:]))
    ok = statistics.median(total_cpu) <= BUDGET_S
    print("OK: within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
