"""What a job costs on the `ansible` backend: one ansible-runner playbook run per job, against a real sshd.

    python bench/bench_ansible.py --port 2222 --key ~/.ssh/id_ed25519 --known-hosts ~/.ssh/known_hosts \\
        [--address 127.0.0.1] [--user root] [--jobs 12] [--parallel 4] [--json out.json]

(dev/services exports MADENGINE_SSH_LOOPBACK, MADENGINE_SSH_KEY, MADENGINE_SSH_KNOWN_HOSTS: used when the
options are not given.) Jobs are host processes (`container: none`) that print one result; timed:

- `ssh true`: one plain ssh login and command, the floor of any remote job;
- one job, cold (no shared ssh connection yet) and warm (ControlPersist: the connection is reused);
- `--jobs` jobs one after another, and `--jobs` jobs `--parallel` at a time (as apply's workers run them).

Prints seconds; exits 0. Not a test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from madengine.backends.ansible import AnsibleBackend
from madengine.backends.base import ATTEMPT_ENV, Cancel, Workspace
from madengine.backends.specs import JobSpec
from madengine.madfile.model import AnsibleTarget
from madengine.state.model import Status


def main() -> int:
    loop = os.environ.get("MADENGINE_SSH_LOOPBACK", "127.0.0.1:2222")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default=loop.rsplit(":", 1)[0])
    p.add_argument("--port", type=int, default=int(loop.rsplit(":", 1)[1]))
    p.add_argument("--user", default=os.environ.get("MADENGINE_SSH_USER") or os.environ.get("USER", "root"))
    p.add_argument("--key", default=os.environ.get("MADENGINE_SSH_KEY"))
    p.add_argument("--known-hosts", default=os.environ.get("MADENGINE_SSH_KNOWN_HOSTS"))
    p.add_argument("--jobs", type=int, default=12)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if not a.key or not a.known_hosts:
        p.error("give --key and --known-hosts (or run dev/services start and source its env file)")
    os.environ["MADENGINE_SSH_KNOWN_HOSTS"] = a.known_hosts
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ansible-") as tmp:
        root = Path(tmp) / "proj"
        (root / "scripts" / "m").mkdir(parents=True)
        (root / "scripts" / "m" / "run.sh").write_text('echo "performance: 1 x"\n')
        target = AnsibleTarget.model_validate({
            "backend": "ansible", "container": "none", "workdir": str(Path(tmp) / "remote"),
            "hosts": [{"name": "h", "address": a.address, "port": a.port, "user": a.user, "key": a.key}]})
        backend = AnsibleBackend("bench", target, Workspace(root, root / ".madengine", "bench"))

        def job(i: int) -> JobSpec:
            return JobSpec(address=f"job:m@cpu/bench#{i}", node_hash="sha256:0", model="m", context="cpu",
                           target="bench", script="scripts/m/run.sh", args=(), env={ATTEMPT_ENV: str(i)}, n_gpus=0,
                           timeout=600, image_tag=None, image_digest=None, host="h",
                           log_path=root / ".madengine" / "logs" / f"{i}.log")

        def run(i: int) -> float:
            start = time.perf_counter()
            outcome = backend.run(job(i), Cancel())
            if outcome.status is not Status.SUCCESS:
                raise SystemExit(f"job {i}: {outcome.status.value} {outcome.message}")
            return time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run(["ssh", "-p", str(a.port), "-i", a.key, "-o", f"UserKnownHostsFile={a.known_hosts}",
                        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", f"{a.user}@{a.address}", "true"], check=True)
        figures["ssh true"] = time.perf_counter() - start
        figures["one job, cold"] = run(0)
        figures["one job, warm"] = run(1)
        sequential = [run(10 + i) for i in range(a.jobs)]
        figures[f"{a.jobs} jobs one after another"] = sum(sequential)
        figures["per job (median)"] = statistics.median(sequential)
        times: list[float] = []
        lock = threading.Semaphore(a.parallel)

        def worker(i: int) -> None:
            with lock:
                times.append(run(100 + i))

        start = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        figures[f"{a.jobs} jobs, {a.parallel} at a time"] = time.perf_counter() - start
    width = max(map(len, figures))
    for name, seconds in figures.items():
        print(f"{name:<{width}}  {seconds:6.2f} s")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
