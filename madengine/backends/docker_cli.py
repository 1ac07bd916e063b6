"""A job's `docker run` as a command line, for engines reached through the `docker` CLI (the `ssh`
backend runs it on each host). Pure: rendered from `docker_render.run_arguments`, so the labels,
volumes, env, devices and driver script are exactly the docker backend's, and golden-tested without
an engine.

Every SDK keyword `run_arguments` can produce has its CLI option here; one that has none is an error,
never dropped. Environment values are not put on the command line (a host's process list shows it):
each variable is passed by name (`--env NAME`), its value taken from the CLI's own environment, which
the caller sets (`FabricSession.exec` sends it on stdin). Variables that would change the CLI itself
(PATH, DOCKER_HOST...) are given as `--env NAME=VALUE` instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from madengine.backends import docker_render as render
from madengine.backends.base import ATTEMPT_ENV
from madengine.backends.specs import JobSpec

# Variables the docker CLI reads for itself: passed by value, so that the CLI runs as the host set it up.
CLI_OWN = frozenset({"PATH", "HOME", "TMPDIR", "LD_LIBRARY_PATH", "LD_PRELOAD", "DOCKER_HOST", "DOCKER_CONFIG",
                     "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_API_VERSION"})
_LISTS = {"cap_add": "--cap-add", "cap_drop": "--cap-drop", "devices": "--device", "group_add": "--group-add",
          "security_opt": "--security-opt", "volumes": "--volume"}
_VALUES = {"shm_size": "--shm-size", "ipc_mode": "--ipc", "network_mode": "--network", "user": "--user"}
_NAME = re.compile(r"[^a-zA-Z0-9_.-]")


def container_name(workspace_id: str, job: JobSpec) -> str:
    """A name unique to this attempt of this job in this workspace (how a cancel finds the container
    before its id is known)."""
    digest = hashlib.sha256(f"{workspace_id}\0{job.address}".encode()).hexdigest()[:10]
    return f"madengine-{_NAME.sub('_', workspace_id)[:24]}-{job.env.get(ATTEMPT_ENV) or 0}-{digest}"


def _gpus(requests: list[Mapping[str, Any]]) -> str:
    if len(requests) != 1 or requests[0].get("capabilities") != [["gpu"]]:
        raise ValueError(f"device requests {requests!r} have no `docker run --gpus` form")
    req = requests[0]
    if "device_ids" in req:
        return f'"device={",".join(req["device_ids"])}"'  # quoted: --gpus reads CSV
    count = int(req.get("count", -1))
    return "all" if count < 0 else str(count)


def run_argv(job: JobSpec, ctx: render.RunContext, *, name: str,
             remove: bool = True) -> tuple[list[str], dict[str, str]]:
    """(argv, env): `docker run` for the job in the foreground (its output is the log), and the
    environment the CLI must be run with. `remove`: --rm (not for a kept-alive job)."""
    kwargs = dict(render.run_arguments(job, ctx))
    argv = ["docker", "run", "--name", name, "--pull", "never"]
    if remove:
        argv.append("--rm")
    image = kwargs.pop("image")
    entrypoint = kwargs.pop("entrypoint")
    command = kwargs.pop("command")
    environment = kwargs.pop("environment")
    labels = kwargs.pop("labels")
    for key, value in kwargs.items():
        if key in _LISTS:
            argv += [w for item in value for w in (_LISTS[key], str(item))]
        elif key in _VALUES:
            argv += [_VALUES[key], str(value)]
        elif key == "privileged":
            if value:
                argv.append("--privileged")
        elif key == "ulimits":
            argv += [w for u in value for w in ("--ulimit", f"{u['name']}={u['soft']}:{u['hard']}")]
        elif key == "device_requests":
            argv += ["--gpus", _gpus(value)]
        else:
            raise ValueError(f"{job.address}: the docker option {key!r} has no `docker run` form here")
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    env: dict[str, str] = {}
    for key, value in sorted(environment.items()):
        if key in CLI_OWN:
            argv += ["--env", f"{key}={value}"]
        else:
            argv += ["--env", key]
            env[key] = value
    argv += ["--entrypoint", entrypoint[0], image, *entrypoint[1:], *command]
    return argv, env
