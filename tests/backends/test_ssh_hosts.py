"""The ssh backend on the three hosts of dev/services (node1..node3: own address, sshd and Docker engine
each; tests/infra/ssh.py), with `container: docker`: images delivered both ways, a host that goes away
mid-apply, an apply killed while jobs run on the hosts."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.base import Cancel, Workspace, workspace_id
from madengine.backends.specs import ImageSpec
from madengine.backends.ssh import SshBackend
from madengine.madfile.model import SshTarget
from madengine.state.model import Status
from tests.conftest import REPO_ROOT, RunCli
from tests.infra.services import Registry, docker_client, registry, service_env  # noqa: F401 (fixtures)
from tests.infra.ssh import SshServices, ssh_hosts, ssh_services, start_host, stop_host  # noqa: F401 (fixtures)

pytestmark = pytest.mark.docker

RUN = """\
#!/bin/bash
echo "on $(hostname)"
[ -n "${SLEEP:-}" ] && sleep "$SLEEP"
[ -n "${1:-}" ] && sleep "$1"
echo "performance: 7.5 samples_per_second"
"""


def image_project(root: Path, base: str) -> ImageSpec:
    """A Dockerfile of this test's own (a fresh label: its tag is no other test's) and its ImageSpec."""
    label = uuid.uuid4().hex
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "x.Dockerfile").write_text(f"FROM {base}\nLABEL madengine.test={label}\n")
    node_hash = "sha256:" + hashlib.sha256(label.encode()).hexdigest()
    return ImageSpec(address="image:x@cpu", node_hash=node_hash, tag=f"madengine/sshtest:{node_hash[7:19]}",
                     dockerfile="docker/x.Dockerfile", build_context="docker", build_args={}, base=base,
                     base_digest=None, registry=None)


def backend_for(ssh: SshServices, root: Path, names: list[str] | None = None, **keys: Any) -> SshBackend:
    target = SshTarget.model_validate({"backend": "ssh", "hosts": ssh.madfile_hosts(names), **keys})
    workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"sshtest-{uuid.uuid4().hex[:8]}")
    return SshBackend("lab", target, workspace, known_hosts=(ssh.known_hosts,))


def test_an_image_is_sent_to_every_host_and_again_to_one_that_lost_it(
        ssh_hosts: SshServices, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    image = image_project(tmp_path, registry.base_image)
    b = backend_for(ssh_hosts, tmp_path)
    try:
        built = b.build(image, tmp_path / "build.log", Cancel())
        assert built.status is Status.SUCCESS, (built, (tmp_path / "build.log").read_text())
        seen = b.observe_images([image])
        assert set(seen) == {"node1", "node2", "node3"} and all(image.tag in tags for tags in seen.values()), seen
        assert len({tags[image.tag] for tags in seen.values()}) == 1  # one image id everywhere: the same image
        node2 = ssh_hosts["node2"]
        node2.docker("image", "rm", image.tag)
        assert image.tag not in b.observe_images([image])["node2"]
        again = b.deliver(image, "node2", tmp_path / "load.log", Cancel())
        assert again.status is Status.SUCCESS and again.image_id == seen["node1"][image.tag], again
        assert image.tag in node2.images()
    finally:
        b.close()
        for host in ssh_hosts.nodes:
            host.docker("image", "rm", "--force", image.tag, check=False)


def test_with_a_registry_each_host_pulls_the_image_and_its_label_is_checked(
        ssh_hosts: SshServices, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    from dataclasses import replace

    image = replace(image_project(tmp_path, registry.base_image), registry=registry.address.replace(
        "127.0.0.1", "localhost"))
    b = backend_for(ssh_hosts, tmp_path, ["node1", "node3"])
    try:
        built = b.builder().build(image, tmp_path / "build.log", Cancel())
        assert built.status is Status.SUCCESS, built
        assert b.push(image, tmp_path / "push.log", Cancel()).status is Status.SUCCESS
        pulled = b.pull(image, tmp_path / "pull.log", Cancel())
        assert pulled.status is Status.SUCCESS, (pulled, (tmp_path / "pull.log").read_text())
        for name in ("node1", "node3"):
            assert image.tag in ssh_hosts[name].images()
        # A tag in the registry that another node's build pushed is refused, and removed from the host.
        impostor = replace(image, node_hash="sha256:" + "0" * 64)
        refused = b.deliver(impostor, "node1", tmp_path / "pull.log", Cancel())
        assert refused.status is Status.FAILURE and "was not built from this node" in refused.message, refused
    finally:
        b.close()
        for host in ssh_hosts.nodes:
            host.docker("image", "rm", "--force", image.tag, check=False)


# --- through the CLI ---------------------------------------------------------------------------------


def project(root: Path, ssh: SshServices, base: str, models: int, sleep: str) -> Path:
    label = uuid.uuid4().hex
    files = {
        "models.json": json.dumps([{"name": f"m{i}", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh",
                                    "n_gpus": "1", "owner": "", "training_precision": "", "tags": ["t"],
                                    "args": ""} for i in range(models)]),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\nLABEL t={label}\n",
        "scripts/m/run.sh": RUN,
        "madfile.yaml": "version: 1\npackage: .\nmodels: [{select: all}]\n"
                        f"contexts: {{cpu: {{gpu_vendor: NONE, docker_env_vars: {{SLEEP: '{sleep}'}}}}}}\n"
                        f"targets: {{lab: {json.dumps({'backend': 'ssh', 'hosts': ssh.madfile_hosts(gpus=2)})}}}\n",
        ".madengine/ssh/known_hosts": ssh.known_hosts.read_text(),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def attempts(root: Path) -> list[tuple[str, str, str | None, str]]:
    with sqlite3.connect(root / ".madengine" / "state.db") as db:
        return list(db.execute("SELECT address, status, host, message FROM attempts WHERE address LIKE 'job:%' "
                               "ORDER BY id"))


def workspace_containers(ssh: SshServices, root: Path) -> list[str]:
    workspace = workspace_id(root / ".madengine" / "state.db")
    out = []
    for host in ssh.nodes:
        listed = host.docker("ps", "--all", "--quiet", "--filter", f"label=madengine.workspace={workspace}").stdout
        out += [f"{host.name}: {c}" for c in listed.split()]
    return out


def test_a_host_stopped_mid_apply_fails_only_its_jobs_and_a_reapply_reruns_them(
        ssh_hosts: SshServices, registry: Registry, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = project(tmp_path / "p", ssh_hosts, registry.base_image, models=6, sleep="6")
    env = service_env()
    with ssh_hosts.exclusive():  # node2 goes down: no other test uses the hosts meanwhile
        down = threading.Event()

        def stop_when_running() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    running = any(s == "RUNNING" and h == "node2" for _, s, h, _ in attempts(root))
                except sqlite3.Error:  # not there yet, or busy: asked again
                    running = False
                if running:
                    time.sleep(1)  # the job's container is running there
                    stop_host("node2")
                    down.set()
                    return
                time.sleep(0.2)

        stopper = threading.Thread(target=stop_when_running, daemon=True)
        stopper.start()
        try:
            code, out, err = run_cli("apply", "--yes", "--keep-going", "-j", "6", cwd=root, env=env, timeout=300)
        finally:
            stopper.join(130)
            if down.is_set():
                start_host("node2")
        assert down.is_set(), (out + err, attempts(root))
        assert code == 3, out + err
        rows = attempts(root)
        failed = [(a, h, m) for a, s, h, m in rows if s != "SUCCESS"]
        assert failed and all(h == "node2" and m.startswith("node2: ") and "\n" not in m for _, h, m in failed), rows
        assert {h for _, s, h, _ in rows if s == "SUCCESS"} >= {"node1", "node3"}, rows
        succeeded = {a for a, s, _, _ in rows if s == "SUCCESS"}
        code, out, err = run_cli("apply", "--yes", "--rerun-failed", "-j", "6", cwd=root, env=env, timeout=300)
        assert code == 0, out + err
        rerun = [(a, s) for a, s, _, _ in attempts(root)[len(rows):]]
        assert {a for a, _ in rerun} == {a for a, _, _ in failed} and not {a for a, _ in rerun} & succeeded, rerun
        assert all(s == "SUCCESS" for _, s in rerun), rerun
    assert workspace_containers(ssh_hosts, root) == []


def test_apply_killed_during_remote_jobs_then_applied_again(
        ssh_hosts: SshServices, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    root = project(tmp_path / "p", ssh_hosts, registry.base_image, models=4, sleep="")
    env = {**os.environ, **service_env(), "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1"}
    # A first apply runs every job once (they succeed); the madfile then makes two of them sleep long.
    first = subprocess.run([sys.executable, "-m", "madengine", "apply", "--yes", "-j", "4"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    models = json.loads((root / "models.json").read_text())
    for m in models[:2]:
        m["args"] = "60"  # a new input: these two run again, and sleep
    (root / "models.json").write_text(json.dumps(models))
    before = attempts(root)
    with subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes", "-j", "4"], cwd=root, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as killed:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(workspace_containers(ssh_hosts, root)) < 2:
            time.sleep(0.2)
        assert len(workspace_containers(ssh_hosts, root)) == 2  # both long jobs run on the hosts
        os.killpg(killed.pid, signal.SIGKILL)
    assert workspace_containers(ssh_hosts, root) != []  # left on the hosts by the killed apply
    for m in models[:2]:
        m["args"] = "1"
    (root / "models.json").write_text(json.dumps(models))
    again = subprocess.run([sys.executable, "-m", "madengine", "apply", "--yes", "-j", "4"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cleaned up" in again.stdout, again.stdout
    rerun = {a for a, _, _, _ in attempts(root)[len(before):]}
    succeeded_before = {a for a, s, _, _ in before if s == "SUCCESS"}
    # Only the two changed jobs ran (killed once, then again); none that had succeeded with these inputs.
    assert rerun == {f"job:m{i}@cpu/lab#1" for i in range(2)}, rerun
    assert succeeded_before >= rerun
    assert workspace_containers(ssh_hosts, root) == []


def test_each_hosts_facts_through_its_session_and_an_unreachable_one_said_in_place(
        ssh_hosts: SshServices, tmp_path: Path) -> None:  # noqa: F811
    from madengine.backends.session import HostUnavailable
    from madengine.facts import HostFacts

    target = SshTarget.model_validate({"backend": "ssh", "hosts": [
        *ssh_hosts.madfile_hosts(["node1", "node3"]), {"name": "gone", "address": "127.0.0.1", "port": 1,
                                                       "user": ssh_hosts.user, "key": str(ssh_hosts.key)}]})
    b = SshBackend("lab", target, Workspace(root=tmp_path, state_dir=tmp_path / ".madengine", workspace_id="f"),
                   known_hosts=(ssh_hosts.known_hosts,))
    try:
        facts = b.observe_facts()
    finally:
        b.close()
    assert isinstance(facts["node1"], HostFacts) and facts["node1"].hostname == "node1"
    assert isinstance(facts["node3"], HostFacts) and facts["node3"].hostname == "node3" and facts["node3"].docker
    assert isinstance(facts["gone"], HostUnavailable) and "connection refused" in str(facts["gone"])


def test_a_host_that_lost_an_image_gets_it_again_from_the_plan(
        ssh_hosts: SshServices, registry: Registry, run_cli: RunCli, tmp_path: Path) -> None:  # noqa: F811
    root = project(tmp_path / "p", ssh_hosts, registry.base_image, models=3, sleep="")
    env = service_env()
    code, out, err = run_cli("apply", "--yes", "-j", "3", cwd=root, env=env, timeout=300)
    assert code == 0, out + err
    tag = next(iter(json.loads((root / "madengine.lock").read_text())["images"].values()))["tag"]
    assert all(tag in h.images() for h in ssh_hosts.nodes)
    ssh_hosts["node2"].docker("image", "rm", tag)
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert code == 0, out + err
    assert "+ load image:a.ubuntu@cpu" in out and "lab/node2" in out and "lab/node1" not in out, out
    before = len(attempts(root))
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env, timeout=300)
    assert code == 0, out + err
    assert tag in ssh_hosts["node2"].images()
    assert len(attempts(root)) == before  # no job ran again
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert "No changes" in out or "0 to" in out, out
    for host in ssh_hosts.nodes:
        host.docker("image", "rm", "--force", tag, check=False)


def test_host_processes_on_the_hosts_and_a_changed_host_key_fails_only_that_hosts_job(
        ssh_hosts: SshServices, tmp_path: Path) -> None:  # noqa: F811
    from madengine.backends.base import ATTEMPT_ENV, Outcome
    from madengine.backends.specs import JobSpec

    root = tmp_path / "p"
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text('echo "on $(hostname) in $PWD"\necho "performance: 1 x"\n')
    known = ssh_hosts.known_hosts_with_changed_key(tmp_path / "known_hosts", "node2")
    target = SshTarget.model_validate({"backend": "ssh", "container": "none", "hosts": ssh_hosts.madfile_hosts()})
    b = SshBackend("lab", target, Workspace(root=root, state_dir=root / ".madengine", workspace_id="procs"),
                   known_hosts=(known,))
    outcomes: dict[str, tuple[Outcome, Path]] = {}
    try:
        for n, host in enumerate(("node1", "node2", "node3")):
            job = JobSpec(address=f"job:m[n={n}]@cpu/lab#1", node_hash=f"sha256:{n:064x}", model="m", context="cpu",
                          target="lab", script="scripts/m/run.sh", args=(), env={ATTEMPT_ENV: str(n)}, n_gpus=0,
                          timeout=60, image_tag=None, image_digest=None,
                          log_path=root / ".madengine" / "logs" / f"{host}.log", host=host)
            outcomes[host] = (b.run(job, Cancel()), root / ".madengine" / "logs" / f"{host}.log")
    finally:
        b.close()
    for host in ("node1", "node3"):
        outcome, log = outcomes[host]
        assert outcome.status is Status.SUCCESS, outcome
        assert f"on {host} in " in log.read_text() and "/.madengine/procs-lab/runs/job_m_" in log.read_text()
        home = ssh_hosts[host].home  # each host's own home, seen from here
        assert home is not None and any((home / ".madengine" / "procs" / "runs").glob("job_m_*"))
    refused, _ = outcomes["node2"]
    assert refused.status is Status.FAILURE and refused.message.startswith("node2: the host key of 10.200.0.12:22 "
                                                                           "has CHANGED"), refused
    assert "\n" not in refused.message


def test_a_build_sends_the_image_only_to_the_hosts_that_lack_it(
        ssh_hosts: SshServices, registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    image = image_project(tmp_path, registry.base_image)
    b = backend_for(ssh_hosts, tmp_path, ["node1", "node2"])
    try:
        assert b.build(image, tmp_path / "build.log", Cancel()).status is Status.SUCCESS
        ssh_hosts["node2"].docker("image", "rm", image.tag)
        (tmp_path / "build.log").write_text("")
        assert b.build(image, tmp_path / "build.log", Cancel()).status is Status.SUCCESS  # cached: the same id
        log = (tmp_path / "build.log").read_text()
        assert f"node1: {image.tag} is there already" in log and "node2: sent " in log, log
        assert image.tag in ssh_hosts["node2"].images()
    finally:
        b.close()
        for host in ssh_hosts.nodes:
            host.docker("image", "rm", "--force", image.tag, check=False)


def test_without_the_image_here_it_is_sent_from_a_host_that_has_it(
        ssh_hosts: SshServices, registry: Registry, docker_client: Any, tmp_path: Path) -> None:  # noqa: F811
    image = image_project(tmp_path, registry.base_image)
    b = backend_for(ssh_hosts, tmp_path, ["node1", "node3"])
    try:
        assert b.build(image, tmp_path / "build.log", Cancel()).status is Status.SUCCESS
        built_id = b.observe_images([image])["node1"][image.tag]
        docker_client.images.remove(image.tag, force=True)  # gone from this machine's engine
        ssh_hosts["node3"].docker("image", "rm", image.tag)
        sent = b.deliver(image, "node3", tmp_path / "load.log", Cancel())
        assert sent.status is Status.SUCCESS and sent.message == f"sent {image.tag} from node1", sent
        assert sent.image_id == built_id and image.tag in ssh_hosts["node3"].images()
    finally:
        b.close()
        for host in ssh_hosts.nodes:
            host.docker("image", "rm", "--force", image.tag, check=False)
