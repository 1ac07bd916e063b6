"""Multi-node jobs (`nnodes: N`) on an ssh target: one job on N hosts of dev/services (node1..node3) at once,
each node with its NODE_RANK, NNODES and the master's address, as host processes and in containers.

The hosts share /tmp (tests/infra/ssh.py), pytest's tmp_path with it: each job's script meets the others in a
directory there (a barrier: every node waits until all have arrived, so the nodes ran at the same time) and
says what it saw.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from madengine.errors import ExitCode
from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry, registry, service_env  # noqa: F401 (fixtures)
from tests.infra.ssh import SshServices, ssh_hosts, ssh_services  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker  # the registry's base image, and the hosts' engines for container: docker

# $1: the shared directory; $2: what this run does (ok, fail-on-<rank>, sleep). Busybox sh in containers.
RUN = r"""#!/bin/bash
dir=$1
what=${2:-ok}
mkdir -p "$dir"
host=$(hostname)
echo "node rank=$NODE_RANK nnodes=$NNODES master=$MASTER_ADDR:$MASTER_PORT host=$host nproc=$NPROC_PER_NODE"
echo "runner: $MAD_MULTI_NODE_RUNNER"
echo "$host" > "$dir/arrived.$NODE_RANK"
echo "start $NODE_RANK" >> "$dir/order"
case "$what" in
  fail-on-$NODE_RANK) echo "rank $NODE_RANK fails on purpose"; exit 7 ;;
  sleep) sleep 300 ;;
esac
i=0
while [ "$(ls "$dir" | grep -c '^arrived\.')" -lt "$NNODES" ]; do
  i=$((i + 1))
  if [ "$i" -gt 600 ]; then echo "not every node arrived"; exit 9; fi
  sleep 0.1
done
[ "$what" = fail-late ] && [ "$NODE_RANK" != 0 ] && { echo "rank $NODE_RANK fails after the barrier"; exit 5; }
echo "all $NNODES nodes arrived"
[ "$NODE_RANK" = 0 ] && echo "performance: 42 samples_per_second"
exit 0
"""

# The single-node job that holds a host while a multi-node job waits for it: its run is bracketed in the log.
HOLD = r"""#!/bin/bash
echo "hold begin" >> "$1/order"
sleep "$2"
echo "hold end" >> "$1/order"
echo "performance: 1 x"
"""


def project(root: Path, ssh: SshServices, *, nnodes: int, container: str = "none", args: str = "ok",
            base: str = "scratch", hosts: dict[str, Any] | None = None, extra_models: Sequence[dict[str, Any]] = (),
            shared: Path | None = None, shared_workdir: bool = False, names: Sequence[str] | None = None) -> Path:
    """A MAD package with model `multi` of `nnodes` nodes (models.json's key) on an ssh target of node1..node3.
    The hosts' workdir is each one's own home, or (`shared_workdir`) one directory of the /tmp they share, as
    a home on NFS is: the nodes then prepare, and run in, the same run directory."""
    shared = shared or root.parent / "shared"  # under pytest's /tmp, which every host sees
    model: dict[str, Any] = {"name": "multi", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh", "n_gpus": "0",
                             "owner": "", "training_precision": "", "tags": ["t"], "args": f"{shared} {args}",
                             "nnodes": nnodes}
    models = [model, *({"dockerfile": "docker/a", "owner": "", "training_precision": "", "tags": ["t"], **m}
                       for m in extra_models)]
    target: dict[str, Any] = {"backend": "ssh", "container": container,
                              "hosts": ssh.madfile_hosts(names, **(hosts or {}))}
    if shared_workdir:
        target["workdir"] = f"{shared}-work"
    context: dict[str, Any] = {"gpu_vendor": "NONE"}
    if container == "docker":
        context["docker_mounts"] = {str(shared): str(shared)}  # the directory the nodes meet in
    label = uuid.uuid4().hex
    files = {
        "models.json": json.dumps(models),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\nLABEL t={label}\n",
        "scripts/m/run.sh": RUN,
        "scripts/hold/run.sh": HOLD,
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\n"
                        f"contexts: {{cpu: {json.dumps(context)}}}\n"
                        f"targets: {{lab: {json.dumps(target)}}}\n",
        ".madengine/ssh/known_hosts": ssh.known_hosts.read_text(),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    shared.mkdir(parents=True, exist_ok=True)
    return shared


def attempts(root: Path) -> list[tuple[int, str, str, str | None, str, str | None]]:
    with sqlite3.connect(root / ".madengine" / "state.db") as db:
        return list(db.execute("SELECT id, address, status, host, message, handle FROM attempts "
                               "WHERE address LIKE 'job:%' ORDER BY id"))


def node_lines(log: Path) -> dict[str, str]:
    """What a node's script said about itself: rank, nnodes, master, host."""
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("node rank="))
    return dict(word.split("=", 1) for word in line.split()[1:])


