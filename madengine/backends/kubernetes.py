"""The `kubernetes` backend: each job a batch/v1 Job of a cluster, through the official `kubernetes` client.

A batch backend (base.BatchBackend): apply submits the ready jobs, polls every job of the target in one
list, collects each finished one, and never holds a thread per queued job. The client is imported
lazily (the `kubernetes` extra): madengine works without it until a target names this backend.

- submit: per job its run directory (rundir.fill_run_dir, as every backend) as a ConfigMap, its secret
  variables (named like secrets: TOKEN, PASSWORD...) as a Secret, then the Job (kubernetes_render), then,
  for a multi-node job, the headless Service its pods reach rank 0 through. The handle is the Job's name
  (unique per attempt); the namespace is the target's. A submission that fails removes what it created
  and fails that job alone, with the API's reason in one line.
- poll: one list of this workspace's Jobs (label `madengine.workspace`; filtered here as well, since a
  label selector is a server's courtesy), and one of their pods while some are not finished: a pod that
  cannot pull its image or be scheduled says so in the state's reason; a job whose timeout passes while
  its pods were never scheduled is finished as TIMEOUT (the cluster would stop it on its
  activeDeadlineSeconds: this also holds when nothing of the cluster runs). A Job gone is a FAILURE
  ("deleted outside madengine").
- collect: the pods' logs (rank 0 first) into the job's log, the `multiple_results` CSV from the end of
  rank 0's log, the exit code of rank 0's container (apply judges the result from the log, as on every
  backend), then everything of the job deleted (the Job with propagation Background, its pods, ConfigMap, Secret and
  Service).
- Images are built by this machine's engine and pushed to the madfile's registry (a kubernetes target
  needs one: the madfile check says so); a build pushes at once, since a cluster can only pull. What
  the cluster "holds" is what the registry holds: `observe_images` asks it, by digest.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from madengine.backends import kubernetes_render as render
from madengine.backends.base import Cancel, OrphanRecord, Outcome, QueueState, RunArtifacts, Workspace, node_file_name
from madengine.backends.builder import BuildsHere
from madengine.backends.rundir import RunDirConflict, fill_run_dir
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.errors import Diagnostic
from madengine.state.model import Status

if TYPE_CHECKING:
    from madengine.backends.docker import DockerBackend
    from madengine.facts import HostFacts
    from madengine.madfile.model import KubernetesTarget

T = TypeVar("T")
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: an API server that does not answer fails a call, never hangs it
# Pod waiting reasons that no wait can mend (an image reference the runtime refuses): the job fails at once.
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"})
# Pod waiting reasons that say why a job does not start (the kubelet retries them).
PULL_WAITING = frozenset({"ImagePullBackOff", "ErrImagePull", "RegistryUnavailable"})
# Responses are read as the API's JSON, never built into the client's models (costly: a list of 200 pods
# takes longer to build than to fetch); creates and deletes need no answer but their status.
RAW: dict[str, Any] = {"_preload_content": False, "_request_timeout": (5.0, 30.0)}
Obj = dict[str, Any]  # an object of the API, as its JSON
RUNNING_GRACE = 60.0  # s past a running job's timeout before madengine, not the cluster, calls it a TIMEOUT


class KubernetesUnavailable(HostUnavailable):
    """The API server cannot be asked (unreachable, refused credentials, no kubeconfig)."""


def one_line(error: BaseException) -> str:
    """The API's reason for a failed call, in one line: `403 Forbidden: jobs.batch is forbidden: ...`."""
    import json

    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    if isinstance(error, ApiException):
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            message = str(json.loads(error.body or "").get("message") or "")
        text = f"{error.status} {error.reason or ''}".strip() + (f": {message}" if message else "")
    elif isinstance(error, ConfigException):
        text = f"kubeconfig: {error}"
    else:
        reason = getattr(error, "reason", None)  # urllib3's MaxRetryError: the connection's own error
        text = str(reason or error) or type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:299] + "…"


