"""The conformance suite: what every backend must do, as apply relies on it (DESIGN §5–6, base.py).

Each test runs once per backend factory of `conftest.FACTORIES` (`local`: real processes; `docker`:
the real dockerd). A backend is driven as apply drives it: from worker threads, with `job.log_path`,
`job.host` and the attempt id in the env already set, performance judged from the log afterwards.

Known, accepted differences, asserted as such:
- `.py` scripts run with python3; the docker test image (busybox) has none, so there the job must
  fail as any missing program does (FAILURE, exit code 127, said in the log).
- `cleanup_orphans(None)` (the sweep) finds nothing on `local`: a process group is only known through
  its attempt's entry. Not tested here beyond being safe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from madengine.backends import registry as backend_registry
from madengine.backends.base import ATTEMPT_ENV, Backend, Cancel, OrphanRecord, Outcome, RunArtifacts
from madengine.backends.session import HostInfo
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.compile.ir import ScriptCall
from madengine.facts import HostFacts, probe_local
from madengine.state.model import Status
from tests.backends.conftest import Harness

QUICK = 8.0  # seconds: "quickly" for a timeout or a cancel (the job itself would sleep 30)
PRE = ScriptCall("scripts/common/pre.sh", ("with space",))
POST = ScriptCall("scripts/common/post.sh", ("q",))


def run(backend: Backend, job: JobSpec, cancel: Cancel | None = None, limit: float = 30.0) -> Outcome:
    """`backend.run` on a worker thread, as apply calls it; a backend that hangs fails the test."""
    cancel = cancel or Cancel()
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(backend.run(job, cancel))
        except BaseException as e:  # reported on the test's thread
            box.append(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        cancel.event.set()
        pytest.fail(f"run() did not return within {limit} s")
    if isinstance(box[0], BaseException):
        raise box[0]
    outcome = box[0]
    assert isinstance(outcome, Outcome)
    return outcome


def artifacts_of(outcome: Outcome) -> RunArtifacts:
    assert outcome.artifacts is not None, outcome
    return outcome.artifacts


def log_of(job: JobSpec) -> str:
    assert job.log_path is not None
    return job.log_path.read_text(errors="replace")


def steps(job: JobSpec) -> list[str]:
    return [line.removeprefix("step: ") for line in log_of(job).splitlines() if line.startswith("step: ")]


def eventually(check: Callable[[], Any], within: float = 5.0) -> Any:
    """Poll `check` until it returns a truthy value (then that value), or give its last value."""
    deadline = time.monotonic() + within
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = check()
    return value


# --- no I/O in validate -----------------------------------------------------------------------------

_IO_EVENTS = frozenset({"open", "socket.connect", "socket.bind", "socket.getaddrinfo", "subprocess.Popen",
                        "os.system", "os.posix_spawn", "os.fork", "os.exec", "os.listdir", "os.scandir",
                        "os.mkdir", "os.remove", "os.rename", "os.symlink", "shutil.copyfile", "shutil.rmtree",
                        "http.client.connect"})
_guard = threading.local()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_guard, "active", False) and event in _IO_EVENTS:
        _guard.seen.append(f"{event}{args!r}"[:200])


@contextmanager
def no_io() -> Iterator[list[str]]:
    """Records the I/O audit events (open, connect, spawn...) raised on this thread inside the block."""
    global _hook_installed
    if not _hook_installed:  # an audit hook cannot be removed: one per process, idle outside the block
        sys.addaudithook(_audit)
        _hook_installed = True
    _guard.seen = []
    _guard.active = True
    try:
        yield _guard.seen
    finally:
        _guard.active = False


# --- the protocol's shape ---------------------------------------------------------------------------


def test_protocol_shape_and_registration(harness: Harness) -> None:
    b = harness.backend
    assert isinstance(b, Backend)
    assert b.name == harness.name
    assert isinstance(b.builds_images, bool)
    assert backend_registry.backend_class(harness.name) is type(b)
    assert harness.name in backend_registry.available()
    made = backend_registry.make_backends({harness.target_name: harness.target}, harness.workspace)
    assert type(made[harness.target_name]) is type(b)
    if not b.builds_images:  # apply never builds for it: there are no images to observe, nor to deliver
        assert b.observe_images([]) == {}
        gone = b.deliver(None, "elsewhere", harness.workspace.logs / "x.log", Cancel())  # type: ignore[arg-type]
        assert gone.status is Status.FAILURE and gone.message


def test_images_are_observed_per_host_of_the_target(harness: Harness) -> None:
    """One answer per host (`hosts()` names them), holding only what is there of what was asked."""
    b = harness.backend
    never = ImageSpec(address="image:never@cpu", node_hash="sha256:" + "0" * 64,
                      tag=f"madengine/never-built:{uuid.uuid4().hex[:12]}", dockerfile="d", build_context=".",
                      build_args={}, base=None, base_digest=None, registry=None)
    seen = b.observe_images([never])
    if b.builds_images:
        assert {host: dict(tags) for host, tags in seen.items()} == {h.name: {} for h in b.hosts()}
    else:
        assert seen == {}


def test_facts_are_observed_per_host_of_the_target_once_per_command(harness: Harness) -> None:
    """One answer per host `hosts()` names: its facts, or why they cannot be observed; asked again in
    the same command (the same Workspace), nothing is probed again."""
    b = harness.backend
    seen = b.observe_facts()
    assert set(seen) == {h.name for h in b.hosts()}
    for host, facts in seen.items():
        assert isinstance(facts, HostFacts), f"{host}: {facts}"
        assert facts.hostname  # every host knows its own name
    probed = harness.workspace.facts.known()
    assert probed and b.observe_facts() == seen and harness.workspace.facts.known() == probed
    if b.name in ("local", "docker"):  # this machine, with the docker version of its engine
        assert list(seen.values()) == [probe_local()]


@pytest.mark.parametrize("gpus", [None, 0, 2])
def test_hosts_are_named_with_their_gpu_count(harness: Harness, gpus: int | None) -> None:
    hosts = harness.with_gpus(gpus).hosts()
    assert isinstance(hosts, list) and hosts
    for host in hosts:
        assert isinstance(host, HostInfo)
        assert isinstance(host.name, str) and host.name
        assert host.gpus == gpus
    assert len({h.name for h in hosts}) == len(hosts)


def test_validate_does_no_io_and_flags_too_many_gpus(harness: Harness) -> None:
    four, two, every = harness.job(n_gpus=4), harness.job(n_gpus=2), harness.job(n_gpus=-1)
    with_two, unlimited = harness.with_gpus(2), harness.with_gpus(None)
    with no_io() as seen:
        too_many = with_two.validate(four)
        fine = [with_two.validate(two), with_two.validate(every), unlimited.validate(four)]
    assert seen == []
    assert len(too_many) >= 1
    assert any(four.address in d.message and "4" in d.message for d in too_many), too_many
    assert fine == [[], [], []]
    assert not harness.workspace.state_dir.exists()  # nothing was created either


# --- a run, and the MAD protocol ----------------------------------------------------------------------


def test_successful_job(harness: Harness) -> None:
    job = harness.job("perf")
    assert job.log_path is not None
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.log_path.write_text("written by apply\n")  # apply owns the log path: a backend appends to it
    handles: list[str] = []
    outcome = run(harness.backend, job, Cancel(on_start=handles.append))
    assert outcome.status is Status.SUCCESS, (outcome, log_of(job))
    assert outcome.exit_code == 0
    assert log_of(job).startswith("written by apply\n") and "performance: 12.5 x" in log_of(job)
    assert Path(artifacts_of(outcome).run_dir).is_dir()
    assert outcome.host == job.host  # where apply's scheduler put it
    assert handles and all(isinstance(h, str) and h for h in handles)
    assert harness.leftovers() == []


def test_each_run_gets_a_fresh_run_dir(harness: Harness) -> None:
    first = harness.job("fresh", "1")
    again = harness.job("fresh", "2", address=first.address)  # the same node, run again (a rerun, a retry)
    assert run(harness.backend, first).status is Status.SUCCESS
    outcome = run(harness.backend, again)
    assert outcome.status is Status.SUCCESS, (outcome, log_of(again))
    assert "fresh 2" in log_of(again) and "stale file seen" not in log_of(again)
    assert (Path(artifacts_of(outcome).run_dir) / "stale.txt").read_text() == "2\n"


def test_run_protocol_order_files_and_wrapper(harness: Harness) -> None:
    """Script dir copied, cwd the run dir, pre scripts / wrapped model / post scripts in that order."""
    job = harness.job("protocol", "a", "b", pre_scripts=(PRE,), post_scripts=(POST,),
                      cmd_prefix=("bash", "../scripts/common/wrap.sh"))
    outcome = run(harness.backend, job)
    log = log_of(job)
    assert outcome.status is Status.SUCCESS, (outcome, log)
    assert steps(job) == ["pre with space", "wrap-begin", "main a b", "wrap-end 0", "post q"]
    assert "sibling ok" in log  # the script's sibling file, read by a relative path
    assert "pre output" in log  # written by the pre script into the cwd, read by the model there
    run_dir = Path(artifacts_of(outcome).run_dir)
    assert (run_dir / "sibling.txt").read_text() == "sibling ok\n"
    assert (run_dir / "cwd.txt").is_file() and (run_dir / "pre.out").is_file()  # the model's cwd is the run dir
    assert not (harness.root / "scripts" / "m" / "cwd.txt").exists()  # the package is untouched
    assert not (harness.root / "scripts" / "m" / "pre.out").exists()


def test_pre_and_post_scripts_of_one_name_each_run_their_own(harness: Harness) -> None:
    job = harness.job("perf", pre_scripts=(ScriptCall("scripts/common/pre/trace.sh", ("rpd",)),),
                      post_scripts=(ScriptCall("scripts/common/post/trace.sh", ("rpd", "two words")),))
    outcome = run(harness.backend, job)
    assert outcome.status is Status.SUCCESS, (outcome, log_of(job))
    assert steps(job) == ["trace-pre rpd", "trace-post rpd two words"]


def test_a_script_that_would_replace_a_file_of_the_run_directory_is_refused(harness: Harness) -> None:
    """validate reports it first; a backend handed such a job refuses it rather than run the wrong script."""
    job = harness.job("perf", pre_scripts=(ScriptCall("scripts/other/run.sh"),))
    outcome = run(harness.backend, job)
    assert outcome.status is Status.FAILURE and not outcome.transient, outcome
    assert "scripts/other/run.sh would replace run.sh of the run directory" in outcome.message, outcome
    assert "impostor" not in (log_of(job) if job.log_path and job.log_path.exists() else "")


def test_mad_environment_and_job_env(harness: Harness) -> None:
    before = dict(os.environ)
    job = harness.job("env", model="my_model", gpu_vendor="NONE", guest_os="CENTOS", n_gpus=1,
                      env={"MY_VAR": "value with spaces"})
    outcome = run(harness.with_gpus(2), job)
    assert outcome.status is Status.SUCCESS, (outcome, log_of(job))
    lines = set(log_of(job).splitlines())
    assert {"MAD_MODEL_NAME=<my_model>", "MAD_GPU_VENDOR=<NONE>", "MAD_RUNTIME_NGPUS=<1>", "MAD_SYSTEM_NGPUS=<2>",
            "MAD_GUEST_OS=<CENTOS>", "MY_VAR=<value with spaces>"} <= lines, log_of(job)
    # n_gpus -1: all of the host's GPUs. The job's own env wins over the MAD variables from the spec.
    every = harness.job("env", n_gpus=-1, env={"MAD_MODEL_NAME": "from-env", "MAD_GUEST_OS": "HOST"})
    assert run(harness.with_gpus(2), every).status is Status.SUCCESS, log_of(every)
    assert {"MAD_RUNTIME_NGPUS=<2>", "MAD_MODEL_NAME=<from-env>", "MAD_GUEST_OS=<HOST>"} <= set(
        log_of(every).splitlines()), log_of(every)
    assert dict(os.environ) == before  # a job's env reaches the job only


def test_multiple_results_csv_lands_in_the_run_dir(harness: Harness) -> None:
    job = harness.job("csv", "perf.csv", multiple_results="perf.csv")
    outcome = run(harness.backend, job)
    assert outcome.status is Status.SUCCESS, (outcome, log_of(job))
    written = "model,performance,metric\nm_a,10.5,x\nm_b,11,x\n"
    assert (Path(artifacts_of(outcome).run_dir) / "perf.csv").read_text() == written
    csv = artifacts_of(outcome).perf_csv  # the copy apply judges, kept beside the log
    assert csv is not None and job.log_path is not None
    assert csv.parent == job.log_path.parent and csv.read_text() == written
    assert "wrote perf.csv (MAD_OUTPUT_CSV=perf.csv)" in log_of(job)


def test_python_scripts_run_with_python3(harness: Harness) -> None:
    job = harness.job("x y", script="scripts/py/run.py")
    outcome = run(harness.backend, job)
    if harness.python3:
        assert outcome.status is Status.SUCCESS, (outcome, log_of(job))
        assert "python 3 ['x y'] True" in log_of(job)
    else:  # no python3 where the jobs run (docker: the busybox image): the run fails as any missing program
        assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 127), (outcome, log_of(job))
        assert "python3" in log_of(job)
    assert harness.leftovers() == []


def test_a_missing_program_is_a_failure_with_exit_code_127(harness: Harness) -> None:
    job = harness.job("perf", cmd_prefix=("madengine-no-such-program",))
    outcome = run(harness.backend, job)
    assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 127), (outcome, log_of(job))
    assert "madengine-no-such-program" in log_of(job)
    assert "performance" not in log_of(job)


# --- failures, timeouts, cancellation -----------------------------------------------------------------


def test_failing_script_is_a_failure_with_its_exit_code(harness: Harness) -> None:
    job = harness.job("fail", post_scripts=(POST,))
    outcome = run(harness.backend, job)
    assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 3), (outcome, log_of(job))
    assert "failing on purpose" in log_of(job)
    assert steps(job) == ["post q"]  # post scripts run after a failure (they stop what pre scripts started)
    assert harness.leftovers() == []


def test_failing_pre_script_skips_the_model_and_runs_post_scripts(harness: Harness) -> None:
    job = harness.job("perf", pre_scripts=(ScriptCall("scripts/common/pre_fail.sh"),), post_scripts=(POST,))
    outcome = run(harness.backend, job)
    assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 4), (outcome, log_of(job))
    assert steps(job) == ["pre failing", "post q"]
    assert "performance" not in log_of(job)


def test_timeout_stops_the_job_quickly_and_leaves_nothing(harness: Harness) -> None:
    job = harness.job("sleep", "30", timeout=1, post_scripts=(POST,))
    started = time.monotonic()
    outcome = run(harness.backend, job)
    elapsed = time.monotonic() - started
    assert outcome.status is Status.TIMEOUT, (outcome, log_of(job))
    assert 1 <= elapsed < QUICK, elapsed
    assert harness.leftovers() == []
    assert "sleeping" in log_of(job) and "woke up" not in log_of(job)


def test_the_timeout_is_for_the_whole_job_not_each_step(harness: Harness) -> None:
    nap = ScriptCall("scripts/common/nap.sh", ("0.7",))
    job = harness.job("sleep", "0.7", timeout=1, pre_scripts=(nap,), post_scripts=(nap,))
    started = time.monotonic()
    outcome = run(harness.backend, job)
    assert outcome.status is Status.TIMEOUT, (outcome, log_of(job))
    assert time.monotonic() - started < QUICK
    assert "woke up" not in log_of(job)
    assert harness.leftovers() == []


def test_a_job_cancelled_before_it_starts_is_interrupted(harness: Harness) -> None:
    cancel = Cancel()
    cancel.event.set()
    job = harness.job("sleep", "30", timeout=0)
    started = time.monotonic()
    outcome = run(harness.backend, job, cancel)
    assert outcome.status is Status.INTERRUPTED, (outcome, log_of(job))
    assert time.monotonic() - started < QUICK
    assert harness.leftovers() == []


def test_cancel_from_another_thread_interrupts_quickly_and_leaves_nothing(harness: Harness) -> None:
    """Cancelled half a second after the job started (its handle was given): a remote host takes a while
    to get there, which the "quickly" does not count."""
    handles: list[str] = []
    cancelled_at: list[float] = []

    def cancel_now() -> None:
        cancelled_at.append(time.monotonic())
        cancel.event.set()

    timer = threading.Timer(0.5, cancel_now)

    def on_start(handle: str) -> None:
        handles.append(handle)
        if len(handles) == 1:
            timer.start()

    cancel = Cancel(on_start=on_start)
    job = harness.job("sleep", "30", timeout=0)
    try:
        outcome = run(harness.backend, job, cancel)
    finally:
        timer.cancel()
    assert outcome.status is Status.INTERRUPTED, (outcome, log_of(job))
    assert cancelled_at and time.monotonic() - cancelled_at[0] < QUICK
    assert harness.leftovers() == []
    assert handles and all(isinstance(h, str) and h for h in handles)
    assert "woke up" not in log_of(job)


# --- hostile input ------------------------------------------------------------------------------------


def test_hostile_args_and_env_arrive_literally(harness: Harness, tmp_path: Path) -> None:
    host_marker = tmp_path / "pwned"
    hostile_args = (f"$(touch {host_marker})", f"`touch {host_marker}`", f"; touch {host_marker}",
                    f"&& touch {host_marker}", "$(touch pwned)", "it's \"quoted\"", "two\nlines", "$HOME", "")
    hostile_env = f"$(touch {host_marker}) `touch pwned`; touch pwned 'q\" \nsecond line"
    model = "m$(touch pwned);'\"`touch pwned`"
    job = harness.job("argv", *hostile_args, model=model, env={"HOSTILE": hostile_env},
                      address=f"job:m$(touch {host_marker})[a=;`x`]@cpu/{harness.target_name}#1")
    outcome = run(harness.backend, job)
    log = log_of(job)
    assert outcome.status is Status.SUCCESS, (outcome, log)
    expected = "".join(f"<{a}>\n" for a in hostile_args) + f"env<{hostile_env}>\nmodel<{model}>\n"
    assert "==begin==\n" in log and "==end==\n" in log, log
    assert log.split("==begin==\n", 1)[1].split("==end==\n", 1)[0] == expected
    run_dir = Path(artifacts_of(outcome).run_dir)
    assert not host_marker.exists()
    assert not (run_dir / "pwned").exists() and not (harness.root / "pwned").exists()


# --- concurrency ----------------------------------------------------------------------------------------


def test_two_jobs_at_once_on_one_backend(harness: Harness) -> None:
    jobs = [harness.job("tag", f"job {i}") for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda j: run(harness.backend, j), jobs))
    assert [o.status for o in outcomes] == [Status.SUCCESS, Status.SUCCESS], [log_of(j) for j in jobs]
    assert len({j.log_path for j in jobs}) == 2
    assert len({artifacts_of(o).run_dir for o in outcomes}) == 2
    for i, (job, outcome) in enumerate(zip(jobs, outcomes, strict=True)):
        assert f"tag <job {i}>" in log_of(job) and f"tag <job {1 - i}>" not in log_of(job)
        assert (Path(artifacts_of(outcome).run_dir) / "tag.txt").read_text() == f"job {i}\n"
    assert harness.leftovers() == []


# --- clean-up after a killed apply ------------------------------------------------------------------------


def test_cleanup_orphans_with_nothing_to_clean_is_safe(harness: Harness) -> None:
    b = harness.backend
    assert b.cleanup_orphans([]) == []
    assert b.cleanup_orphans(None) == []
    # A process that is not a job of this workspace (a recycled pid, say) is never touched.
    env = {k: v for k, v in os.environ.items() if k != ATTEMPT_ENV}
    stranger = subprocess.Popen(["sleep", "10"], start_new_session=True, env=env)
    try:
        entries = [OrphanRecord(attempt=1, handle=str(stranger.pid), host=harness.host),
                   OrphanRecord(attempt=2, handle=None, host=harness.host),
                   OrphanRecord(attempt=3, handle="0123456789abcdef", host="another-host")]
        removed = b.cleanup_orphans(entries)
        assert isinstance(removed, list) and removed == []
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_cleanup_orphans_removes_what_an_abandoned_job_left(harness: Harness) -> None:
    """apply was killed mid-job: nothing cancels the job; the next apply cleans up from its attempt entry."""
    handles: list[str] = []
    job = harness.job("sleep", "30", timeout=0)
    outcome: list[Outcome] = []
    cancel = Cancel(on_start=handles.append)  # never set: a killed apply cancels nothing
    abandoned = threading.Thread(target=lambda: outcome.append(harness.backend.run(job, cancel)), daemon=True)
    abandoned.start()
    assert eventually(lambda: handles and harness.leftovers(), within=10), "the job did not start"
    assert eventually(lambda: "sleeping" in log_of(job))
    entry = OrphanRecord(attempt=int(job.env[ATTEMPT_ENV]), handle=handles[-1], host=harness.host)
    removed = harness.backend.cleanup_orphans([entry])
    assert isinstance(removed, list) and removed and all(isinstance(r, str) for r in removed)
    assert eventually(lambda: harness.leftovers() == []), harness.leftovers()
    abandoned.join(QUICK)  # the abandoned run() sees its job gone and returns
    assert not abandoned.is_alive()
    assert outcome and outcome[0].status is not Status.SUCCESS
    assert harness.backend.cleanup_orphans([entry]) == []  # and a second clean-up finds nothing more
