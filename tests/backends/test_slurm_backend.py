"""The slurm backend against the real SLURM of `dev/services` (tests/infra/slurm.py): partition `local` (this
machine), partition `nodes` (node1..node3 in their own namespaces), no accounting. The backend is driven
directly, as apply drives it: submit, poll every handle at once, collect, cancel. /tmp is shared by every node,
so each test's shared_dir is under its tmp_path."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from madengine.apply.engine import judge_job
from madengine.backends.base import ATTEMPT_ENV, Cancel, OrphanRecord, Outcome, QueueState, Workspace
from madengine.backends.session import HostUnavailable
from madengine.backends.slurm import UNKNOWN, SlurmBackend
from madengine.backends.specs import JobSpec
from madengine.madfile.model import SlurmTarget
from madengine.state.model import Status
from tests.infra.services import Registry
from tests.infra.slurm import SlurmCluster, slurm_cluster  # noqa: F401 (fixture)
from tests.infra.ssh import SshServices, ssh_hosts, ssh_services  # noqa: F401 (fixtures)

RUN_SH = r"""#!/bin/bash
mode=$1
shift
case "$mode" in
  perf) for a do printf '<%s>\n' "$a"; done; echo "performance: $MADENGINE_ATTEMPT x" ;;
  rank) echo "rank=$NODE_RANK of $NNODES on $(hostname) master=$MASTER_ADDR runner=$MAD_MULTI_NODE_RUNNER"
        echo "performance: 1 x" ;;
  sleep) sleep "$1"; echo "performance: 1 x" ;;
  fail) echo "going down"; exit 3 ;;
