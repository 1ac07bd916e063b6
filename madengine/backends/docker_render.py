"""What the docker backend submits, as pure functions: container arguments, the run command, labels.

Kept apart from `docker.py` (which talks to the engine) so it is golden-tested without a daemon.

The MAD run protocol (DESIGN §3), as the local backend runs it and as ROCm madengine lays it out:
the backend copies the script's directory and the pre/post scripts into a private run directory on
the host; in the container it is `/myworkspace/run_directory`, and each top-level entry of the MAD
package is bind-mounted read-only beside it at `/myworkspace/<entry>`, so `../scripts/...` in a
tool's command means what it means in ROCm madengine. There the container runs the pre scripts
(`bash <name> <args>`), the model (`<tool wrappers> bash <script> <args>`), then the post scripts.

The command is an argument list. The only shell program is the constant `DRIVER`; every value (run
dir, script names, model args) reaches it as a positional parameter, which a shell never parses,
so nothing from a model name, its args or params can be executed.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from madengine.backends import base
from madengine.backends.base import ATTEMPT_ENV
from madengine.backends.specs import JobSpec

WORKSPACE_IN_CONTAINER = "/myworkspace"
RUN_DIR_IN_CONTAINER = f"{WORKSPACE_IN_CONTAINER}/run_directory"

# Container labels: how cleanup finds what an apply left behind, and how a user finds a job's container.
LABEL_NODE = "madengine.node"
LABEL_ADDRESS = "madengine.address"
LABEL_WORKSPACE = "madengine.workspace"
LABEL_ATTEMPT = "madengine.attempt"
LABEL_TARGET = "madengine.target"
LABEL_KEEP_ALIVE = "madengine.keep-alive"

# Runs the steps given as positional parameters: `<run dir>` then, per step, `<kind> <n> <n words>`,
# kind `pre`, `main` or `post`. A step runs its words as an argv (the first is the interpreter). After
# a failure the remaining pre/main steps are skipped but post steps still run; the exit status is the
# first failure's. The subshell keeps the first n parameters (POSIX sh has no array slices).
DRIVER = """\
cd "$1" || exit
shift
rc=0
while [ "$#" -gt 0 ]; do
  kind=$1 n=$2
  shift 2
  if [ "$kind" = post ] || [ "$rc" -eq 0 ]; then
    (i=0; for a do shift; [ "$i" -lt "$n" ] && set -- "$@" "$a"; i=$((i + 1)); done; exec "$@")
    s=$?
    [ "$rc" -ne 0 ] || rc=$s
  fi
  shift "$n"
