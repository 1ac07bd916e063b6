"""The `ssh` and `ansible` targets (issue 8): their keys, named hosts, `rerun_on`, and which keys count in
job hashes. The backends are not shipped yet: the metadata-only plugin fixture registers their names."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from madengine.madfile.model import (
    FACT_NAMES,
    AnsibleTarget,
    Context,
    DockerTarget,
    Host,
    SshTarget,
    job_config,
    rerun_on,
)
from tests.unit.madfile.conftest import Errors, Load, at, one

LAB = """\
version: 1
targets:
  lab:
    backend: {backend}
{body}"""


def lab(body: str, backend: str = "ssh") -> str:
    return LAB.format(backend=backend, body=body)


@pytest.mark.parametrize("backend", ["ssh", "ansible"])
def test_the_issue_example_loads_with_its_defaults(load: Load, backend: str) -> None:
    loaded = load(lab("""\
    hosts:
      - {address: 10.0.0.5, port: 22, user: bench, key: ~/.ssh/id_ed25519, gpus: 8, name: gpu-1,
         env: {ROCR_VISIBLE_DEVICES: "0,1,2,3"}}
    host_key_check: strict
    container: docker
    workdir: ~/.madengine
    max_parallel_per_host: 4
""", backend))
    target = loaded.madfile.targets["lab"]
    assert isinstance(target, SshTarget | AnsibleTarget) and target.hosts is not None
    host = target.hosts[0]
    assert (host.address, host.port, host.user, host.key, host.gpus, host.name, host.env) == (
        "10.0.0.5", 22, "bench", "~/.ssh/id_ed25519", 8, "gpu-1", {"ROCR_VISIBLE_DEVICES": "0,1,2,3"})
    defaults = load(lab("    hosts: [{address: h}]\n", backend)).madfile.targets["lab"]
    assert isinstance(defaults, SshTarget | AnsibleTarget)
    assert (defaults.host_key_check, defaults.container, defaults.workdir, defaults.max_parallel_per_host,
            defaults.rerun_on) == ("strict", "docker", "~/.madengine", None, None)
    assert defaults.hosts is not None and defaults.hosts[0].label == "h" and defaults.hosts[0].port == 22


def test_ansible_adds_extra_vars_and_forks(load: Load, errors: Errors) -> None:
    target = load(lab("    hosts: [{address: h}]\n    forks: 3\n    playbook_extra_vars: {a: 1, b: x, c: true}\n",
                      "ansible")).madfile.targets["lab"]
    assert isinstance(target, AnsibleTarget) and target.forks == 3
    assert target.playbook_extra_vars == {"a": 1, "b": "x", "c": True}
    d = one(errors(lab("    hosts: [{address: h}]\n    playbook_extra_vars: {a: [1]}\n", "ansible")))
    assert d.key_path == "targets.lab.playbook_extra_vars.a"
    d = one(errors(lab("    hosts: [{address: h}]\n    forks: 0\n", "ansible")))
    assert d.message == "must be at least 1, found 0" and at(d) == (6, 12)
    d = one(errors(lab("    hosts: [{address: h}]\n    forks: 2\n")))
    assert d.message == "unknown key `forks`" and "ansible target" in d.hint


@pytest.mark.parametrize(("body", "found"), [
    ("    hosts: [{address: h}]\n    inventory: nodes.yml\n", "both `hosts:` and `inventory:`"),
    ("    workdir: /w\n", "neither `hosts:` nor `inventory:`"),
])
def test_exactly_one_of_hosts_and_inventory(errors: Errors, body: str, found: str) -> None:
    d = one(errors(lab(body)))
    assert d.message == f"give exactly one of `hosts:` (a list) and `inventory:` (a file), found {found}"
    assert d.key_path == "targets.lab" and at(d) == (3, 3)


@pytest.mark.parametrize(("body", "path", "message"), [
    ("    hosts: [{address: h}]\n    host_key_check: loose\n", "targets.lab.host_key_check",
     "expected one of strict, accept-new, found the string 'loose'"),
    ("    hosts: [{address: h}]\n    container: podman\n", "targets.lab.container",
     "expected one of docker, none, found the string 'podman'"),
    ("    hosts: [{address: h}]\n    max_parallel_per_host: 0\n", "targets.lab.max_parallel_per_host",
     "must be at least 1, found 0"),
    ("    hosts: []\n", "targets.lab.hosts", "must not be empty"),
    ("    hosts: [{address: h, colour: red}]\n", "targets.lab.hosts[0].colour", "unknown key `colour`"),
    ("    hosts: [{address: h}]\n    jump: x\n", "targets.lab.jump", "unknown key `jump`"),
])
def test_bad_target_keys(errors: Errors, body: str, path: str, message: str) -> None:
    d = one(errors(lab(body)))
    assert (d.key_path, d.message) == (path, message) and d.line is not None and d.column is not None


@pytest.mark.parametrize(("host", "key", "message"), [
    ("{address: h, name: a/b}", "name", "`a/b` cannot name a host (its name names files and labels)"),
    ("{address: h, name: ..}", "name", "`..` cannot name a host (its name names files and labels)"),
    ("{address: h, name: -x}", "name", "`-x` cannot name a host (its name names files and labels)"),
    ("{address: '::1'}", "address", "the address `::1` cannot name the host: give it a `name:`"),
    ("{address: -oProxyCommand=sh}", "address", "`-oProxyCommand=sh` is not a host name or an IP address"),
    ("{address: bench@h}", "address", "`bench@h` is not a host name or an IP address"),
    ("{address: h, user: -l}", "user", "`-l` is not a user name (letters, digits, `.`, `_`, `-`; not "
                                       "beginning with `-`)"),
])
def test_host_names_addresses_and_users(errors: Errors, host: str, key: str, message: str) -> None:
    d = one(errors(lab(f"    hosts: [{host}]\n")))
    assert d.message == message
    # An IPv6 address is a valid address but not a name: the default name is what is refused.
    assert d.key_path == ("targets.lab.hosts[0]" if key == "address" and "::" in host else
                          f"targets.lab.hosts[0].{key}")


def test_an_ipv6_address_with_a_name_is_fine(load: Load) -> None:
    target = load(lab("    hosts: [{address: '::1', name: loop6}]\n")).madfile.targets["lab"]
    assert isinstance(target, SshTarget) and target.hosts is not None and target.hosts[0].label == "loop6"


def test_name_rule_is_in_the_hint(errors: Errors) -> None:
    d = one(errors(lab("    hosts: [{address: h, name: 'a b'}]\n")))
    assert "1-63 letters, digits, `.`, `_` or `-`" in d.hint


def test_host_names_are_unique_in_a_target(errors: Errors, load: Load) -> None:
    d = one(errors(lab("    hosts:\n      - {address: h1, name: gpu}\n      - {address: h2, name: GPU}\n")))
    assert d.message == "duplicate host name `GPU` in target `lab`" and d.key_path == "targets.lab.hosts[1].name"
    assert at(d) == (7, 29) and "hosts[0] has that name" in d.hint
    # The default name is the address: one address on two ports needs names.
    d = one(errors(lab("    hosts:\n      - {address: h1}\n      - {address: h1, port: 2222}\n")))
    assert d.message == "duplicate host name `h1` in target `lab`" and d.key_path == "targets.lab.hosts[1].address"
    # One machine split into two named hosts (its GPUs shared out by env) is fine.
    load(lab("    hosts:\n      - {address: h1, name: a, env: {ROCR_VISIBLE_DEVICES: '0'}}\n"
             "      - {address: h1, name: b, env: {ROCR_VISIBLE_DEVICES: '1'}}\n"))


def test_key_is_a_path_never_key_material(errors: Errors) -> None:
    d = one(errors(lab("    hosts:\n      - address: h\n        key: |\n          -----BEGIN OPENSSH PRIVATE KEY-----\n"
                       "          b3BlbnNzaC1rZXk\n")))
    assert d.message == "`key` holds a private key itself; it must be the path of a key file"
    assert d.key_path == "targets.lab.hosts[0].key" and "ssh-agent" in d.hint
    assert "b3BlbnNzaC1rZXk" not in d.render()


def test_no_password_key(errors: Errors) -> None:
    d = one(errors(lab("    hosts: [{address: h, password: hunter2}]\n")))
    assert d.message == "unknown key `password`" and d.hint.startswith("madengine takes no passwords")
    assert "hunter2" not in d.render()


def test_host_env_names_and_secrets_are_checked(errors: Errors) -> None:
    d = one(errors(lab("    hosts: [{address: h, env: {'A B': x}}]\n")))
    assert d.key_path == 'targets.lab.hosts[0].env["A B"]' and "not a valid environment variable name" in d.message
    d = one(errors(lab("    hosts: [{address: h, env: {HF_TOKEN: hf_abc}}]\n")))
    assert d.message == "`HF_TOKEN` looks like a secret written as a literal value" and "hf_abc" not in d.render()


def test_gpu_vendor_of_a_host_is_checked_against_its_contexts(errors: Errors, load: Load) -> None:
    text = """\
        version: 1
        contexts:
          amd: {gpu_vendor: AMD}
          cpu: {gpu_vendor: NONE}
        targets:
          lab:
            backend: ssh
            hosts: [{address: h, gpu_vendor: NVIDIA}]
        """
    d = one(errors(text))
    assert d.message == "host `h` is declared gpu_vendor NVIDIA, but context `amd` (AMD) runs on it"
    assert d.key_path == "targets.lab.hosts[0].gpu_vendor" and at(d) == (8, 38)
    load(text.rstrip(" ") + "        runs:\n          - {models: [all], contexts: [cpu]}\n")


# --- rerun_on -------------------------------------------------------------------------------------


def test_rerun_on_names_the_five_facts() -> None:
    assert FACT_NAMES == ("gpu_arch", "driver", "rocm", "cuda", "docker")


@pytest.mark.parametrize("where", ["contexts:\n  c: {rerun_on: %s}\n",
                                   "targets:\n  t: {backend: docker, rerun_on: %s}\n"])
def test_rerun_on_values(errors: Errors, load: Load, where: str) -> None:
    load("version: 1\n" + where % "[gpu_arch, driver, rocm, cuda, docker]")
    load("version: 1\n" + where % "[]")
    d = one(errors("version: 1\n" + where % "[rocm, kernel]"))
    assert d.message == "expected one of gpu_arch, driver, rocm, cuda, docker, found the string 'kernel'"
    d = one(errors("version: 1\n" + where % "[rocm, rocm]"))
    assert d.message == "`rocm` is listed twice in rerun_on"
    d = one(errors("version: 1\n" + where % "rocm"))
    assert d.message == "expected a list, found the string 'rocm'"


def test_rerun_on_is_not_on_batch_targets(errors: Errors) -> None:
    d = one(errors("version: 1\ntargets:\n  t: {backend: slurm, container: none, rerun_on: [rocm]}\n"))
    assert d.message == "unknown key `rerun_on`"


def test_the_context_rerun_on_wins_over_the_target() -> None:
    target = DockerTarget(backend="docker", rerun_on=["docker"])
    assert rerun_on(Context(rerun_on=["rocm"]), target) == ("rocm",)
    assert rerun_on(Context(rerun_on=[]), target) == ()
    assert rerun_on(Context(), target) == ("docker",)
    assert rerun_on(Context(), DockerTarget(backend="docker")) is None


# --- job hashes -----------------------------------------------------------------------------------


def test_placement_keys_are_not_hashed() -> None:
    one_host = SshTarget(backend="ssh", hosts=[Host(address="a")])
    more = SshTarget(backend="ssh", hosts=[Host(address="a"), Host(address="b", gpus=8)], host_key_check="accept-new",
                     max_parallel_per_host=2, rerun_on=["rocm"])
    assert job_config(one_host) == job_config(more)
    assert job_config(SshTarget(backend="ssh", inventory="n.yml")) == job_config(one_host)
    assert job_config(AnsibleTarget(backend="ansible", hosts=[Host(address="a")], forks=9)) == \
        job_config(AnsibleTarget(backend="ansible", inventory="x.yml"))
    assert job_config(Context(rerun_on=["docker"])) == job_config(Context())


@pytest.mark.parametrize("change", [{"container": "none"}, {"workdir": "/scratch"}])
def test_what_a_job_computes_is_hashed(change: dict[str, str]) -> None:
    base = SshTarget(backend="ssh", hosts=[Host(address="a")])
    assert job_config(base.model_copy(update=change)) != job_config(base)
    extra = AnsibleTarget(backend="ansible", hosts=[Host(address="a")])
    assert job_config(extra.model_copy(update={"playbook_extra_vars": {"x": 1}})) != job_config(extra)


def test_adding_a_host_keeps_the_lock_job_hashes(write: object, tmp_path: Path) -> None:
    from madengine.pipeline import current_lock

    def jobs(hosts: str) -> dict[str, str]:
        (tmp_path / "run.sh").write_text("echo ok\n")
        (tmp_path / "docker").mkdir(exist_ok=True)  # its own build context: not the madfile's directory
        (tmp_path / "docker" / "m.ubuntu.amd.Dockerfile").write_text("FROM scratch\n")
        (tmp_path / "madfile.yaml").write_text(
            "version: 1\nmodels:\n  - {name: m, scripts: run.sh, dockerfile: docker/m, n_gpus: 0}\n"
            f"targets:\n  lab:\n    backend: ssh\n    hosts: {hosts}\n")
        lock = current_lock(tmp_path / "madfile.yaml", locked=False).lock
        return {address: entry["hash"] for address, entry in lock["jobs"].items()}

    before = jobs("[{address: a}]")
    assert before and jobs("[{address: a}, {address: b, gpus: 8}]") == before
    assert jobs("[{address: a}]\n    container: none") != before


def test_validation_error_for_models_built_in_code() -> None:
    with pytest.raises(ValidationError):
        SshTarget(backend="ssh")


def test_container_none_jobs_are_host_processes(tmp_path: Path, write: object) -> None:
    """`container: none` is not accepted and ignored: its jobs need no image, as on `local`."""
    from madengine.pipeline import current_lock

    (tmp_path / "run.sh").write_text("echo ok\n")
    (tmp_path / "madfile.yaml").write_text(
        "version: 1\nmodels:\n  - {name: m, scripts: run.sh, n_gpus: 0}\ncontexts:\n  c: {docker_mounts: {/d: /d}}\n"
        "targets:\n  lab: {backend: ssh, hosts: [{address: a}], container: none}\n")
    locked = current_lock(tmp_path / "madfile.yaml", locked=False)
    assert locked.lock["images"] == {} and [j["image"] for j in locked.lock["jobs"].values()] == [None]
    assert [w.message for w in locked.project.warnings] == [
        "docker_mounts are not used by jobs on target `lab` (container: none)"]


@pytest.mark.parametrize(("name", "message"), [
    ("'a b'", "`a b` is not a valid Ansible variable name (letters, digits and `_`, not beginning with a digit)"),
    ("ansible_user", "`ansible_user` is an Ansible connection variable: the hosts' keys (address, port, user, key) "
                     "set those"),
    ("db_password", "`db_password` looks like a secret: a madfile holds no secrets, and extra vars are written to "
                    "the generated files"),
])
def test_playbook_extra_vars_names(errors: Errors, name: str, message: str) -> None:
    d = one(errors(lab(f"    hosts: [{{address: h}}]\n    playbook_extra_vars: {{{name}: hunter2}}\n", "ansible")))
    assert d.message == message and d.key_path == "targets.lab.playbook_extra_vars" and "hunter2" not in d.render()