esac
"""


class Slurm:
    """A project with the test model, and backends of it on the cluster."""

    def __init__(self, root: Path, cluster: SlurmCluster) -> None:
        self.root = root
        self.cluster = cluster
        self.workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"t{uuid.uuid4().hex[:10]}")
        self.attempts = iter(range(1000, 100000))

    def backend(self, pull_from: str | None = None, **target: object) -> SlurmBackend:
        config = SlurmTarget.model_validate({"backend": "slurm", "partition": self.cluster.local, "container": "none",
                                             "shared_dir": str(self.root / "shared"), **target})
        return SlurmBackend("hpc", config, self.workspace, registry=pull_from)

    def job(self, *args: str, timeout: int = 300, nnodes: int = 1, image: str | None = None, name: str = "m",
            ) -> JobSpec:
        attempt = next(self.attempts)
        return JobSpec(address=f"job:{name}[a={attempt}]@cpu/hpc#1", node_hash="sha256:" + "0" * 64, model=name,
                       context="cpu", target="hpc", script="scripts/m/run.sh", args=args,
                       env={ATTEMPT_ENV: str(attempt)}, n_gpus=0, timeout=timeout, image_tag=image, image_digest=None,
                       log_path=self.root / ".madengine" / "logs" / f"{attempt}.log", nnodes=nnodes)


@pytest.fixture
def slurm(tmp_path: Path, slurm_cluster: SlurmCluster,  # noqa: F811
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Slurm]:
    for key in ("SLURM_CONF", "DOCKER_HOST"):  # what sbatch, squeue... and a job's docker need
        if key in slurm_cluster.env:
            monkeypatch.setenv(key, slurm_cluster.env[key])
    root = tmp_path / "project"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text(RUN_SH)
    (root / "scripts" / "m" / "sibling.txt").write_text("beside the script\n")
    made = Slurm(root, slurm_cluster)
    yield made


def wait(backend: SlurmBackend, jobs: dict[str, JobSpec],
         timeout: float = 120) -> dict[str, tuple[QueueState, Outcome]]:
    """Poll every handle at once until each is finished, collecting each as it finishes (as apply does)."""
    done: dict[str, tuple[QueueState, Outcome]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(jobs):
        assert time.monotonic() < deadline, f"not finished after {timeout} s: {set(jobs) - set(done)}"
        for handle, state in backend.poll([h for h in jobs if h not in done]).items():
            if state.finished:
                done[handle] = (state, judge_job(jobs[handle], backend.collect(jobs[handle], state)))
        time.sleep(0.2)
    return done


def handles(submitted: Sequence[str | Outcome]) -> list[str]:
    assert all(isinstance(h, str) for h in submitted), submitted
    return [h for h in submitted if isinstance(h, str)]


def running(backend: SlurmBackend, handle: str, timeout: float = 60) -> QueueState:
    deadline = time.monotonic() + timeout
    while (state := backend.poll([handle])[handle]).state != "RUNNING":
        assert not state.finished and time.monotonic() < deadline, state
        time.sleep(0.2)
    return state


def test_one_job_then_an_array_of_eight_on_this_machine(slurm: Slurm) -> None:
    backend = slurm.backend()
    single = slurm.job("perf", "a b", "$(touch pwned)")
    (one,) = handles(backend.submit([single]))
    assert one.isdigit()
    eight = [slurm.job("perf", str(i)) for i in range(8)]
    array = handles(backend.submit(eight))
    base = array[0].split("_")[0]
    assert array == [f"{base}_{i}" for i in range(8)], "one array of eight tasks"
    done = wait(backend, {one: single, **dict(zip(array, eight, strict=True))})
    for handle, job in {one: single, **dict(zip(array, eight, strict=True))}.items():
        state, outcome = done[handle]
        assert (state.state, outcome.status, outcome.exit_code) == ("COMPLETED", Status.SUCCESS, 0), outcome
        assert [(p.model, p.performance) for p in outcome.perf] == [("m", float(job.env[ATTEMPT_ENV]))]
        assert outcome.details["slurm_job"] == handle and outcome.host == "hpc"
    assert single.log_path is not None
    assert "\n<a b>\n<$(touch pwned)>\n" in "\n" + single.log_path.read_text()  # (slurmstepd may say things first)
    assert not list(slurm.root.rglob("pwned"))


def test_a_failing_job_says_its_exit_code_and_keeps_its_log(slurm: Slurm) -> None:
    backend = slurm.backend()
    job = slurm.job("fail")
    (handle,) = handles(backend.submit([job]))
    state, outcome = wait(backend, {handle: job})[handle]
    assert (state.state, state.reason, state.exit_code) == ("FAILED", "exit code 3", 3)
    assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 3)
    assert job.log_path is not None and "going down" in job.log_path.read_text()


def test_run_submits_one_job_and_waits_for_it(slurm: Slurm) -> None:
    job = slurm.job("perf", "x")
    started: list[str] = []
    outcome = judge_job(job, slurm.backend().run(job, Cancel(on_start=started.append)))
    assert outcome.status is Status.SUCCESS and started and started[0].isdigit()


def test_a_job_of_two_nodes_starts_the_script_on_each(slurm: Slurm) -> None:
    backend = slurm.backend(partition=slurm.cluster.remote, max_nodes=3)
    job = slurm.job("rank", nnodes=2)
    (handle,) = handles(backend.submit([job]))
    state, outcome = wait(backend, {handle: job})[handle]
    assert outcome.status is Status.SUCCESS, outcome
    assert job.log_path is not None
    ranks = sorted(line for line in job.log_path.read_text().splitlines() if line.startswith("rank="))
    first, second = slurm.cluster.nodes[:2]
    port = 29500 + int(handle) % 1000  # by job id: two jobs whose first node is one host listen on two ports
    runner = (f"torchrun --nnodes=2 --nproc_per_node=1 --node_rank={{}} --master_addr={first} "
              f"--master_port={port}")
    assert ranks == [f"rank=0 of 2 on {first} master={first} runner={runner.format(0)}",
                     f"rank=1 of 2 on {second} master={first} runner={runner.format(1)}"]
    assert outcome.details["nnodes"] == 2 and outcome.details["launcher"] == "torchrun"
    assert state.where == f"{first.rstrip('0123456789')}[{first[-1]}-{second[-1]}]" or "," in state.where


def test_more_nodes_than_the_target_has_is_refused_before_submitting(slurm: Slurm) -> None:
    backend = slurm.backend(partition=slurm.cluster.remote, max_nodes=3)
    (problem,) = backend.validate(slurm.job("rank", nnodes=4))
    assert "asks for 4 nodes; target 'hpc' has 3 (max_nodes)" in problem.message


def test_cancel_stops_a_running_job(slurm: Slurm) -> None:
    backend = slurm.backend()
    job = slurm.job("sleep", "300")
    (handle,) = handles(backend.submit([job]))
    running(backend, handle)
    backend.cancel([handle])
    state, outcome = wait(backend, {handle: job})[handle]
    assert (state.state, state.status, outcome.status) == ("CANCELLED", Status.INTERRUPTED, Status.INTERRUPTED)
    assert outcome.message == f"cancelled (slurm {handle} CANCELLED on {slurm.cluster.local_node})"


def test_a_job_cancelled_outside_madengine_is_interrupted_with_its_state(slurm: Slurm) -> None:
    backend = slurm.backend()
    job = slurm.job("sleep", "300")
    (handle,) = handles(backend.submit([job]))
    running(backend, handle)
    slurm.cluster.cancel(handle)  # someone's scancel
    state, outcome = wait(backend, {handle: job})[handle]
    assert (state.state, outcome.status) == ("CANCELLED", Status.INTERRUPTED)
    assert job.log_path is not None and f"JOB {handle} ON {slurm.cluster.local_node} CANCELLED" in \
        job.log_path.read_text()


def test_slurm_time_limit_is_a_timeout(slurm: Slurm) -> None:
    """SLURM's granularity is the minute: a 60 s timeout is `--time=1`, enforced within its check period."""
    backend = slurm.backend()
    job = slurm.job("sleep", "600", timeout=60)
    (handle,) = handles(backend.submit([job]))
    state, outcome = wait(backend, {handle: job}, timeout=240)[handle]
    assert (state.state, outcome.status) == ("TIMEOUT", Status.TIMEOUT)
    assert outcome.message.startswith(f"timed out after 60 s (slurm {handle} TIMEOUT")


