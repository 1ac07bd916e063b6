"""The `slurm` target (issue 9): its keys, strict values (each goes into an `#SBATCH` line), the registry its
container jobs need, and which keys count in job hashes."""

from __future__ import annotations

import pytest

from madengine.madfile.model import SlurmTarget, job_config
from tests.unit.madfile.conftest import Errors, Load, at, one

ISSUE_EXAMPLE = """\
version: 1
registry: localhost:5000
targets:
  hpc:
    backend: slurm
    login: {address: login.example.org, user: me, key: ~/.ssh/id_ed25519}   # omit: sbatch on this machine
    partition: gpu
    account: proj42          # optional: qos, time_limit, exclusive, constraint, modules: [rocm/6.3]
    gpus_per_node: 8
    container: docker        # docker | apptainer | none (host processes on the compute node)
    shared_dir: /scratch/me/madengine   # a directory every node sees: run dirs, logs, results
    array: true              # jobs of one image and shape go in one job array (default true)
"""


def test_the_issue_example_loads(load: Load) -> None:
    target = load(ISSUE_EXAMPLE).madfile.targets["hpc"]
    assert isinstance(target, SlurmTarget) and target.login is not None
    assert (target.login.address, target.login.user, target.login.key, target.login.port) == (
        "login.example.org", "me", "~/.ssh/id_ed25519", 22)
    assert (target.partition, target.account, target.gpus_per_node, target.container, target.shared_dir,
            target.array) == ("gpu", "proj42", 8, "docker", "/scratch/me/madengine", True)


def test_every_optional_key(load: Load) -> None:
    target = load("""\
version: 1
targets:
  hpc:
    backend: slurm
    container: none
    qos: high
    time_limit: "1-12:00:00"
    exclusive: true
    constraint: "mi300x&ib"
    modules: [rocm/6.3, gcc/13.2]
    extra_sbatch: [--mem=64G, --reservation=bench]
    max_nodes: 4
""").madfile.targets["hpc"]
    assert isinstance(target, SlurmTarget)
    assert (target.qos, target.time_limit, target.exclusive, target.constraint, target.modules, target.extra_sbatch,
            target.max_nodes, target.login, target.shared_dir) == (
        "high", "1-12:00:00", True, "mi300x&ib", ["rocm/6.3", "gcc/13.2"], ["--mem=64G", "--reservation=bench"], 4,
        None, "~/.madengine")


def test_an_unknown_key_is_refused_at_its_line(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  hpc:\n    backend: slurm\n    container: none\n    partiton: gpu\n"))
    assert d.message == "unknown key `partiton`" and at(d) == (6, 5)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("partition", "'gpu --account=x'", "`gpu --account=x` is not a SLURM name"),
    ("account", "'a\\nb'", "is not a SLURM name"),
    ("time_limit", "'10 minutes'", "`10 minutes` is not a SLURM time"),
    ("constraint", "'a b'", "`a b` is not a SLURM feature expression"),
    ("modules", "['rocm; reboot']", "`rocm; reboot` is not a module name"),
    ("extra_sbatch", "['--mem 4G']", "`--mem 4G` is not one sbatch option"),
    ("extra_sbatch", "['--array=0-3']", "`--array` is set by madengine"),
    ("extra_sbatch", "['--partition=x']", "`--partition` is set by madengine"),
    ("shared_dir", "relative/dir", "`relative/dir` is not an absolute path"),
    ("shared_dir", "'/scratch/my dir'", "is not an absolute path"),
    ("shared_dir", "/scratch/%u", "is not an absolute path"),
    ("container", "podman", "expected one of docker, apptainer, none"),
])
def test_values_that_are_not_one_word_of_sbatch_are_refused(errors: Errors, key: str, value: str,
                                                             message: str) -> None:
    container = "" if key == "container" else "    container: none\n"
    d = one(errors(f"version: 1\ntargets:\n  hpc:\n    backend: slurm\n{container}    {key}: {value}\n"))
    assert message in d.message, d.message
    assert d.line == 6 or (key == "container" and d.line == 5)


def test_the_login_node_runs_no_jobs(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  hpc:\n    backend: slurm\n    container: none\n"
                   "    login: {address: login, gpus: 8}\n"))
    assert "the login node runs no jobs" in d.message and "gpus_per_node" in d.message


def test_host_key_check_needs_a_login_node(load: Load, errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  hpc:\n    backend: slurm\n    container: none\n"
                   "    host_key_check: accept-new\n"))
    assert "`host_key_check` is the login node's, and there is none" in d.message
    target = load("version: 1\ntargets:\n  hpc:\n    backend: slurm\n    container: none\n"
                  "    login: {address: login}\n    host_key_check: accept-new\n").madfile.targets["hpc"]
    assert isinstance(target, SlurmTarget) and target.host_key_check == "accept-new"


@pytest.mark.parametrize(("container", "where"), [("", (4, 14)), ("    container: docker\n", (5, 16)),
                                                  ("    container: apptainer\n", (5, 16))])
def test_jobs_in_images_need_a_registry(errors: Errors, container: str, where: tuple[int, int]) -> None:
    d = one(errors(f"version: 1\ntargets:\n  hpc:\n    backend: slurm\n{container}"))
    assert d.message.startswith("target `hpc` runs jobs in their images (container: ")
    assert "set `registry:`" in d.hint and "container: none" in d.hint
    assert at(d) == where


def test_host_processes_need_no_registry(load: Load) -> None:
    load("version: 1\ntargets:\n  hpc: {backend: slurm, container: none}\n")


def test_placement_keys_are_not_hashed() -> None:
    base = SlurmTarget(backend="slurm", container="none")
    moved = SlurmTarget(backend="slurm", container="none", login={"address": "login2"},  # type: ignore[arg-type]
                        shared_dir="/other", array=False, account="proj", qos="low", time_limit="10",
                        max_nodes=3, host_key_check="accept-new")
    assert job_config(base) == job_config(moved)


@pytest.mark.parametrize("change", [{"partition": "gpu"}, {"constraint": "mi300x"}, {"modules": ["rocm/6.3"]},
                                    {"container": "docker"}, {"gpus_per_node": 8}, {"exclusive": True},
                                    {"extra_sbatch": ["--mem=4G"]}])
def test_what_a_job_computes_is_hashed(change: dict[str, object]) -> None:
    base = SlurmTarget(backend="slurm", container="none")
    assert job_config(base.model_copy(update=change)) != job_config(base)
