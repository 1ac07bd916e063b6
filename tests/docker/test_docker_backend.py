"""The docker backend against the real dockerd and registry of `dev/services start` (INFRA.md).

Images are built FROM the busybox base image in the local registry; every test works in a workspace of
its own (a unique workspace id labels its containers), so tests can run in parallel on one engine.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from madengine.backends.base import Cancel, OrphanRecord, Workspace
from madengine.backends.docker import DockerBackend, EngineUnavailable
from madengine.backends.registry_client import manifest_exists, resolve_digest
from madengine.backends.specs import ImageSpec, JobSpec
from madengine.compile.ir import DataMount, ScriptCall
from madengine.madfile.model import DockerTarget
from madengine.state.model import Status
from tests.backends.test_conformance import artifacts_of
from tests.infra.services import Registry, silent_listener

pytestmark = pytest.mark.docker

RUN_SH = r"""#!/bin/bash
# A model for the tests: its first argument says what to do.
case "$1" in
  perf) echo "performance: 12.5 x" ;;
  fail) echo "failing"; exit 3 ;;
  sleep) echo "sleeping"; sleep "$2"; echo "slept" ;;
  argv) shift; echo "argc=$#"; for a in "$@"; do printf '<%s>\n' "$a"; done
        if [ -e /tmp/x ]; then echo "container /tmp/x exists"; else echo "container /tmp/x absent"; fi ;;
  env) echo "model=$MAD_MODEL_NAME vendor=$MAD_GPU_VENDOR ngpus=$MAD_RUNTIME_NGPUS wrap=$WRAPPED" ;;
  creds) ls ..; env
         if [ -e ../credential.json ]; then echo "credential.json visible"; else echo "credential.json hidden"; fi ;;
  protocol) cat pre.out; echo "main in $(pwd)"; cat ../scripts/common/shared.txt; cat /data/d.txt
            if { echo x > /data/w; } 2>/dev/null; then echo "data writable"; else echo "data read-only"; fi
            if { echo x > ../scripts/common/w; } 2>/dev/null; then echo "package writable"
            else echo "package read-only"; fi ;;
esac
"""


@dataclass
class Project:
    root: Path
    workspace: Workspace
    backend: DockerBackend

    def job(self, *args: str, **changes: Any) -> JobSpec:
        base = JobSpec(address="job:m@cpu/box#1", node_hash="sha256:" + "ab" * 32, model="m", context="cpu",
                       target="box", script="scripts/m/run.sh", args=args, env={"MADENGINE_ATTEMPT": "1"},
                       n_gpus=0, timeout=60, image_tag=TINY_TAG, image_digest=None,
                       log_path=self.workspace.logs / f"{uuid.uuid4().hex[:8]}.log")
        return replace(base, **changes)

    def containers(self) -> list[Any]:
        return self.backend.containers()


TINY_TAG = f"madengine/tiny-test:{uuid.uuid4().hex[:12]}"


def make_project(root: Path, base_image: str, credentials: dict[str, Any] | None = None,
                 target: DockerTarget | None = None) -> Project:
    (root / "scripts" / "m").mkdir(parents=True)
    (root / "scripts" / "m" / "run.sh").write_text(RUN_SH)
    (root / "scripts" / "common").mkdir()
    (root / "scripts" / "common" / "shared.txt").write_text("shared from the package\n")
    (root / "scripts" / "common" / "pre.sh").write_text('echo "pre $1" > pre.out\n')
    (root / "scripts" / "common" / "post.sh").write_text('echo "post ran"\n')
    (root / "data").mkdir()
    (root / "data" / "d.txt").write_text("data file\n")
    (root / "docker").mkdir()
    (root / "docker" / "tiny.Dockerfile").write_text(f"FROM {base_image}\nARG MARK=none\n")
    if credentials is not None:
        (root / "credential.json").write_text(json.dumps(credentials))
    ws = Workspace(root=root, state_dir=root / ".madengine", workspace_id=f"test-{uuid.uuid4().hex[:12]}")
    return Project(root, ws, DockerBackend("box", target or DockerTarget(backend="docker"), ws))


def image_spec(tag: str, mark: str = "none", registry: str | None = None) -> ImageSpec:
    """An image of its own: the backend labels it with its (here random) node hash."""
    return ImageSpec(address="image:tiny@cpu", node_hash="sha256:" + uuid.uuid4().hex * 2, tag=tag,
                     dockerfile="docker/tiny.Dockerfile", build_context="docker", build_args={"MARK": mark},
                     base=None, base_digest=None, registry=registry)


@pytest.fixture(scope="module")
def tiny_image(docker_client: Any, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One image for the run tests of this module, built by the backend under test."""
    project = make_project(tmp_path_factory.mktemp("image"), registry.base_image)
    outcome = project.backend.build(image_spec(TINY_TAG), project.workspace.logs / "build.log", Cancel())
    assert outcome.status is Status.SUCCESS, (outcome, (project.workspace.logs / "build.log").read_text())
    yield TINY_TAG
    docker_client.images.remove(TINY_TAG, force=True)


