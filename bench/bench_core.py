#!/usr/bin/env python3
"""Core benchmark of the madengine CLI: start-up, discovery and locking of a 6,134-model package.

Runs the real `madengine` console script (or `python -m madengine`) as a child process, N times per
benchmark after one untimed warm-up, and prints median / min / max wall time and peak RSS against
the budgets below, with PASS/FAIL and the command to rerun each benchmark by hand.

    python bench/bench_core.py [--runs 5] [--madengine CMD] [--seed 0] [--out DIR] [--json FILE]

Standard library only. Exit status: 0 when every available benchmark is within budget, 1 when one
is not (or errors), 2 with --strict when a command is not available.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "out" / "pkg"

MB = 1024 * 1024
RSS_BUDGET_MB = 200.0
# Exit codes that mean "the parser rejected the command line": click's 2, madengine's USAGE 4.
USAGE_EXIT_CODES = (2, 4)


@dataclasses.dataclass
class Sample:
    seconds: float
    max_rss_bytes: int
    returncode: int
    stdout: str
    stderr: str
    cpu_seconds: float = 0.0  # user + system of the child and what it reaped


@dataclasses.dataclass
class Benchmark:
    key: str
    title: str
    args: list[str]
    budget_s: float
    in_package: bool = True  # run with cwd = the package directory
    before_each: Callable[[], None] | None = None
    status: str = "pending"  # PASS | FAIL | not available | error
    detail: str = ""
    samples: list[Sample] = dataclasses.field(default_factory=list)

    def times(self) -> list[float]:
        return [s.seconds for s in self.samples]

    def peak_rss_mb(self) -> float:
        return max((s.max_rss_bytes for s in self.samples), default=0) / MB


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_package", HERE / "gen_package.py")
    if spec is None or spec.loader is None:
        raise SystemExit("bench_core: cannot load bench/gen_package.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_package"] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


def resolve_madengine(override: str | None) -> tuple[list[str], dict[str, str], str]:
    """The command prefix to run madengine, the environment for it, and how it was found."""
    env = dict(os.environ)
    if override:
        return shlex.split(override), env, "--madengine"
    # Prefer the console script installed next to this interpreter: a PATH lookup may find a
    # version-manager shim (pyenv's adds ~60 ms of bash to every call) or another installation.
    beside = Path(sys.executable).parent / "madengine"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)], env, "console script of this interpreter"
    exe = shutil.which("madengine")
    if exe:
        return [exe], env, "console script on PATH"
    if importlib.util.find_spec("madengine") is None:
        # Not installed at all (e.g. `pip install -e .` failed): run the source tree.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        return [sys.executable, "-m", "madengine"], env, f"python -m madengine with PYTHONPATH={REPO}"
    return [sys.executable, "-m", "madengine"], env, "python -m madengine (no console script on PATH)"


def run_once(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Sample:
    """Run one child process; wall time from spawn to reap, and that child's own max RSS (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
        out.seek(0)
        err.seek(0)
        # ru_maxrss is in KiB on Linux, bytes on macOS.
        rss = usage.ru_maxrss if sys.platform == "darwin" else usage.ru_maxrss * 1024
        return Sample(seconds, rss, proc.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"), usage.ru_utime + usage.ru_stime)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""


def classify_failure(sample: Sample) -> tuple[str, str]:
    both = sample.stderr + sample.stdout
    if sample.returncode in USAGE_EXIT_CODES or "No such command" in both:
        return "not available", f"exit {sample.returncode} (usage error): {last_line(both)}"
    return "error", f"exit {sample.returncode}: {last_line(both)}"


def run_benchmark(bench: Benchmark, prefix: list[str], env: dict[str, str], pkg: Path,
                  runs: int, timeout: float) -> None:
    cmd = prefix + bench.args
    cwd = pkg if bench.in_package else Path(tempfile.gettempdir())
    # Untimed warm-up: page cache, .pyc files, and the probe for a command that does not exist yet.
    if bench.before_each:
        bench.before_each()
    probe = run_once(cmd, cwd, env, timeout)
    if probe.returncode != 0:
        bench.status, bench.detail = classify_failure(probe)
        return
    for _ in range(runs):
        if bench.before_each:
            bench.before_each()
        sample = run_once(cmd, cwd, env, timeout)
        if sample.returncode != 0:
            bench.status, bench.detail = classify_failure(sample)
            bench.detail = "warm-up passed, then " + bench.detail
            return
        bench.samples.append(sample)
    median = statistics.median(bench.times())
    ok = median <= bench.budget_s and bench.peak_rss_mb() <= RSS_BUDGET_MB
    bench.status = "PASS" if ok else "FAIL"


def rerun_command(bench: Benchmark, prefix: list[str], env: dict[str, str], pkg: Path,
                  seed: int) -> str:
    env_prefix = ""
    if env.get("PYTHONPATH") != os.environ.get("PYTHONPATH"):
        env_prefix = f"PYTHONPATH={shlex.quote(env['PYTHONPATH'])} "
    timer = "/usr/bin/time -f '%e s %M KB' " if Path("/usr/bin/time").exists() else ""
    cmd = f"{env_prefix}{timer}{shlex.join(prefix + bench.args)}"
    if not bench.in_package:
        return cmd
    gen = f"python {shlex.quote(str(HERE / 'gen_package.py'))} {shlex.quote(str(pkg))} --seed {seed}"
    prep = ""
    if bench.key == "lock_cold":
        prep = "rm -rf madengine.lock .madengine && "
    elif bench.key == "lock_warm":
        prep = f"{env_prefix}{shlex.join([*prefix, 'lock'])} >/dev/null; "
    return f"{gen} && cd {shlex.quote(str(pkg))} && {prep}{cmd}"


def fmt_s(x: float) -> str:
    return f"{x:.3f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark madengine --help / discover / lock.")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per benchmark (default 5)")
    parser.add_argument("--madengine", metavar="CMD",
                        help="command to run madengine (default: `madengine` on PATH, else python -m)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic package (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to generate the package (default {DEFAULT_OUT}, git-ignored)")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-run timeout in seconds")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when a command is not available (default: reported, not failed)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    prefix, env, how = resolve_madengine(args.madengine)
    env.setdefault("NO_COLOR", "1")
    env.setdefault("COLUMNS", "120")

    gen = load_generator()
    pkg = args.out.resolve()
    t0 = time.perf_counter()
    counts = gen.generate(pkg, args.seed)
    gen_s = time.perf_counter() - t0

    def clean_lock() -> None:
        (pkg / "madengine.lock").unlink(missing_ok=True)
        shutil.rmtree(pkg / ".madengine", ignore_errors=True)

    def ensure_lock() -> None:
        if not (pkg / "madengine.lock").exists():
            run_once([*prefix, "lock"], pkg, env, args.timeout)

    benches = [
        Benchmark("help", "madengine --help", ["--help"], 0.25, in_package=False),
        Benchmark("discover", "discover --tags all", ["discover", "--tags", "all"], 0.4),
        Benchmark("lock_cold", "lock (cold)", ["lock"], 1.5, before_each=clean_lock),
        Benchmark("lock_warm", "lock (warm)", ["lock"], 0.5, before_each=ensure_lock),
    ]

    print(f"madengine: {shlex.join(prefix)}  [{how}]")
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"package: {pkg}  seed {args.seed}: {counts['total']} models "
          f"(root {counts['root']}, static {counts['static']}, dynamic {counts['dynamic']}), "
          f"{counts['dockerfiles']} Dockerfiles, generated in {gen_s:.2f}s")
    print(f"runs: {args.runs} timed per benchmark, after 1 untimed warm-up\n")

    lock_bytes: set[bytes] = set()
    for bench in benches:
        run_benchmark(bench, prefix, env, pkg, args.runs, args.timeout)
        if bench.key == "lock_cold" and bench.status in ("PASS", "FAIL"):
            # Determinism check: two cold locks of the same inputs must be byte-identical.
            for _ in range(2):
                clean_lock()
                run_once([*prefix, "lock"], pkg, env, args.timeout)
                if (pkg / "madengine.lock").exists():
                    lock_bytes.add((pkg / "madengine.lock").read_bytes())

    header = f"{'benchmark':<22}{'median':>9}{'min':>9}{'max':>9}{'budget':>9}{'max RSS':>10}  result"
    print(header)
    print("-" * len(header))
    for b in benches:
        if b.samples:
            t = b.times()
            print(f"{b.title:<22}{fmt_s(statistics.median(t)):>9}{fmt_s(min(t)):>9}{fmt_s(max(t)):>9}"
                  f"{'<=' + str(b.budget_s) + 's':>9}{b.peak_rss_mb():>7.1f} MB  {b.status}")
        else:
            print(f"{b.title:<22}{'-':>9}{'-':>9}{'-':>9}{'<=' + str(b.budget_s) + 's':>9}{'-':>10}  "
                  f"{b.status}: {b.detail}")
    measured = [b for b in benches if b.samples]
    peak = max((b.peak_rss_mb() for b in measured), default=0.0)
    rss_status = "PASS" if peak <= RSS_BUDGET_MB else "FAIL"
    print(f"{'peak memory (all)':<22}{'':>27}{'<=' + str(int(RSS_BUDGET_MB)) + 'MB':>9}"
          f"{peak:>7.1f} MB  {rss_status if measured else 'nothing measured'}")
    if lock_bytes:
        print(f"\nlock determinism: {'identical' if len(lock_bytes) == 1 else 'DIFFERENT'} bytes "
              f"across cold runs ({len(next(iter(lock_bytes)))} bytes)")

    print("\nrerun:")
    for b in benches:
        print(f"  {b.title:<20} {rerun_command(b, prefix, env, pkg, args.seed)}")

    if args.json:
        report: dict[str, Any] = {
            "madengine": prefix, "python": platform.python_version(), "platform": platform.platform(),
            "package": {"path": str(pkg), "seed": args.seed, **counts}, "runs": args.runs,
            "rss_budget_mb": RSS_BUDGET_MB, "peak_rss_mb": peak,
            "lock_deterministic": (len(lock_bytes) == 1) if lock_bytes else None,
            "benchmarks": [{
                "key": b.key, "command": b.args, "budget_s": b.budget_s, "status": b.status,
                "detail": b.detail, "times_s": b.times(), "peak_rss_mb": b.peak_rss_mb(),
                "median_s": statistics.median(b.times()) if b.samples else None,
            } for b in benches],
        }
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    if any(b.status in ("FAIL", "error") for b in benches) or len(lock_bytes) > 1:
        return 1
    if args.strict and any(b.status == "not available" for b in benches):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
