"""Shared test helpers.

`run_cli` runs the real entry point (`python -m madengine ...`) in a subprocess, the way a user
does, so the exit code and the exact stdout/stderr are what a user would see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


class CliResult(NamedTuple):
    """What one `madengine` invocation did: unpacks as `code, stdout, stderr`."""

    code: int
    stdout: str
    stderr: str


class RunCli(Protocol):
    def __call__(self, *args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str | None] | None = None, input: str | None = None,
                 timeout: float = 120) -> CliResult: ...


def run_cli(*args: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None,
            env: Mapping[str, str | None] | None = None, input: str | None = None,
            timeout: float = 120) -> CliResult:
    """Run `python -m madengine *args` in `cwd`; `env` entries are added to (and override) os.environ,
    and an entry of None removes the variable (e.g. `env={"COLUMNS": None}`: what a pipe gets).

    The checkout is put first on PYTHONPATH so the code under test runs whether or not it is
    installed. stdin is closed (or given `input`), so nothing can wait for a terminal.
    """
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    full_env.setdefault("NO_COLOR", "1")
    full_env.setdefault("COLUMNS", "200")  # stable wrapping of help and tables
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    proc = subprocess.run(
        [sys.executable, "-m", "madengine", *(os.fspath(a) for a in args)],
        cwd=os.fspath(cwd) if cwd is not None else None,
        env=full_env,
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_unprivileged(args: tuple[str, ...], cwd: Path) -> tuple[int, str, str]:
    """`madengine *args` as a user whom file permissions bind: root without CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH (as its own files' owner, mode bits 000 deny it), or the user running the tests."""
    command = [sys.executable, "-m", "madengine", *args]
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.fail("root without capsh cannot give up its file capabilities: install libcap2-bin "
                        "(dev/services start does)")
        command = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", 'exec "$0" "$@"', *command]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NO_COLOR": "1", "COLUMNS": "200"}
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL, env=env)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> RunCli:
    """The `run_cli` helper as a fixture: `code, out, err = run_cli("validate", cwd=tmp_path)`."""
    return run_cli


# Fixtures that talk to the real dockerd: a test that uses one, directly or through another fixture, is a
# `docker` test, so that `-m 'not docker'` runs everything that does not need the engine.
DOCKERD_FIXTURES = frozenset({"docker_client", "conformance_image", "tiny_image"})
# Likewise the SSH hosts of `dev/services` (tests/infra/ssh.py): an `ssh` test.
SSH_FIXTURES = frozenset({"ssh_services", "ssh_hosts"})
# And the SLURM cluster of `dev/services` (tests/infra/slurm.py): a `slurm` test.
SLURM_FIXTURES = frozenset({"slurm_cluster"})
# And its PostgreSQL server (tests/infra/postgres.py): a `postgresql` test.
POSTGRESQL_FIXTURES = frozenset({"pg_server", "pg_schema"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if DOCKERD_FIXTURES & fixtures:
            item.add_marker(pytest.mark.docker)
        if SSH_FIXTURES & fixtures:
            item.add_marker(pytest.mark.ssh)
        if SLURM_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slurm)
        if POSTGRESQL_FIXTURES & fixtures:
            item.add_marker(pytest.mark.postgresql)
