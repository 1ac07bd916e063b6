"""A no-op `madengine plan` of 1,000 jobs whose results are all recorded in a PostgreSQL state store (the
server of dev/services, $MADENGINE_PG_URL). Issue 10's budget: <= 0.6 s (median wall time of the CLI).

    bash dev/services start            # or: bash dev/services start --only postgres
    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_plan_pg.py [--jobs 1000] [--runs 7] [--json FILE]

The project (one model, `--jobs` parameter values, `local` target) is applied once, untimed, with its state
in a schema of its own on the server (MADENGINE_STATE_URL with `options=-csearch_path=...`; dropped at the
end). Then `plan` runs `--runs` times as a user runs it (the CLI in a child process), after one untimed
warm-up; each must be a no-op. For reference, the same history is moved into SQLite (`results export
--format json` | `results import`) and the same plan is timed there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_core import Sample, run_once  # noqa: E402

BUDGET = 0.6
SERVICES_ENV = Path(os.environ.get("MADENGINE_SERVICES_DIR", "/tmp/madengine-services")) / "env"


def pg_url() -> str:
    url = os.environ.get("MADENGINE_PG_URL")
    if not url and SERVICES_ENV.is_file():
        for line in SERVICES_ENV.read_text().splitlines():
            if line.startswith("MADENGINE_PG_URL="):
                url = line.split("=", 1)[1].strip()
    if not url:
        raise SystemExit("no MADENGINE_PG_URL: run `bash dev/services start` (or `--only postgres`), then "
                         "`set -a; . /tmp/madengine-services/env; set +a`")
    return url


def project(root: Path, jobs: int) -> None:
    (root / "run.sh").write_text('echo "performance: $2 x"\n')
    sizes = json.dumps(list(range(jobs)))
    (root / "madfile.yaml").write_text(
        "version: 1\n"
        f"models: [{{name: m, scripts: run.sh, n_gpus: 0, params: {{size: {sizes}}}}}]\n"
        "contexts: {cpu: {gpu_vendor: NONE}}\ntargets: {here: {backend: local}}\n")


def timed_plans(cli: list[str], root: Path, env: dict[str, str], runs: int, what: str) -> list[Sample]:
    samples = []
    for i in range(runs + 1):  # the first is the untimed warm-up
        s = run_once([*cli, "plan"], root, env, timeout=120)
        if s.returncode != 0 or "No changes" not in s.stdout:
            raise SystemExit(f"plan ({what}) was not a no-op ({s.returncode}):\n{s.stdout[-1000:]}\n{s.stderr[-1000:]}")
        if i:
            samples.append(s)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import psycopg

    base = pg_url()
    schema = f"bench_plan_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?options=" + urllib.parse.quote(f"-csearch_path={schema}", safe="")
    cli = [sys.executable, "-m", "madengine"]
    env = {k: v for k, v in os.environ.items() if k not in ("MADENGINE_STATE", "MADENGINE_STATE_URL")}
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's install runs: from its .pyc files
    on_pg = {**env, "MADENGINE_STATE_URL": url}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-plan-pg-", dir="/tmp") as tmp:
            root = Path(tmp) / "p"
            root.mkdir()
            project(root, args.jobs)
            applied = run_once([*cli, "apply", "--yes", "--parallelism", "2"], root, on_pg, timeout=3600)
            if applied.returncode != 0:
                raise SystemExit(f"apply failed ({applied.returncode}):\n{applied.stderr[-2000:]}")
            pg_samples = timed_plans(cli, root, on_pg, args.runs, "postgresql")
            exported = run_once([*cli, "results", "export", "--format", "json", "-o", "history.json"], root, on_pg,
                                timeout=600)
            imported = run_once([*cli, "results", "import", "history.json"], root, env, timeout=600)
            if exported.returncode or imported.returncode:
                raise SystemExit(f"export/import failed:\n{exported.stderr[-1000:]}\n{imported.stderr[-1000:]}")
            sqlite_samples = timed_plans(cli, root, env, args.runs, "sqlite")
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    wall = statistics.median(s.seconds for s in pg_samples)
    cpu = statistics.median(s.cpu_seconds for s in pg_samples)
    ref = statistics.median(s.seconds for s in sqlite_samples)
    verdict = "PASS" if wall <= BUDGET else "OVER"
    print(f"no-op plan, {args.jobs} jobs recorded in PostgreSQL: median {wall:.3f} s wall, {cpu:.3f} s CPU over "
          f"{args.runs} runs (min {min(s.seconds for s in pg_samples):.3f}, max "
          f"{max(s.seconds for s in pg_samples):.3f}); budget {BUDGET} s: {verdict}")
    print(f"the same plan on SQLite (history moved by results export|import in {exported.seconds:.2f} + "
          f"{imported.seconds:.2f} s): median {ref:.3f} s wall")
    print(f"apply of the {args.jobs} jobs (untimed setup) took {applied.seconds:.1f} s; load average "
          f"{os.getloadavg()[0]:.1f}; rerun: python bench/bench_plan_pg.py --jobs {args.jobs} --runs {args.runs}")
    if args.json:
        args.json.write_text(json.dumps({"jobs": args.jobs, "wall": wall, "cpu": cpu, "sqlite_wall": ref,
                                         "budget": BUDGET}) + "\n")
    if wall > BUDGET:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