def test_a_handle_slurm_does_not_know_or_of_another_job_is_no_longer_known(slurm: Slurm) -> None:
    backend = slurm.backend()
    other = slurm.cluster.sbatch("#!/bin/bash\nsleep 1\n", "-p", slurm.cluster.local, "-J", "someone-else",
                                 "-o", "/dev/null")
    states = backend.poll(["987654", other])
    for handle in ("987654", other):
        assert (states[handle].status, states[handle].reason) == (Status.FAILURE, UNKNOWN)
    assert backend.cleanup_orphans([OrphanRecord(1, other, "hpc")]) == []  # never cancelled as ours
    assert slurm.cluster.state(other) in ("PENDING", "RUNNING", "COMPLETED")


def test_cleanup_cancels_the_recorded_jobs_of_a_killed_apply(slurm: Slurm) -> None:
    backend = slurm.backend()
    job = slurm.job("sleep", "300")
    (handle,) = handles(backend.submit([job]))
    running(backend, handle)
    assert backend.cleanup_orphans(None) == []  # a sweep cancels nothing: a later plan waits for it
    fresh = slurm.backend()  # the next apply's backend
    assert fresh.cleanup_orphans([OrphanRecord(int(job.env[ATTEMPT_ENV]), handle, "hpc")]) == [
        f"slurm job {handle} (RUNNING) of attempt {job.env[ATTEMPT_ENV]}"]
    state, _ = wait(fresh, {handle: job})[handle]
    assert state.state == "CANCELLED"


