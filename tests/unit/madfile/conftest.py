from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from madengine.errors import ConfigError, Diagnostic, ExitCode
from madengine.madfile.load import LoadedMadfile, load_and_check

# The example of DESIGN §2, verbatim.
DESIGN_EXAMPLE = """\
version: 1
name: nightly
package: ./MAD                 # optional MAD package; paths below are relative to this file
registry: localhost:5000       # optional; where images are pushed for remote targets

models:
  - select: dummy              # MAD tag syntax, same semantics as `discover --tags`
  - select: "dummy3:dummy_3:batch_size=512"
  - name: matmul               # or an inline model, same fields as a models.json entry
    dockerfile: docker/matmul  # a prefix: every docker/matmul.*.Dockerfile whose CONTEXT matches
    scripts: scripts/matmul/run.sh
    args: --iters 50
    n_gpus: 0
    timeout: 600
    tags: [micro]
    params: {size: [256, 512]}   # matrix: one model per combination, passed as "--size 256"

contexts:
  cpu:    {gpu_vendor: NONE, guest_os: UBUNTU}
  mi300x: {gpu_vendor: AMD, guest_os: UBUNTU, docker_env_vars: {HSA_ENABLE_SDMA: "0"}, tools: [{name: rocprof}]}

targets:
  here:  {backend: local}                    # host processes, no container: the embedded default
  box:   {backend: docker}
  lab:   {backend: ssh, hosts: [{address: 10.0.0.5, user: bench, key: ~/.ssh/id_ed25519, gpus: 8}]}
  hpc:   {backend: slurm, partition: gpu, login: {address: login.example.org, user: me}}
  k8s:   {backend: kubernetes, namespace: bench, gpu_resource: amd.com/gpu}

runs:                          # what runs where: the cross product becomes jobs
  - models: [dummy, matmul]
    contexts: [cpu]
    targets: [box]
    repeat: 3
    expect:                    # performance gate, per metric
      matmul: {metric: gflops, better: higher, min: 10}
"""

# Metadata that registers the backends the format describes but madengine does not ship (ansible, slurm...).
FUTURE_BACKENDS = Path(__file__).resolve().parents[2] / "fixtures" / "plugins"


@pytest.fixture(autouse=True)
def future_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the format: targets of every backend it describes count as installed."""
    monkeypatch.syspath_prepend(str(FUTURE_BACKENDS))


Write = Callable[[str], Path]
Errors = Callable[[str], list[Diagnostic]]
Load = Callable[[str], LoadedMadfile]


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Write:
    """Write a (dedented) madfile.yaml into tmp_path, the cwd, and return its path.

    Running in tmp_path makes messages name `madfile.yaml`, as they do for a user.
    """
    monkeypatch.chdir(tmp_path)

    def _write(text: str) -> Path:
        path = tmp_path / "madfile.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def load(write: Write) -> Load:
    """load_and_check a madfile that must be valid."""

    def _load(text: str) -> LoadedMadfile:
        return load_and_check(write(text))

    return _load


@pytest.fixture
def errors(write: Write) -> Errors:
    """The diagnostics of a madfile that must be invalid (load + semantic checks)."""

    def _errors(text: str) -> list[Diagnostic]:
        with pytest.raises(ConfigError) as info:
            load_and_check(write(text))
        assert info.value.exit_code == ExitCode.CONFIG
        assert info.value.diagnostics, "a ConfigError must carry at least one diagnostic"
        return list(info.value.diagnostics)

    return _errors


def one(diagnostics: list[Diagnostic]) -> Diagnostic:
    """The only diagnostic, with a readable failure when there are several."""
    assert len(diagnostics) == 1, "\n".join(d.render() for d in diagnostics)
    return diagnostics[0]


def at(d: Diagnostic) -> tuple[int | None, int | None]:
    return d.line, d.column