@pytest.fixture
def project(tmp_path: Path, registry: Registry, docker_client: Any) -> Iterator[Project]:
    p = make_project(tmp_path, registry.base_image)
    yield p
    for c in p.containers():  # whatever a failed test left
        c.remove(force=True)


# --- build and observe --------------------------------------------------------------------------------


def test_build_labels_the_image_and_observe_sees_it(project: Project, docker_client: Any) -> None:
    tag = f"madengine/tiny-test:{uuid.uuid4().hex[:12]}"
    spec = image_spec(tag)
    log = project.workspace.logs / "build.log"
    outcome = project.backend.build(spec, log, Cancel())
    assert outcome.status is Status.SUCCESS, log.read_text()
    image = docker_client.images.get(tag)
    assert outcome.image_id == image.id
    assert image.labels["madengine.node"] == spec.node_hash
    assert "Step 1/" in log.read_text()
    other = image_spec(f"madengine/tiny-test:{uuid.uuid4().hex[:12]}")  # never built: not listed
    (host,) = [h.name for h in project.backend.hosts()]
    assert project.backend.observe_images([spec, other]) == {host: {tag: outcome.image_id}}
    docker_client.images.remove(image.id, force=True)
    assert project.backend.observe_images([spec, other]) == {host: {}}


def test_no_cache_builds_every_step_again(project: Project, docker_client: Any) -> None:
    tag = f"madengine/tiny-test:{uuid.uuid4().hex[:12]}"
    logs = [project.workspace.logs / f"build{i}.log" for i in range(3)]
    for log, no_cache in zip(logs, (False, False, True), strict=True):
        spec = replace(image_spec(tag, mark="cache-test"), no_cache=no_cache)
        assert project.backend.build(spec, log, Cancel()).status is Status.SUCCESS, log.read_text()
    assert "Using cache" in logs[1].read_text()
    assert "Using cache" not in logs[2].read_text()
    docker_client.images.remove(tag, force=True)


def test_build_failure_gives_the_error_line(project: Project, registry: Registry) -> None:
    (project.root / "docker" / "tiny.Dockerfile").write_text(
        f"FROM {registry.base_image}\nRUN echo about to fail; exit 7\n")
    outcome = project.backend.build(image_spec(f"madengine/broken:{uuid.uuid4().hex[:12]}"),
                                    project.workspace.logs / "b.log", Cancel())
    assert outcome.status is Status.FAILURE and not outcome.transient
    assert "returned a non-zero code: 7" in outcome.message
    assert "about to fail" in (project.workspace.logs / "b.log").read_text()


def test_build_of_a_missing_dockerfile_fails_clearly(project: Project) -> None:
    spec = replace(image_spec("madengine/none:1"), dockerfile="docker/missing.Dockerfile")
    outcome = project.backend.build(spec, project.workspace.logs / "b.log", Cancel())
    assert outcome.status is Status.FAILURE and "docker/missing.Dockerfile not found" in outcome.message