def test_a_submission_slurm_refuses_fails_its_jobs_with_sbatch_reason(slurm: Slurm) -> None:
    backend = slurm.backend(partition="no-such-partition")
    job = slurm.job("perf")
    (outcome,) = backend.submit([job])
    assert isinstance(outcome, Outcome) and outcome.status is Status.FAILURE
    assert outcome.message == "sbatch: sbatch: error: Batch job submission failed: Invalid partition name specified"


def test_sbatch_missing_is_said_at_plan(slurm: Slurm, monkeypatch: pytest.MonkeyPatch) -> None:
    assert slurm.backend().observe_runnable("NONE", 0) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    why = slurm.backend().observe_runnable("NONE", 0)
    assert why is not None and why[0] == "target hpc: sbatch is not installed on this machine"


@pytest.mark.docker  # the job's `docker run` needs the engine
def test_jobs_in_their_image_pulled_from_the_registry(slurm: Slurm, registry: Registry) -> None:
    """container: docker: each task pulls the lock's tag from the registry into the node's engine, then runs
    in it with the run directory mounted (the base image of dev/services: busybox, /bin/bash a shim)."""
    name, _, tag = registry.base_image.partition("/")[2].rpartition(":")
    host = registry.base_image.partition("/")[0]
    backend = slurm.backend(container="docker", pull_from=host)
    jobs = [slurm.job("perf", str(i), image=f"{name}:{tag}") for i in range(3)]
    submitted = handles(backend.submit(jobs))
    done = wait(backend, dict(zip(submitted, jobs, strict=True)), timeout=180)
    for handle, job in zip(submitted, jobs, strict=True):
        _, outcome = done[handle]
        assert outcome.status is Status.SUCCESS, (outcome, job.log_path and job.log_path.read_text())
        assert [p.performance for p in outcome.perf] == [float(job.env[ATTEMPT_ENV])]


# apptainer is not installed here (nor in Debian): this stand-in takes its place on the nodes' PATH. `pull`
# fetches the image into the engine and writes its reference into the .sif; `exec` runs the command in it with
# docker, the binds as volumes, the environment's MAD variables passed on (as apptainer passes the host's).
APPTAINER = """#!/usr/bin/env python3
import os, subprocess, sys
args = sys.argv[1:]
if args[0] == "pull":
    dest, ref = [a for a in args[1:] if a != "--force"]
    subprocess.run(["docker", "pull", "--quiet", ref.removeprefix("docker://")], check=True, stdout=subprocess.DEVNULL)
    with open(dest, "w") as f:
        f.write(ref.removeprefix("docker://"))
    with open(os.environ["APPTAINER_PULLS"], "a") as f:
        f.write(dest + "\\n")
    sys.exit(0)
docker, i = ["docker", "run", "--rm", "--network", "none"], 1
while args[i].startswith("--"):
    if args[i] in ("--bind", "--pwd"):
        docker += ["-v" if args[i] == "--bind" else "-w", args[i + 1]]
        i += 1
    i += 1
env = [w for k in os.environ if k.startswith(("MAD_", "MADENGINE_")) for w in ("-e", k)]
with open(args[i]) as f:
    image = f.read()
os.execvp("docker", docker + env + ["--entrypoint", args[i + 1], image, *args[i + 2:]])
"""


