"""ROCm madengine's SLURM and Kubernetes runner inventories, read strictly into the target (and the
context additions) of the madfile `runner slurm|k8s` means.

SLURM (ROCm's `runners/slurm_runner.py` and its `templates/slurm/inventory.yml.j2`):

    slurm_cluster:
      cluster_name: hpc              # optional: names the target
      login_node: {hostname: login01, address: login01.example.org, port: 22, username: me,
                   ssh_key_path: ~/.ssh/id_rsa}          # optional: sbatch on this machine without it
      partitions:                    # exactly one: the one the jobs go to
        - {name: gpu, max_time: "24:00:00", max_nodes: 32, memory_per_node: 256G, default_gpu_count: 8,
           gpu_vendor: AMD, qos: normal, account: proj42}
      workspace: {shared_filesystem: /scratch/me/madengine}   # required: a directory every node sees
      modules: [rocm/6.3]
      environment: {NCCL_DEBUG: INFO}

Kubernetes (ROCm's `runners/k8s_runner.py`):

    pods:                            # exactly one: the kind of pod every job gets
      - name: bench                  # names the target
        node_selector: {gpu-type: amd}
        resources: {requests: {amd.com/gpu: "2"}}   # names the GPU resource
        gpu_vendor: AMD
    namespace: bench                 # optional (default `default`; --namespace overrides it)
    kubeconfig: ~/.kube/config       # optional

As for the SSH inventory, what ROCm's runners read leniently is refused here rather than ignored: keys
madengine does not act on (each with what to do instead), several partitions or pod kinds (one runner
command is one target), values of the wrong type. Errors name the inventory's file, line and column.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from madengine.errors import ConfigError, Diagnostic
from madengine.madfile.diagnose import close_match
from madengine.madfile.inventory import diagnostic, load_document
from madengine.madfile.locate import display_path
from madengine.madfile.model import (
    AddressText,
    EnvMap,
    GpuVendor,
    HostNameText,
    KeyPathText,
    KubernetesTarget,
    SlurmTarget,
    Strict,
    UserText,
)
from madengine.madfile.source import KeyPath, SourceMap

# Keys of ROCm's generated inventories that describe a cluster without telling a job anything madengine
# could act on: refused with what to do instead (never accepted and ignored).
_NOT_ACTED_ON = {
    "gpu_types": "madengine does not select nodes by GPU type: a madfile slurm target's `constraint:` does",
    "gpu_mapping": "a madfile slurm target's `constraint:` and `extra_sbatch:` say what ROCm mapped per vendor",
    "execution": "madengine submits job arrays and retries by itself: remove it",
    "results_dir": "results come back into madengine's state store: remove it",
    "logs_dir": "logs come back beside madengine's state store: remove it",
    "venv_path": "madengine runs the models without a Python environment on the cluster: remove it",
    "labels": "remove it: every pod gets the inventory's node_selector",
}


class LoginNode(Strict):
    hostname: HostNameText | None = None
    address: AddressText
    port: int = Field(default=22, ge=1, le=65535)
    username: UserText | None = None
    ssh_key_path: KeyPathText | None = None


class Partition(Strict):
    name: str = Field(min_length=1)
    max_time: str | None = None
    max_nodes: int | None = Field(default=None, ge=1)
    memory_per_node: str | None = None
    default_gpu_count: int = Field(default=0, ge=0)
    gpu_vendor: GpuVendor = "AMD"
    qos: str | None = None
    account: str | None = None


class Workspace(Strict):
    shared_filesystem: str = Field(min_length=1)


class SlurmCluster(Strict):
    cluster_name: HostNameText | None = None
    login_node: LoginNode | None = None
    partitions: list[Partition] = Field(min_length=1, max_length=1)
    workspace: Workspace
    modules: list[str] = Field(default_factory=list)
    environment: EnvMap = Field(default_factory=dict)


class SlurmInventory(Strict):
    slurm_cluster: SlurmCluster


class Resources(Strict):
    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class Pod(Strict):
    name: HostNameText
    node_selector: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    gpu_vendor: GpuVendor = "AMD"


class K8sInventory(Strict):
    pods: list[Pod] = Field(min_length=1, max_length=1)
    namespace: str | None = None
    kubeconfig: str | None = None


class Meant(BaseModel):
    """What an inventory means for the generated madfile: its one target and the context's additions."""

    name: str  # the target's name
    target: dict[str, Any]
    gpu_vendor: str
    env: dict[str, str] = Field(default_factory=dict)  # the context's docker_env_vars


def read_slurm_inventory(path: Path) -> Meant:
    shown = display_path(path)
    inv, source = _validated(path, shown, SlurmInventory, "`slurm_cluster:`",
                             "describe the cluster: `slurm_cluster: {partitions: [{name: gpu}], workspace: "
                             "{shared_filesystem: /scratch/madengine}}`")
    cluster = inv.slurm_cluster
    partition = cluster.partitions[0]
    target: dict[str, Any] = {"backend": "slurm", "partition": partition.name,
                              "shared_dir": cluster.workspace.shared_filesystem,
                              "gpus_per_node": partition.default_gpu_count}
    if cluster.login_node is not None:
        login = cluster.login_node
        target["login"] = {"address": login.address, "port": login.port,
                           **({"user": login.username} if login.username else {}),
                           **({"key": _local_path(login.ssh_key_path, path)} if login.ssh_key_path else {})}
    optional = {"time_limit": partition.max_time, "qos": partition.qos, "account": partition.account,
                "max_nodes": partition.max_nodes, "modules": cluster.modules or None,
                "extra_sbatch": [f"--mem={partition.memory_per_node}"] if partition.memory_per_node else None}
    target.update({k: v for k, v in optional.items() if v is not None})
    _check_target(SlurmTarget, target, source, _SLURM_KEYS)
    vendor = partition.gpu_vendor if partition.default_gpu_count else "NONE"
    return Meant(name=cluster.cluster_name or "slurm", target=target, gpu_vendor=vendor, env=dict(cluster.environment))