done
exit "$rc"
"""
DRIVER_NAME = "madengine-run"  # $0 of the driver: names it in the shell's own error messages


class DockerOptionsError(ValueError):
    """`additional_docker_run_options` holds something the backend cannot translate."""


# --- additional_docker_run_options ----------------------------------------------------------------

_LIST_OPTIONS = {"--cap-add": "cap_add", "--cap-drop": "cap_drop", "--device": "devices",
                 "--group-add": "group_add", "--security-opt": "security_opt"}
_VALUE_OPTIONS = {"--shm-size": "shm_size", "--ipc": "ipc_mode", "--network": "network_mode",
                  "--net": "network_mode", "--user": "user", "-u": "user"}
_ALIASES = {"-e": "--env", "-v": "--volume"}
_FLAGS = {"--privileged": "privileged"}
SUPPORTED_OPTIONS = sorted([*_LIST_OPTIONS, *_VALUE_OPTIONS, *_FLAGS, "--env", "-e", "--volume", "-v", "--ulimit"])
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_docker_options(text: str) -> dict[str, Any]:
    """Translate a docker CLI option string (models.json `additional_docker_run_options`) into SDK kwargs.

    The string is split into words as a shell would (quotes), never run: values stay data.
    """
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as e:
        raise DockerOptionsError(f"cannot split {text!r}: {e}") from None
    out: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if not eq and len(name) > 2 and name[0] == "-" and name[1] != "-" and name[:2] in _ALIASES:
            name, value, eq = name[:2], name[2:], "="  # -eFOO=1, -v/a:/b
        name = _ALIASES.get(name, name)
        if name in _FLAGS:
            if eq and value.lower() not in ("true", "1"):
                raise DockerOptionsError(f"{name}={value}: only {name} (true) is supported")
            out[_FLAGS[name]] = True
            continue
        if name not in (*_LIST_OPTIONS, *_VALUE_OPTIONS, "--env", "--volume", "--ulimit"):
            raise DockerOptionsError(f"unsupported docker option {word.split('=')[0]!r} "
                                     f"(supported: {', '.join(SUPPORTED_OPTIONS)})")
        if not eq:
            if i >= len(words):
                raise DockerOptionsError(f"{name} needs a value")
            value = words[i]
            i += 1
        if name in _LIST_OPTIONS:
            out.setdefault(_LIST_OPTIONS[name], []).append(value)
        elif name in _VALUE_OPTIONS:
            out[_VALUE_OPTIONS[name]] = value
        elif name == "--env":
            key, has_value, val = value.partition("=")
            if not _ENV_NAME.match(key):
                raise DockerOptionsError(f"--env {value!r}: not a variable name")
            if not has_value:
                raise DockerOptionsError(f"--env {key}: give a value (KEY=VALUE); the host's environment "
                                         "is not passed through")
            out.setdefault("environment", {})[key] = val
        elif name == "--volume":
            out.setdefault("volumes", []).append(_volume(value))
        else:
            out.setdefault("ulimits", []).append(_ulimit(value))
    return out


def _volume(spec: str) -> str:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise DockerOptionsError(f"--volume {spec!r}: expected /host/path:/container/path[:ro|rw]")
    if not parts[0].startswith("/"):
        raise DockerOptionsError(f"--volume {spec!r}: named volumes are not supported; give a host path")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise DockerOptionsError(f"--volume {spec!r}: mode must be ro or rw")
    return spec if len(parts) == 3 else f"{spec}:rw"


def _ulimit(spec: str) -> dict[str, Any]:
    m = re.fullmatch(r"([a-z]+)=(-?\d+)(?::(-?\d+))?", spec)
    if not m:
        raise DockerOptionsError(f"--ulimit {spec!r}: expected name=soft[:hard]")
    soft = int(m.group(2))
    hard = int(m.group(3)) if m.group(3) is not None else soft
    return {"name": m.group(1), "soft": soft, "hard": hard}


# --- the command ---------------------------------------------------------------------------------


def run_steps(job: JobSpec) -> list[str]:
    """The driver's positional parameters after the run dir: each step of `base.run_steps` as its kind,
    its word count and its words."""
    return [word for kind, argv in base.run_steps(job) for word in (kind, str(len(argv)), *argv)]


def run_command(job: JobSpec, run_dir_in_container: str = RUN_DIR_IN_CONTAINER) -> tuple[list[str], list[str]]:
    """(entrypoint, command): `sh -c DRIVER` with the run dir and the steps as its positional parameters."""
    return ["sh", "-c", DRIVER, DRIVER_NAME], [run_dir_in_container, *run_steps(job)]


# --- GPUs, environment, mounts ----------------------------------------------------------------------


def runtime_gpus(job: JobSpec, system_gpus: int | None) -> int:
    if job.gpu_ids:
        return len(job.gpu_ids)
    if job.n_gpus < 0:
        return system_gpus or 0
    return job.n_gpus


# The host devices each GPU vendor's containers are given (DESIGN §3); NVIDIA's come through its runtime.
VENDOR_DEVICES = {"AMD": ("/dev/kfd", "/dev/dri"), "INTEL": ("/dev/dri",)}
NVIDIA_RUNTIME = "nvidia"


def vendor_arguments(job: JobSpec) -> dict[str, Any]:
    """The per-vendor container options of DESIGN §3."""
    vendor = job.gpu_vendor.upper()
    devices = [f"{d}:{d}:rwm" for d in VENDOR_DEVICES.get(vendor, ())]
    if vendor == "AMD":
        return {"devices": devices, "group_add": ["video"],
                "ipc_mode": "host", "security_opt": ["seccomp=unconfined"]}
    if vendor == "NVIDIA":
        if job.gpu_ids:
            req: dict[str, Any] = {"device_ids": [str(g) for g in job.gpu_ids]}
        elif job.n_gpus == 0:
            return {}
        else:
            req = {"count": -1 if job.n_gpus < 0 else job.n_gpus}
        return {"device_requests": [{**req, "capabilities": [["gpu"]]}]}
    if vendor == "INTEL":
        return {"devices": devices}
    return {}


def device_paths(gpu_vendor: str, docker_options: str = "") -> list[str]:
    """The host paths of every device a container is given: its vendor's (as `vendor_arguments` gives
    them) and `--device` options'."""
    opts = parse_docker_options(docker_options) if docker_options.strip() else {}
    specs = [*VENDOR_DEVICES.get(gpu_vendor.upper(), ()), *opts.get("devices", [])]
    return list(dict.fromkeys(spec.split(":", 1)[0] for spec in specs))


def environment(job: JobSpec, system_gpus: int | None) -> dict[str, str]:
    """The MAD variables (DESIGN §3) under the job's own env, which wins."""
    ngpus = runtime_gpus(job, system_gpus)
    env = {
        "MAD_MODEL_NAME": job.model,
        "MAD_GPU_VENDOR": job.gpu_vendor,
        "MAD_RUNTIME_NGPUS": str(ngpus),
        "MAD_SYSTEM_NGPUS": str(system_gpus if system_gpus is not None else ngpus),
        "MAD_GUEST_OS": job.guest_os,
    }
    if job.multiple_results:
        env["MAD_OUTPUT_CSV"] = job.multiple_results
    if job.data_mounts:
        env["MAD_DATAHOME"] = ",".join(m.container_path for m in job.data_mounts)
    if job.gpu_ids and job.gpu_vendor.upper() == "AMD":
        # AMD containers see every GPU (/dev/kfd, /dev/dri) numbered as on the host: restrict them to
        # the ones apply's scheduler gave this job. NVIDIA's device request already shows only those.
        env["HIP_VISIBLE_DEVICES"] = ",".join(str(g) for g in job.gpu_ids)
    env.update(job.env)
    return env


