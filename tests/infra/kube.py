"""A Kubernetes API server for tests: `kmock`'s stateful emulator over real HTTP, and a Job controller.

No real API server installs here (INFRA.md): kmock keeps objects, answers create/read/list/patch/delete
as the API does (409 on a duplicate, 404 once deleted) and runs no controllers. `JobController` plays
the Job controller and the kubelet: for each Job it sees, it creates the pod(s) (an Indexed Job gets one
per completion index, annotated as Kubernetes does), and by default runs the pod's container for real
on this machine: its command and args after Kubernetes' `$(VAR)` expansion, its env (Secret keys,
the completion index), the ConfigMap's items restored under a directory standing for the volume. The
pod's output is its log (kmock serves `GET .../pods/NAME/log` from `Kube.logs`: kmock has no logs of its
own, so the test scripts that endpoint); then the pods' and the Job's status are patched Complete or
Failed. A test can instead script what a Job does (`Script`): a pod that cannot pull its image, one
never scheduled, a Job failed by its deadline.

Fixture: `kube` (per test): a started `Kube` with its controller; `kube.kubeconfig` points at it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from madengine.backends import kubernetes_render as render


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Script:
    """What a Job does instead of running its container."""

    log: str = ""
    exit_code: int = 0
    waiting: tuple[str, str] | None = None  # the container waits: (reason, message), e.g. ImagePullBackOff
    unschedulable: str | None = None  # the pod is never scheduled, with this message
    deadline: bool = False  # the Job fails as the cluster does past activeDeadlineSeconds
    never: bool = False  # no pod at all


Decide = Callable[[dict[str, Any]], Script | None]  # a Job -> its script, or None to run it for real


class Kube:
    """kmock's emulator, served on 127.0.0.1:<port> from a thread of its own."""

    def __init__(self, directory: Path, *, forget_deleted: bool = False) -> None:
        """`forget_deleted`: drop deleted objects and served requests from memory. kmock keeps both for a
        test's assertions, and matching a request scans every request served before it: a long run slows
        down with what it did (each request costs O(requests so far)), which no API server does."""
        self.directory = directory
        self.forget_deleted = forget_deleted
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs: dict[tuple[str, str], str] = {}
        self.kubeconfig = directory / "kubeconfig"
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\n"
            f"clusters: [{{name: kmock, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: tester, user: {token: not-a-secret}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: tester, namespace: default}}]\n")
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self.emulator: Any = None

    def start(self) -> Kube:
        import kmock

        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with _emulator_class(self.forget_deleted)() as emulator, \
                        kmock.Server(emulator, host="127.0.0.1", port=self.port):
                    with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
                        warnings.simplefilter("ignore", DeprecationWarning)
                        emulator.resources.load_bundled()
                    emulator["get", kmock.subresource("log")] << self._log
                    self.emulator = emulator
                    ready.set()
                    await self._stop.wait()
            except BaseException as e:
                failed.append(e)
                ready.set()

        self._thread = threading.Thread(target=lambda: self._loop.run_until_complete(serve()), name="kmock",
                                        daemon=True)
        self._thread.start()
        ready.wait(30)
        if failed:
            raise failed[0]
        return self

    def _log(self, request: Any) -> str:
        return self.logs.get((request.namespace, request.name), "")

    def stop(self) -> None:
        """The API server goes away (its port refuses connections)."""
        if self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._thread = None

    def forbid(self, namespace: str) -> None:
        """Every request in this namespace is answered 403, as RBAC does."""
        import kmock

        status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                  "message": f'jobs.batch is forbidden: User "tester" cannot list resource "jobs" in API group '
                             f'"batch" in the namespace "{namespace}"'}
        self.emulator[kmock.namespace(namespace)] << kmock.Response(status=403, payload=status)  # type: ignore[attr-defined]

    def api(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    def objects(self, kind: str, namespace: str = "default") -> list[str]:
        """The names of the objects of a kind (Job, Pod, ConfigMap, Secret, Service) still there."""
        from kubernetes import client

        api = self.api()
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        lister: Callable[[str], Any] = {"Job": batch.list_namespaced_job, "Pod": core.list_namespaced_pod,
                  "ConfigMap": core.list_namespaced_config_map, "Secret": core.list_namespaced_secret,
                  "Service": core.list_namespaced_service}[kind]
        try:
            return sorted(o.metadata.name for o in lister(namespace).items)
        finally:
            api.close()


def _emulator_class(forget_deleted: bool) -> Any:
    """kmock's emulator; or one that forgets each request once served, and deleted objects (their history)."""
    import kmock

    if not forget_deleted:
        return kmock.KubernetesEmulator

    class Forgetful(kmock.KubernetesEmulator):
        async def _handle(self, request: Any) -> Any:
            try:
                return await super()._handle(request)
            finally:
                self._requests.clear()
                if request.method is not None and request.method.value == "DELETE":
                    for key in [k for k, obj in self.objects.items() if obj.deleted]:
                        del self.objects[key]

    return Forgetful


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of a command, an argument or an env value: `$$` is `$`, `$(NAME)` a variable
    defined before (left as written when it is not)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class JobController:
    """Plays the Job controller and kubelet against a `Kube`, from a thread (see the module docstring)."""

    def __init__(self, kube: Kube, decide: Decide | None = None, *, interval: float = 0.01) -> None:
        self.kube = kube
        self.decide: Decide = decide or (lambda job: None)
        self.interval = interval
        self.seen: set[tuple[str, str]] = set()
        self.ran: list[dict[str, Any]] = []  # every pod run for real: its name, env, args
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-controller", daemon=True)
        self._work = tempfile.TemporaryDirectory(prefix="kubelet-")

    def start(self) -> JobController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._work.cleanup()

    def _loop(self) -> None:
        """Jobs as a watch streams them (kmock streams what exists, then what is created): each is played once."""
        from kubernetes import client, watch

        api = self.kube.api()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        try:
            while not self._stop.is_set():
                stream = watch.Watch()  # type: ignore[no-untyped-call]
                try:
                    # kmock ends no watch by itself: the client's read timeout does, and the loop watches again.
                    for event in stream.stream(  # type: ignore[no-untyped-call]
                            batch.list_job_for_all_namespaces, _request_timeout=(5, 0.5)):
                        if self._stop.is_set():
                            break
                        if event["type"] != "ADDED":
                            continue
                        job = api.sanitize_for_serialization(event["object"])
                        key = (job["metadata"]["namespace"], job["metadata"]["name"])
                        if key in self.seen:
                            continue
                        self.seen.add(key)
                        try:
                            self._play(batch, core, job)
                        except Exception as e:
                            self.errors.append(e)
                except Exception:  # the read timeout, or the server stopped by the test
                    self._stop.wait(self.interval)
                finally:
                    stream.stop()  # type: ignore[no-untyped-call]
        finally:
            api.close()

    def _play(self, batch: Any, core: Any, job: dict[str, Any]) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        script = self.decide(job)
        if script is not None and script.never:
            return
        spec = job["spec"]
        count = spec.get("completions") or 1
        indexed = spec.get("completionMode") == "Indexed"
        template = spec["template"]
        results = []
        for index in range(count):
            pod_name = f"{name}-{index}-x{index:04d}" if indexed else f"{name}-x0000"
            annotations = dict(template["metadata"].get("annotations") or {})
            if indexed:
                annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            labels = {**(template["metadata"].get("labels") or {}), "job-name": name,
                      "batch.kubernetes.io/job-name": name}
            pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "annotations": annotations},
                   "spec": {**template["spec"], "nodeName": f"node{index + 1}"}}
            if script is not None and (script.unschedulable or script.waiting):
                if script.unschedulable:
                    pod["spec"].pop("nodeName")
                    pod["status"] = {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                         "message": script.unschedulable}]}
                else:
                    assert script.waiting is not None
                    pod["status"] = {"phase": "Pending", "containerStatuses": [_container(
                        {"waiting": {"reason": script.waiting[0], "message": script.waiting[1]}})]}
                core.create_namespaced_pod(ns, pod)
                continue
            pod["status"] = {"phase": "Running"}
            core.create_namespaced_pod(ns, pod)
            if script is None:
                log, code = self._run(core, ns, pod, index)
            else:
                log, code = script.log, script.exit_code
            self.kube.logs[(ns, pod_name)] = log
            core.patch_namespaced_pod_status(pod_name, ns, {"status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [_container({"terminated": {"exitCode": code, "reason":
                                                                 "Completed" if code == 0 else "Error"}})]}})
            results.append(code)
        if script is not None and (script.unschedulable or script.waiting):
            return
        if script is not None and script.deadline:
            condition = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                         "message": "Job was active longer than specified deadline"}
        elif all(code == 0 for code in results):
            condition = {"type": "Complete", "status": "True"}
        else:
            condition = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                         "message": "Job has reached the specified backoff limit"}
        batch.patch_namespaced_job_status(name, ns, {"status": {
            "conditions": [condition], "succeeded": sum(1 for c in results if c == 0),
            "failed": sum(1 for c in results if c != 0)}})

    def _run(self, core: Any, ns: str, pod: dict[str, Any], index: int) -> tuple[str, int]:
        """The pod's container as a process of this machine: the kubelet's part, faithfully enough."""
        container = pod["spec"]["containers"][0]
        root = Path(self._work.name) / pod["metadata"]["name"]
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        where: dict[str, str] = {}  # a volume's mount path in the pod -> its directory here
        for mount in sorted(mounts.values(), key=len):  # one mounted inside another lies inside it here too
            outer = max((m for m in where if mount.startswith(m + "/")), key=len, default=None)
            where[mount] = where[outer] + mount[len(outer):] if outer else str(root / "volumes" / mount.strip("/"))
            Path(where[mount]).mkdir(parents=True, exist_ok=True)
        for volume in pod["spec"].get("volumes", []):
            if "configMap" in volume and volume["name"] in mounts:
                cm = core.read_namespaced_config_map(volume["configMap"]["name"], ns)
                source = Path(where[mounts[volume["name"]]])
                for item in volume["configMap"].get("items", []):
                    key = item["key"]
                    data = (cm.data or {}).get(key)
                    raw = data.encode() if data is not None else base64.b64decode((cm.binary_data or {})[key])
                    target = source / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(raw)
                    target.chmod(item.get("mode", 0o644))
        env: dict[str, str] = {}
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = expand(entry["value"], env)
            elif "secretKeyRef" in entry["valueFrom"]:
                ref = entry["valueFrom"]["secretKeyRef"]
                secret = core.read_namespaced_secret(ref["name"], ns)
                values = {**{k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()},
                          **(secret.string_data or {})}
                env[entry["name"]] = values[ref["key"]]
            else:  # fieldRef: the completion index is the one field madengine reads
                env[entry["name"]] = str(index)

        def place(path: str) -> str:  # a path of the pod's filesystem, as a directory of this machine
            for mount, local in sorted(where.items(), key=lambda m: -len(m[0])):
                if path == mount or path.startswith(mount + "/"):
                    return local + path[len(mount):]
            return path

        argv = [expand(w, env) for w in (*container["command"], *container.get("args", []))]
        argv = [place(w) if w.startswith("/") else w for w in argv]
        self.ran.append({"pod": pod["metadata"]["name"], "env": env, "argv": argv})
        proc = subprocess.run(argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True, timeout=120,
                              check=False)
        return (proc.stdout + proc.stderr).decode(errors="replace"), proc.returncode


