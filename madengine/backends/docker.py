"""The `docker` backend: build, push and run on a Docker engine through the Docker SDK (DESIGN §3, §6).

One backend per target; apply calls it from worker threads (one node per call, several at once). The
SDK client is shared (its connection pool is thread-safe); a build gets a client of its own so that a
cancelled build can be cut off at its socket without touching other calls.

Contracts the apply engine relies on:

- `run` returns the container's exit code as the status (SUCCESS on 0, FAILURE otherwise) and no
  performance: apply judges the log with `madengine.results`. `Outcome.artifacts` has the run directory
  and a copy of the `multiple_results` CSV it wrote; `details["container"]` is the container id.
- Every container is labelled with the node hash, address, workspace id, attempt id and target; a
  finished container is removed unless the job keeps it alive (then it stays, stopped, labelled
  `madengine.keep-alive=1`). A timed-out or cancelled container is always removed.
- The attempt id comes from the job's env (`MADENGINE_ATTEMPT`, set by apply as for `local`); `run`
  reports the container id through `cancel.started` as soon as the container exists.
- `cleanup_orphans(running)` removes the containers of this workspace (any state) whose attempt label
  or container id is among the `running` records (`OrphanRecord`: attempt, handle, host; as apply lists
  the RUNNING attempts of a killed apply). `cleanup_orphans(None)` removes every container of this
  workspace except kept-alive ones: for the start of an apply, when the workspace lock is held and so
  no other apply can be running.
- Network: the target's `network`, or `--network` in additional_docker_run_options; without either,
  `none` on an engine that has no `bridge` network (`dockerd --bridge=none`), else the engine default.
- `observe_runnable` (plan) asks the engine once per target: an engine that does not answer is named
  (with its socket file, for a local one); for an engine on this host, the devices a GPU vendor's
  containers are given must exist (AMD: /dev/kfd, /dev/dri) and NVIDIA jobs with GPUs need its runtime.
  A failure because the host lacks a device or runtime, or because the local socket is gone, is never
  marked transient: no retry can fix it. A run whose log stream is lost says so in its outcome.
- Registry credentials come from `credential.json` beside the madfile or `MAD_DOCKERHUB_*`; they go to
  the engine per request (`auth_config`), never to a config file, a log or a message.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal

from madengine.backends import docker_probe as probe
from madengine.backends import docker_render as render
from madengine.backends.base import Cancel, OrphanRecord, Outcome, Workspace
from madengine.backends.credentials import (
    RegistryCredentials,
    all_secrets,
    for_registry,
    load_credentials,
    redact,
)
from madengine.backends.local_session import LocalSession, this_machine_facts
from madengine.backends.registry_client import lookup_digest, parse_reference, resolve_digest
from madengine.backends.rundir import collect_artifacts, package_entries, prepare_run_dir
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.errors import Diagnostic, MadengineError
from madengine.facts.model import HostFacts
from madengine.state.model import Status

if TYPE_CHECKING:  # the target's type only: pydantic is not needed to run a job
    from madengine.madfile.model import DockerTarget

_ENGINE_HINT = "start dockerd (for the tests: dev/services start), or set the target's host"
POLL = 0.05  # seconds between checks of timeout / cancel while a container runs (no I/O per check)
MAX_POOL = 64  # connections to the engine: a running job holds two (wait + logs)
# What a failure worth retrying says: the network, an engine's or registry's hiccup.
_TRANSIENT_HINTS = ("connection refused", "connection reset", "connection aborted", "connection broken",
                    "remote end closed", "broken pipe", "i/o timeout", "timeout", "timed out", "eof",
                    "tls handshake", "no such host", "temporary failure", "500 internal", "502 bad",
                    "503 service", "504 gateway", "too many requests", "429")
# What an engine says when a container asks for what its host does not have: retrying cannot help.
_HOST_LACKS = ("error gathering device information", "could not select device driver",
               "unknown or invalid runtime name", "nvidia-container-cli", "no such file or directory")
# Credentials refused: a retry sends the same ones.
_NOT_ALLOWED = ("denied", "unauthorized", "authentication required", "forbidden")


def transient(text: str, *, local: bool, status: int | None = None) -> bool:
    """Is a failed engine or registry call worth retrying: the one rule, for errors raised by a call and
    errors a stream (build, push, pull) reported. `status` is the engine's HTTP status when it answered
    with one; `local` says the call went to an engine on this host's unix socket, where "connection
    refused" (with no answer) means nothing listens there, which no retry brings back; refused by a
    remote engine, or by a registry the engine dialed, it may be a restart. Never transient: the host
    lacks a device or runtime, credentials are refused, a build step failed, a request the engine
    rejected as wrong (4xx but 408/429)."""
    low = text.lower()
    if any(w in low for w in (*_HOST_LACKS, *_NOT_ALLOWED)) or "returned a non-zero code" in low:
        return False
    if "connection refused" in low:
        return status is not None or not local
    if status is not None:
        return not 400 <= status < 500 or status in (408, 429)
    return any(w in low for w in _TRANSIENT_HINTS)


class EngineUnavailable(MadengineError):
    """The Docker engine of a target cannot be reached. Not `transient` when its socket file is missing
    or nothing listens on it: no retry brings a dead local engine back."""

    def __init__(self, message: str, *, hint: str = _ENGINE_HINT, transient: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient


def _engine_errors() -> tuple[type[BaseException], ...]:
    """What talking to the engine can raise: the SDK's errors, and requests'/urllib3's underneath."""
    import docker
    import requests
    import urllib3

    return (docker.errors.DockerException, requests.exceptions.RequestException, urllib3.exceptions.HTTPError,
            OSError)


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


