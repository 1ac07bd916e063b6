"""The ssh backend on the three hosts of dev/services (node1..node3): what a connection costs, what a
job costs over SSH against the same job on `docker`, and short jobs spread over three hosts.

Issue 8's budgets: starting an apply adds ≤ 0.3 s per host (connection + facts); 30 short jobs over 3
SSH hosts take ≤ 1.2 × (the same jobs as a `docker run` loop on one host) / 3.

    set -a; . /tmp/madengine-services/env; set +a
    python bench/bench_ssh.py [--runs 5] [--jobs 30] [--json FILE]

Measured through the backends' own calls (SshBackend.run / DockerBackend.run, as apply calls them), on
this shared 2-CPU machine, where the three hosts' sshd and engines compete with the client for the CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from madengine.backends.base import ATTEMPT_ENV, Cancel, Workspace  # noqa: E402
from madengine.backends.docker import DockerBackend  # noqa: E402
from madengine.backends.session import HostInfo  # noqa: E402
from madengine.backends.specs import ImageSpec, JobSpec  # noqa: E402
from madengine.backends.ssh import SshBackend  # noqa: E402
from madengine.backends.ssh_session import FabricSession, SshEndpoint  # noqa: E402
from madengine.facts import probe_session  # noqa: E402
from madengine.madfile.model import DockerTarget, SshTarget  # noqa: E402
from madengine.state.model import Status  # noqa: E402

OPEN_BUDGET_S = 0.3


def env_hosts() -> tuple[list[dict[str, Any]], Path]:
    env = os.environ
    missing = [n for n in ("MADENGINE_SSH_HOSTS", "MADENGINE_SSH_KEY", "MADENGINE_SSH_KNOWN_HOSTS") if n not in env]
    if missing:
        sys.exit(f"bench_ssh: {', '.join(missing)} not set: `set -a; . /tmp/madengine-services/env; set +a`")
    hosts = [{"name": n, "address": a, "port": 22, "user": env.get("MADENGINE_SSH_USER", "root"),
              "key": env["MADENGINE_SSH_KEY"], "gpus": 1}
             for n, _, a in (item.partition("=") for item in env["MADENGINE_SSH_HOSTS"].split(","))]
    return hosts, Path(env["MADENGINE_SSH_KNOWN_HOSTS"])


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_open(hosts: list[dict[str, Any]], known: Path, runs: int) -> dict[str, Any]:
    """Per host: connect (TCP, key exchange, auth), and connect + the facts probe (a command's first use)."""
    out: dict[str, Any] = {}
    for h in hosts:
        opens, with_facts = [], []
        for _ in range(runs):
            s = FabricSession(HostInfo(h["name"], None), SshEndpoint(h["address"], 22, h["user"], h["key"]),
                              known_hosts=(known,))
            start = time.perf_counter()
            s.open()
            opened = time.perf_counter()
            probe_session(s)
            done = time.perf_counter()
            s.close()
            opens.append(opened - start)
            with_facts.append(done - start)
        out[h["name"]] = {"open_s": median(opens), "open_and_facts_s": median(with_facts)}
    return out


def project(root: Path) -> tuple[Workspace, ImageSpec]:
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text('echo "performance: 1 x"\n')
    (root / "docker").mkdir()
    label = uuid.uuid4().hex
    base = os.environ.get("MADENGINE_BASE_IMAGE", "localhost:5000/madengine/busybox:1")
    (root / "docker" / "b.Dockerfile").write_text(f"FROM {base}\nLABEL bench={label}\n")
    workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"bench-{label[:8]}")
    image = ImageSpec(address="image:b@cpu", node_hash=f"sha256:{label}{label}",
                      tag=f"madengine/bench-ssh:{label[:12]}", dockerfile="docker/b.Dockerfile",
                      build_context="docker", build_args={}, base=base,
                      base_digest=None, registry=None)
    return workspace, image


def job(workspace: Workspace, image: ImageSpec, n: int, target: str, host: str | None) -> JobSpec:
    return JobSpec(address=f"job:m[n={n}]@cpu/{target}#1", node_hash=f"sha256:{n:064x}", model="m", context="cpu",
                   target=target, script="scripts/m/run.sh", args=(), env={ATTEMPT_ENV: str(n)}, n_gpus=0,
                   timeout=120, image_tag=image.tag, image_digest=None,
                   log_path=workspace.logs / target / f"job-{n}.log", host=host)


def run_all(backend: Any, jobs: list[JobSpec], parallel: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        outcomes = list(pool.map(lambda j: backend.run(j, Cancel()), jobs))
    elapsed = time.perf_counter() - start
    bad = [o for o in outcomes if o.status is not Status.SUCCESS]
    if bad:
        sys.exit(f"bench_ssh: {len(bad)} jobs failed: {bad[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    hosts, known = env_hosts()
    result: dict[str, Any] = {"load_before": os.getloadavg()[0], "open": bench_open(hosts, known, args.runs)}
    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as tmp:
        workspace, image = project(Path(tmp))
        target = SshTarget.model_validate({"backend": "ssh", "hosts": hosts, "workdir": f"{tmp}/remote"})
        ssh = SshBackend("lab", target, workspace, known_hosts=(known,))
        docker = DockerBackend("box", DockerTarget(backend="docker"), workspace)
        try:
            built = ssh.build(image, workspace.logs / "build.log", Cancel())
            if built.status is not Status.SUCCESS or "not delivered" in built.message:
                sys.exit(f"bench_ssh: build: {built.message}")
            names = [h["name"] for h in hosts]
            n = args.jobs
            # Warm-up: each host's connection, work directory and package (what the first job of an apply pays).
            run_all(ssh, [job(workspace, image, 10_000 + i, "lab", h) for i, h in enumerate(names)], len(names))
            docker_loop = run_all(docker, [job(workspace, image, i, "box", None) for i in range(n)], 1)
            ssh_one = run_all(ssh, [job(workspace, image, 1000 + i, "lab", names[0]) for i in range(n)], 1)
            spread = [job(workspace, image, 2000 + i, "lab", names[i % len(names)]) for i in range(n)]
            ssh_three = run_all(ssh, spread, len(names))
        finally:
            ssh.close()
            docker.close()
        result.update({
            "jobs": n,
            "docker_loop_s": docker_loop, "docker_per_job_s": docker_loop / n,
            "ssh_one_host_loop_s": ssh_one, "ssh_per_job_s": ssh_one / n,
            "ssh_overhead_per_job_s": (ssh_one - docker_loop) / n,
            "ssh_three_hosts_s": ssh_three, "budget_three_hosts_s": 1.2 * docker_loop / len(names),
            "load_after": os.getloadavg()[0],
        })
    for name, r in result["open"].items():
        print(f"{name}: connect {r['open_s'] * 1000:.0f} ms, connect + facts {r['open_and_facts_s'] * 1000:.0f} ms "
              f"(budget {OPEN_BUDGET_S * 1000:.0f} ms)")
    print(f"{result['jobs']} short jobs: docker loop here {result['docker_loop_s']:.2f} s "
          f"({result['docker_per_job_s'] * 1000:.0f} ms/job); "
          f"ssh loop on one host {result['ssh_one_host_loop_s']:.2f} s "
          f"({result['ssh_per_job_s'] * 1000:.0f} ms/job, +{result['ssh_overhead_per_job_s'] * 1000:.0f} ms)")
    print(f"over 3 hosts at once: {result['ssh_three_hosts_s']:.2f} s (budget 1.2 × docker loop / 3 = "
          f"{result['budget_three_hosts_s']:.2f} s); load {result['load_before']:.1f} → {result['load_after']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