def test_build_can_be_cancelled(project: Project, registry: Registry, docker_client: Any) -> None:
    (project.root / "docker" / "tiny.Dockerfile").write_text(
        f"FROM {registry.base_image}\nRUN echo {uuid.uuid4().hex}; sleep 30; echo slept-$((6*7))\n")
    cancel = Cancel()
    threading.Timer(1.0, cancel.event.set).start()
    tag = f"madengine/cancelled:{uuid.uuid4().hex[:12]}"
    outcome = project.backend.build(image_spec(tag), project.workspace.logs / "b.log", cancel)
    assert outcome.status is Status.INTERRUPTED
    assert "slept-42" not in (project.workspace.logs / "b.log").read_text()  # stopped during the sleep
    assert not docker_client.images.list(name=tag)


def test_build_uses_the_pinned_base_digest(project: Project, registry: Registry, docker_client: Any) -> None:
    # A base known only to the registry (its local tag removed): the build pulls it by its pinned digest.
    base = f"localhost:{registry.address.rsplit(':', 1)[1]}/madengine/pinned-base:{uuid.uuid4().hex[:12]}"
    docker_client.images.get(registry.base_image).tag(base)
    docker_client.images.push(base)
    digest = resolve_digest(base)
    assert digest is not None
    docker_client.images.remove(base)
    (project.root / "docker" / "tiny.Dockerfile").write_text(f"FROM {base}\n")
    spec = replace(image_spec(f"madengine/on-pinned:{uuid.uuid4().hex[:12]}"), base=base, base_digest=digest)
    log = project.workspace.logs / "b.log"
    outcome = project.backend.build(spec, log, Cancel())
    assert outcome.status is Status.SUCCESS, log.read_text()
    assert f"base {base} pinned to {digest}" in log.read_text()
    assert f"{base.rsplit(':', 1)[0]}@{digest}" in docker_client.images.get(base).attrs["RepoDigests"]
    docker_client.images.remove(spec.tag, force=True)
    docker_client.images.remove(base, force=True)


# --- run ----------------------------------------------------------------------------------------------


def test_run_writes_the_log_and_removes_the_container(project: Project, tiny_image: str) -> None:
    handles: list[str] = []
    job = project.job("perf")
    outcome = project.backend.run(job, Cancel(on_start=handles.append))
    assert outcome.status is Status.SUCCESS and outcome.exit_code == 0, outcome
    assert outcome.perf == ()  # apply judges performance from the log
    assert job.log_path is not None and "performance: 12.5 x" in job.log_path.read_text()
    assert handles == [outcome.details["container"]]
    assert Path(artifacts_of(outcome).run_dir).is_dir()
    assert project.containers() == []


def test_concurrent_runs_on_one_backend(project: Project, tiny_image: str) -> None:
    # apply calls one backend from several worker threads at --parallelism N.
    jobs = [project.job("argv", f"job {i}", address=f"job:m@cpu/box#{i}", env={"MADENGINE_ATTEMPT": str(i)})
            for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda j: project.backend.run(j, Cancel()), jobs))
    assert [o.status for o in outcomes] == [Status.SUCCESS] * 4
    for i, j in enumerate(jobs):
        assert j.log_path is not None and f"<job {i}>" in j.log_path.read_text()
    assert len({artifacts_of(o).run_dir for o in outcomes}) == 4
    assert project.containers() == []


def test_failing_script_records_its_exit_code(project: Project, tiny_image: str) -> None:
    job = project.job("fail")
    outcome = project.backend.run(job, Cancel())
    assert (outcome.status, outcome.exit_code, outcome.message) == (Status.FAILURE, 3, "exit code 3")
    assert job.log_path is not None and "failing" in job.log_path.read_text()
    assert project.containers() == []