class DockerBackend:
    name: ClassVar[str] = "docker"
    builds_images: ClassVar[bool] = True

    def __init__(self, target_name: str, target: DockerTarget, workspace: Workspace, *,
                 credentials: Mapping[str, RegistryCredentials] | None = None) -> None:
        self.target_name = target_name
        self.target = target
        self.workspace = workspace
        self._credentials = dict(credentials) if credentials is not None else None
        self._lock = threading.Lock()
        self._client: Any = None
        self._has_bridge: bool | None = None
        self._silent_registries: set[str] = set()  # registries that did not answer observe_registry
        self._info: dict[str, Any] | None = None  # the engine's /info, once it answered
        self.session = LocalSession()  # run directories are made here: the engine bind-mounts them

    # --- the engine ---------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        import docker

        if self.target.host:
            return {"base_url": self.target.host}
        kwargs: dict[str, Any] = docker.utils.kwargs_from_env()
        return kwargs

    def client(self) -> Any:
        """The shared SDK client, created on first use (its API version is negotiated once)."""
        with self._lock:
            if self._client is None:
                import docker

                try:
                    self._client = docker.DockerClient(**self._client_kwargs(), version="auto",
                                                       max_pool_size=MAX_POOL)
                except docker.errors.DockerException as e:
                    raise self._engine_down(e) from None
            return self._client

    def _api_for_one_call(self) -> Any:
        """A client of its own (same engine and API version), closed after one streamed call."""
        import docker

        return docker.APIClient(**self._client_kwargs(), version=self.client().api.api_version)

    def network(self) -> str | None:
        """The network for runs and build steps: the target's, else `none` on an engine without a bridge."""
        if self.target.network:
            return self.target.network
        if self._has_bridge is None:
            self._has_bridge = bool(self.client().networks.list(names=["bridge"]))
        return None if self._has_bridge else "none"

    def credentials(self) -> Mapping[str, RegistryCredentials]:
        with self._lock:
            if self._credentials is None:
                self._credentials = load_credentials(self.workspace.root)
            return self._credentials

    def _secrets(self) -> tuple[str, ...]:
        return all_secrets(self.credentials().values())

    # --- validate / observe ---------------------------------------------------------------------------

    def validate(self, job: JobSpec) -> list[Diagnostic]:
        problems = []
        gpus = self.target.gpus
        if gpus is not None and job.n_gpus > gpus:
            problems.append((f"needs {job.n_gpus} GPUs but target {self.target_name} has {gpus}",
                             f"lower the model's n_gpus, or set targets.{self.target_name}.gpus"))
        problems += [(p, "") for p in render.validate_options(job)]
        return [Diagnostic(file=None, line=None, column=None, message=f"{job.address}: {msg}", hint=hint)
                for msg, hint in problems]

    def observe_images(self, images: Sequence[ImageSpec]) -> Mapping[str, Mapping[str, str]]:
        """Which of these images' tags the engine has, with the image id each names: one list call
        (filtered by reference), not one inspect per image. Keyed by the engine's one host."""
        tags = [image.tag for image in images]
        try:
            found = probe.tagged_images(self.target.host, tags)
        except probe.Unsupported:
            listing = self._sdk_call(lambda: self.client().api.images(filters={"reference": sorted(set(tags))}))
            found = probe.images_by_tag(listing, tags)
        except OSError as e:
            raise self._unreachable(", ".join(tags[:3]) + (", ..." if len(tags) > 3 else ""), e) from None
        return {self.hosts()[0].name: found}

    def engine_info(self) -> dict[str, Any]:
        """The engine's /info (its host's name, its runtimes), asked once; raises EngineUnavailable naming
        the engine (and its socket file) when it does not answer."""
        if self._info is None:
            try:
                self._info = probe.info(self.target.host)
            except probe.Unsupported:
                self._info = dict(self._sdk_call(lambda: self.client().info()))
            except OSError as e:
                raise self._engine_down(e) from None
        return self._info

    def _sdk_call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except EngineUnavailable:
            raise
        except _engine_errors() as e:
            raise self._engine_down(e) from None

    def _engine_down(self, error: BaseException) -> EngineUnavailable:
        """The engine does not answer: say which one, and for a local socket what is wrong with it."""
        path = probe.socket_path(self.target.host)
        where = probe.engine_address(self.target.host)
        if path is not None and not os.path.exists(path):
            return EngineUnavailable(f"target {self.target_name}: no Docker engine at {where}: the socket "
                                     f"{path} does not exist", transient=False)
        if path is not None and "refused" in str(error).lower():
            return EngineUnavailable(f"target {self.target_name}: no Docker engine at {where}: nothing "
                                     f"listens on the socket {path}", transient=False)
        return EngineUnavailable(f"target {self.target_name}: the Docker engine at {where} does not answer: "
                                 f"{_one_line(str(error))}", transient=self._transient(error))

    def _transient(self, error: BaseException) -> bool:
        """`transient` for an error a call to this target's engine raised."""
        import docker

        if isinstance(error, EngineUnavailable):
            return error.transient
        status = error.status_code if isinstance(error, docker.errors.APIError) else None
        return transient(str(error), local=probe.socket_path(self.target.host) is not None, status=status)

    def observe_runnable(self, gpu_vendor: str, n_gpus: int) -> tuple[str, str] | None:
        """Can this target take a job of this GPU vendor now: the engine answers (else EngineUnavailable),
        and, for an engine on this host (a unix socket), the devices the vendor's containers are given
        exist, and NVIDIA's runtime is there for a job with GPUs. A remote engine's host is not looked at:
        its answer comes at apply, as a failure that is not retried."""
        runtimes = self.engine_info().get("Runtimes") or {}
        if probe.socket_path(self.target.host) is None:
            return None
        vendor = gpu_vendor.upper()
        missing = self._missing_devices(vendor)
        if missing:
            return (f"target {self.target_name} cannot run {vendor} containers: {', '.join(missing)} "
                    f"{'does' if len(missing) == 1 else 'do'} not exist on this host",
                    f"run {vendor} contexts on a host with {vendor} GPUs and their driver, or leave these "
                    "jobs out (a madfile's plan: --select or --target; `run`: another context)")
        if vendor == "NVIDIA" and n_gpus != 0 and render.NVIDIA_RUNTIME not in runtimes \
                and not shutil.which("nvidia-container-runtime-hook"):
            return (f"target {self.target_name} cannot give NVIDIA GPUs to containers: the engine has no "
                    f"{render.NVIDIA_RUNTIME} runtime",
                    "install the NVIDIA Container Toolkit and restart dockerd, or leave these jobs out "
                    "(a madfile's plan: --select or --target; `run`: another context)")
        return None

    def _unreachable(self, name: str, error: BaseException) -> EngineUnavailable:
        down = self._engine_down(error)
        if not down.transient:  # a dead local socket: named, whichever image was asked about
            return down
        return EngineUnavailable(f"target {self.target_name}: cannot ask the Docker engine at "
                                 f"{probe.engine_address(self.target.host)} about {name}: {_one_line(str(error))}")

    # --- build / push ---------------------------------------------------------------------------------

    def build(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        root = self.workspace.root
        context_dir = root / image.build_context
        dockerfile = root / image.dockerfile
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with _RedactingLog(log_path, self._secrets()) as log:
            if not context_dir.is_dir() or not dockerfile.is_file():
                missing = image.build_context if not context_dir.is_dir() else image.dockerfile
                log.write(f"error: {missing} not found\n")
                return Outcome(Status.FAILURE, message=f"{missing} not found")
            try:
                self._ensure_base(image, log)
                network = self.network()
            except EngineUnavailable as e:
                log.write(f"error: {e}\n")
                return Outcome(Status.FAILURE, message=str(e), transient=e.transient)
            except _engine_errors() as e:
                return self._api_failure("build", e, log)

            def progress(item: dict[str, Any]) -> None:
                if "stream" in item:
                    log.write(str(item["stream"]))
                elif "status" in item:
                    log.write(f"{item['status']} {item.get('progress', '')}".rstrip() + "\n")

            stopped, error = self._stream("build", lambda api: api.build(
                path=str(context_dir), dockerfile=str(dockerfile), tag=image.tag,
                buildargs=dict(image.build_args), rm=True, forcerm=True, decode=True, nocache=image.no_cache,
                labels={render.LABEL_NODE: image.node_hash},  # one label: each is a build step
                network_mode=network), progress, log, cancel)
            if stopped is not None:
                return stopped
            if error is not None:
                return Outcome(Status.FAILURE, message=redact(_one_line(error), self._secrets()),
                               transient=transient(error, local=False))  # said by the builder: a step, a registry
            try:
                image_id = self.client().images.get(image.tag).id
            except _engine_errors() as e:
                return self._api_failure("build", e, log)
            log.write(f"built {image.tag} ({image_id})\n")
            return Outcome(Status.SUCCESS, image_id=image_id, message=f"built {image.tag}")

    def _ensure_base(self, image: ImageSpec, log: _RedactingLog) -> None:
        """With a pinned base digest, make the base tag locally name exactly that digest before building.

        The builder does not pull a base it has, so this is what makes the build use the pinned base.
        Best effort: when the registry cannot be reached the builder uses (or pulls) the base by tag.
        """
        import docker

        if not image.base or not image.base_digest or "@" in image.base:
            return
        client = self.client()
        try:
            ref = parse_reference(image.base)
        except ValueError:
            return
        repo = image.base.rsplit(":", 1)[0] if ":" in image.base.rsplit("/", 1)[-1] else image.base
        pinned = f"{repo}@{image.base_digest}"
        try:
            have = client.images.get(image.base)
            if pinned in (have.attrs.get("RepoDigests") or []):
                return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as e:
            raise EngineUnavailable(f"target {self.target_name}: {_one_line(str(e))}") from None
        creds = for_registry(self.credentials(), ref.registry)
        try:
            pulled = client.images.pull(pinned, auth_config=creds.auth_config() if creds else None)
            pulled.tag(image.base)
            log.write(f"base {image.base} pinned to {image.base_digest}\n")
        except docker.errors.DockerException as e:
            log.write(f"warning: could not pull the pinned base {pinned}: {_one_line(str(e))}\n")

    def push_reference(self, image: ImageSpec) -> tuple[str, str]:
        """(repository, tag) the image is pushed as: `<registry>/<image tag>`.

        With credentials that name a repository (Docker Hub's `repository`, as ROCm madengine uses it),
        every image goes to that one repository, tagged `<name>-<hash12>`.
        """
        if not image.registry:
            raise ValueError(f"{image.address}: no registry to push to")
        registry = image.registry.rstrip("/")
        name, _, tag = image.tag.rpartition(":")
        creds = for_registry(self.credentials(), registry)
        if creds is not None and creds.repository:
            return f"{registry}/{creds.repository}", f"{name.rsplit('/', 1)[-1]}-{tag}"
        return f"{registry}/{name}", tag

    def push(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with _RedactingLog(log_path, self._secrets()) as log:
            if not image.registry:
                return Outcome(Status.FAILURE, message=f"{image.address}: no registry to push to")
            repository, tag = self.push_reference(image)
            creds = for_registry(self.credentials(), image.registry)
            try:
                self.client().api.tag(image.tag, repository, tag)
            except EngineUnavailable as e:
                return Outcome(Status.FAILURE, message=str(e), transient=e.transient)
            except _engine_errors() as e:
                return self._api_failure("push", e, log)
            ref = f"{repository}:{tag}"
            failed, digest = self._registry_call("push", repository, tag, creds, log, cancel)
            if failed is not None:
                return failed
            digest = digest or resolve_digest(ref, credentials=creds)
            log.write(f"pushed {ref}@{digest}\n")
            return Outcome(Status.SUCCESS, digest=digest, message=f"pushed {ref}", details={"reference": ref})

    def observe_registry(self, image: ImageSpec) -> str | None:
        if not image.registry or image.registry in self._silent_registries:
            return None  # one timeout per registry and plan, not one per image
        repository, tag = self.push_reference(image)
        answered, digest = lookup_digest(f"{repository}:{tag}",
                                         credentials=for_registry(self.credentials(), image.registry))
        if not answered:
            self._silent_registries.add(image.registry)
        return digest

    def pull(self, image: ImageSpec, log_path: Path, cancel: Cancel) -> Outcome:
        import docker

        log_path.parent.mkdir(parents=True, exist_ok=True)
        with _RedactingLog(log_path, self._secrets()) as log:
            if not image.registry:
                return Outcome(Status.FAILURE, message=f"{image.address}: no registry to pull from")
            repository, tag = self.push_reference(image)
            ref = f"{repository}:{tag}"
            creds = for_registry(self.credentials(), image.registry)
            failed, _ = self._registry_call("pull", repository, tag, creds, log, cancel)
            if failed is not None:
                return failed
            try:
                pulled = self.client().images.get(ref)
                # The tag says which inputs; the label, set by the build, says so too. A registry is not
                # trusted to hold what a tag claims: an image from other inputs is refused.
                built_from = (pulled.labels or {}).get(render.LABEL_NODE)
                if built_from != image.node_hash:
                    self.client().images.remove(ref)
                    message = (f"{ref} was not built from this node ({render.LABEL_NODE} is {built_from}); "
                               f"build it here with --replace {image.address}")
                    log.write(f"error: {message}\n")
                    return Outcome(Status.FAILURE, message=message)
                pulled.tag(image.tag)
            except docker.errors.DockerException as e:
                return self._api_failure("pull", e, log)
            digest = next((d.split("@", 1)[1] for d in pulled.attrs.get("RepoDigests") or []
                           if d.startswith(repository + "@")), None)
            log.write(f"pulled {ref}@{digest} as {image.tag}\n")
            return Outcome(Status.SUCCESS, image_id=pulled.id, digest=digest, message=f"pulled {ref}",
                           details={"reference": ref})

    def _registry_call(self, what: Literal["push", "pull"], repository: str, tag: str,
                       creds: RegistryCredentials | None, log: _RedactingLog,
                       cancel: Cancel) -> tuple[Outcome | None, str | None]:
        """Push or pull `repository:tag`: (a failed outcome or None, the digest the engine told)."""
        digests: list[str] = []

        def progress(item: dict[str, Any]) -> None:
            if "status" in item:
                log.write(f"{item.get('id', '')} {item['status']}".strip() + "\n")
            aux = item.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digests.append(str(aux["Digest"]))

        stopped, error = self._stream(what, lambda api: getattr(api, what)(
            repository, tag=tag, stream=True, decode=True, auth_config=creds.auth_config() if creds else None),
            progress, log, cancel)
        if stopped is not None:
            return stopped, None
        if error is not None:
            msg = redact(_one_line(error), self._secrets())
            return Outcome(Status.FAILURE, message=f"{what} {repository}:{tag}: {msg}",
                           transient=transient(error, local=False)), None  # the registry's answer
        return None, digests[-1] if digests else None

    def _stream(self, what: str, call: Callable[[Any], Iterable[dict[str, Any]]],
                progress: Callable[[dict[str, Any]], None], log: _RedactingLog,
                cancel: Cancel) -> tuple[Outcome | None, str | None]:
        """One streamed engine call (build, push, pull) on a client of its own, which a cancel cuts. Each
        item goes to `progress`; returns (an outcome when the call did not run to its end, the error the
        stream reported)."""
        try:
            api = self._api_for_one_call()
        except EngineUnavailable as e:
            log.write(f"error: {e}\n")
            return Outcome(Status.FAILURE, message=str(e), transient=e.transient), None
        except _engine_errors() as e:
            return self._api_failure(what, e, log), None
        response = _ResponseCatcher(api)
        error: str | None = None
        try:
            with _cut_on_cancel(cancel, response.shutdown):
                for item in call(api):
                    progress(item)
                    if "error" in item:
                        error = str(item["error"])
                        log.write(f"error: {error}\n")
        except Exception as e:
            if not cancel.is_set():  # a cancel cuts the socket, which surfaces as any of several errors
                if not isinstance(e, _engine_errors()):
                    raise
                return self._api_failure(what, e, log), None
        finally:
            api.close()
        if cancel.is_set():
            log.write("interrupted\n")
            return Outcome(Status.INTERRUPTED, message=f"{what} interrupted"), None
        return None, error

    def _api_failure(self, what: str, e: BaseException, log: _RedactingLog) -> Outcome:
        """An engine or connection error: transient unless the engine said the request itself was wrong."""
        text = redact(_one_line(str(e)), self._secrets())
        log.write(f"error: {text}\n")
        return Outcome(Status.FAILURE, message=f"{what}: {text}", transient=self._transient(e))

    # --- run ----------------------------------------------------------------------------------------

    def prepare_run_dir(self, job: JobSpec) -> str:
        """The run directory on this machine (the engine's bind mount source), filled as on every host."""
        runs = self.workspace.runs
        return prepare_run_dir(self.session, self.workspace.root, job, staging=runs, runs=str(runs))

    def package_entries(self, job: JobSpec) -> tuple[tuple[str, str], ...]:
        """The MAD package root's top-level entries, mounted read-only beside the run directory."""
        return tuple((name, str(path)) for name, path in package_entries(self.workspace, job.package_dir))

    def run(self, job: JobSpec, cancel: Cancel) -> Outcome:
        import docker

        assert job.log_path is not None, "apply chooses the log path"
        log_path = job.log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        where = job.host or self.target_name  # the host apply's scheduler put it on
        try:
            client = self.client()
            network = self.network()
        except EngineUnavailable as e:
            return Outcome(Status.FAILURE, message=str(e), host=where, transient=e.transient)
        except _engine_errors() as e:
            down = self._engine_down(e)
            return Outcome(Status.FAILURE, message=str(down), host=where, transient=down.transient)
        try:
            run_dir = self.prepare_run_dir(job)
            entries = self.package_entries(job)
        except OSError as e:
            return Outcome(Status.FAILURE, message=f"cannot prepare the run directory: {e}", host=where)
        ctx = render.RunContext(workspace_id=self.workspace.workspace_id, run_dir_host=str(Path(run_dir).resolve()),
                                project_root=str(self.workspace.root.resolve()), package_entries=entries,
                                network=network, system_gpus=self.target.gpus)
        try:
            kwargs = render.run_arguments(job, ctx)
        except ValueError as e:  # validate() reports these before apply; here only if it was skipped
            return Outcome(Status.FAILURE, message=f"{job.address}: {e}", host=where)
        missing = self._missing_devices(job.gpu_vendor, job.docker_options)
        if missing:  # plan says so for the vendor's devices; `--device` options and saved plans land here
            message = f"{', '.join(missing)}: no such device on this host (the container would need it)"
            with open(log_path, "a", encoding="utf-8") as text_log:
                text_log.write(f"madengine: {message}\n")
            return Outcome(Status.FAILURE, message=message, host=where)
        details: dict[str, Any] = {}
        # Appended, as the local backend does (apply owns the path); unbuffered, so a write that fails
        # (a full disk) fails where it is made, and is said, never again at close.
        with open(log_path, "ab", buffering=0) as log:
            try:
                container = client.containers.create(**kwargs)
            except docker.errors.ImageNotFound:
                return Outcome(Status.FAILURE, message=f"image {job.image_tag} not found on target "
                                                       f"{self.target_name}", host=where)
            except _engine_errors() as e:
                return self._run_failure(e, log, where)
            details["container"] = container.id
            cancel.started(container.id)  # recorded by apply, for the clean-up after a killed apply
            try:
                return self._run_container(job, container, log, cancel, details, run_dir)
            except _engine_errors() as e:
                with contextlib.suppress(*_engine_errors()):
                    _remove(container)
                return self._run_failure(e, log, where)

    def _missing_devices(self, gpu_vendor: str, docker_options: str = "") -> list[str]:
        """Devices a container of this vendor (and these `--device` options) is given that do not exist,
        for an engine on this host (else none known: a remote engine's host is not looked at). The one
        device check: plan asks it of a vendor, a run of its job."""
        if probe.socket_path(self.target.host) is None:
            return []
        return [d for d in render.device_paths(gpu_vendor, docker_options) if not os.path.exists(d)]

    def _run_container(self, job: JobSpec, container: Any, log: BinaryIO, cancel: Cancel,
                       details: dict[str, Any], run_dir: str) -> Outcome:
        host = job.host or self.target_name  # where apply's scheduler put it
        started = time.monotonic()
        try:
            container.start()
        except Exception:
            _remove(container)
            raise
        result: dict[str, Any] = {}
        done = threading.Event()

        def wait() -> None:
            try:
                result.update(container.wait())
            except Exception as e:  # the container was removed under us (timeout, cancel): said below
                result["error"] = e
            finally:
                done.set()

        lost: list[str] = []

        def copy_logs() -> None:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    log.write(chunk)
                    log.flush()
            except Exception as e:  # said below, unless the container was removed under it (timeout, cancel)
                lost.append(_one_line(str(e)) or type(e).__name__)

        waiter = threading.Thread(target=wait, name=f"wait {job.address}", daemon=True)
        logger = threading.Thread(target=copy_logs, name=f"logs {job.address}", daemon=True)
        waiter.start()
        logger.start()
        deadline = started + job.timeout if job.timeout > 0 else None
        stopped: tuple[Status, str] | None = None
        while not done.wait(POLL):
            if cancel.is_set():
                stopped = (Status.INTERRUPTED, "interrupted")
            elif deadline is not None and time.monotonic() >= deadline:
                stopped = (Status.TIMEOUT, f"timed out after {job.timeout}s")
            if stopped:
                _remove(container)
                break
        waiter.join(10)
        logger.join(10)
        details["duration"] = round(time.monotonic() - started, 3)
        if stopped:
            with contextlib.suppress(OSError):
                log.write(f"\nmadengine: {stopped[1]}; container removed\n".encode())
            return Outcome(stopped[0], message=stopped[1], host=host, details=details,
                           artifacts=collect_artifacts(self.session, job, run_dir, None))
        if "error" in result:
            raise result["error"]
        if logger.is_alive():
            lost.append("it did not end with the container")
        code = int(result.get("StatusCode", -1))
        if not job.keep_alive:
            _remove(container)
        else:
            details["kept"] = True
        status = Status.SUCCESS if code == 0 else Status.FAILURE
        message = "" if code == 0 else f"exit code {code}"
        if result.get("Error"):
            message = f"{message}: {result['Error'].get('Message', '')}".strip(": ")
        log_lost = ""
        if lost:  # the log is incomplete: whatever is judged from it must say so, not just "no performance"
            log_lost = f"the container's log stream was lost ({lost[0]}): the log is incomplete"
            message = "; ".join(m for m in (message, log_lost) if m)
            with contextlib.suppress(OSError, ValueError):  # the log itself may be what failed
                log.write(f"\nmadengine: {log_lost}\n".encode())
                log.flush()
        return Outcome(status, exit_code=code, message=message, host=host, details=details,
                       artifacts=collect_artifacts(self.session, job, run_dir, code, log_lost))

    def _run_failure(self, e: BaseException, log: BinaryIO, where: str) -> Outcome:
        text = _one_line(str(e))
        with contextlib.suppress(OSError):  # the outcome says it either way
            log.write(f"madengine: {text}\n".encode())
        return Outcome(Status.FAILURE, message=text, host=where, transient=self._transient(e))

    # --- scheduling and clean-up ------------------------------------------------------------------------

    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        """This machine's facts, with the Docker version of the target's engine (its `host`, when set):
        a local socket's engine runs its containers here, on this machine's devices. A remote engine's
        (tcp://, ssh://) host is another machine that no probe reaches: its facts are not observed ({}),
        so they are never taken for this machine's (its jobs are then compared and skipped on nothing,
        and perf.csv names the engine's host as before)."""
        if probe.socket_path(self.target.host) is None:
            return {}
        host = self.hosts()[0].name
        return {host: this_machine_facts(self.workspace.facts, host, self.target.host)}

    def hosts(self) -> list[HostInfo]:
        """One host: the engine's, by its host name (recorded with each run, as local records its own):
        this machine's for a local socket, else the name the engine gives itself."""
        if probe.socket_path(self.target.host) is not None:
            return [HostInfo(socket.gethostname(), self.target.gpus)]
        return [HostInfo(str(self.engine_info().get("Name") or self.target_name), self.target.gpus)]

    def deliver(self, image: ImageSpec, host: str, log_path: Path, cancel: Cancel) -> Outcome:
        return Outcome(Status.FAILURE, message=f"target {self.target_name} has one host (its engine's): "
                       "there is no other host to deliver an image to")

    def close(self) -> None:
        """Release the engine's connection pool (a later call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def containers(self) -> list[Any]:
        """Every container (running or not) labelled with this workspace, on this target's engine."""
        label = f"{render.LABEL_WORKSPACE}={self.workspace.workspace_id}"
        # The SDK lists, then inspects each: one removed in between (by hand, or by its own run) is no error.
        return list(self.client().containers.list(all=True, filters={"label": label}, ignore_removed=True))

    def cleanup_orphans(self, running: Sequence[OrphanRecord] | None) -> list[str]:
        """Remove what killed applies left: see the module docstring for the contract.

        A record's handle is a container id (or None when the container was never reported)."""
        wanted: Callable[[Any], bool]
        if running is None:
            def wanted(c: Any) -> bool:
                return (c.labels or {}).get(render.LABEL_KEEP_ALIVE) != "1"
        else:
            attempts = {str(e.attempt) for e in running}
            handles = {e.handle for e in running if e.handle}

            def wanted(c: Any) -> bool:
                return (c.labels or {}).get(render.LABEL_ATTEMPT) in attempts or c.id in handles
        removed = []
        try:
            for c in self.containers():  # only this workspace's: a handle cannot reach anyone else's
                if not wanted(c):
                    continue
                _remove(c)
                labels = c.labels or {}
                removed.append(f"container {c.short_id} ({labels.get(render.LABEL_ADDRESS, '?')}, "
                               f"attempt {labels.get(render.LABEL_ATTEMPT) or '?'})")
        except _engine_errors() as e:
            raise EngineUnavailable(f"target {self.target_name}: cannot list containers: {_one_line(str(e))}") from None
        return removed


# --- helpers ------------------------------------------------------------------------------------------


def _remove(container: Any) -> None:
    """Kill and remove; a container already gone is fine."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        try:
            container.remove(force=True)
        except docker.errors.APIError as e:
            if "already in progress" not in str(e):
                raise


class _RedactingLog:
    """A text log that never receives a registry secret (engine messages could echo one)."""

    def __init__(self, path: Path, secrets: tuple[str, ...]) -> None:
        # Appended to, as `run` appends: a retry, or the same image built on a second target, writes
        # into the same node log, and must not erase what the first attempt wrote.
        self._file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by __exit__)
        self._secrets = secrets

    def write(self, text: str) -> None:
        self._file.write(redact(text, self._secrets) if self._secrets else text)
        self._file.flush()

    def __enter__(self) -> _RedactingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


class _ResponseCatcher:
    """Keeps the streamed HTTP response of a one-call client, so a cancel can cut its socket."""

    def __init__(self, api: Any) -> None:
        self.response: Any = None
        api.hooks["response"].append(self._catch)

    def _catch(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        self.response = response
        return response

    def shutdown(self) -> None:
        resp = self.response
        if resp is None:
            return
        # Shutting the socket down wakes the thread blocked reading it; the engine sees the client
        # go away and stops the build or push.
        with contextlib.suppress(Exception):
            raw = resp.raw._fp.fp.raw
            sock = getattr(raw, "_sock", raw)
            sock.shutdown(socket.SHUT_RDWR)  # not close(): the reading thread still owns the response


@contextlib.contextmanager
def _cut_on_cancel(cancel: Cancel, cut: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a watcher calls `cut` as soon as `cancel` is set."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(POLL * 2):
                cut()
                return

    watcher = threading.Thread(target=watch, name="cancel watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()  # the watcher ends within one poll; not joined, so no call waits for it
