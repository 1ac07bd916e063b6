"""What the kubernetes backend submits, as pure functions: the Job (an Indexed Job and its headless Service
for a multi-node job), the ConfigMap with the run directory, the Secret with the job's secret variables.

Kept apart from `kubernetes.py` (which talks to the API server) so it is golden-tested and validated
against the official schemas without a cluster, and so `madengine generate k8s` writes exactly what
the backend creates. Manifests are plain dicts (dumped to YAML by `dump`), never text templates.

The pod runs the MAD protocol as the docker backend's container does (docker_render.DRIVER): the run
directory, put in a ConfigMap (keys cannot hold `/`: each file is a numbered key, restored to its path
by the volume's `items`), is mounted read-only at `SOURCE_DIR` and copied into a writable emptyDir at
docker_render.RUN_DIR_IN_CONTAINER, where the steps run. The pod's log is the run's log; a
`multiple_results` CSV comes back at the end of it, between two marker lines (`csv_markers`), since
nothing of the pod's filesystem outlives it.

Values never reach a shell as code: the program is the constant `POD_DRIVER`, every value is one of its
positional parameters. Kubernetes itself expands `$(NAME)` in a container's command, args and env values:
every `$` of ours is written `$$` there (`escape`), so a model argument reading `$(HOME)` stays as it is.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from madengine.backends import docker_render
from madengine.backends.base import ATTEMPT_ENV
from madengine.backends.specs import JobSpec, hidden

SOURCE_DIR = "/madengine/run"  # the ConfigMap's files, read-only
CONTAINER = "job"  # the pod's one container
MASTER_PORT = 29500  # torchrun's default: rank 0's rendezvous port on a multi-node job
CONFIGMAP_LIMIT = 1_000_000  # bytes: the API server refuses a ConfigMap above 1 MiB (with its keys and metadata)

LABEL_NODE = docker_render.LABEL_NODE
LABEL_ATTEMPT = docker_render.LABEL_ATTEMPT
LABEL_WORKSPACE = docker_render.LABEL_WORKSPACE
LABEL_JOB = "madengine.job"  # on the pods: which Job they run (the Service's selector)
LABEL_MANAGED = "app.kubernetes.io/managed-by"
ANNOTATION_ADDRESS = "madengine.io/address"
ANNOTATION_TARGET = "madengine.io/target"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

# The pod's program: $1 the ConfigMap's directory, $2 the run directory, $3 the `multiple_results` CSV
# ('' for none), $4 the marker around it in the log; then the steps, for docker_render's DRIVER. A
# ConfigMap volume holds `..data` and timestamped `..` directories beside the files: only the files'
# own top-level entries are copied, following the volume's symbolic links.
_PROLOGUE = """\
src=$1 dst=$2 csv=$3 mark=$4
shift 4
mkdir -p -- "$dst" || exit
for e in "$src"/* "$src"/.[!.]*; do
  [ -e "$e" ] || continue
  cp -RL -- "$e" "$dst"/ || exit
done
"""
_EPILOGUE = """\
rc=$?
if [ -n "$csv" ]; then
  printf '\\n%s begin\\n' "$mark"
  cat -- "$dst/$csv" 2>/dev/null
  printf '\\n%s end\\n' "$mark"
fi
exit "$rc"
"""
POD_DRIVER = _PROLOGUE + '(\nset -- "$dst" "$@"\n' + docker_render.DRIVER + ")\n" + _EPILOGUE

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]+")
NAME_LIMIT = 52  # a Job's name: its pods are `<name>-<index>-<5 chars>`, their hostnames `<name>-<index>` (63)

# Vendors' device-plugin resources: what `n_gpus` asks for when the target names none.
VENDOR_RESOURCES = {"AMD": "amd.com/gpu", "NVIDIA": "nvidia.com/gpu", "INTEL": "gpu.intel.com/i915"}


class KubernetesRenderError(ValueError):
    """A job this backend cannot express as a pod (said before submission, by validate)."""


@dataclass(frozen=True)
class PodSettings:
    """What a target decides about every pod (its keys, resolved)."""

    namespace: str = "default"
    gpu_resource: str | None = None  # None: from the job's GPU vendor (VENDOR_RESOURCES)
    gpus: int | None = None  # a node's GPUs: what n_gpus -1 asks for
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()  # already in the API's form
    image_pull_secret: str | None = None
    service_account: str | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True)
class RunFile:
    """One file of the run directory: its path there, its bytes, whether it is executable."""

    path: str
    data: bytes
    executable: bool = False


def escape(text: str) -> str:
    """A value as Kubernetes' `$(NAME)` expansion leaves it: `$$` reads as one `$`."""
    return text.replace("$", "$$")


def short_hash(node_hash: str) -> str:
    """A node hash as a label value (63 characters at most): its first 32 hex digits."""
    return node_hash.removeprefix("sha256:")[:32]


def attempt_of(job: JobSpec) -> str:
    return job.env.get(ATTEMPT_ENV, "")


def job_name(job: JobSpec) -> str:
    """A DNS-1123 label unique to this attempt of this node: `mad-<readable>-<hash8>[-a<attempt>]`, at most
    NAME_LIMIT characters (the address's hash keeps two nodes apart when their readable parts meet)."""
    digest = hashlib.sha256(job.address.encode()).hexdigest()[:8]
    attempt = attempt_of(job)
    suffix = f"-{digest}" + (f"-a{attempt}" if attempt else "")
    readable = re.sub(r"[^a-z0-9]+", "-", job.address.removeprefix("job:").lower()).strip("-")
    room = NAME_LIMIT - len("mad-") - len(suffix)
    name = f"mad-{readable[:room].rstrip('-')}{suffix}".replace("--", "-")
    assert _DNS_LABEL.match(name), name
    return name


def configmap_name(name: str) -> str:
    return f"{name}-run"


def secret_name(name: str) -> str:
    return f"{name}-env"


def label_value(text: str) -> str:
    """Refuses what is not a label value (a workspace id, an attempt id and a hash always are)."""
    if not _LABEL_VALUE.match(text):
        raise KubernetesRenderError(f"{text!r} is not a Kubernetes label value")
    return text


def labels(job: JobSpec, workspace_id: str) -> dict[str, str]:
    """On every object madengine creates for the job: how a poll, a clean-up and a user find them."""
    return {LABEL_MANAGED: "madengine", LABEL_NODE: label_value(short_hash(job.node_hash)),
            LABEL_ATTEMPT: label_value(attempt_of(job)), LABEL_WORKSPACE: label_value(workspace_id)}


def _metadata(name: str, namespace: str, job: JobSpec, workspace_id: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(job, workspace_id),
            "annotations": {ANNOTATION_ADDRESS: job.address, ANNOTATION_TARGET: job.target}}


# --- the run directory -------------------------------------------------------------------------------


def configmap_key(index: int, path: str) -> str:
    """A ConfigMap key for a run directory file (keys hold no `/`): numbered, so two paths never meet."""
    return f"{index:04d}.{_KEY_CHARS.sub('_', path.replace('/', '.'))}"[:253]


def configmap(name: str, namespace: str, job: JobSpec, workspace_id: str,
              files: Sequence[RunFile]) -> dict[str, Any]:
    """The run directory's files; text as `data`, anything else as `binaryData` (base64)."""
    import base64

    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for index, f in enumerate(files):
        key = configmap_key(index, f.path)
        try:
            data[key] = f.data.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(f.data).decode("ascii")
    out: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": _metadata(configmap_name(name), namespace, job, workspace_id)}
    if data:
        out["data"] = data
    if binary:
        out["binaryData"] = binary
    return out


def configmap_size(files: Sequence[RunFile]) -> int:
    """About what the API server counts: base64 grows binary files by a third."""
    return sum(len(f.data) * 4 // 3 + 256 for f in files)


def volume_items(files: Sequence[RunFile], prefix: str = "") -> list[dict[str, Any]]:
    """The items of the ConfigMap that restore the files under `prefix` (the run directory's: ''), each at
    its path below it."""
    return [{"key": configmap_key(i, f.path), "path": f.path[len(prefix):], "mode": 0o755 if f.executable else 0o644}
            for i, f in enumerate(files) if (f.path.startswith(prefix) if prefix else not f.path.startswith("../"))]


def package_entries(files: Sequence[RunFile]) -> list[str]:
    """The MAD package's top-level entries some file of the ConfigMap comes from (`../scripts/...`)."""
    return sorted({f.path.split("/")[1] for f in files if f.path.startswith("../")})


# --- the pod ------------------------------------------------------------------------------------------


def gpu_resource(job: JobSpec, settings: PodSettings) -> str | None:
    return settings.gpu_resource or VENDOR_RESOURCES.get(job.gpu_vendor.upper())


def gpus_per_pod(job: JobSpec, settings: PodSettings) -> int:
    if job.n_gpus < 0:
        if settings.gpus is None:
            raise KubernetesRenderError(f"{job.address}: n_gpus -1 (all of a node's GPUs) needs the target's "
                                        "`gpus:` (a node's GPUs) on kubernetes")
        return settings.gpus
    return job.n_gpus


def _quantity(size: str) -> str:
    """docker's `--shm-size 16g` as a Kubernetes quantity (`16Gi`)."""
    m = re.fullmatch(r"(\d+)([bkmgBKMG]?)", size.strip())
    if not m:
        raise KubernetesRenderError(f"--shm-size {size!r}: expected a number with b, k, m or g")
    unit = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}[m.group(2).lower()]
    return f"{m.group(1)}{unit}"


@dataclass
class _Pod:
    """The parts of a pod spec `additional_docker_run_options` and mounts add to."""

    env: dict[str, str] = field(default_factory=dict)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    security: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)


def _docker_options(job: JobSpec, pod: _Pod) -> None:
    """The `additional_docker_run_options` a pod can honour; any other is an error, never dropped."""
    if not job.docker_options.strip():
        return
    try:
        opts = docker_render.parse_docker_options(job.docker_options)
    except docker_render.DockerOptionsError as e:
        raise KubernetesRenderError(f"additional_docker_run_options: {e}") from None
    for key, value in opts.items():
        if key == "environment":
            pod.env.update(value)
        elif key == "shm_size":
            pod.volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity(value)}})
            pod.mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        elif key == "privileged":
            pod.security["privileged"] = True
        elif key in ("cap_add", "cap_drop"):
            pod.security.setdefault("capabilities", {})["add" if key == "cap_add" else "drop"] = list(value)
        elif key == "ipc_mode" and value == "host":
            pod.spec["hostIPC"] = True
        elif key == "network_mode" and value == "host":
            pod.spec["hostNetwork"] = True
        elif key == "security_opt" and all(v in ("seccomp=unconfined", "seccomp:unconfined") for v in value):
            pod.security["seccompProfile"] = {"type": "Unconfined"}
        else:
            option = {"devices": "--device", "group_add": "--group-add", "volumes": "--volume", "user": "--user",
                      "ulimits": "--ulimit", "ipc_mode": "--ipc", "network_mode": "--network",
                      "security_opt": "--security-opt"}.get(key, key)
            raise KubernetesRenderError(f"additional_docker_run_options: {option} has no Kubernetes form here "
                                        "(supported: --env, --shm-size, --privileged, --cap-add, --cap-drop, "
                                        "--ipc host, --network host, --security-opt seccomp=unconfined)")


def _host_mounts(job: JobSpec, pod: _Pod) -> None:
    """Context mounts and data providers' directories, as hostPath volumes of the node."""
    binds: list[tuple[str, str, bool]] = []
    for host, target in sorted(job.mounts.items()):
        path, mode = (target[:-3], target[-2:]) if target.endswith((":ro", ":rw")) else (target, "rw")
        binds.append((host, path, mode == "ro"))
    for m in job.data_mounts:
        if m.in_project:
            raise KubernetesRenderError(f"data directory {m.host_path} is in the project, which no node has: "
                                        "give its data provider a path that exists on the cluster's nodes")
        binds.append((m.host_path, m.container_path, not m.readwrite))
    for i, (host, path, read_only) in enumerate(binds):
        if not host.startswith("/") or not path.startswith("/"):
            raise KubernetesRenderError(f"mount {host} -> {path}: both paths must be absolute")
        pod.volumes.append({"name": f"host-{i}", "hostPath": {"path": host}})
        pod.mounts.append({"name": f"host-{i}", "mountPath": path, "readOnly": read_only})


def secret_names(env: Mapping[str, str], job: JobSpec) -> list[str]:
    """The variables that go through a Secret, never in a manifest: those named like secrets, and those
    given by a `${env:NAME}` reference (specs.hidden)."""
    return sorted(k for k in env if hidden(k, job))


def _values(job: JobSpec, settings: PodSettings, pod: _Pod) -> dict[str, str]:
    return {**pod.env, **docker_render.environment(job, gpus_per_pod(job, settings))}


def secret_values(job: JobSpec, settings: PodSettings) -> dict[str, str]:
    """The job's secret variables with their values: what its Secret holds (empty: it needs none)."""
    pod = _Pod()
    _docker_options(job, pod)
    values = _values(job, settings, pod)
    return {k: values[k] for k in secret_names(values, job)}


def environment(job: JobSpec, settings: PodSettings, name: str, pod: _Pod) -> list[dict[str, Any]]:
    """The container's env: options' --env, the MAD variables and the job's own (docker_render's), each
    secret from the job's Secret; then, for a multi-node job, what MAD's launchers read."""
    values = _values(job, settings, pod)
    secrets = set(secret_names(values, job))
    out: list[dict[str, Any]] = []
    for key, value in sorted(values.items()):
        if key in secrets:
            out.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name(name), "key": key}}})
        else:
            out.append({"name": key, "value": escape(value)})
    if job.nnodes > 1:
        ngpus = gpus_per_pod(job, settings)
        runner = (f"torchrun --nnodes={job.nnodes} --nproc_per_node={max(ngpus, 1)} --node_rank=$(NODE_RANK) "
                  "--master_addr=$(MASTER_ADDR) --master_port=$(MASTER_PORT)")
        multi: list[dict[str, Any]] = [
            {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
            {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
            {"name": "NNODES", "value": str(job.nnodes)},
            {"name": "NPROC_PER_NODE", "value": str(max(ngpus, 1))},
            {"name": "MAD_MULTI_NODE_RUNNER", "value": runner}]
        out = [e for e in out if e["name"] not in {m["name"] for m in multi}] + multi  # referenced in this order
    return out


def command(job: JobSpec, name: str) -> tuple[list[str], list[str]]:
    """(command, args): POD_DRIVER with its parameters, every `$` escaped from Kubernetes' expansion."""
    args = [SOURCE_DIR, docker_render.RUN_DIR_IN_CONTAINER, job.multiple_results, csv_markers(name)[0],
            *docker_render.run_steps(job)]
    return ["sh", "-c", escape(POD_DRIVER), docker_render.DRIVER_NAME], [escape(a) for a in args]


def csv_markers(name: str) -> tuple[str, str]:
    """The lines around the `multiple_results` CSV at the end of a pod's log."""
    return f"madengine-results-{name}", f"madengine-results-{name} end"


def job_manifest(job: JobSpec, *, name: str, image: str, workspace_id: str, settings: PodSettings,
                 files: Sequence[RunFile]) -> dict[str, Any]:
    """The batch/v1 Job: one pod, or an Indexed Job of `nnodes` pods reaching rank 0 through the Service."""
    pod = _Pod()
    _docker_options(job, pod)
    _host_mounts(job, pod)
    env = environment(job, settings, name, pod)
    cmd, args = command(job, name)
    container: dict[str, Any] = {
        "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent", "command": cmd, "args": args,
        "env": env,
        "volumeMounts": [{"name": "run-source", "mountPath": SOURCE_DIR, "readOnly": True},
                         {"name": "workspace", "mountPath": docker_render.WORKSPACE_IN_CONTAINER}, *pod.mounts],
    }
    resource = gpu_resource(job, settings)
    n = gpus_per_pod(job, settings)
    if n > 0:
        if resource is None:
            raise KubernetesRenderError(f"{job.address} asks for {n} GPUs of vendor {job.gpu_vendor}: give the "
                                        "target's `gpu_resource:` (the device plugin's resource name)")
        container["resources"] = {"limits": {resource: n}}
    if pod.security:
        container["securityContext"] = pod.security
    pod_labels = {**labels(job, workspace_id), LABEL_JOB: name}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    spec.update(pod.spec)
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    if settings.node_selector:
        spec["nodeSelector"] = dict(sorted(settings.node_selector.items()))
    if settings.tolerations:
        spec["tolerations"] = [dict(t) for t in settings.tolerations]
    source = {"name": configmap_name(name), "items": volume_items(files)}
    spec["volumes"] = [{"name": "run-source", "configMap": source}, {"name": "workspace", "emptyDir": {}}, *pod.volumes]
    for i, entry in enumerate(package_entries(files)):  # beside the run directory, read-only, as on docker
        items = volume_items(files, f"../{entry}/")
        spec["volumes"].append({"name": f"package-{i}", "configMap": {"name": configmap_name(name), "items": items}})
        container["volumeMounts"].append({"name": f"package-{i}", "readOnly": True,
                                          "mountPath": posixpath.join(docker_render.WORKSPACE_IN_CONTAINER, entry)})
    job_spec: dict[str, Any] = {"backoffLimit": 0}
    if job.nnodes > 1:
        spec["subdomain"] = name
        job_spec.update(completionMode="Indexed", completions=job.nnodes, parallelism=job.nnodes)
    if job.timeout > 0:
        job_spec["activeDeadlineSeconds"] = job.timeout
    if settings.ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds
    metadata = _metadata(name, settings.namespace, job, workspace_id)
    job_spec["template"] = {"metadata": {"labels": pod_labels, "annotations": metadata["annotations"]}, "spec": spec}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def service(job: JobSpec, *, name: str, workspace_id: str, namespace: str) -> dict[str, Any]:
    """The headless Service of a multi-node job: `<job>-<index>.<job>` names each pod (ranks reach rank 0)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(name, namespace, job, workspace_id),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {LABEL_JOB: name},
                     "ports": [{"name": "master", "port": MASTER_PORT, "targetPort": MASTER_PORT}]}}


def secret(job: JobSpec, *, name: str, workspace_id: str, namespace: str,
           values: Mapping[str, str]) -> dict[str, Any]:
    """The job's secret variables (created by the backend, never written by `generate`)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _metadata(secret_name(name), namespace, job, workspace_id),
            "stringData": dict(sorted(values.items()))}


def manifests(job: JobSpec, *, image: str, workspace_id: str, settings: PodSettings,
              files: Sequence[RunFile]) -> list[dict[str, Any]]:
    """Everything of one job but its Secret, in the order they are created: ConfigMap, Job (, Service)."""
    name = job_name(job)
    docs = [configmap(name, settings.namespace, job, workspace_id, files),
            job_manifest(job, name=name, image=image, workspace_id=workspace_id, settings=settings, files=files)]
    if job.nnodes > 1:
        docs.append(service(job, name=name, workspace_id=workspace_id, namespace=settings.namespace))
    return docs


def validate_job(job: JobSpec, settings: PodSettings) -> list[str]:
    """What stops a job from becoming a pod, as messages (no I/O)."""
    probe = _Pod()
    problems = []
    for check in (lambda: _docker_options(job, probe), lambda: _host_mounts(job, probe),
                  lambda: environment(job, settings, "x", probe)):
        try:
            check()
        except KubernetesRenderError as e:
            problems.append(str(e))
    n = job.n_gpus if job.n_gpus >= 0 else (settings.gpus or 0)
    if n > 0 and gpu_resource(job, settings) is None:
        problems.append(f"asks for {n} GPUs of vendor {job.gpu_vendor}: give the target's `gpu_resource:`")
    return problems


def dump(docs: Sequence[Mapping[str, Any]]) -> str:
    """YAML documents, `---` between them; keys in the order built (the API's usual order), scripts as
    literal blocks (readable in review)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 4096
    out = StringIO()
    yaml.dump_all([_plain(d) for d in docs], out)
    return out.getvalue()


_BLOCK_SAFE = re.compile(r"[^\t\n\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]")


def _plain(value: Any) -> Any:
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str) and "\n" in value.rstrip("\n") and not _BLOCK_SAFE.search(value) \
            and not any(line != line.rstrip() for line in value.split("\n")) and not value.startswith((" ", "\n")):
        return LiteralScalarString(value)
    return value


def run_files(paths: Sequence[tuple[str, bytes, bool]]) -> list[RunFile]:
    """The run directory's files in a stable order (the ConfigMap's keys follow it); a path beginning `../`
    is a file of the MAD package a tool's command names (`../scripts/common/...`), restored beside the run
    directory."""
    return [RunFile(p if p.startswith("../") else posixpath.normpath(p), data, x) for p, data, x in sorted(paths)]