def test_timeout_kills_and_removes_the_container(project: Project, tiny_image: str) -> None:
    job = project.job("sleep", "60", timeout=1)
    outcome = project.backend.run(job, Cancel())
    assert outcome.status is Status.TIMEOUT and "timed out after 1s" in outcome.message
    assert job.log_path is not None and "sleeping" in (log := job.log_path.read_text())
    assert "slept" not in log  # stopped during its sleep, not after it
    assert project.containers() == []


def test_cancel_from_another_thread_interrupts(project: Project, tiny_image: str) -> None:
    cancel = Cancel()
    threading.Timer(0.5, cancel.event.set).start()
    job = project.job("sleep", "60")
    outcome = project.backend.run(job, cancel)
    assert outcome.status is Status.INTERRUPTED
    assert job.log_path is not None and "slept" not in job.log_path.read_text()  # stopped during its sleep
    assert project.containers() == []


def test_keep_alive_leaves_the_container(project: Project, tiny_image: str) -> None:
    outcome = project.backend.run(project.job("perf", keep_alive=True), Cancel())
    assert outcome.status is Status.SUCCESS
    [kept] = project.containers()
    assert kept.id == outcome.details["container"]
    assert kept.labels["madengine.keep-alive"] == "1"
    assert b"performance: 12.5 x" in kept.logs()
    assert project.backend.cleanup_orphans(None) == []  # kept alive on purpose: not an orphan
    assert project.containers() != []


def test_mad_protocol_pre_post_tools_data_and_package(project: Project, tiny_image: str) -> None:
    job = project.job("protocol", pre_scripts=(ScriptCall("scripts/common/pre.sh", ("with arg",)),),
                      post_scripts=(ScriptCall("scripts/common/post.sh"),),
                      data_mounts=(DataMount("data", "/data", in_project=True),))
    outcome = project.backend.run(job, Cancel())
    assert job.log_path is not None
    log = job.log_path.read_text()
    assert outcome.status is Status.SUCCESS, log
    assert log.splitlines() == ["pre with arg", "main in /myworkspace/run_directory", "shared from the package",
                                "data file", "data read-only", "package read-only", "post ran"]
    assert (Path(artifacts_of(outcome).run_dir) / "pre.out").read_text() == "pre with arg\n"
    assert not (project.root / "scripts" / "m" / "pre.out").exists()  # the package is untouched


def test_mad_environment_and_tool_wrapper(project: Project, tiny_image: str) -> None:
    job = project.job("env", cmd_prefix=("env", "WRAPPED=yes"), gpu_vendor="NONE")
    outcome = project.backend.run(job, Cancel())
    assert outcome.status is Status.SUCCESS
    assert job.log_path is not None
    assert job.log_path.read_text() == "model=m vendor=NONE ngpus=0 wrap=yes\n"


def test_hostile_arguments_reach_the_container_literally(project: Project, tiny_image: str) -> None:
    host_marker = Path("/tmp/x")
    existed = host_marker.exists()
    args = ("$(touch /tmp/x)", "; touch /tmp/x", "`touch /tmp/x`", "it's \"quoted\"", "two\nlines", "&& id", "")
    job = project.job("argv", *args, model="m$(touch /tmp/x);'\"", address="job:m$(touch /tmp/x)[a=;]@cpu/box#1")
    outcome = project.backend.run(job, Cancel())
    assert job.log_path is not None
    log = job.log_path.read_text()
    assert outcome.status is Status.SUCCESS, log
    expected = f"argc={len(args)}\n" + "".join(f"<{a}>\n" for a in args) + "container /tmp/x absent\n"
    assert log == expected
    assert host_marker.exists() == existed


def test_engine_without_bridge_runs_with_network_none(project: Project, docker_client: Any) -> None:
    has_bridge = bool(docker_client.networks.list(names=["bridge"]))
    assert project.backend.network() == (None if has_bridge else "none")
    other = DockerBackend("box", DockerTarget(backend="docker", network="host"), project.workspace)
    assert other.network() == "host"


# --- clean-up -----------------------------------------------------------------------------------------