def job_logs(root: Path, model: str = "multi") -> list[Path]:
    """The job's log (rank 0) and its other nodes' (`<log>.rank<i>`), in rank order."""
    main = next(p for p in (root / ".madengine" / "logs").rglob(f"job_{model}*.log"))
    return [main, *sorted(main.parent.glob(f"{main.name}.rank*"))]


def check_two_nodes_ran_at_once(ssh: SshServices, root: Path, shared: Path) -> None:
    logs = job_logs(root)
    assert len(logs) == 2, logs
    seen = [node_lines(log) for log in logs]
    assert [s["rank"] for s in seen] == ["0", "1"] and all(s["nnodes"] == "2" for s in seen), seen
    hosts = [s["host"] for s in seen]
    assert hosts[0] != hosts[1] and set(hosts) <= {"node1", "node2", "node3"}, hosts
    master = ssh[hosts[0]].address  # rank 0's host is the master, by the address the others reach it at
    assert all(s["master"] == f"{master}:29500" for s in seen), seen
    for rank, log in enumerate(logs):
        text = log.read_text()
        assert "all 2 nodes arrived" in text, text  # both were running at the same time
        assert f"--nnodes=2 --nproc_per_node=1 --node_rank={rank} --master_addr={master}" in text, text
    assert "performance: 42" in logs[0].read_text() and "performance" not in logs[1].read_text()
    assert sorted((shared / f"arrived.{r}").read_text().strip() for r in (0, 1)) == sorted(hosts)
    (row,) = attempts(root)
    assert row[2] == "SUCCESS" and row[3] == hosts[0], row


@pytest.mark.parametrize("container", ["none", "docker"])
def test_a_two_node_job_runs_on_two_hosts_at_once_and_rank_0_is_the_master(
        ssh_hosts: SshServices, registry: Registry, run_cli: RunCli, tmp_path: Path,  # noqa: F811
        container: str) -> None:
    root = tmp_path / "p"
    shared = project(root, ssh_hosts, nnodes=2, container=container, base=registry.base_image)
    code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env(), timeout=300)
    assert code == 0, out + err
    check_two_nodes_ran_at_once(ssh_hosts, root, shared)
    code, out, err = run_cli("results", "--csv", str(tmp_path / "perf.csv"), cwd=root)
    assert code == 0, out + err
    (row,) = csv.DictReader((tmp_path / "perf.csv").open())
    assert (row["nnodes"], row["launcher"], row["performance"], row["status"]) == ("2", "torchrun", "42", "SUCCESS")
    assert row["machine_name"] == job_host(root), row  # rank 0's host
    assert (row["n_gpus"], row["gpus_per_node"]) == ("0", "0"), row
    # Nothing left running: applied again, nothing runs.
    code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env(), timeout=120)
    assert code == 0 and len(attempts(root)) == 1, out + err


def job_host(root: Path) -> str:
    return str(attempts(root)[0][3])


