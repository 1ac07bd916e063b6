"""How the slurm backend reads SLURM: `squeue -t all -O ...` lines (captured from the dev/services cluster,
Slurm 22.05), `sacct -P` lines, and what each state means to madengine."""

from __future__ import annotations

from madengine.backends.slurm import exit_code, parse_sacct, parse_squeue, queue_state
from madengine.state.model import Status

# squeue -h -r -t all -j ... -O 'JobArrayID:|,State:|,Reason:|,NodeList:|,exit_code:|,Name:|'
SQUEUE = """\
21|FAILED|NonZeroExitCode|vm|1792|madengine-wsx-2|
22|FAILED|JobLaunchFailure|vm|9|madengine-wsx-3|
20|RUNNING|None|vm|0|madengine-wsx-1|
23|CANCELLED|None|node[1-3]|15|madengine-wsx-4|
24|CANCELLED|None|node[1-3]|15|other|job|
20_0|COMPLETED|None|vm|0|madengine-wsx-5|
20_1|PENDING|Resources||0|madengine-wsx-5|
25|TIMEOUT|TimeLimit|vm|15|madengine-wsx-6|
26|OUT_OF_MEMORY|OutOfMemory|vm|0|madengine-wsx-7|
"""


def test_squeue_lines_become_states() -> None:
    seen = parse_squeue(SQUEUE, "madengine-wsx-")
    assert seen["21"].status is Status.FAILURE and seen["21"].exit_code == 7 and seen["21"].reason == "exit code 7"
    assert seen["22"].status is Status.FAILURE and seen["22"].exit_code == 137
    assert seen["22"].reason == "JobLaunchFailure, exit code 137"
    assert seen["20"].status is None and seen["20"].where == "vm" and seen["20"].reason == ""
    assert seen["20"].describe("slurm") == "slurm 20 RUNNING on vm"
    assert seen["23"].status is Status.INTERRUPTED and seen["23"].where == "node[1-3]"
    assert seen["20_0"].status is Status.SUCCESS and seen["20_0"].exit_code == 0
    assert seen["20_1"].status is None and seen["20_1"].describe("slurm") == "slurm 20_1 PENDING (Resources)"
    assert (seen["25"].status, seen["25"].reason, seen["25"].exit_code) == (Status.TIMEOUT, "TimeLimit", 143)
    assert seen["26"].status is Status.FAILURE and seen["26"].describe("slurm") == \
        "slurm 26 OUT_OF_MEMORY on vm (OutOfMemory)"


def test_a_job_of_another_name_is_not_taken_for_ours() -> None:
    """Job ids start again when a cluster's state is wiped: an id madengine recorded may name someone else's job."""
    seen = parse_squeue(SQUEUE, "madengine-wsx-")
    assert "24" not in seen
    assert parse_squeue(SQUEUE, "madengine-other-") == {}


def test_wait_statuses_become_exit_codes() -> None:
    assert [exit_code(s) for s in ("0", "256", "1792", "9", "15", "", "N/A")] == [0, 1, 7, 137, 143, None, None]


def test_every_finished_state_has_its_meaning() -> None:
    expected = {"COMPLETED": Status.SUCCESS, "TIMEOUT": Status.TIMEOUT, "CANCELLED": Status.INTERRUPTED,
                "FAILED": Status.FAILURE, "NODE_FAIL": Status.FAILURE, "OUT_OF_MEMORY": Status.FAILURE,
                "BOOT_FAIL": Status.FAILURE, "DEADLINE": Status.FAILURE, "PREEMPTED": Status.FAILURE}
    for state, status in expected.items():
        assert queue_state("1", state, "None", "vm", 0).status is status, state
    for state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED"):
        assert queue_state("1", state, "None", "", 0).status is None, state


def test_sacct_lines_become_states() -> None:
    text = ("41|COMPLETED||vm|0:0|madengine-wsx-9\n41_2|CANCELLED by 0||vm|0:15|madengine-wsx-9\n"
            "42|FAILED|NonZeroExitCode|node1|3:0|madengine-wsx-9\n43|COMPLETED||vm|0:0|someone-else\n")
    seen = parse_sacct(text, "madengine-wsx-")
    assert seen["41"].status is Status.SUCCESS
    assert seen["41_2"].state == "CANCELLED" and seen["41_2"].status is Status.INTERRUPTED
    assert seen["42"].exit_code == 3 and seen["42"].where == "node1"
    assert "43" not in seen