def read_k8s_inventory(path: Path, namespace: str | None = None) -> Meant:
    shown = display_path(path)
    inv, source = _validated(path, shown, K8sInventory, "`pods:`",
                             "describe the pods: `pods: [{name: bench, resources: {requests: {amd.com/gpu: 1}}}]`")
    pod = inv.pods[0]
    target: dict[str, Any] = {"backend": "kubernetes", "namespace": namespace or inv.namespace or "default"}
    gpu = [k for k in {**pod.resources.requests, **pod.resources.limits} if k.endswith("/gpu")]
    if len(gpu) > 1:
        raise ConfigError(f"{shown}: pod `{pod.name}` asks for GPUs of several kinds ({', '.join(gpu)})",
                          file=shown, hint="a job requests one GPU resource: keep one")
    if gpu:
        target["gpu_resource"] = gpu[0]
    if pod.node_selector:
        target["node_selector"] = dict(pod.node_selector)
    if inv.kubeconfig:
        target["kubeconfig"] = _local_path(inv.kubeconfig, path)
    if namespace is None:  # --namespace is checked as an option, not at a line of the inventory
        _check_target(KubernetesTarget, target, source, _K8S_KEYS)
    return Meant(name=pod.name, target=target, gpu_vendor=pod.gpu_vendor if gpu else "NONE")


def _local_path(value: str, inventory: Path) -> str:
    """A path on this machine, written relative to the inventory (`~` expanded): made absolute, for the
    generated madfile that stands elsewhere."""
    return os.path.normpath(os.path.join(inventory.parent.absolute(), os.path.expanduser(value)))


def _validated(path: Path, shown: str, model: type[Strict], top: str, example: str) -> tuple[Any, SourceMap]:
    data, source, diagnostics = load_document(path, shown, example, top)
    parsed = None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        diagnostics += [_said(err, source, model) for err in exc.errors()]
    if diagnostics or parsed is None:
        raise ConfigError.many(diagnostics)
    return parsed, source


# Where each key of the target an inventory means was written in it: a value the target refuses (a time
# limit SLURM cannot read, a partition name with a space) is reported there, not in the in-memory madfile.
_PARTITION = ("slurm_cluster", "partitions", 0)
_SLURM_KEYS: dict[str, KeyPath] = {
    "partition": (*_PARTITION, "name"), "time_limit": (*_PARTITION, "max_time"), "qos": (*_PARTITION, "qos"),
    "account": (*_PARTITION, "account"), "max_nodes": (*_PARTITION, "max_nodes"),
    "gpus_per_node": (*_PARTITION, "default_gpu_count"), "extra_sbatch": (*_PARTITION, "memory_per_node"),
    "shared_dir": ("slurm_cluster", "workspace", "shared_filesystem"), "modules": ("slurm_cluster", "modules"),
    "login": ("slurm_cluster", "login_node")}
_LOGIN_KEYS = {"user": "username", "key": "ssh_key_path"}
_K8S_KEYS: dict[str, KeyPath] = {"namespace": ("namespace",), "gpu_resource": ("pods", 0, "resources"),
                                 "node_selector": ("pods", 0, "node_selector"), "kubeconfig": ("kubeconfig",)}


def _check_target(model: type[Strict], target: Mapping[str, Any], source: SourceMap,
                  where: Mapping[str, KeyPath]) -> None:
    """The target checked as a madfile's would be, each problem at the inventory key it came from."""
    try:
        model.model_validate(target)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, str | int)]
            path: KeyPath = where.get(str(loc[0]), ()) if loc else ()
            if loc and loc[0] == "login" and len(loc) > 1:
                path = (*path, _LOGIN_KEYS.get(str(loc[1]), str(loc[1])))
            error = (err.get("ctx") or {}).get("error")
            message = str(error) if error is not None else str(err["msg"])
            problems.append(source.diagnostic(path, message[:1].lower() + message[1:], at="value"))
        raise ConfigError.many(problems) from None


def _said(err: Mapping[str, Any], source: SourceMap, model: type[Strict]) -> Diagnostic:
    path: KeyPath = tuple(p for p in err["loc"] if isinstance(p, str | int))
    if err["type"] == "too_long":
        what = "partition" if "partitions" in path else "kind of pod"
        return source.diagnostic(path, f"lists several; madengine's runner takes one {what}",
                                 "one runner command runs on one target: keep one (or write a madfile with a "
                                 "target each)", at="key")
    return diagnostic(err, source, _unknown_hint(model))


def _unknown_hint(model: type[Strict]) -> Callable[[str, KeyPath], str]:
    def hint(key: str, path: KeyPath) -> str:
        if key in _NOT_ACTED_ON:
            return _NOT_ACTED_ON[key]
        if key in ("password", "ssh_password"):
            return "madengine takes no passwords: give `ssh_key_path`, or leave it out to use ssh-agent"
        known = _fields_at(model, path[:-1])
        guess = close_match(key, known)
        return f"did you mean `{guess}`?" if guess else f"allowed keys: {', '.join(known)}"
    return hint


def _fields_at(model: type[BaseModel], path: KeyPath) -> list[str]:
    """The keys allowed where `path` points in a document of `model`."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) \
            else None
        if field is None:
            return []
        current = _model_of(field.annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_of(annotation: Any) -> Any:
    """The pydantic model an annotation holds (`X`, `X | None`, `list[X]`), if any."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
