"""What the `kubernetes` backend adds to the API calls it makes: 200 Jobs against kmock (DESIGN §6).

    python bench/bench_k8s.py [--jobs 200] [--rounds 3] [--json out.json]

Each round starts a fresh kmock API server (tests/infra/kube.py) in a process of its own (as a cluster is
another machine: its work is not on the client's clock) with a Job controller played by this script (each
Job gets its pod, a canned log with a performance line, and its Complete status: nothing runs, so only the
API traffic and madengine's own work are timed). Timed, from the first create to the last delete, the same
way on both sides (`--jobs` Jobs submitted, polled every 0.05 s, collected one by one):

- madengine: KubernetesBackend.submit (run directory filled, manifests rendered: ConfigMap + Job per job),
  poll (one list of Jobs, one of pods while some are unfinished), collect (pod log read, performance
  judged, Job, pods and ConfigMap deleted);
- plain: the same client calls in a loop, with manifests rendered once before the clock starts, answers
  read as the backend reads them (the API's JSON: `_preload_content=False`):
  create_namespaced_config_map + create_namespaced_job per job; list_namespaced_job (+ list_namespaced_pod)
  per poll; list_namespaced_pod, read_namespaced_pod_log, delete_namespaced_job, delete_namespaced_pod,
  delete_namespaced_config_map per job;
- models: the plain loop with the client's default, every answer built into its models (what the
  backend avoids: building a list of 200 pods takes longer than fetching it).

The API server is kmock with `forget_deleted` (tests/infra/kube.py): as shipped it keeps every request and
deleted object, and each request scans all of them, so a run of 200 Jobs slows down quadratically with what it
did (about 2.5 s a job by the end), which would measure kmock, not the client.

Budget (issue 9): madengine ≤ 1.3 × plain. Prints the best round of each and the ratio; exits 1 over
budget. Not a test: the figures depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from madengine.apply.engine import judge_job
from madengine.backends import kubernetes_render as render
from madengine.backends.base import Workspace
from madengine.backends.kubernetes import KubernetesBackend
from madengine.backends.specs import JobSpec
from madengine.madfile.model import KubernetesTarget
from madengine.state.model import Status
from tests.infra.kube import JobController, Kube, Script

POLL = 0.05
BUDGET = 1.3
LOG = "warming up\nperformance: 123.4 samples_per_second\n"


def jobs(root: Path, n: int, round_: int) -> list[JobSpec]:
    base = JobSpec(address="", node_hash="sha256:" + "ab" * 32, model="m", context="cpu", target="k8s",
                   script="scripts/m/run.sh", args=("--size", "256"), env={}, n_gpus=0, timeout=3600,
                   image_tag="madengine/m:0123456789ab", image_digest=None)
    return [replace(base, address=f"job:m[i={i}]@cpu/k8s#1", env={"MADENGINE_ATTEMPT": str(round_ * 10000 + i)},
                    log_path=root / "logs" / f"{round_}-{i}.log") for i in range(n)]


def madengine_round(kubeconfig: Path, root: Path, specs: list[JobSpec]) -> tuple[float, float]:
    target = KubernetesTarget.model_validate({"backend": "kubernetes", "kubeconfig": str(kubeconfig)})
    backend = KubernetesBackend("k8s", target, Workspace(root=root, state_dir=root / ".madengine",
                                                         workspace_id="bench0000000"), registry="localhost:5000")
    by_handle: dict[str, JobSpec] = {}
    backend.api()  # its client made before the clock, as the plain loop's (and the registry's credentials read)
    backend.image_reference(specs[0])
    start, cpu = time.perf_counter(), time.process_time()
    for spec, handle in zip(specs, backend.submit(specs), strict=True):
        assert isinstance(handle, str), handle
        by_handle[handle] = spec
    pending = set(by_handle)
    while pending:
        time.sleep(POLL)
        for handle, state in backend.poll(sorted(pending)).items():
            if state.finished:
                pending.discard(handle)
                outcome = judge_job(by_handle[handle], backend.collect(by_handle[handle], state))
                assert outcome.status is Status.SUCCESS and outcome.perf[0].performance == 123.4, outcome
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    backend.close()
    return elapsed


def plain_round(kubeconfig: Path, root: Path, specs: list[JobSpec], raw: bool) -> tuple[float, float]:
    """The same calls in a loop. `raw`: read as the backend reads them (the API's JSON, `_preload_content=False`);
    else the client's default, every answer built into its models."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    batch: Any = client.BatchV1Api(api)
    core: Any = client.CoreV1Api(api)
    opts: dict[str, Any] = {"_preload_content": False} if raw else {}

    def send(call: Any, *args: Any, **kwargs: Any) -> Any:
        answer = call(*args, **kwargs, **opts)
        if not raw:
            return answer
        data = answer.data
        answer.release_conn()
        return json.loads(data) if data and data[:1] == b"{" else data.decode()

    def items(answer: Any) -> list[dict[str, Any]]:
        if raw:
            return list(answer.get("items") or [])
        return [api.sanitize_for_serialization(i) for i in answer.items]

    files = render.run_files([("run.sh", (root / "scripts" / "m" / "run.sh").read_bytes(), False)])
    docs = [render.manifests(s, image="localhost:5000/madengine/m:0123456789ab", workspace_id="plain0000000",
                             settings=render.PodSettings(), files=files) for s in specs]
    selector = f"{render.LABEL_WORKSPACE}=plain0000000"
    start, cpu = time.perf_counter(), time.process_time()
    for configmap, job in docs:
        send(core.create_namespaced_config_map, "default", configmap)
        send(batch.create_namespaced_job, "default", job)
    pending = {job["metadata"]["name"] for _, job in docs}
    while pending:
        time.sleep(POLL)
        listed = {j["metadata"]["name"]: j
                  for j in items(send(batch.list_namespaced_job, "default", label_selector=selector))}
        done = {n for n in pending if any(c.get("type") == "Complete" and c.get("status") == "True"
                                          for c in (listed[n].get("status") or {}).get("conditions") or [])}
        if pending - done:  # what the unfinished ones' pods say (why they wait), as the backend asks
            send(core.list_namespaced_pod, "default", label_selector=selector)
        for name in sorted(done):
            pending.discard(name)
            mine = [p for p in items(send(core.list_namespaced_pod, "default",
                                          label_selector=f"{render.LABEL_JOB}={name}"))
                    if (p["metadata"].get("labels") or {}).get(render.LABEL_JOB) == name]
            for pod in mine:
                log = core.read_namespaced_pod_log(pod["metadata"]["name"], "default", container=render.CONTAINER)
                assert "performance: 123.4" in log
            send(batch.delete_namespaced_job, name, "default", propagation_policy="Background")
            for pod in mine:
                send(core.delete_namespaced_pod, pod["metadata"]["name"], "default")
            send(core.delete_namespaced_config_map, f"{name}-run", "default")
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    api.close()
    return elapsed


def serve(directory: Path) -> None:
    """The API server and its Job controller, in a process of their own (as a cluster is): prints the
    kubeconfig's path, serves until stdin closes."""
    kube = Kube(directory, forget_deleted=True).start()
    controller = JobController(kube, lambda job: Script(log=LOG)).start()
    print(kube.kubeconfig, flush=True)
    sys.stdin.read()
    controller.stop()
    kube.stop()


class Served:
    """A `serve` subprocess; `kubeconfig` is what a client needs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(directory)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.kubeconfig = Path(self.proc.stdout.readline().strip())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def timed(kind: str, n: int, round_: int, tmp: Path) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one round."""
    root = tmp / f"{kind}-{round_}"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text('echo "performance: 1 x"\n')
    server = Served(root / "kube")
    try:
        specs = jobs(root, n, round_)
        if kind == "madengine":
            return madengine_round(server.kubeconfig, root, specs)
        return plain_round(server.kubeconfig, root, specs, raw=kind == "plain")
    finally:
        server.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the API server's own process
    a = p.parse_args()
    if a.serve:
        serve(a.serve)
        return 0
    kinds = ("plain", "models", "madengine")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp:
        for round_ in range(a.rounds):
            for kind in kinds:  # alternated: a slow moment of the machine hits each
                wall, cpu = timed(kind, a.jobs, round_, Path(tmp))
                times[kind].append(wall)
                cpus[kind].append(cpu)
                print(f"round {round_ + 1} {kind:9s} {wall:7.2f} s wall, {cpu:6.2f} s client CPU", flush=True)
    best = {k: min(v) for k, v in times.items()}
    cpu_best = {k: min(v) for k, v in cpus.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = best["madengine"] / best["plain"]
    print(f"{a.jobs} Jobs against kmock, create/poll/collect/delete, best of {a.rounds}:")
    for kind, label in (("plain", "plain client loop"), ("models", "plain, models   "),
                        ("madengine", "madengine backend")):
        print(f"  {label}  {best[kind]:7.2f} s  ({best[kind] / a.jobs * 1000:.1f} ms/job; client CPU "
              f"{cpu_best[kind]:.2f} s, {cpu_best[kind] / a.jobs * 1000:.1f} ms/job)")
    print(f"  ratio              {ratio:7.2f}   (madengine / plain client loop, best rounds; budget {BUDGET})")
    print(f"  median ratio       {median['madengine'] / median['plain']:7.2f}   (median rounds: "
          f"{median['plain']:.2f} s, {median['madengine']:.2f} s)")
    print(f"  command: python bench/bench_k8s.py --jobs {a.jobs} --rounds {a.rounds}")
    if a.json:
        a.json.write_text(json.dumps({"jobs": a.jobs, "times": times, "client_cpu": cpus, "best": best,
                                      "ratio": ratio}, indent=2))
    return 0 if ratio <= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