def test_cleanup_orphans_removes_labelled_leftovers(project: Project, docker_client: Any, tiny_image: str) -> None:
    def leftover(workspace: str, attempt: str, running: bool) -> Any:
        c = docker_client.containers.create(tiny_image, ["sleep", "60"], network_mode="none", labels={
            "madengine.workspace": workspace, "madengine.attempt": attempt, "madengine.address": f"job:x#{attempt}"})
        if running:
            c.start()
        return c

    ws = project.workspace.workspace_id
    running7, created8, stranger = leftover(ws, "7", True), leftover(ws, "8", False), leftover("other-ws", "7", True)
    try:
        removed = project.backend.cleanup_orphans([OrphanRecord(attempt=7, handle=None, host="box")])
        assert removed == [f"container {running7.short_id} (job:x#7, attempt 7)"]
        assert {c.id for c in project.containers()} == {created8.id}
        removed = project.backend.cleanup_orphans([OrphanRecord(attempt=99, handle=created8.id, host="box")])
        assert removed == [f"container {created8.short_id} (job:x#8, attempt 8)"]
        leftover(ws, "9", False)
        assert len(project.backend.cleanup_orphans(None)) == 1
        assert project.containers() == []
        stranger.reload()
        assert stranger.status == "running"  # another workspace's container is never touched
    finally:
        stranger.remove(force=True)


# --- push and registry --------------------------------------------------------------------------------


def test_push_returns_the_registry_digest(project: Project, registry: Registry, docker_client: Any) -> None:
    tag = f"madengine/pushed:{uuid.uuid4().hex[:12]}"
    spec = image_spec(tag, registry=registry.address)
    assert project.backend.build(spec, project.workspace.logs / "b.log", Cancel()).status is Status.SUCCESS
    outcome = project.backend.push(spec, project.workspace.logs / "p.log", Cancel())
    assert outcome.status is Status.SUCCESS, (project.workspace.logs / "p.log").read_text()
    ref = f"{registry.address}/{tag}"
    assert outcome.details["reference"] == ref
    assert outcome.digest is not None and outcome.digest.startswith("sha256:")
    assert outcome.digest == resolve_digest(ref)
    assert manifest_exists(f"{registry.address}/{tag.split(':')[0]}@{outcome.digest}") is True
    docker_client.images.remove(tag, force=True)
    docker_client.images.remove(ref, force=True)


def test_pull_fetches_a_pushed_build_and_refuses_one_of_other_inputs(
        project: Project, registry: Registry, docker_client: Any) -> None:
    tag = f"madengine/pulled:{uuid.uuid4().hex[:12]}"
    spec = image_spec(tag, registry=registry.address)
    assert project.backend.observe_registry(spec) is None
    assert project.backend.build(spec, project.workspace.logs / "b.log", Cancel()).status is Status.SUCCESS
    pushed = project.backend.push(spec, project.workspace.logs / "p.log", Cancel())
    assert project.backend.observe_registry(spec) == pushed.digest
    ref = f"{registry.address}/{tag}"
    image_id = docker_client.images.get(tag).id
    docker_client.images.remove(image_id, force=True)  # as on a machine that never built it
    log = project.workspace.logs / "pull.log"
    outcome = project.backend.pull(spec, log, Cancel())
    assert outcome.status is Status.SUCCESS, log.read_text()
    assert (outcome.image_id, outcome.digest) == (image_id, pushed.digest)
    assert docker_client.images.get(tag).id == image_id
    assert [dict(seen) for seen in project.backend.observe_images([spec]).values()] == [{tag: image_id}]
    # The same tag claimed by other inputs (a node hash the image was not built from) is refused.
    other = replace(spec, node_hash="sha256:" + "00" * 32)
    docker_client.images.remove(image_id, force=True)
    outcome = project.backend.pull(other, log, Cancel())
    assert outcome.status is Status.FAILURE and "was not built from this node" in outcome.message
    with pytest.raises(Exception, match=r"No such image|not found"):
        docker_client.images.get(tag)
    missing = replace(spec, tag=f"madengine/pulled:{uuid.uuid4().hex[:12]}")
    outcome = project.backend.pull(missing, log, Cancel())
    assert outcome.status is Status.FAILURE and not outcome.transient, outcome
    with contextlib.suppress(Exception):
        docker_client.images.remove(ref, force=True)