def _status(error: BaseException) -> int | None:
    return getattr(error, "status", None) if type(error).__name__ == "ApiException" else None


class KubernetesBackend(BuildsHere):
    name: ClassVar[str] = "kubernetes"
    builds_images: ClassVar[bool] = True
    system: ClassVar[str] = "kubernetes"
    poll_interval: ClassVar[float] = 2.0

    def __init__(self, target_name: str, target: KubernetesTarget, workspace: Workspace, *,
                 registry: str | None = None) -> None:
        """`registry`: the madfile's, where the cluster's nodes pull images from (make_backends passes it)."""
        self.target_name = target_name
        self.registry = registry
        self.target = target
        self.workspace = workspace
        self.namespace = target.namespace
        self.settings = render.PodSettings(
            namespace=target.namespace, gpu_resource=target.gpu_resource, gpus=target.gpus,
            node_selector=dict(target.node_selector), tolerations=tuple(t.to_api() for t in target.tolerations),
            image_pull_secret=target.image_pull_secret, service_account=target.service_account,
            ttl_seconds=target.ttl_seconds)
        self._lock = threading.Lock()
        self._client: Any = None
        self._builder: DockerBackend | None = None
        self._first_seen: dict[str, float] = {}  # handle -> when this process first knew it (no creationTimestamp)
        self._pods: dict[str, list[Any]] = {}  # handle -> its pods, as the last poll saw them
        self._runnable: tuple[str, str] | bool | None = False  # False: not asked yet in this command
        self._cancelled: set[str] = set()  # handles this process deleted on a cancel: gone is INTERRUPTED

    # --- the API ----------------------------------------------------------------------------------------

    def kubeconfig(self) -> str | None:
        """The target's kubeconfig, relative to the madfile; None: the client's default ($KUBECONFIG, then
        ~/.kube/config)."""
        if self.target.kubeconfig is None:
            return None
        return str(self.workspace.root / os.path.expanduser(self.target.kubeconfig))

    def api(self) -> Any:
        """The API client (made on first use, shared: its connection pool is thread-safe)."""
        with self._lock:
            if self._client is None:
                from kubernetes import config

                try:
                    self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=self.kubeconfig(), context=self.target.context)
                except Exception as e:  # ConfigException, a missing or unreadable file
                    raise KubernetesUnavailable(self.target_name, one_line(e), hint=self._hint()) from None
            return self._client

    def _hint(self) -> str:
        where = f"kubeconfig {self.target.kubeconfig}" if self.target.kubeconfig else "$KUBECONFIG or ~/.kube/config"
        return (f"check the cluster answers ({where}" + (f", context {self.target.context}" if self.target.context
                                                        else "") + ")")

    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api())

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api())

    def _call(self, call: Callable[[], T]) -> T:
        """A call that cannot reach the API server raises KubernetesUnavailable; the API's own answers
        (ApiException: 403, 404, 409, 422...) are the caller's to read."""
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return call()
        except ApiException as e:
            if e.status in (401,) or (e.status == 0):
                raise KubernetesUnavailable(self.target_name, one_line(e), hint=self._hint()) from None
            raise
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise KubernetesUnavailable(self.target_name, f"cannot reach the API server: {one_line(e)}",
                                        hint=self._hint(), transient=True) from None

    # --- what plan asks ---------------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        problems = [Diagnostic(None, None, None, f"{job.address}: {p}")
                    for p in render.validate_job(job, self.settings)]
        if job.image_tag is not None and not self.registry:
            problems.append(Diagnostic(None, None, None, f"{job.address}: target {self.target_name!r} (kubernetes) "
                                       "pulls images from a registry, and the madfile names none",
                                       hint="set `registry:` at the top of the madfile (e.g. localhost:5000)"))
        return problems

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        """Once per command: can this namespace's Jobs be listed (the server answers, the credentials may)."""
        if self._runnable is not False:
            return self._runnable  # type: ignore[return-value]
        answer: tuple[str, str] | None = None
        try:
            self._call(lambda: self.batch().list_namespaced_job(self.namespace, limit=1,
                                                                _request_timeout=REQUEST_TIMEOUT))
        except HostUnavailable as e:
            answer = (f"target {self.target_name}: {e.reason}", self._hint())
        except Exception as e:  # ApiException: 403 forbidden, 404...
            answer = (f"target {self.target_name}: namespace {self.namespace}: {one_line(e)}",
                      "give the kubeconfig's user the rights to create Jobs, ConfigMaps, Secrets and Services and "
                      f"to read Pods and their logs in namespace {self.namespace}, or set the target's `namespace:`")
        self._runnable = answer
        return answer

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        """The cluster pulls from the registry: it holds what the registry holds (tag -> digest, the id a
        build here records for this target)."""
        held = {}
        for image in images:
            digest = self.builder().observe_registry(image) if image.registry else None
            if digest:
                held[image.tag] = digest
        return {self.target_name: held}

    def observe_registry(self, image: ImageSpec) -> str | None:
        return self.builder().observe_registry(image)

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        return {}  # the nodes a pod lands on are the cluster's choice, unknown at plan

    def hosts(self) -> list[HostInfo]:
        return [HostInfo(self.target_name, None, None)]

    def max_nodes(self) -> int | None:
        """Not known before the cluster is asked (its schedulable nodes change): an Indexed Job larger than
        the cluster waits Pending, and times out saying why."""
        return None

    # --- images -----------------------------------------------------------------------------------------

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Built here and pushed at once: a cluster only pulls. The build's id for this target is the digest."""
        if not image.registry:
            return Outcome(Status.FAILURE, message=f"target {self.target_name} (kubernetes) needs the madfile's "
                                                   "`registry:` to pull images from")
        built = self.builder().build(image, log_path, cancel)
        if built.status is not Status.SUCCESS:
            return built
        pushed = self.builder().push(image, log_path, cancel)
        if pushed.status is not Status.SUCCESS:
            return pushed
        return replace(built, image_id=pushed.digest, digest=pushed.digest,
                       message="; ".join(m for m in (built.message, pushed.message) if m))

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        return self.builder().push(image, log_path, cancel)

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        """Built elsewhere and in the registry: nothing to fetch, the cluster pulls it by its tag."""
        digest = self.builder().observe_registry(image) if image.registry else None
        if not digest:
            return Outcome(Status.FAILURE, message=f"{image.tag} is not in the registry {image.registry}")
        return Outcome(Status.SUCCESS, image_id=digest, digest=digest, message=f"in the registry as {digest}")

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message=f"target {self.target_name} is one cluster: its nodes pull images "
                                               "from the registry")

    def image_reference(self, job: JobSpec) -> str:
        """Where the cluster pulls the job's image: the reference it was pushed as (docker.push_reference)."""
        if job.image_tag is None or not self.registry:
            raise ValueError(f"target {self.target_name} (kubernetes) pulls images from the madfile's `registry:`, "
                             "and there is none")
        spec = ImageSpec(address="", node_hash="", tag=job.image_tag, dockerfile="", build_context="", build_args={},
                         base=None, base_digest=None, registry=self.registry)
        repository, tag = self.builder().push_reference(spec)
        return f"{repository}:{tag}" + (f"@{job.image_digest}" if job.image_digest else "")

    # --- what is submitted --------------------------------------------------------------------------------

    def run_files(self, job: JobSpec) -> list[render.RunFile]:
        """The job's run directory, filled on this machine as for every backend, as the ConfigMap's files."""
        run_dir = self.workspace.runs / node_file_name(job.address)
        fill_run_dir(self.workspace.root, job, run_dir)
        found = []
        for path in sorted(run_dir.rglob("*")):
            if path.is_file():
                found.append((path.relative_to(run_dir).as_posix(), path.read_bytes(), os.access(path, os.X_OK)))
        for path, rel in self.package_files(job):
            found.append((f"../{rel}", path.read_bytes(), os.access(path, os.X_OK)))
        return render.run_files(found)

    def package_files(self, job: JobSpec) -> list[tuple[Path, str]]:
        """The MAD package's files a tool's command names from the run directory (`../scripts/common/x.sh`,
        as ROCm's tools do), with the other files of their directories (what a wrapper calls beside it):
        the docker backend mounts the package beside the run directory; a pod has only its ConfigMap.
        Never a hidden entry, credential.json or anything outside the package."""
        from madengine.backends.credentials import CREDENTIAL_FILE

        package = (self.workspace.root / job.package_dir).resolve()
        out: dict[str, Path] = {}
        for word in job.cmd_prefix:
            if not word.startswith("../"):
                continue
            named = (package / word[3:]).resolve()
            if not named.is_file() or not named.is_relative_to(package):
                continue
            for path in sorted(named.parent.iterdir()):
                rel = path.relative_to(package).as_posix()
                if path.is_file() and not any(p.startswith(".") for p in rel.split("/")) \
                        and rel != CREDENTIAL_FILE and path.resolve().is_relative_to(package):
                    out[rel] = path
        return sorted(((p, r) for r, p in out.items()), key=lambda pr: pr[1])

    def manifests(self, job: JobSpec, workspace_id: str | None = None) -> list[dict[str, Any]]:
        """What `submit` creates for the job but its Secret (the same for `generate`): ConfigMap, Job (, Service)."""
        files = self.run_files(job)
        size = render.configmap_size(files)
        if size > render.CONFIGMAP_LIMIT:
            raise ValueError(f"its run directory (a copy of {os.path.dirname(job.script) or '.'}/) is about "
                             f"{size // 1000} kB: a ConfigMap holds at most 1 MB; keep data out of the script's "
                             "directory")
        return render.manifests(job, image=self.image_reference(job),
                                workspace_id=workspace_id or self.workspace.workspace_id,
                                settings=self.settings, files=files)

    def submit(self, jobs: Sequence[JobSpec],
               on_handle: Callable[[JobSpec, str], None] | None = None) -> list[str | Outcome]:
        out = []
        for job in jobs:
            answer = self._submit_one(job)
            if on_handle is not None and isinstance(answer, str):
                on_handle(job, answer)
            out.append(answer)
        return out

    def _submit_one(self, job: JobSpec) -> str | Outcome:
        name = render.job_name(job)
        try:
            docs = self.manifests(job)
            secret_values = render.secret_values(job, self.settings)
        except (OSError, ValueError) as e:  # RunDirConflict, a render error (validate says these first)
            why = str(e) if isinstance(e, RunDirConflict | ValueError) else f"cannot prepare the run directory: {e}"
            return self._failed_submission(job, why)
        created: list[tuple[str, str]] = []
        try:
            if secret_values:
                secret = render.secret(job, name=name, workspace_id=self.workspace.workspace_id,
                                       namespace=self.namespace, values=secret_values)
                self._send(lambda: self.core().create_namespaced_secret(self.namespace, secret, **RAW))
                created.append(("Secret", render.secret_name(name)))
            for doc in docs:
                self._create(doc)
                created.append((doc["kind"], doc["metadata"]["name"]))
        except Exception as e:  # one job's submission failed: the others still go
            for kind, object_name in reversed(created):
                with contextlib.suppress(Exception):
                    self._delete(kind, object_name)
            why = f"{e.reason}" if isinstance(e, HostUnavailable) else one_line(e)
            return self._failed_submission(job, f"cannot create the Job {name}: {why}",
                                           transient=isinstance(e, HostUnavailable) and e.transient)
        with self._lock:
            self._first_seen[name] = time.time()
        return name

    def _failed_submission(self, job: JobSpec, why: str, *, transient: bool = False) -> Outcome:
        if job.log_path is not None:
            with contextlib.suppress(OSError):
                job.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(job.log_path, "a", encoding="utf-8") as log:
                    log.write(f"madengine: {why}\n")
        return Outcome(Status.FAILURE, message=why, host=self.target_name, transient=transient)

    def _create(self, doc: Mapping[str, Any]) -> None:
        kind = doc["kind"]
        ns = self.namespace
        if kind == "Job":
            self._send(lambda: self.batch().create_namespaced_job(ns, doc, **RAW))
        elif kind == "ConfigMap":
            self._send(lambda: self.core().create_namespaced_config_map(ns, doc, **RAW))
        elif kind == "Service":
            self._send(lambda: self.core().create_namespaced_service(ns, doc, **RAW))
        else:
            raise ValueError(f"madengine creates no {kind}")

    def _delete(self, kind: str, name: str) -> bool:
        """Delete one object; False when it was already gone."""
        from kubernetes.client.exceptions import ApiException

        ns = self.namespace
        calls: dict[str, Callable[[], Any]] = {
            "Job": lambda: self.batch().delete_namespaced_job(name, ns, propagation_policy="Background", **RAW),
            "Pod": lambda: self.core().delete_namespaced_pod(name, ns, **RAW),
            "ConfigMap": lambda: self.core().delete_namespaced_config_map(name, ns, **RAW),
            "Secret": lambda: self.core().delete_namespaced_secret(name, ns, **RAW),
            "Service": lambda: self.core().delete_namespaced_service(name, ns, **RAW),
        }
        try:
            self._send(calls[kind])
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def _delete_job(self, name: str, pods: Sequence[Any] | None = None, *, service: bool = True,
                    secret: bool = True) -> list[str]:
        """Everything madengine created for one Job, and its pods (a cluster's garbage collector deletes them
        with the Job; madengine does not count on one). Objects already gone are no error. `service`,
        `secret`: False when the job is known to have none (one request fewer each)."""
        removed = []
        if self._delete("Job", name):
            removed.append(f"Job {name}")
        for pod in pods if pods is not None else self._list_pods({name}).get(name, []):
            self._delete("Pod", _name(pod))
        for kind, object_name, created in (("ConfigMap", render.configmap_name(name), True),
                                           ("Service", name, service), ("Secret", render.secret_name(name), secret)):
            if created:
                self._delete(kind, object_name)
        with self._lock:
            self._pods.pop(name, None)
            self._first_seen.pop(name, None)
        return removed

    # --- the queue ------------------------------------------------------------------------------------------

    def _ours(self, obj: Obj) -> bool:
        return _labels(obj).get(render.LABEL_WORKSPACE) == self.workspace.workspace_id

    def _items(self, lister: Callable[..., Any], selector: str) -> list[Obj]:
        """A list's items as the API's JSON (the client's models cost more to build than the request)."""
        import json

        items: list[Obj] = json.loads(self._send(lambda: lister(self.namespace, label_selector=selector, **RAW)))\
            .get("items") or []
        return items

    def _send(self, call: Callable[[], Any]) -> bytes:
        """A call made with RAW: its answer's body, read (so that its connection goes back to the pool)."""
        response = self._call(call)
        try:
            data: bytes = response.data
            return data
        finally:
            response.release_conn()

    def _list_jobs(self) -> dict[str, Obj]:
        selector = f"{render.LABEL_WORKSPACE}={self.workspace.workspace_id}"
        return {_name(j): j for j in self._items(self.batch().list_namespaced_job, selector) if self._ours(j)}

    def _list_pods(self, names: set[str]) -> dict[str, list[Any]]:
        """The pods of these Jobs (one list: of one Job's by its label, else of the workspace's), rank 0 first."""
        selector = f"{render.LABEL_JOB}={next(iter(names))}" if len(names) == 1 else \
            f"{render.LABEL_WORKSPACE}={self.workspace.workspace_id}"
        out: dict[str, list[Obj]] = {}
        for pod in self._items(self.core().list_namespaced_pod, selector):
            owner = _labels(pod).get(render.LABEL_JOB)
            if owner in names and self._ours(pod):
                out.setdefault(owner, []).append(pod)
        for pods in out.values():
            pods.sort(key=_rank)
        return out

    def poll(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        """One list of Jobs, and one of pods while some are unfinished. Raises HostUnavailable (through
        KubernetesUnavailable) when the API server cannot be asked."""
        from kubernetes.client.exceptions import ApiException

        try:
            jobs = self._list_jobs()
            unfinished = {h for h in handles if h in jobs and _finished(jobs[h]) is None}
            pods = self._list_pods(unfinished) if unfinished else {}
        except ApiException as e:  # 403 on listing: asked again later, as an unreachable server is
            raise KubernetesUnavailable(self.target_name, one_line(e), hint=self._hint()) from None
        now = time.time()
        out = {}
        with self._lock:
            for handle in handles:
                self._first_seen.setdefault(handle, now)
            self._pods.update(pods)
            first_seen = dict(self._first_seen)
        for handle in handles:
            job = jobs.get(handle)
            if job is None:
                out[handle] = QueueState(handle, "Deleted", Status.INTERRUPTED, reason="cancelled") \
                    if handle in self._cancelled else \
                    QueueState(handle, "Deleted", Status.FAILURE, reason="deleted outside madengine")
                continue
            out[handle] = self._state(handle, job, pods.get(handle, []), now, first_seen[handle])
        return out

    def _state(self, handle: str, job: Any, pods: list[Any], now: float, first_seen: float) -> QueueState:
        finished = _finished(job)
        if finished is not None:
            status, reason = finished
            state = "Succeeded" if status is Status.SUCCESS else "Failed"
            return QueueState(handle, state, status, where=_where(self._pods.get(handle, [])), reason=reason)
        where = _where(pods)
        waiting = [w for w in (_waiting(p) for p in pods) if w is not None]
        fatal = next((w for w in waiting if w[0] in FATAL_WAITING), None)
        if fatal is not None:
            return QueueState(handle, "Failed", Status.FAILURE, where=where,
                              reason=f"{fatal[0]}: {fatal[1]}".strip(": "))
        started = _created(job) or first_seen
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        running = bool(pods) and all(_scheduled(p) for p in pods) and not waiting
        reason = "; ".join(f"{w}: {m}".strip(": ") for w, m in waiting[:1])
        if not reason and pods and not running:
            reason = next((r for r in (_unschedulable(p) for p in pods) if r), "")
        if not pods:
            reason = "no pod yet"
        state = "Running" if running else "Pending"
        if deadline and now >= started + deadline + (RUNNING_GRACE if running else 0.0):
            why = f"timed out after {deadline} s" + (f" never started ({reason})" if not running and reason
                                                     else (" never started" if not running else ""))
            return QueueState(handle, state, Status.TIMEOUT, where=where, reason=why)
        return QueueState(handle, state, where=where, reason=reason)

    def _read_log(self, pod: str) -> str:
        log: str = self._call(lambda: self.core().read_namespaced_pod_log(
            pod, self.namespace, container=render.CONTAINER, _request_timeout=REQUEST_TIMEOUT))
        return log

    def observe_queue(self, handles: Sequence[str]) -> Mapping[str, QueueState]:
        return self.poll(handles)

    def collect(self, job: JobSpec, state: QueueState) -> Outcome:
        """The logs (rank 0's first), the CSV, the exit code; then the Job and all of its objects deleted.
        The result is judged from the log by apply, as for every backend (apply.engine.judge_job)."""
        assert job.log_path is not None, "apply chooses the log path"
        name = state.handle
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_lost = ""
        pods: list[Any] | None = None
        try:
            pods = self._list_pods({name}).get(name, [])
        except Exception as e:
            log_lost = f"the pods could not be listed ({_reason(e)}): the log is lost"
        texts: list[tuple[Any, str]] = []
        for pod in pods or []:
            try:
                texts.append((pod, self._read_log(_name(pod))))
            except Exception as e:
                log_lost = log_lost or f"the log of pod {_name(pod)} could not be read ({_reason(e)})"
        if pods == [] and not log_lost and state.status not in (Status.TIMEOUT, Status.INTERRUPTED):
            log_lost = "the Job left no pod: there is no log"
        begin, end = render.csv_markers(name)
        perf_csv = None
        with open(job.log_path, "a", encoding="utf-8") as log:
            for index, (pod, text) in enumerate(texts):
                body, csv = _split_results(text, begin, end)
                if index:
                    log.write(f"\nmadengine: --- {_name(pod)} (node {_rank(pod)[0]}) ---\n")
                log.write(body)
                if index == 0 and csv is not None and job.multiple_results:
                    perf_csv = job.log_path.with_name(f"{job.log_path.stem}.{os.path.basename(job.multiple_results)}")
                    perf_csv.write_text(csv, encoding="utf-8")
            if state.reason and state.status is not Status.SUCCESS:
                log.write(f"\nmadengine: {self.system} {name} {state.state}: {state.reason}\n")
            if log_lost:
                log.write(f"\nmadengine: {log_lost}\n")
        code = _exit_code(texts[0][0]) if texts else None
        if code is None and state.status is Status.SUCCESS:
            code = 0  # the Job completed: its one container exited 0
        message = state.reason
        if log_lost:
            message = "; ".join(m for m in (message, log_lost) if m)
        outcome = Outcome(state.status or Status.FAILURE, exit_code=code, message=message,
                          host=_where(pods or []) or state.where or self.target_name,
                          details={"job": name, "namespace": self.namespace},
                          artifacts=RunArtifacts(log=job.log_path, run_dir=f"{self.namespace}/{name}", exit_code=code,
                                                 perf_csv=perf_csv, log_lost=log_lost))
        try:
            self._delete_job(name, pods, service=job.nnodes > 1,
                             secret=bool(render.secret_values(job, self.settings)))
        except Exception as e:  # the result stands; what is left is said, and a later clean-up removes it
            outcome = replace(outcome, message="; ".join(m for m in (outcome.message,
                                                                     f"not deleted: {_reason(e)}") if m))
        return outcome

    def cancel(self, handles: Sequence[str]) -> None:
        """Delete the Jobs (their pods stop) and what goes with them; a later poll says they are gone."""
        for handle in handles:
            with self._lock:
                self._cancelled.add(handle)
            with contextlib.suppress(HostUnavailable):
                self._delete_job(handle)

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        """One job, submitted and polled until it is finished (apply submits and polls batch jobs itself)."""
        [handle] = self.submit([job])
        if isinstance(handle, Outcome):
            return handle
        cancel.started(handle)
        while True:
            if cancel.wait(self.poll_interval):
                self.cancel([handle])
                return Outcome(Status.INTERRUPTED, message="interrupted", host=self.target_name)
            try:
                state = self.poll([handle])[handle]
            except HostUnavailable:
                continue  # asked again at the next interval, as apply does
            if state.finished:
                return self.collect(job, state)

    # --- clean-up -------------------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            builder, self._builder = self._builder, None
            self._runnable = False
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if builder is not None:
            builder.close()

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """`running`: delete the Jobs their handles name (this workspace's only), with their objects.
        None: delete the ConfigMaps, Secrets and Services of this workspace whose Job is gone. A Job is never
        deleted by a sweep: one still queued or running is what a later apply waits for (or `cancel` stops)."""
        from kubernetes.client.exceptions import ApiException

        try:
            jobs = self._list_jobs()
            removed: list[str] = []
            if running is not None:
                wanted = {r.handle for r in running if r.handle}
                attempts = {str(r.attempt) for r in running}
                for name, job in jobs.items():
                    if name in wanted or _labels(job).get(render.LABEL_ATTEMPT) in attempts:
                        removed += self._delete_job(name) or [f"Job {name} (already gone)"]
                return removed
            selector = f"{render.LABEL_WORKSPACE}={self.workspace.workspace_id}"
            core = self.core()
            for kind, lister in (("ConfigMap", core.list_namespaced_config_map),
                                 ("Secret", core.list_namespaced_secret), ("Service", core.list_namespaced_service)):
                for obj in self._items(lister, selector):
                    owner = _owner(kind, _name(obj))
                    if self._ours(obj) and owner not in jobs and self._delete(kind, _name(obj)):
                        removed.append(f"{kind} {_name(obj)}")
            return removed
        except ApiException as e:
            raise KubernetesUnavailable(self.target_name, f"cannot clean up: {one_line(e)}",
                                        hint=self._hint()) from None


# --- reading the API's objects ---------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    return error.reason if isinstance(error, HostUnavailable) else one_line(error)


def _owner(kind: str, name: str) -> str:
    if kind == "ConfigMap":
        return name.removesuffix("-run")
    if kind == "Secret":
        return name.removesuffix("-env")
    return name


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _labels(obj: Obj) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _finished(job: Obj) -> tuple[Status, str] | None:
    """A Job's end from its conditions: Complete, Failed (DeadlineExceeded: a timeout), or None."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return Status.SUCCESS, ""
        if cond.get("type") == "Failed":
            reason = cond.get("reason")
            why = ": ".join(x for x in (reason, cond.get("message")) if x)
            return (Status.TIMEOUT if reason == "DeadlineExceeded" else Status.FAILURE), " ".join(why.split())
    return None


def _rank(pod: Obj) -> tuple[int, str]:
    """A pod's completion index (its node rank; 0 for a one-pod Job), then its name."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    index = str(annotations.get("batch.kubernetes.io/job-completion-index", "0"))
    return (int(index) if index.isdigit() else 0, _name(pod))


def _where(pods: Sequence[Obj]) -> str:
    return ",".join(sorted({n for p in pods if (n := (p.get("spec") or {}).get("nodeName"))}))


def _statuses(pod: Obj) -> list[Obj]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _waiting(pod: Obj) -> tuple[str, str] | None:
    """A container that waits for a reason worth saying (an image it cannot pull, a config it lacks)."""
    for cs in _statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting is not None and waiting.get("reason") in FATAL_WAITING | PULL_WAITING:
            return str(waiting["reason"]), " ".join(str(waiting.get("message") or "").split())
    return None


def _scheduled(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")


def _unschedulable(pod: Obj) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return ": ".join(x for x in (cond.get("reason"), " ".join(str(cond.get("message") or "").split())) if x)
    return ""


def _created(job: Obj) -> float | None:
    stamp = (job.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    return None


def _exit_code(pod: Obj) -> int | None:
    for cs in _statuses(pod):
        terminated = (cs.get("state") or {}).get("terminated")
        if cs.get("name") == render.CONTAINER and terminated is not None and terminated.get("exitCode") is not None:
            return int(terminated["exitCode"])
    return None


def _split_results(text: str, begin: str, end: str) -> tuple[str, str | None]:
    """A pod's log without the CSV block POD_DRIVER appends, and that CSV (None: no block)."""
    start = text.rfind(f"\n{begin} begin\n")
    if start < 0:
        return text, None
    stop = text.find(f"\n{end}\n", start)
    csv = text[start + len(begin) + 8:stop if stop >= 0 else len(text)]
    return text[:start + 1], csv
