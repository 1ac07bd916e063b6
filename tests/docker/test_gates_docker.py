"""`expect:` gates on the docker backend: the figure a container reports is what the gate judges."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.docker.test_apply_docker import make, model
from tests.infra.services import Registry, service_env

pytestmark = pytest.mark.docker

GATE = "runs:\n  - models: [m1]\n    expect:\n      m1: {metric: samples_per_second, min: 100}\n"


def test_a_container_result_below_its_gate_exits_6_and_again_when_up_to_date(
        run_cli: RunCli, tmp_path: Path, registry: Registry) -> None:
    root = make(tmp_path, registry.base_image, [model("m1")], GATE)  # the script reports 10.5
    line = "job:m1@cpu/box#1: samples_per_second 10.5 is below min 100 (expect in madfile.yaml:9:7)"
    for _ in range(2):
        code, out, err = run_cli("apply", "--yes", cwd=root, env=service_env())
        assert (code, line in out.splitlines()) == (6, True), out + err