@pytest.mark.docker  # the stand-in runs the image with docker
def test_apptainer_pulls_each_image_once_into_the_shared_directory(slurm: Slurm, registry: Registry,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apptainer").write_text(APPTAINER)
    (bin_dir / "apptainer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")  # the jobs' environment is sbatch's
    monkeypatch.setenv("APPTAINER_PULLS", str(tmp_path / "pulls"))
    name, _, tag = registry.base_image.partition("/")[2].rpartition(":")
    backend = slurm.backend(container="apptainer", pull_from=registry.base_image.partition("/")[0])
    jobs = [slurm.job("perf", str(i), image=f"{name}:{tag}") for i in range(3)]
    submitted = handles(backend.submit(jobs))
    done = wait(backend, dict(zip(submitted, jobs, strict=True)), timeout=180)
    for handle, job in zip(submitted, jobs, strict=True):
        _, outcome = done[handle]
        assert outcome.status is Status.SUCCESS, (outcome, job.log_path and job.log_path.read_text())
        assert [p.performance for p in outcome.perf] == [float(job.env[ATTEMPT_ENV])]
    pulls = (tmp_path / "pulls").read_text().splitlines()
    assert len(pulls) == 1 and pulls[0].endswith(".part"), pulls  # one pull for three tasks started together
    assert [p.name for p in (slurm.root / "shared").glob("*/images/*.sif")] == [
        pulls[0].rsplit("/", 1)[1].split(".sif.")[0] + ".sif"]


def test_through_a_login_node(slurm: Slurm, ssh_hosts: SshServices) -> None:  # noqa: F811
    """sbatch, squeue and scancel on the login node (the loopback sshd, host key checked), the run directories
    and scripts put through it; the shared directory is this machine's /tmp, which the nodes see."""
    lo = ssh_hosts.loopback
    backend = slurm.backend(login={"address": lo.address, "port": lo.port, "user": lo.user, "key": str(lo.key)})
    backend = SlurmBackend("hpc", backend.target, slurm.workspace, known_hosts=[lo.known_hosts])
    jobs = [slurm.job("perf", str(i)) for i in range(2)]
    submitted = handles(backend.submit(jobs))
    try:
        done = wait(backend, dict(zip(submitted, jobs, strict=True)))
        assert [done[h][1].status for h in submitted] == [Status.SUCCESS, Status.SUCCESS]
        assert backend.observe_runnable("NONE", 0) is None
    finally:
        backend.close()


def test_a_login_node_whose_host_key_is_unknown_is_refused(slurm: Slurm, ssh_hosts: SshServices,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """As for `ssh` targets: strict by default, every job of the submission fails saying why, nothing is sent."""
    lo = ssh_hosts.loopback
    config = slurm.backend(login={"address": lo.address, "port": lo.port, "user": lo.user, "key": str(lo.key)}).target
    backend = SlurmBackend("hpc", config, slurm.workspace, known_hosts=[tmp_path / "empty_known_hosts"])
    jobs = [slurm.job("perf"), slurm.job("perf")]
    outcomes = backend.submit(jobs)
    for outcome in outcomes:
        assert isinstance(outcome, Outcome) and outcome.status is Status.FAILURE
        assert outcome.message.startswith(f"the login node {lo.address}: the host key of {lo.address}:{lo.port} is "
                                          "unknown"), outcome.message
    assert not (slurm.root / "shared").exists()
    with pytest.raises(HostUnavailable, match="is unknown"):
        backend.observe_runnable("NONE", 0)


def test_a_job_slurm_no_longer_lists_is_known_by_the_exit_status_its_script_left(slurm: Slurm) -> None:
    backend = slurm.backend()
    ok, failing = slurm.job("perf", "x"), slurm.job("fail")
    handles_ = handles(backend.submit([ok, failing]))
    wait(backend, dict(zip(handles_, [ok, failing], strict=True)))
    (logs,) = (slurm.root / "shared").glob("*/logs")
    written = {p.stem: p.read_text().strip() for p in logs.glob("*.exit")}
    assert written == {handles_[0]: "0", handles_[1]: "3"}, written
    # As after MinJobAge without accounting: squeue does not know these ids; their exit files say how they ended.
    for forgotten, kept in (("999990_0", handles_[0]), ("999990_1", handles_[1])):
        (logs / f"{forgotten}.exit").write_text((logs / f"{kept}.exit").read_text())
    states = backend.poll(["999990_0", "999990_1", "999990_2"])
    assert [(s.state, s.status, s.exit_code) for s in states.values()] == [
        ("COMPLETED", Status.SUCCESS, 0), ("FAILED", Status.FAILURE, 3), ("UNKNOWN", Status.FAILURE, None)]
