"""The SSH hosts of `dev/services` are what the ssh and ansible backends' tests take them for: separate
machines (own hostname, /srv and Docker engine), strict host keys, the registry under one name everywhere,
ansible-runner driving them, and a host that can be taken down and brought back. Real services: a
failure, never a skip, when they are missing."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from tests.infra.services import Registry
from tests.infra.ssh import SshServices, fresh_key

HOSTS = ["loopback", "node1", "node2", "node3"]


@pytest.mark.parametrize("name", HOSTS)
def test_fabric_reaches_each_host_with_strict_host_keys_and_its_own_hostname(ssh_hosts: SshServices,
                                                                            name: str) -> None:
    host = ssh_hosts[name]
    with host.connection() as conn:
        got = conn.run("hostname", hide=True, in_stream=False).stdout.strip()
    assert got == (socket.gethostname() if name == "loopback" else name)


def test_an_unknown_host_key_is_refused(ssh_hosts: SshServices, tmp_path: Path) -> None:
    import paramiko

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    host = ssh_hosts["node1"]
    conn = replace(host, known_hosts=empty).connection()
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        conn.open()
    conn.close()


def test_a_changed_host_key_is_refused(ssh_hosts: SshServices, tmp_path: Path) -> None:
    import paramiko

    changed = ssh_hosts.known_hosts_with_changed_key(tmp_path / "known_hosts", "node2")
    for name, refused in (("node2", True), ("node1", False)):
        host = ssh_hosts[name]
        with replace(host, known_hosts=changed).connection() as conn:
            if refused:
                with pytest.raises(paramiko.BadHostKeyException):
                    conn.open()
            else:
                conn.open()


def test_a_key_no_host_knows_is_refused(ssh_hosts: SshServices, tmp_path: Path) -> None:
    import paramiko

    host = ssh_hosts["node1"]
    with replace(host, key=fresh_key(tmp_path / "id_ed25519")).connection() as conn, \
            pytest.raises(paramiko.AuthenticationException):
        conn.open()


def test_a_tool_in_a_hosts_srv_bin_is_on_that_hosts_path_only(ssh_hosts: SshServices) -> None:
    name = f"fake-smi-{uuid.uuid4().hex[:8]}"
    tool = ssh_hosts["node2"].install_tool(name, "#!/bin/sh\necho 'ROCm version: 9.9.9'\n")
    try:
        assert ssh_hosts["node2"].run([name]).stdout == "ROCm version: 9.9.9\n"
        assert ssh_hosts["node1"].run(["sh", "-c", f"command -v {shlex.quote(name)}"], check=False).returncode != 0
    finally:
        tool.unlink()


@pytest.mark.parametrize("where", ["/srv", "~"])
def test_each_host_has_its_own_srv_and_home(ssh_hosts: SshServices, tmp_path: Path, where: str) -> None:
    name = f"own-{uuid.uuid4().hex}"
    local = tmp_path / name
    local.write_text("on node1 only\n")
    node1, node2 = ssh_hosts["node1"], ssh_hosts["node2"]
    remote = f"/srv/{name}" if where == "/srv" else name  # sftp starts in the home directory
    with node1.connection() as conn:
        conn.put(str(local), remote)
    try:
        assert node1.run(["cat", remote]).stdout == "on node1 only\n"
        assert node2.run(["test", "-e", remote], check=False).returncode == 1
        mine = Path("/srv", name) if where == "/srv" else Path.home() / name
        assert not mine.exists()  # nor on this machine
        assert node1.srv is not None
        assert (node1.srv / name if where == "/srv" else node1.home / name).is_file()  # where tests look
    finally:
        node1.run(["rm", "-f", remote])


def test_each_host_has_its_own_docker_engine(ssh_hosts: SshServices, registry: Registry) -> None:
    """An image streamed into node1 (docker save | ssh node1 docker load) is on node1 only, as
    `docker images` over ssh shows: each host's sshd points its sessions at the host's own engine."""
    tag = f"madengine-test/ssh-smoke:{uuid.uuid4().hex[:12]}"
    subprocess.run(["docker", "tag", registry.base_image, tag], check=True)
    node1, node2 = ssh_hosts["node1"], ssh_hosts["node2"]
    try:
        save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
        load = subprocess.run([*node1.ssh_args(), "docker load -q"], stdin=save.stdout, capture_output=True,
                              text=True, timeout=120, check=False)
        assert save.wait(60) == 0
        assert load.returncode == 0, load.stderr
        images = {n: set(ssh_hosts[n].run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"])
                         .stdout.split()) for n in ("node1", "node2")}
        assert tag in images["node1"]
        assert tag not in images["node2"]
        assert tag in node1.images() and tag not in node2.images()  # the same engines, seen from here
    finally:
        node1.docker("rmi", tag, check=False)
        subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


def test_a_push_from_here_is_pullable_on_a_host_under_the_same_name(ssh_hosts: SshServices,
                                                                      registry: Registry) -> None:
    port = registry.address.rpartition(":")[2]
    ref = f"localhost:{port}/madengine-test/ssh-smoke:{uuid.uuid4().hex[:12]}"
    node2 = ssh_hosts["node2"]
    subprocess.run(["docker", "tag", registry.base_image, ref], check=True)
    try:
        push = subprocess.run(["docker", "push", "-q", ref], capture_output=True, text=True, check=False)
        assert push.returncode == 0, push.stderr
        assert ref not in node2.images()
        node2.run(["docker", "pull", "-q", ref], timeout=120)
        out = node2.run(["docker", "run", "--rm", "--network", "none", ref, "hostname"]).stdout
        assert out.strip()  # ran on node2's engine (a container gets a hostname of its own)
        assert ref in node2.images()
    finally:
        node2.docker("rmi", ref, check=False)
        subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def test_ansible_runner_runs_a_playbook_on_the_three_hosts(ssh_hosts: SshServices, tmp_path: Path) -> None:
    import ansible_runner

    # ansible-runner shells out to ansible-playbook: the venv's bin must be on PATH (else rc 127, no error).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    assert shutil.which("ansible-playbook", path=path), f"ansible-playbook is not in {Path(sys.executable).parent}"
    lines = ["[nodes]"]
    for h in ssh_hosts.nodes:
        lines.append(f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user={h.user} "
                     f"ansible_ssh_private_key_file={h.key} ansible_python_interpreter=/usr/bin/python3")
    (tmp_path / "inventory.ini").write_text("\n".join(lines) + "\n")
    (tmp_path / "ansible.cfg").write_text(
        "[defaults]\n"
        f"home = {tmp_path / 'home'}\n"
        "remote_tmp = /srv/.ansible-tmp\n"
        "[ssh_connection]\n"
        f"ssh_args = -o UserKnownHostsFile={ssh_hosts.known_hosts} -o StrictHostKeyChecking=yes "
        "-o IdentitiesOnly=yes -o ControlMaster=no\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: nodes\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: where am I\n"
        "      shell: {cmd: 'hostname; echo \"performance: 1 x\"'}\n")
    (tmp_path / "runner").mkdir()  # ansible-runner refuses a private_data_dir that does not exist
    result = ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), playbook=str(tmp_path / "play.yml"),
        inventory=str(tmp_path / "inventory.ini"), quiet=True,
        envvars={"PATH": path, "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")})
    ok = {e["event_data"]["host"]: e["event_data"]["res"]["stdout"] for e in result.events
          if e.get("event") == "runner_on_ok"}
    assert result.status == "successful", (result.status, result.rc, result.stdout.read())
    assert ok == {n: f"{n}\nperformance: 1 x" for n in ("node1", "node2", "node3")}


def test_a_stopped_host_drops_its_connections_and_refuses_new_ones_until_started(ssh_hosts: SshServices) -> None:
    import paramiko

    host = ssh_hosts["node3"]
    with host.connection() as held:
        held.run("true", hide=True, in_stream=False)
        with ssh_hosts.stopped("node3"):
            with pytest.raises((EOFError, OSError, paramiko.SSHException)):
                held.run("true", hide=True, in_stream=False)
            with host.connection() as conn, pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
                conn.open()
            assert host.run(["true"], check=False).returncode == 255
            assert ssh_hosts["node2"].run(["hostname"]).stdout.strip() == "node2"  # the others stay up
    with host.connection() as conn:
        assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == "node3"
