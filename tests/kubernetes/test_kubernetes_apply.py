"""A kubernetes target end to end through the CLI: images built by the real dockerd and pushed to the real
registry, Jobs created in kmock (the test's controller runs each pod's container on this machine), results
recorded; then nothing to do."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunCli
from tests.infra.kube import KubeFixture
from tests.infra.services import Registry, service_env

pytestmark = pytest.mark.kubernetes

RUN = """\
#!/bin/bash
for a in "$@"; do printf 'arg<%s>\\n' "$a"; done
echo "performance: ${PERF:-10.5} samples_per_second"
"""


def project(root: Path, base: str, kubeconfig: Path) -> Path:
    files = {
        "models.json": json.dumps([{"name": "m1", "dockerfile": "docker/a", "scripts": "scripts/m/run.sh",
                                    "n_gpus": "0", "owner": "", "training_precision": "", "tags": ["t"],
                                    "args": "--x $(HOME)"}]),
        "docker/a.ubuntu.Dockerfile": f"# CONTEXT {{'gpu_vendor': 'NONE'}}\nFROM {base}\n"
                                      f"LABEL madengine.test={uuid.uuid4().hex}\n",
        "scripts/m/run.sh": RUN,
        "madfile.yaml": "version: 1\npackage: .\nregistry: localhost:5000\nmodels: [{select: all}]\n"
                        "contexts: {cpu: {gpu_vendor: NONE, docker_env_vars: {PERF: '42.5'}}}\n"
                        f"targets: {{k8s: {{backend: kubernetes, kubeconfig: '{kubeconfig}'}}}}\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_apply_on_a_kubernetes_target_then_nothing_to_do(run_cli: RunCli, tmp_path: Path, registry: Registry,
                                                         docker_client: Any, kube: KubeFixture) -> None:
    root = project(tmp_path / "proj", registry.base_image, kube.kube.kubeconfig)
    env = service_env()
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0, out + err
    assert "Plan: 1 to build, 1 to push, 1 to run, 0 unchanged." in out, out
    rows = sqlite3.connect(root / ".madengine" / "state.db").execute(
        "SELECT address, status FROM attempts ORDER BY id").fetchall()
    assert [r for r in rows if r[0].startswith("job:")] == [("job:m1@cpu/k8s#1", "SUCCESS")]
    [ran] = kube.controller.ran
    assert ran["env"]["PERF"] == "42.5" and ran["env"]["MAD_MODEL_NAME"] == "m1"
    code, out, err = run_cli("results", "--json", cwd=root, env=env)
    assert code == 0 and '"performance": 42.5' in out, out
    logs = list((root / ".madengine" / "logs").rglob("*m1*"))
    assert any("arg<$(HOME)>" in p.read_text() for p in logs if p.is_file())
    for kind in ("Job", "Pod", "ConfigMap"):
        assert kube.kube.objects(kind) == [], kind
    code, out, _ = run_cli("plan", "--detailed-exitcode", cwd=root, env=env)
    assert code == 0, out
    code, out, _ = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0 and "No changes: everything is up to date." in out, out
    assert len(kube.controller.ran) == 1


def test_a_killed_applys_jobs_are_waited_for_and_never_run_twice(run_cli: RunCli, tmp_path: Path,
                                                                  registry: Registry, docker_client: Any,
                                                                  kube: KubeFixture) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT
    from tests.infra.kube import Script

    root = project(tmp_path / "proj", registry.base_image, kube.kube.kubeconfig)
    env = service_env()
    kube.scripts["mad-m1"] = Script(never=True)  # held in the queue: no pod yet
    apply = subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root,
                             env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not kube.kube.objects("Job"):
        assert apply.poll() is None and time.monotonic() < deadline, "the apply ended before it submitted"
        time.sleep(0.1)
    time.sleep(1)  # its handle is recorded the moment the Job is created
    apply.send_signal(signal.SIGKILL)
    apply.wait(30)
    [held] = kube.kube.objects("Job")
    code, out, err = run_cli("plan", cwd=root, env=env)
    assert code == 0, out + err
    assert "~ wait job:m1@cpu/k8s#1" in out and f"(kubernetes {held} " in out, out
    del kube.scripts["mad-m1"]  # the cluster runs it now: the controller plays the Job again
    kube.controller.seen.clear()
    code, out, err = run_cli("apply", "--yes", cwd=root, env=env)
    assert code == 0 and "SUCCESS" in out, out + err
    assert kube.kube.objects("Job") == [] and len(kube.controller.ran) == 1, "nothing ran twice"


def test_ctrl_c_deletes_the_queued_job_and_records_it_interrupted(tmp_path: Path, registry: Registry,
                                                                  docker_client: Any, kube: KubeFixture) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT
    from tests.infra.kube import Script

    root = project(tmp_path / "proj", registry.base_image, kube.kube.kubeconfig)
    kube.scripts["mad-m1"] = Script(unschedulable="0/3 nodes are available")
    apply = subprocess.Popen([sys.executable, "-m", "madengine", "apply", "--yes"], cwd=root,
                             env={**os.environ, **service_env(), "PYTHONPATH": str(REPO_ROOT)},
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not kube.kube.objects("Pod"):
        assert apply.poll() is None and time.monotonic() < deadline, "the apply ended before its job was queued"
        time.sleep(0.1)
    apply.send_signal(signal.SIGINT)
    out, _ = apply.communicate(timeout=60)
    assert apply.returncode == 130, out
    for kind in ("Job", "Pod", "ConfigMap"):
        assert kube.kube.objects(kind) == [], kind
    rows = sqlite3.connect(root / ".madengine" / "state.db").execute(
        "SELECT status FROM attempts WHERE address = 'job:m1@cpu/k8s#1'").fetchall()
    assert rows == [("INTERRUPTED",)], (rows, out)
