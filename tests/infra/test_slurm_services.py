"""The SLURM cluster of `dev/services` is what the slurm backend's tests take it for: jobs complete on both
partitions and write under /tmp, arrays, 2-node jobs with one `srun` task per node, scancel, time limits, the
main Docker engine from inside a job, and sbatch through a login node over SSH. Real services: a failure,
never a skip, when they are missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import tests.infra.services
from tests.infra.slurm import LOCAL, NODES, SlurmCluster, load_slurm_cluster, parse_job_line
from tests.infra.ssh import SshServices


def script(*lines: str) -> str:
    return "\n".join(["#!/bin/bash", "set -eu", *lines]) + "\n"


@pytest.mark.parametrize("partition", [LOCAL, NODES])
def test_a_job_completes_on_each_partition_and_writes_under_tmp(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                                 partition: str) -> None:
    assert str(tmp_path).startswith("/tmp/")  # what every node shares
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(script(f"hostname > {tmp_path}/written", "echo done"),
                               "-p", partition, "-o", str(out), "-J", "madengine-services-test")
    assert slurm_cluster.wait(job) == "COMPLETED"
    assert out.read_text() == "done\n"
    host = (tmp_path / "written").read_text().strip()
    assert host in slurm_cluster.partitions[partition]
    fields = slurm_cluster.show(job)[job]
    assert (fields["Partition"], fields["NodeList"], fields["ExitCode"]) == (partition, host, "0:0")


def test_a_failing_job_is_failed_with_its_exit_code(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch(script("exit 3"), "-o", str(tmp_path / "out"))
    assert slurm_cluster.wait(job) == "FAILED"
    assert slurm_cluster.show(job)[job]["ExitCode"] == "3:0"


def test_an_array_of_8_completes_every_task(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch(script("echo task $SLURM_ARRAY_TASK_ID"), "--array=0-7",
                               "-o", f"{tmp_path}/%A_%a.out")
    states = slurm_cluster.wait_all(job)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(8)}
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {f"{job}_{i}.out": f"task {i}\n"
                                                                  for i in range(8)}


def test_a_two_node_job_runs_one_srun_task_per_node(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(script("srun bash -c 'echo \"$SLURM_NODEID $(hostname)\"'"),
                               "-p", NODES, "--nodes=2", "-o", str(out))
    assert slurm_cluster.wait(job) == "COMPLETED", out.read_text()
    ranks = dict(line.split() for line in out.read_text().splitlines())
    assert sorted(ranks) == ["0", "1"]
    assert ranks["0"] != ranks["1"]
    assert set(ranks.values()) <= set(slurm_cluster.nodes)


def test_gpus_are_counted_per_node_and_more_than_a_node_has_is_refused(slurm_cluster: SlurmCluster,
                                                                       tmp_path: Path) -> None:
    assert slurm_cluster.gpus_per_node >= 2
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(script("echo $ROCR_VISIBLE_DEVICES"), "-p", NODES, "--gpus-per-node=2",
                               "-o", str(out))
    assert slurm_cluster.wait(job) == "COMPLETED"
    assert out.read_text() == "0,1\n"
    too_many = f"--gpus-per-node={slurm_cluster.gpus_per_node + 1}"
    refused = slurm_cluster.run(["sbatch", "--parsable", "-p", LOCAL, too_many, "--wrap", "true"], check=False)
    assert refused.returncode != 0
    assert "Requested node configuration is not available" in refused.stderr


def test_scancel_of_a_running_job_cancels_it(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job = slurm_cluster.sbatch(script("sleep 300"), "-p", NODES, "-o", str(tmp_path / "out"))
    slurm_cluster.wait_running(job)
    slurm_cluster.cancel(job)
    assert slurm_cluster.wait(job, timeout=30) == "CANCELLED"


def test_a_job_over_its_time_limit_times_out(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """SLOW (60 to 90 s): SLURM's time limits are whole minutes (`--time=0:02` is rounded up to one), and
    slurmctld checks them every 30 s. The shortest limit there is."""
    job = slurm_cluster.sbatch(script("sleep 300"), "--time=1", "-o", str(tmp_path / "out"))
    slurm_cluster.wait_running(job)
    assert slurm_cluster.wait(job, timeout=150) == "TIMEOUT"


@pytest.mark.parametrize("partition", [LOCAL, NODES])
def test_a_job_on_each_partition_reaches_the_main_docker_engine(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                                partition: str) -> None:
    here = subprocess.run(["docker", "info", "--format", "{{.ID}}"], capture_output=True, text=True, timeout=30,
                          check=True, env=dict(slurm_cluster.env), stdin=subprocess.DEVNULL).stdout.strip()
    out = tmp_path / "job.out"
    job = slurm_cluster.sbatch(script("docker info --format '{{.ID}}'"), "-p", partition, "-o", str(out))
    assert slurm_cluster.wait(job) == "COMPLETED", out.read_text()
    assert out.read_text().strip() == here


@pytest.mark.parametrize(("login", "partition"), [("loopback", LOCAL), ("node2", NODES)])
def test_sbatch_through_a_login_node_over_ssh(slurm_cluster: SlurmCluster, ssh_hosts: SshServices, tmp_path: Path,
                                              login: str, partition: str) -> None:
    out = tmp_path / "job.out"
    done = ssh_hosts[login].run(["sbatch", "--parsable", "-p", partition, "-o", str(out)],
                                input=script("echo submitted from $SLURM_SUBMIT_HOST"))
    job = done.stdout.strip().split(";")[0]
    assert slurm_cluster.wait(job) == "COMPLETED"
    assert out.read_text().startswith("submitted from ")


def test_without_the_cluster_the_fixture_fails_naming_dev_services(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tests.infra.services, "SERVICES_DIR", tmp_path)
    monkeypatch.delenv("MADENGINE_SKIP_SERVICES", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"SLURM_CONF missing.*`bash dev/services start`"):
        load_slurm_cluster()


def test_with_slurmctld_down_the_fixture_fails_naming_dev_services(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The running cluster's configuration with a port nobody listens on: what a client sees once slurmctld is gone.
    conf = tmp_path / "slurm.conf"
    conf.write_text("".join(("SlurmctldPort=1\n" if line.startswith("SlurmctldPort=") else line)
                            for line in slurm_cluster.conf.read_text().splitlines(keepends=True)))
    (tmp_path / "env").write_text(f"SLURM_CONF={conf}\n")
    monkeypatch.setattr(tests.infra.services, "SERVICES_DIR", tmp_path)
    monkeypatch.delenv("MADENGINE_SKIP_SERVICES", raising=False)
    monkeypatch.delenv("SLURM_CONF", raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"slurmctld does not answer.*`bash dev/services start`"):
        load_slurm_cluster()


def test_a_job_line_is_parsed_with_spaces_in_values() -> None:
    line = "JobId=7 JobName=a b UserId=root(0) Comment=madengine attempt 3 WorkDir=/tmp/a b JobState=RUNNING"
    assert parse_job_line(line) == {"JobId": "7", "JobName": "a b", "UserId": "root(0)",
                                    "Comment": "madengine attempt 3", "WorkDir": "/tmp/a b", "JobState": "RUNNING"}