def test_a_three_node_job_waits_for_the_host_a_single_job_holds_then_runs(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    shared = tmp_path / "shared"
    # Two GPUs per host. `hold` (2 GPUs: it goes first, the larger job per node) takes a whole host for a
    # while; `multi` needs 1 GPU on each of the 3 hosts, so it waits for that one, holding nothing meanwhile.
    project(root, ssh_hosts, nnodes=3, hosts={"gpus": 2}, shared=shared, extra_models=[
        {"name": "hold", "scripts": "scripts/hold/run.sh", "n_gpus": "2", "args": f"{shared} 3"}])
    models = json.loads((root / "models.json").read_text())
    models[0]["n_gpus"] = "1"
    (root / "models.json").write_text(json.dumps(models))
    code, out, err = run_cli("apply", "--yes", "-j", "4", cwd=root, env=service_env(), timeout=300)
    assert code == 0, out + err
    order = (shared / "order").read_text().splitlines()
    assert order[:2] == ["hold begin", "hold end"], order  # no node of `multi` started while the host was held
    assert sorted(order[2:]) == ["start 0", "start 1", "start 2"], order
    logs = job_logs(root)
    assert len(logs) == 3 and len({node_lines(log)["host"] for log in logs}) == 3, logs
    assert all("all 3 nodes arrived" in log.read_text() for log in logs)
    assert all(f"--nproc_per_node=1 --node_rank={r}" in log.read_text() for r, log in enumerate(logs))
    statuses = {a.split("@")[0]: s for _, a, s, _, _, _ in attempts(root)}
    assert statuses == {"job:multi": "SUCCESS", "job:hold": "SUCCESS"}, statuses


def test_two_multi_node_jobs_with_one_master_host_at_once_get_a_master_port_each(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    other = tmp_path / "other"
    other.mkdir()
    # Two hosts of 2 GPUs, two jobs of 2 nodes x 1 GPU: both run at once, on both hosts, rank 0 on node1.
    project(root, ssh_hosts, nnodes=2, hosts={"gpus": 2}, names=["node1", "node2"], extra_models=[
        {"name": "other", "scripts": "scripts/m/run.sh", "n_gpus": "1", "args": f"{other} ok", "nnodes": 2}])
    models = json.loads((root / "models.json").read_text())
    models[0]["n_gpus"] = "1"
    (root / "models.json").write_text(json.dumps(models))
    code, out, err = run_cli("apply", "--yes", "-j", "2", cwd=root, env=service_env(), timeout=300)
    assert code == 0, out + err
    masters = {model: {node_lines(log)["master"] for log in job_logs(root, model)} for model in ("multi", "other")}
    assert all(len(seen) == 1 for seen in masters.values()), masters  # one master per job, said to each node
    address = ssh_hosts["node1"].address
    assert sorted(m for seen in masters.values() for m in seen) == [f"{address}:29500", f"{address}:29501"], masters


def test_more_nodes_than_the_target_has_hosts_is_a_plan_error(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    project(root, ssh_hosts, nnodes=4)
    code, out, err = run_cli("plan", cwd=root, env=service_env())
    assert code == ExitCode.CONFIG, out + err
    line = next(ln for ln in err.splitlines() if "needs 4 nodes" in ln)
    assert "job:multi@cpu/lab#1: needs 4 nodes; target 'lab' has 3 hosts that could take it" in line, err
    assert "lower the model's nnodes, add hosts to the target" in err and "Traceback" not in err
    code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env())
    assert code == ExitCode.CONFIG and "needs 4 nodes" in err, out + err
    assert not (root / ".madengine" / "logs").exists() or not list((root / ".madengine" / "logs").rglob("*.log"))
    # GPUs count too: 2 nodes of 2 GPUs, when only one host has that many.
    project(root, ssh_hosts, nnodes=2)
    models = json.loads((root / "models.json").read_text())
    models[0]["n_gpus"] = "2"
    (root / "models.json").write_text(json.dumps(models))
    target = {"backend": "ssh", "container": "none",
              "hosts": [ssh_hosts["node1"].madfile_host(gpus=2), *ssh_hosts.madfile_hosts(["node2", "node3"], gpus=1)]}
    madfile = (root / "madfile.yaml").read_text().splitlines()
    (root / "madfile.yaml").write_text("\n".join([*madfile[:-1], f"targets: {{lab: {json.dumps(target)}}}"]) + "\n")
    code, out, err = run_cli("plan", cwd=root, env=service_env())
    assert code == ExitCode.CONFIG, out + err
    assert "needs 2 nodes; target 'lab' has 1 host that could take it (with 2 GPUs free)" in err, err


def test_one_node_failing_fails_the_job_naming_its_host_and_stops_the_others(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    # Rank 1 fails at once; rank 0 would wait at the barrier for a node that never comes (9 s, then exit 9):
    # it is stopped when rank 1 fails, and the job's message is rank 1's.
    project(root, ssh_hosts, nnodes=2, args="fail-on-1", shared_workdir=True)
    code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env(), timeout=300)
    assert code == ExitCode.RUN_FAILURE, out + err
    (row,) = attempts(root)
    logs = job_logs(root)
    failing = node_lines(logs[1])["host"]
    assert row[2] == "FAILURE" and row[3] == node_lines(logs[0])["host"], row  # recorded on rank 0's host
    message = row[4]
    assert message.startswith(f"{failing} (rank 1): ") and "exited with code 7" in message, message
    assert f"{logs[1].name}" in message and "\n" not in message, message
    assert any(ln.startswith("FAILURE") and f"{failing} (rank 1)" in ln for ln in out.splitlines()), out
    assert "not every node arrived" not in logs[0].read_text()  # stopped before it gave up waiting
    assert "rank 1 fails on purpose" in logs[1].read_text()


def test_a_node_failing_after_the_others_succeeded_fails_the_job(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    project(root, ssh_hosts, nnodes=3, args="fail-late")
    code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env(), timeout=300)
    assert code == ExitCode.RUN_FAILURE, out + err
    (row,) = attempts(root)
    assert row[2] == "FAILURE" and "(rank " in row[4] and "exited with code 5" in row[4], row
    assert "(rank 0)" not in row[4]


def _attempt_processes(attempt: int, workspace: str) -> list[int]:
    """Live processes of this machine (the hosts share its process table) run for this attempt."""
    wanted = {f"MADENGINE_ATTEMPT={attempt}".encode(), f"MADENGINE_WORKSPACE={workspace}".encode()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not wanted <= set((entry / "environ").read_bytes().split(b"\0")):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _recorded_handle(root: Path) -> str:
    try:
        rows = attempts(root)
    except sqlite3.Error:  # not there yet, or busy: asked again
        return ""
    return str(rows[0][5] or "") if rows else ""


def _containers(ssh: SshServices, hosts: Sequence[str], attempt: int) -> dict[str, list[str]]:
    """The containers of this attempt on each host's engine (in any state)."""
    return {h: ssh[h].docker("ps", "--all", "--quiet", "--filter", f"label=madengine.attempt={attempt}").stdout.split()
            for h in hosts}


@pytest.mark.parametrize("container", ["none", "docker"])
def test_a_killed_apply_leaves_every_nodes_run_recorded_and_the_next_apply_stops_them(
        ssh_hosts: SshServices, registry: Registry, tmp_path: Path, container: str) -> None:  # noqa: F811
    from madengine.backends.base import workspace_id

    root = tmp_path / "p"
    shared = project(root, ssh_hosts, nnodes=2, args="sleep", container=container, base=registry.base_image,
                     shared_workdir=container == "none")
    env = {**os.environ, **service_env(), "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    with subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as killed:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (
                all((shared / f"arrived.{r}").exists() for r in (0, 1)) and _recorded_handle(root).count("node") == 2):
            time.sleep(0.2)
        os.killpg(killed.pid, 9)
    assert all((shared / f"arrived.{r}").exists() for r in (0, 1))  # both nodes ran
    (attempt, _, status, _, _, handle) = attempts(root)[0]
    assert status == "RUNNING" and handle is not None and handle.startswith("ranks:"), handle
    hosts = [h for h, _ in json.loads(handle.removeprefix("ranks:"))]  # each node's run, on its host
    assert sorted(hosts) == sorted((shared / f"arrived.{r}").read_text().strip() for r in (0, 1)), handle
    workspace = workspace_id(root / ".madengine" / "state.db")
    if container == "none":
        assert _attempt_processes(attempt, workspace), "the killed apply's nodes are still running"
    else:
        assert all(_containers(ssh_hosts, hosts, attempt).values())
    # The next apply stops what each node left, then runs the job again (now quickly).
    models = json.loads((root / "models.json").read_text())
    models[0]["args"] = f"{shared}-again ok"
    (root / "models.json").write_text(json.dumps(models))
    if container == "docker":
        mounts = {f"{shared}-again": f"{shared}-again"}
        text = (root / "madfile.yaml").read_text().replace(json.dumps({str(shared): str(shared)}), json.dumps(mounts))
        (root / "madfile.yaml").write_text(text)
    Path(f"{shared}-again").mkdir()
    again = subprocess.run([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    what = "process group" if container == "none" else "container"
    cleaned = [ln for ln in again.stdout.splitlines() if "cleaned up" in ln and what in ln]
    assert {h for h in hosts if any(f"cleaned up {h}: " in ln for ln in cleaned)} == set(hosts), again.stdout
    if container == "none":
        assert _attempt_processes(attempt, workspace) == []
    else:
        assert _containers(ssh_hosts, hosts, attempt) == {h: [] for h in hosts}


def test_a_node_host_that_cannot_be_reached_fails_its_first_try_and_the_retry_runs_on_the_others(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    shared = project(root, ssh_hosts, nnodes=2)
    with ssh_hosts.stopped("node2"):  # the job's first try takes node1 (rank 0) and node2
        code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env(), timeout=300)
    assert code == 0, out + err
    rows = attempts(root)
    assert [s for _, _, s, _, _, _ in rows] == ["FAILURE", "SUCCESS"], rows  # nothing had started: retried
    assert rows[0][4].startswith("node2: ") and "(transient; retrying)" in rows[0][4], rows
    # The host that was lost, not rank 0's, takes no more jobs while others can: the retry runs without it.
    assert sorted((shared / f"arrived.{r}").read_text().strip() for r in (0, 1)) == ["node1", "node3"]


# A process that runs one multi-node job through the backend, printing each handle it is given, until it
# is killed (as an apply is): argv: the project root, the workspace id, the shared directory, the hosts as JSON.
KILLED_RUNNER = """
import json, sys
from pathlib import Path
from madengine.backends.base import ATTEMPT_ENV, Cancel, Workspace
from madengine.backends.specs import JobSpec
from madengine.backends.ssh import SshBackend
from madengine.madfile.model import SshTarget

root, ident, shared, hosts, known = Path(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
target = SshTarget.model_validate({"backend": "ssh", "container": "none", "hosts": hosts})
backend = SshBackend("lab", target, Workspace(root=root, state_dir=root / ".madengine", workspace_id=ident),
                     known_hosts=(Path(known),))
job = JobSpec(address="job:multi@cpu/lab#1", node_hash="sha256:" + "1" * 64, model="multi", context="cpu",
              target="lab", script="scripts/m/run.sh", args=(shared, "sleep"), env={ATTEMPT_ENV: "77"}, n_gpus=0,
              timeout=0, image_tag=None, image_digest=None, nnodes=2, host="node3", peers=(("node1", ()),),
              log_path=root / ".madengine" / "logs" / "1" / "multi.log")
backend.run(job, Cancel(on_start=lambda handle: print(handle, flush=True)))
"""


def test_the_handle_of_a_multi_node_run_names_every_nodes_run_for_the_clean_up_of_a_killed_apply(
        ssh_hosts: SshServices, tmp_path: Path) -> None:  # noqa: F811
    """What a killed apply recorded (one handle naming each node's process group) is enough for the next
    one to stop the run on every node, without its end-of-apply sweep."""
    from madengine.backends.base import OrphanRecord, Workspace
    from madengine.backends.ssh import SshBackend
    from madengine.madfile.model import SshTarget

    root = tmp_path / "p"
    shared = project(root, ssh_hosts, nnodes=2)
    ident = f"mn-{uuid.uuid4().hex[:8]}"
    hosts = ssh_hosts.madfile_hosts()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with subprocess.Popen([sys.executable, "-c", KILLED_RUNNER, str(root), ident, str(shared), json.dumps(hosts),
                           str(ssh_hosts.known_hosts)], env=env, stdout=subprocess.PIPE, text=True) as killed:
        assert killed.stdout is not None
        handle = ""
        while handle.count("node") < 2:  # each node's run has started (the handle names both)
            handle = killed.stdout.readline().strip()
            assert handle, "the runner ended before both nodes started"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all((shared / f"arrived.{r}").exists() for r in (0, 1)):
            time.sleep(0.1)
        killed.kill()
    assert json.loads(handle.removeprefix("ranks:"))[0][0] == "node3", handle  # rank 0 first
    target = SshTarget.model_validate({"backend": "ssh", "container": "none", "hosts": hosts})
    other = SshBackend("lab", target, Workspace(root=root, state_dir=root / ".madengine", workspace_id=ident),
                       known_hosts=(ssh_hosts.known_hosts,))  # the next apply's
    try:
        removed = other.cleanup_orphans([OrphanRecord(attempt=77, handle=handle, host="node3")])
        assert sorted(r.split(":")[0] for r in removed) == ["node1", "node3"], removed
        assert other.cleanup_orphans(None) == []  # nothing of it was left for the sweep
    finally:
        other.close()


def test_the_timeout_stops_every_node_and_ctrl_c_interrupts_them_all(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    import signal

    from madengine.backends.base import workspace_id

    root = tmp_path / "p"
    shared = project(root, ssh_hosts, nnodes=2, args="sleep")  # each node sleeps 300 s
    code, out, err = run_cli("apply", "--yes", "--timeout", "3", cwd=root, env=service_env(), timeout=120)
    assert code == ExitCode.RUN_FAILURE, out + err
    (row,) = attempts(root)
    assert row[2] == "TIMEOUT" and "(rank " in row[4] and "timed out" in row[4], row
    workspace = workspace_id(root / ".madengine" / "state.db")
    assert _attempt_processes(row[0], workspace) == []
    for r in (0, 1):
        (shared / f"arrived.{r}").unlink()
    env = {**os.environ, **service_env(), "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    with subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes", "--rerun-failed"], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as apply:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all((shared / f"arrived.{r}").exists() for r in (0, 1)):
            time.sleep(0.1)
        assert all((shared / f"arrived.{r}").exists() for r in (0, 1))
        apply.send_signal(signal.SIGINT)
        out, err = apply.communicate(timeout=120)  # both nodes stopped: it does not wait for their sleep
    assert apply.returncode == ExitCode.INTERRUPTED, out + err
    last = attempts(root)[-1]
    assert last[2] == "INTERRUPTED", last
    assert _attempt_processes(last[0], workspace) == []


def test_an_ansible_target_refuses_a_multi_node_job_at_plan_and_says_where_it_runs(
        ssh_hosts: SshServices, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "p"
    project(root, ssh_hosts, nnodes=2)
    text = (root / "madfile.yaml").read_text().replace('"backend": "ssh"', '"backend": "ansible"')
    (root / "madfile.yaml").write_text(text)
    code, out, err = run_cli("plan", cwd=root, env=service_env())
    assert code == ExitCode.CONFIG, out + err
    assert "job:multi@cpu/lab#1: needs 2 nodes, and an ansible target runs a job on one host" in err, err
    assert "on an ssh, slurm or kubernetes target" in err and "Traceback" not in err