def _bind(host: str, container: str, mode: str) -> str:
    if not host.startswith("/") or not container.startswith("/") or ":" in host or ":" in container:
        raise ValueError(f"mount {host} -> {container}: both paths must be absolute and contain no ':'")
    return f"{host}:{container}:{mode}"


def mount_specs(mounts: Mapping[str, str]) -> list[str]:
    """`host:container:mode` bind specs; a container path may end in `:ro` or `:rw` (default rw)."""
    out = []
    for host, target in sorted(mounts.items()):
        path, mode = target, "rw"
        if target.endswith((":ro", ":rw")):
            path, mode = target[:-3], target[-2:]
        out.append(_bind(host, path, mode))
    return out


def data_mount_specs(job: JobSpec, project_root: str) -> list[str]:
    """data.json providers: read-only unless `readwrite`; package paths are relative to the project."""
    return [_bind(posixpath.join(project_root, m.host_path) if m.in_project else m.host_path,
                  m.container_path, "rw" if m.readwrite else "ro")
            for m in job.data_mounts]


# --- everything together ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """What `run_arguments` needs beyond the job: decided by the backend from the target and the engine."""

    workspace_id: str
    run_dir_host: str  # absolute
    project_root: str = "/"  # absolute: what project-relative paths are relative to
    package_entries: tuple[tuple[str, str], ...] = ()  # (name, absolute host path) of the MAD package root
    network: str | None = None  # target's network, or `none` on an engine without a bridge
    system_gpus: int | None = None


def labels(job: JobSpec, ctx: RunContext) -> dict[str, str]:
    out = {
        LABEL_NODE: job.node_hash,
        LABEL_ADDRESS: job.address,
        LABEL_WORKSPACE: ctx.workspace_id,
        LABEL_ATTEMPT: job.env.get(ATTEMPT_ENV, ""),
        LABEL_TARGET: job.target,
    }
    if job.keep_alive:
        out[LABEL_KEEP_ALIVE] = "1"
    return out


def volumes(job: JobSpec, ctx: RunContext) -> list[str]:
    """The run dir (read-write), the package beside it (read-only), context mounts, data mounts."""
    out = [_bind(ctx.run_dir_host, RUN_DIR_IN_CONTAINER, "rw")]
    out += [_bind(host, posixpath.join(WORKSPACE_IN_CONTAINER, name), "ro")
            for name, host in sorted(ctx.package_entries) if name != posixpath.basename(RUN_DIR_IN_CONTAINER)]
    return out + mount_specs(job.mounts) + data_mount_specs(job, ctx.project_root)


def run_arguments(job: JobSpec, ctx: RunContext) -> dict[str, Any]:
    """The Docker SDK `containers.create` kwargs for a job.

    Merge order: the vendor's options, then `additional_docker_run_options` (which may add devices,
    env, mounts, or override ipc/network), then what the protocol needs (mounts, labels, command).
    """
    if job.image_tag is None:
        raise ValueError(f"{job.address}: a docker job needs an image")
    entrypoint, command = run_command(job)
    kwargs: dict[str, Any] = vendor_arguments(job)
    opts = parse_docker_options(job.docker_options) if job.docker_options.strip() else {}
    for key, value in opts.items():
        if isinstance(value, list):
            kwargs[key] = [*kwargs.get(key, []), *value]
        elif key != "environment":
            kwargs[key] = value
    env = {**opts.get("environment", {}), **environment(job, ctx.system_gpus)}
    binds = volumes(job, ctx) + kwargs.pop("volumes", [])
    if "network_mode" not in kwargs and ctx.network:
        kwargs["network_mode"] = ctx.network
    kwargs.update(
        image=job.image_tag,
        entrypoint=entrypoint,
        command=command,
        environment=env,
        labels=labels(job, ctx),
        volumes=binds,
    )
    return dict(sorted(kwargs.items()))


def validate_options(job: JobSpec) -> list[str]:
    """Problems with a job's docker options and mounts, as messages (no I/O)."""
    problems = []
    if job.docker_options.strip():
        try:
            parse_docker_options(job.docker_options)
        except DockerOptionsError as e:
            problems.append(f"additional_docker_run_options: {e}")
    try:
        mount_specs(job.mounts)
        data_mount_specs(job, "/project")
    except ValueError as e:
        problems.append(str(e))
    return problems