def _container(state: dict[str, Any]) -> dict[str, Any]:
    return {"name": render.CONTAINER, "image": "x", "imageID": "", "ready": False, "restartCount": 0, "state": state}


@contextlib.contextmanager
def running_kube(directory: Path, decide: Decide | None = None) -> Iterator[tuple[Kube, JobController]]:
    kube = Kube(directory).start()
    controller = JobController(kube, decide).start()
    try:
        yield kube, controller
    finally:
        controller.stop()
        kube.stop()


@dataclass
class KubeFixture:
    kube: Kube
    controller: JobController
    scripts: dict[str, Script] = field(default_factory=dict)  # a Job's name prefix -> its script


@pytest.fixture()
def kube(tmp_path: Path) -> Iterator[KubeFixture]:
    """A started API server with its Job controller; `kube.scripts[prefix] = Script(...)` scripts the
    Jobs whose names begin with prefix (the others run for real)."""
    holder: dict[str, KubeFixture] = {}

    def decide(job: dict[str, Any]) -> Script | None:
        name = job["metadata"]["name"]
        return next((s for prefix, s in holder["f"].scripts.items() if name.startswith(prefix)), None)

    (tmp_path / "kube").mkdir()
    with running_kube(tmp_path / "kube", decide) as (k, controller):
        holder["f"] = KubeFixture(k, controller)
        yield holder["f"]
        assert not controller.errors, controller.errors


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
