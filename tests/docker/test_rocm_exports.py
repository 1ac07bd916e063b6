"""What ROCm-style `run` and `build` export, on the real engine: perf.csv's machine_name, and a
build_manifest.json that describes exactly the command that wrote it."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunCli
from tests.docker.test_rocm_commands_docker import mad_package
from tests.infra.services import Registry, service_env

pytestmark = pytest.mark.docker
NONE = ["--additional-context", '{"gpu_vendor": "NONE", "guest_os": "UBUNTU"}']


@pytest.mark.parametrize("backend", ["docker", "local"])
def test_machine_name_is_the_hosts_name_for_every_backend(run_cli: RunCli, tmp_path: Path, registry: Registry,
                                                          docker_client: Any, backend: str) -> None:
    root = mad_package(tmp_path)
    code, out, err = run_cli("run", "--tags", "dummy", "--backend", backend, *NONE, cwd=root, env=service_env())
    assert code == 0, out + err
    [row] = list(csv.DictReader((root / "perf.csv").open()))
    assert (row["machine_name"], row["deployment_type"]) == (socket.gethostname(), backend)


def test_build_in_a_directory_used_before_writes_only_its_own_models(
        run_cli: RunCli, tmp_path: Path, registry: Registry, docker_client: Any) -> None:
    root = mad_package(tmp_path)
    env = service_env()
    code, out, err = run_cli("run", "--tags", "dummy", *NONE, cwd=root, env=env)  # the directory's history
    assert code == 0, out + err
    code, out, err = run_cli("build", "--tags", "dummy_perf", *NONE, cwd=root, env=env)
    assert code == 0, out + err
    manifest = json.loads((root / "build_manifest.json").read_text())
    assert [m["name"] for m in manifest["built_models"].values()] == ["dummy_perf"]
    assert [b["model"] for b in manifest["summary"]["successful_builds"]] == ["dummy_perf"]
    assert manifest["context"]["gpu_vendor"] == "NONE"
