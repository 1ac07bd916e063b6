"""`madengine generate ansible -o DIR`, and the ansible target at validate."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from tests.conftest import RunCli

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "ansible" / "generated"
CONFIG, USAGE = 5, 4
MADFILE = """\
version: 1
models:
  - {name: dummy, dockerfile: docker/dummy, scripts: scripts/dummy/run.sh, n_gpus: 1, multiple_results: perf.csv,
     params: {batch: [8, 16]}}
contexts:
  mi300x: {gpu_vendor: AMD, docker_env_vars: {HSA_ENABLE_SDMA: "0", HF_TOKEN: "${env:MY_HF_TOKEN}"}}
targets:
  lab:
    backend: ansible
    hosts:
      - {address: 10.0.0.5, user: bench, key: /keys/id_ed25519, gpus: 8}
      - {address: 10.0.0.6, port: 2200, gpus: 8}
    workdir: /scratch/madengine
"""


def project(tmp_path: Path, madfile: str = MADFILE) -> Path:
    root = tmp_path / "proj"
    for rel, text in {"madfile.yaml": madfile, "scripts/dummy/run.sh": 'echo "performance: 1 x"\n',
                      "scripts/dummy/README": "data\n", "docker/dummy.ubuntu.amd.Dockerfile": "FROM busybox\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


ENV = {"MADENGINE_SSH_KNOWN_HOSTS": "/home/me/.ssh/known_hosts", "MY_HF_TOKEN": "hf_never_written"}


def test_generate_writes_the_golden_files(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "ansible", "-o", "out", cwd=root, env=ENV)
    assert (code, err) == (0, ""), err
    assert out == "out/lab/: inventory.yml, playbook.yml, ansible.cfg, 2 run directories (target lab)\n"
    for name in ("inventory.yml", "playbook.yml", "ansible.cfg"):
        text = (root / "out" / "lab" / name).read_text()
        if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
            (GOLDEN / name).write_text(text)
        assert text == (GOLDEN / name).read_text(), name
    runs = sorted(p.name for p in (root / "out" / "lab" / "runs").iterdir())
    assert len(runs) == 2 and all(p.startswith("job_dummy_batch_") for p in runs)
    assert sorted(p.name for p in (root / "out" / "lab" / "runs" / runs[0]).iterdir()) == ["README", "run.sh"]
    # a secret's value is looked up when the playbook runs, never written
    assert not any("hf_never_written" in p.read_text() for p in (root / "out").rglob("*") if p.is_file())


def test_generate_json_and_chdir(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "ansible", "-o", "out", "-C", "proj", "--json", cwd=tmp_path, env=ENV)
    assert (code, err) == (0, "")
    files = json.loads(out)["targets"]["lab"]["files"]
    assert files[:3] == ["proj/out/lab/inventory.yml", "proj/out/lab/playbook.yml", "proj/out/lab/ansible.cfg"]
    assert (root / "out" / "lab" / "playbook.yml").is_file()


def test_generate_without_an_ansible_target_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\nmodels: [{name: m, scripts: scripts/dummy/run.sh}]\n")
    code, out, err = run_cli("generate", "ansible", "-o", "out", cwd=root)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: no jobs on an ansible target"), err
    assert not (root / "out").exists()


def test_a_missing_secret_is_a_config_error(run_cli: RunCli, tmp_path: Path) -> None:
    code, out, err = run_cli("generate", "ansible", "-o", "out", cwd=project(tmp_path), env={"MY_HF_TOKEN": None})
    assert (code, out) == (CONFIG, "")
    assert "MY_HF_TOKEN is not set" in err and "Traceback" not in err


def test_ansible_target_without_ansible_runner_is_refused_at_validate(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['ansible_runner'] = None\n")
    from tests.conftest import REPO_ROOT

    code, out, err = run_cli("validate", cwd=root, env={"PYTHONPATH": f"{hide}{os.pathsep}{REPO_ROOT}"})
    assert (code, out) == (CONFIG, "")
    assert err == ("madfile.yaml:9:14: error: targets.lab.backend: backend `ansible` cannot work here: the Python "
                   "module `ansible_runner` is not installed (hint: pip install 'madengine[ansible]' (ansible-core "
                   "and ansible-runner))\n"), err