def test_an_unreachable_registry_is_asked_once_per_plan(project: Project, tiny_image: str) -> None:
    with silent_listener() as (address, connections):
        spec = replace(image_spec(tiny_image), registry=address)
        assert project.backend.observe_registry(spec) is None
        asked = len(connections)  # https, then http (a loopback registry may be plain)
        assert asked >= 1
        assert [project.backend.observe_registry(spec) for _ in range(4)] == [None] * 4
        assert len(connections) == asked, "a registry that did not answer is not asked again"
    assert project.backend._silent_registries == {address}


def test_push_to_an_unreachable_registry_is_transient(project: Project, docker_client: Any, tiny_image: str) -> None:
    spec = replace(image_spec(tiny_image), registry="127.0.0.1:9")  # the discard port: nothing listens
    outcome = project.backend.push(spec, project.workspace.logs / "p.log", Cancel())
    assert outcome.status is Status.FAILURE and outcome.transient, outcome
    docker_client.images.remove(f"127.0.0.1:9/{tiny_image}")


def test_credentials_never_appear_in_logs_or_outcomes(tmp_path: Path, registry: Registry, docker_client: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env_secret = f"envs3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("MAD_DOCKERHUB_USER", "hubuser")
    monkeypatch.setenv("MAD_DOCKERHUB_PASSWORD", env_secret)
    project = make_project(tmp_path, registry.base_image,
                           credentials={registry.address: {"username": "bench", "password": secret}})
    tag = f"madengine/secret:{uuid.uuid4().hex[:12]}"
    spec = image_spec(tag, registry=registry.address)
    outcomes = [project.backend.build(spec, project.workspace.logs / "b.log", Cancel()),
                project.backend.push(spec, project.workspace.logs / "p.log", Cancel())]
    assert [o.status for o in outcomes] == [Status.SUCCESS, Status.SUCCESS]
    job = project.job("creds", image_tag=tag)
    outcomes.append(project.backend.run(job, Cancel()))
    assert outcomes[-1].status is Status.SUCCESS
    assert job.log_path is not None and "credential.json hidden" in job.log_path.read_text()
    assert "scripts" in job.log_path.read_text().split()  # the package is there, its credentials are not
    creds = project.backend.credentials()
    assert str(creds[registry.address].password) == "***" and secret not in repr(creds)
    for text in [repr(o) for o in outcomes] + [p.read_text(errors="replace")
                                                for p in project.workspace.state_dir.rglob("*") if p.is_file()]:
        assert secret not in text and env_secret not in text
    docker_client.images.remove(tag, force=True)
    docker_client.images.remove(f"{registry.address}/{tag}", force=True)


# --- an engine that cannot be reached -----------------------------------------------------------------


def test_unreachable_engine(tmp_path: Path, registry: Registry) -> None:
    project = make_project(tmp_path, registry.base_image,
                           target=DockerTarget(backend="docker", host=f"unix://{tmp_path}/no.sock"))
    outcome = project.backend.run(project.job("perf"), Cancel())
    # A local socket that is not there: named, and not retried (no retry brings it back).
    assert outcome.status is Status.FAILURE and not outcome.transient
    assert f"no Docker engine at unix://{tmp_path}/no.sock: the socket {tmp_path}/no.sock does not exist" \
        in outcome.message
    build = project.backend.build(image_spec("madengine/x:1"), tmp_path / "b.log", Cancel())
    assert build.status is Status.FAILURE and not build.transient
    with pytest.raises(EngineUnavailable):
        project.backend.observe_images([image_spec("madengine/x:1")])
