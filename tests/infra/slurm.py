"""The SLURM cluster of `dev/services start`, for the slurm backend's tests.

What runs (dev/services' SLURM section has the details): one slurmctld without accounting (`sacct` is
disabled: finished jobs stay visible to `scontrol show job -o` for an hour, MinJobAge), munged, and two
partitions: `local` (the default), this machine as one compute node, and `nodes`, the SSH hosts
node1..node3, each with a slurmd in its own namespaces (a job there sees that host's hostname, address and
/srv). Every client needs SLURM_CONF (the env file has it, and so do the SSH sessions of the loopback sshd and
of the hosts: `sbatch` works through a login node reached over SSH). A job inherits the submitter's
environment: with the env file's DOCKER_HOST it runs `docker` against the main engine, from either partition;
/tmp is shared by every node, so a job writes its output to any directory under /tmp (a test's tmp_path).
Every node has 8 CPUs and 8 GPUs that SLURM only counts (gres gpu on copies of /dev/null): `--gpus-per-node`
and `--gres=gpu:N` are scheduled and set CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES, asking for more is refused.

Fixture (import it into a conftest: `from tests.infra.slurm import slurm_cluster  # noqa: F401`):

- `slurm_cluster` (session): the cluster, checked to answer with every node up; a FAILURE (naming
  `bash dev/services start`) when it does not. A test that uses it is marked `slurm` (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.services import SERVICES_DIR, service_env, unavailable

HINT = "run `bash dev/services start` (dev/test does it before pytest)"
LOCAL = "local"  # this machine as the one compute node (the default partition)
NODES = "nodes"  # node1..node3
# Job states after which nothing changes any more (COMPLETING is not one: the job's processes still end).
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                      "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"})
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=")


def parse_job_line(line: str) -> dict[str, str]:
    """One line of `scontrol show job -o` as its fields. Values may hold spaces (WorkDir, Comment, Command):
    a value runs up to the next ` Key=`."""
    marks = list(_FIELD.finditer(line))
    return {m.group(1): line[m.end():marks[i + 1].start() if i + 1 < len(marks) else len(line)].strip()
            for i, m in enumerate(marks)}


def job_key(fields: Mapping[str, str]) -> str:
    """The id of one line of `scontrol show job -o`: `A_T` for a task of array A, else the JobId."""
    task = fields.get("ArrayTaskId")
    return f"{fields['ArrayJobId']}_{task}" if task and fields.get("ArrayJobId") else fields["JobId"]


@dataclass(frozen=True)
class SlurmCluster:
    """The cluster as a client sees it: its configuration and the environment every client command needs."""

    conf: Path  # slurm.conf (SLURM_CONF)
    env: Mapping[str, str]  # this process's environment with SLURM_CONF and the env file's DOCKER_HOST
    partitions: Mapping[str, tuple[str, ...]]  # partition -> its node names: `local` and `nodes`
    gpus_per_node: int  # GPUs SLURM counts on every node (gres gpu, no real device): --gpus-per-node works
    local: str = LOCAL
    remote: str = NODES

    @property
    def local_node(self) -> str:
        """The name of this machine as a compute node (partition `local`)."""
        return self.partitions[self.local][0]

    @property
    def nodes(self) -> tuple[str, ...]:
        """The hosts of partition `nodes` (node1..node3)."""
        return self.partitions[self.remote]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A SLURM client command against this cluster. `check`: a non-zero exit fails the test."""
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(self.env), input=input if input is not None else "")
        if check and done.returncode != 0:
            pytest.fail(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.strip()}", pytrace=False)
        return done

    def sbatch(self, script_text: str, *args: str) -> str:
        """Submit `script_text` (a batch script: `#!/bin/bash` first) with sbatch's options `args`; the job id
        (`A` for an array, whose tasks are `A_0`...)."""
        out = self.run(["sbatch", "--parsable", *args], input=script_text).stdout.strip()
        return out.split(";", 1)[0]  # --parsable: `id` or `id;cluster`

    def show(self, job_id: str) -> dict[str, dict[str, str]]:
        """`scontrol show job -o JOB`: every line (one per array task) by its id (`job_key`); {} when the
        cluster does not know the job."""
        done = self.run(["scontrol", "show", "job", "-o", job_id], check=False)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}
            pytest.fail(f"scontrol show job {job_id} exited {done.returncode}: {done.stderr.strip()}",
                        pytrace=False)
        lines = (parse_job_line(line) for line in done.stdout.splitlines() if line.strip())
        return {job_key(fields): fields for fields in lines}

    def states(self, job_id: str) -> dict[str, str]:
        """The JobState of each line of `show(job_id)` (one per task of an array)."""
        return {key: fields.get("JobState", "") for key, fields in self.show(job_id).items()}

    def state(self, job_id: str) -> str:
        """The JobState of one job (or one task `A_T` of an array), by `scontrol show job -o`."""
        states = self.states(job_id)
        if len(states) != 1:
            pytest.fail(f"job {job_id}: {len(states)} lines from scontrol show job ({states}); "
                        "use states() for an array", pytrace=False)
        return next(iter(states.values()))

    def wait_all(self, job_id: str, timeout: float = 60) -> dict[str, str]:
        """Poll until every line of `job_id` (each task of an array) is in a finished state; their states.
        A job still unfinished after `timeout` seconds fails the test."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job_id)
            if states and all(s in FINISHED for s in states.values()):
                return states
            if time.monotonic() >= deadline:
                pytest.fail(f"job {job_id} not finished after {timeout:g}s: {states}", pytrace=False)
            time.sleep(0.2)

    def wait(self, job_id: str, timeout: float = 60) -> str:
        """Poll until one job is finished (see `FINISHED`); its final state (COMPLETED, TIMEOUT...)."""
        states = self.wait_all(job_id, timeout)
        if len(states) != 1:
            pytest.fail(f"job {job_id} is an array ({states}): use wait_all()", pytrace=False)
        return next(iter(states.values()))

    def wait_running(self, job_id: str, timeout: float = 30) -> None:
        """Poll until the job runs (a finished job fails the test: it cannot run any more)."""
        deadline = time.monotonic() + timeout
        while (state := self.state(job_id)) != "RUNNING":
            if state in FINISHED or time.monotonic() >= deadline:
                pytest.fail(f"job {job_id} is {state}, not RUNNING", pytrace=False)
            time.sleep(0.1)

    def cancel(self, *job_ids: str) -> None:
        self.run(["scancel", *job_ids])


def load_slurm_cluster() -> SlurmCluster:
    """The cluster `dev/services` started, from its env file; fails the test (never skips) when it is missing,
    does not answer, or lacks a node."""
    env = service_env()
    conf_text = env.get("SLURM_CONF", "")
    if not conf_text:
        unavailable(f"SLURM is not set up (SLURM_CONF missing from {SERVICES_DIR / 'env'}): {HINT}")
    conf = Path(conf_text)
    if not conf.is_file():
        unavailable(f"SLURM's configuration {conf} is missing: {HINT}")
    client_env = {**os.environ, "SLURM_CONF": str(conf)}
    if env.get("DOCKER_HOST"):
        client_env["DOCKER_HOST"] = env["DOCKER_HOST"]
    ping = _client(client_env, "scontrol", "ping")
    if "is UP" not in ping:
        unavailable(f"slurmctld does not answer ({ping.strip() or 'scontrol ping failed'}): {HINT}")
    partitions: dict[str, list[str]] = {}
    down = []
    gpus = set()
    for line in _client(client_env, "sinfo", "-h", "-N", "-o", "%N %P %T %G").splitlines():
        node, partition, state, gres = line.split()
        partitions.setdefault(partition.rstrip("*"), []).append(node)
        gpus.add(int(found.group(1)) if (found := re.search(r"\bgpu:(?:[^:,]+:)?(\d+)", gres)) else 0)
        if state.rstrip("*~#$@+-^!") not in {"idle", "mixed", "allocated", "completing"}:
            down.append(f"{node} ({state})")
    missing = [p for p in (LOCAL, NODES) if not partitions.get(p)]
    if missing or down:
        why = f"partitions missing: {', '.join(missing)}" if missing else f"nodes not up: {', '.join(down)}"
        unavailable(f"SLURM at {conf}: {why}: {HINT}")
    return SlurmCluster(conf, client_env, {p: tuple(sorted(n)) for p, n in partitions.items()}, min(gpus))


def _client(env: Mapping[str, str], *argv: str) -> str:
    """The output of a client command; '' when it fails (or is not installed)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False, env=dict(env),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """The SLURM cluster of `dev/services` (partitions `local` and `nodes`), checked once per session."""
    return load_slurm_cluster()
