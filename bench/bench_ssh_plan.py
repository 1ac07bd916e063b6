"""A no-op `madengine plan` of 300 jobs over the three SSH hosts of dev/services (node1..node3), with
each host's facts probed and its images listed (issue 8's budget: ≤ 1.0 s).

    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_ssh_plan.py [--jobs 300] [--runs 7] [--json FILE]

The project (one image, `--jobs` models, each a job on the `lab` target of three hosts) is applied once
(untimed: it builds the image, sends it to the hosts and runs every job), then `plan` is run `--runs`
times as a user runs it: the CLI in a child process, against the real hosts. Median wall and CPU time
(of the child) are printed; the plan must say there is nothing to do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_core import run_once  # noqa: E402

BUDGET = 1.0
RUN_SH = '#!/bin/bash\necho "performance: 1 x"\n'


def hosts() -> tuple[list[dict[str, object]], str]:
    try:
        user, key = os.environ["MADENGINE_SSH_USER"], os.environ["MADENGINE_SSH_KEY"]
        pairs = [p.split("=", 1) for p in os.environ["MADENGINE_SSH_HOSTS"].split(",")]
        known = os.environ["MADENGINE_SSH_KNOWN_HOSTS"]
    except KeyError as e:
        raise SystemExit(f"{e.args[0]} is not set: run `dev/services start`, then "
                         "`set -a; . /tmp/madengine-services/env; set +a`") from None
    return [{"name": n, "address": a, "user": user, "key": key} for n, a in pairs], known


def project(root: Path, jobs: int) -> None:
    nodes, known = hosts()
    base = os.environ.get("MADENGINE_BASE_IMAGE", "localhost:5000/madengine/busybox:1")
    models = [{"name": f"m{i:03d}", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh", "n_gpus": "0",
               "owner": "", "training_precision": "", "tags": ["t"], "args": ""} for i in range(jobs)]
    files = {
        "models.json": json.dumps(models),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\n"
                                      f"LABEL bench={uuid.uuid4().hex}\n",
        "scripts/m/run.sh": RUN_SH,
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\ncontexts: {cpu: {gpu_vendor: NONE}}\n"
                        f"targets: {{lab: {json.dumps({'backend': 'ssh', 'hosts': nodes})}}}\n",
        ".madengine/ssh/known_hosts": Path(known).read_text(),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "madengine"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="bench-ssh-plan-") as tmp:
        root = Path(tmp)
        project(root, args.jobs)
        applied = run_once([*cli, "apply", "--yes", "-j", "12"], root, env, timeout=1800)
        if applied.returncode != 0:
            raise SystemExit(f"apply failed ({applied.returncode}):\n{applied.stderr[-2000:]}")
        samples = [run_once([*cli, "plan"], root, env, timeout=120) for _ in range(args.runs)]
    for s in samples:
        if s.returncode != 0 or "No changes" not in s.stdout:
            raise SystemExit(f"plan was not a no-op ({s.returncode}):\n{s.stdout[-1000:]}\n{s.stderr[-1000:]}")
    wall = statistics.median(s.seconds for s in samples)
    cpu = statistics.median(s.cpu_seconds for s in samples)
    verdict = "PASS" if wall <= BUDGET else "OVER"
    print(f"no-op plan, {args.jobs} jobs over {len(hosts()[0])} SSH hosts (facts + images observed): "
          f"median {wall:.3f} s wall, {cpu:.3f} s CPU over {args.runs} runs; budget {BUDGET} s: {verdict}")
    print(f"load average: {os.getloadavg()[0]:.1f}; rerun: python bench/bench_ssh_plan.py --jobs {args.jobs} "
          f"--runs {args.runs}")
    if args.json:
        args.json.write_text(json.dumps({"jobs": args.jobs, "wall": wall, "cpu": cpu, "budget": BUDGET}) + "\n")


if __name__ == "__main__":
    main()
