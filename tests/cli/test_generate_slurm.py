"""`madengine generate slurm -o DIR`: the scripts the slurm backend submits, for review or hand-off."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

from madengine.backends import slurm_render
from tests.conftest import RunCli

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "slurm" / "generated"
USAGE = 4
MADFILE = """\
version: 1
registry: localhost:5000
models:
  - {name: dummy, dockerfile: docker/dummy, scripts: scripts/dummy/run.sh, n_gpus: 1, params: {batch: [8, 16]}}
  - {name: wide, dockerfile: docker/dummy, scripts: scripts/dummy/run.sh, n_gpus: 2}
contexts:
  mi300x: {gpu_vendor: AMD, docker_env_vars: {HSA_ENABLE_SDMA: "0", HF_TOKEN: "${env:MY_HF_TOKEN}"}}
targets:
  hpc:
    backend: slurm
    partition: gpu
    gpus_per_node: 8
    shared_dir: /scratch/me/madengine
"""


def project(tmp_path: Path, madfile: str = MADFILE) -> Path:
    root = tmp_path / "proj"
    for rel, text in {"madfile.yaml": madfile, "scripts/dummy/run.sh": 'echo "performance: 1 x"\n',
                      "scripts/dummy/README": "data\n", "docker/dummy.ubuntu.amd.Dockerfile": "FROM busybox\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


ENV = {"MY_HF_TOKEN": "hf_never_written"}


def test_generate_writes_the_scripts_the_backend_submits(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path)
    code, out, err = run_cli("generate", "slurm", "-o", "out", cwd=root, env=ENV)
    assert (code, err) == (0, ""), err
    directory = root / "out" / "hpc"
    scripts = sorted((directory / "jobs").iterdir())
    assert len(scripts) == 2  # an array of the dummy jobs, and the wide one (two GPUs: another shape)
    assert out == "out/hpc/: 2 sbatch scripts, submit.sh, 3 run directories (target hpc)\n"
    array = [p for p in scripts if "#SBATCH --array=0-1\n" in p.read_text()]
    assert len(array) == 1, "the two dummy jobs (one image, one shape) are one array"
    text = array[0].read_text()
    if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
        (GOLDEN / "array.sbatch").write_text(text)
    assert text == (GOLDEN / "array.sbatch").read_text()
    assert "localhost:5000/madengine/dummy.ubuntu.amd:" in text  # nodes pull the lock's tag from the registry
    for path in [*scripts, directory / "submit.sh"]:
        done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (path, done.stderr)
    # the package's entries as the nodes see them (the output directory is not one of them)
    assert sorted(p.name for p in (directory / "package").iterdir()) == ["docker", "madfile.yaml", "scripts"]
    runs = sorted((directory / "runs").iterdir())
    assert len(runs) == 3 and sorted(p.name for p in runs[0].iterdir()) == ["README", "run.sh"]
    submit = (directory / "submit.sh").read_text()
    assert all(f"sbatch --parsable /scratch/me/madengine/generated-hpc/jobs/{p.name}" in submit for p in scripts)
    # a secret's value is read from sbatch's environment when the job runs, never written
    assert not any("hf_never_written" in p.read_text() for p in (root / "out").rglob("*") if p.is_file())
    assert f"{slurm_render.SECRET_ENV_PREFIX}0_HF_TOKEN" in text


def test_generate_json_and_chdir(run_cli: RunCli, tmp_path: Path) -> None:
    project(tmp_path)
    code, out, err = run_cli("generate", "slurm", "-o", "out", "-C", "proj", "--json", cwd=tmp_path, env=ENV)
    assert (code, err) == (0, ""), err
    files = json.loads(out)["targets"]["hpc"]["files"]
    assert files[-1] == "proj/out/hpc/submit.sh" and all(f.startswith("proj/out/hpc/jobs/") for f in files[:-1])


def test_generate_without_a_slurm_target_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    root = project(tmp_path, "version: 1\nmodels: [{name: m, scripts: scripts/dummy/run.sh}]\n")
    code, out, err = run_cli("generate", "slurm", "-o", "out", cwd=root)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: no jobs on a slurm target"), err
    assert not (root / "out").exists()


def test_a_value_given_by_an_env_reference_never_reaches_a_script_whatever_its_name(run_cli: RunCli,
                                                                                   tmp_path: Path) -> None:
    madfile = MADFILE.replace('HF_TOKEN: "${env:MY_HF_TOKEN}"', 'HF_TOKEN: "${env:MY_HF_TOKEN}", NGC_KEY: "${env:NGC}"')
    root = project(tmp_path, madfile)
    code, out, err = run_cli("generate", "slurm", "-o", "out", cwd=root, env={**ENV, "NGC": "supersecret-ngc"})
    assert code == 0, out + err
    written = "".join(p.read_text() for p in (root / "out").rglob("*") if p.is_file())
    assert "NGC_KEY" in written and "supersecret-ngc" not in written
