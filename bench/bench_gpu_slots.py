"""GPU-slot scheduling: 40 simulated jobs (mixed n_gpus 1/2/4/8, sleep-based) on 8-GPU hosts.

Runs the real apply engine (madengine.apply.engine.Applier) with the real state store and planner;
only the backend is simulated: each job sleeps for its duration while holding its GPUs. Prints the
makespan against the lower bound max(longest job, total GPU-seconds / total GPUs); budget 1.10x.

Two applies: "cold" (no history: jobs go largest-n_gpus first) and "warm" (every job replaced, so it
runs again, now ordered longest-first by the durations the first apply recorded: a nightly run).
The budget is checked on the warm apply; the cold one is printed for reference.

    python bench/bench_gpu_slots.py [--hosts 2] [--jobs 40] [--seed 0] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.apply.engine import Applier, ApplyOptions  # noqa: E402
from madengine.backends.base import Cancel, OrphanRecord, Outcome  # noqa: E402
from madengine.backends.session import HostInfo, HostUnavailable  # noqa: E402
from madengine.backends.specs import ImageSpec, JobSpec  # noqa: E402
from madengine.errors import Diagnostic  # noqa: E402
from madengine.facts.model import HostFacts  # noqa: E402
from madengine.pipeline import make_plan, realization  # noqa: E402
from madengine.state.model import PerfRow, Status  # noqa: E402
from madengine.state.store import StateStore  # noqa: E402

BUDGET = 1.10


class SimBackend:
    """Sleeps for a job's SIM_SECONDS on the GPUs the engine gave it; checks nobody shares them."""

    name: ClassVar[str] = "sim"
    builds_images: ClassVar[bool] = False

    def __init__(self, hosts: list[HostInfo]) -> None:
        self._hosts = hosts
        self.in_use: dict[tuple[str, int], str] = {}

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        return []

    def hosts(self) -> list[HostInfo]:
        return self._hosts

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        return {}

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        raise NotImplementedError

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        raise NotImplementedError

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        return []

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        assert job.host is not None and job.log_path is not None
        for gpu in job.gpu_ids:
            holder = self.in_use.setdefault((job.host, gpu), job.address)
            assert holder == job.address, f"GPU {gpu} of {job.host} given to {job.address} and {holder}"
        cancel.wait(float(job.env["SIM_SECONDS"]))
        for gpu in job.gpu_ids:
            del self.in_use[(job.host, gpu)]
        job.log_path.write_text("performance: 1 x\n")
        return Outcome(Status.SUCCESS, exit_code=0, host=job.host, perf=(PerfRow(job.model, 1.0, "x"),))

    # The rest of the Backend protocol: a simulated local target has no images or devices to look at.
    def observe_registry(self, image: ImageSpec) -> str | None:
        return None

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        return None

    def close(self) -> None:
        pass

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        raise NotImplementedError

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        raise NotImplementedError

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        return {h.name: HostFacts() for h in self._hosts}  # simulated hosts: nothing known of them


class Quiet:
    def begin(self, total: int) -> None: ...
    def started(self, change: Any, where: str, log_path: Path) -> None: ...
    def finished(self, change: Any, status: Status, message: str, seconds: float, perf: Any) -> None:
        if status is not Status.SUCCESS:
            raise SystemExit(f"{change.address}: {status.value} {message}")
    def note(self, text: str) -> None: ...


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every duration (seconds)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    jobs = [(rng.choice([1, 2, 4, 8]), round(rng.uniform(0.5, 2.0) * args.scale, 2)) for _ in range(args.jobs)]
    total_gpus = 8 * args.hosts
    longest = max(d for _, d in jobs)
    bound = max(longest, sum(g * d for g, d in jobs) / total_gpus)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "run.sh").write_text("true\n")
        models = "\n".join(f"  - {{name: j{i:02d}, scripts: run.sh, n_gpus: {g}, env_vars: {{SIM_SECONDS: '{d}'}}}}"
                           for i, (g, d) in enumerate(jobs))
        (root / "madfile.yaml").write_text(f"version: 1\nmodels:\n{models}\ntargets: {{sim: {{backend: local}}}}\n")
        r = realization(root / "madfile.yaml", locked=False)
        backend = SimBackend([HostInfo(f"node{i}", 8) for i in range(args.hosts)])
        makespans = []
        with StateStore.open(r.state_path) as store:
            for replace in ((), tuple(r.lock["jobs"])):
                plan, observed = make_plan(r, store, replace=replace)
                durations = {a: t.duration for a, t in observed.latest.items() if t.duration}
                applier = Applier(plan, r.lock, r.compiled(), store, {"sim": backend}, r.workspace,
                                  ApplyOptions(parallelism=len(jobs)), Quiet(), durations=durations)
                started = time.monotonic()
                result = applier.run()
                makespans.append(time.monotonic() - started)
                assert all(s is Status.SUCCESS for s in result.statuses.values())
    cold, makespan = makespans
    ratio = makespan / bound
    print(f"jobs: {len(jobs)} (n_gpus {sorted({g for g, _ in jobs})}, {min(d for _, d in jobs)}-{longest} s) "
          f"on {args.hosts} hosts x 8 GPUs")
    print(f"lower bound: {bound:.2f} s = max(longest {longest:.2f} s, GPU-seconds/GPUs "
          f"{sum(g * d for g, d in jobs) / total_gpus:.2f} s)")
    print(f"cold apply:  {cold:.2f} s  ratio {cold / bound:.3f}  (no history: largest n_gpus first)")
    print(f"warm apply:  {makespan:.2f} s  ratio {ratio:.3f}  budget <= {BUDGET}  "
          f"{'PASS' if ratio <= BUDGET else 'FAIL'}")
    print(f"rerun: python bench/bench_gpu_slots.py --hosts {args.hosts} --jobs {args.jobs} --seed {args.seed} "
          f"--scale {args.scale}")
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
