"""The kubernetes backend through the official client over HTTP, against kmock (tests/infra/kube.py).

The test's controller plays the Job controller and the kubelet: it runs each pod's container on this
machine (the ConfigMap's files, the Secret's values, Kubernetes' `$(VAR)` expansion), so what is
created, polled, collected and deleted is real API traffic, and what the pod prints is the log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from madengine.apply.engine import judge_job
from madengine.backends import kubernetes_render as render
from madengine.backends.base import Cancel, OrphanRecord, Outcome, QueueState, Workspace, is_batch
from madengine.backends.kubernetes import KubernetesBackend
from madengine.backends.session import HostUnavailable
from madengine.backends.specs import JobSpec
from madengine.madfile.model import KubernetesTarget
from madengine.state.model import Status
from tests.infra.kube import KubeFixture, Script, free_port, wait_for

pytestmark = pytest.mark.kubernetes

RUN_SH = """\
echo "args: $*"
echo "token: ${HF_TOKEN:-none} rank: ${NODE_RANK:-none} of ${NNODES:-1} master: ${MASTER_ADDR:-none}"
echo "runner: ${MAD_MULTI_NODE_RUNNER:-none}"
if [ -n "$MAD_OUTPUT_CSV" ]; then printf 'model,performance,metric\\na,1.5,x\\nb,2.5,y\\n' > "$MAD_OUTPUT_CSV"; fi
[ "$1" = fail ] && { echo "RuntimeError: boom"; exit 3; }
echo "performance: 12.5 samples_per_second"
"""


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "scripts" / "dummy").mkdir(parents=True)
    (root / "scripts" / "dummy" / "run.sh").write_text(RUN_SH)
    (root / "scripts" / "dummy" / "data.txt").write_text("beside the script\n")
    (root / "scripts" / "common" / "tools").mkdir(parents=True)
    (root / "scripts" / "common" / "tools" / "wrap.sh").write_text(
        'echo "wrap: $(cat "$(dirname "$0")/banner.txt")"\n"$@"\n')
    (root / "scripts" / "common" / "tools" / "banner.txt").write_text("a file beside the wrapper\n")
    (root / "scripts" / "common" / "unrelated.sh").write_text("echo not needed\n")
    (root / "credential.json").write_text('{"never": "sent"}\n')
    return root


def backend(kube: KubeFixture, tmp_path: Path, namespace: str = "default", registry: str | None = "localhost:5000",
            **keys: object) -> KubernetesBackend:
    root = project(tmp_path) if not (tmp_path / "proj").exists() else tmp_path / "proj"
    target = KubernetesTarget.model_validate({"backend": "kubernetes", "kubeconfig": str(kube.kube.kubeconfig),
                                              "namespace": namespace, **keys})
    return KubernetesBackend("k8s", target, Workspace(root=root, state_dir=root / ".madengine",
                                                      workspace_id="ws0123456789"), registry=registry)


def job(tmp_path: Path, attempt: int = 1, **fields: object) -> JobSpec:
    values: dict[str, object] = dict(
        address=f"job:dummy@cpu/k8s#{attempt}", node_hash="sha256:" + "cd" * 32, model="dummy", context="cpu",
        target="k8s", script="scripts/dummy/run.sh", args=("--n", "$(MAD_MODEL_NAME)", "$x y"),
        env={"MADENGINE_ATTEMPT": str(attempt), "HF_TOKEN": "hf_value_never_in_a_manifest"}, n_gpus=0, timeout=60,
        image_tag="madengine/dummy:0123456789ab", image_digest=None,
        log_path=tmp_path / "logs" / f"dummy-{attempt}.log")
    values.update(fields)
    return JobSpec(**values)  # type: ignore[arg-type]


def finish(b: KubernetesBackend, handles: Sequence[str], timeout: float = 30.0) -> dict[str, QueueState]:
    """Poll as apply does until every handle is finished."""
    deadline = time.monotonic() + timeout
    while True:
        states = dict(b.poll(handles))
        if all(s.finished for s in states.values()):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.05)


def collected(b: KubernetesBackend, spec: JobSpec, state: QueueState) -> Outcome:
    """collect, then the result judged from the log as apply does (apply.engine.judge_job)."""
    return judge_job(spec, b.collect(spec, state))


def submitted(b: KubernetesBackend, *jobs: JobSpec) -> list[str]:
    handles = b.submit(jobs)
    assert all(isinstance(h, str) for h in handles), handles
    return [h for h in handles if isinstance(h, str)]


def test_a_job_is_created_polled_collected_and_deleted(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    spec = job(tmp_path)
    [handle] = submitted(b, spec)
    assert handle == render.job_name(spec)
    manifest = kube.kube.api().sanitize_for_serialization(
        __import__("kubernetes").client.BatchV1Api(kube.kube.api()).read_namespaced_job(handle, "default"))
    assert "hf_value_never_in_a_manifest" not in str(manifest)  # the Job reads it from its Secret
    assert kube.kube.objects("Secret") == [render.secret_name(handle)]
    states = finish(b, [handle])
    assert states[handle].status is Status.SUCCESS and states[handle].state == "Succeeded"
    outcome = collected(b, spec, states[handle])
    assert outcome.status is Status.SUCCESS, outcome
    assert [(r.performance, r.metric) for r in outcome.perf] == [(12.5, "samples_per_second")]
    assert outcome.exit_code == 0 and outcome.host == "node1"
    assert spec.log_path is not None
    log = spec.log_path.read_text()
    # The model's arguments and secret reached the pod as written (no `$(VAR)` expansion, no shell).
    assert "args: --n $(MAD_MODEL_NAME) $x y\n" in log and "token: hf_value_never_in_a_manifest rank: none" in log
    for kind in ("Job", "Pod", "ConfigMap", "Secret", "Service"):
        assert kube.kube.objects(kind) == [], kind


def test_multiple_results_come_back_through_the_log(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    spec = job(tmp_path, multiple_results="perf.csv")
    [handle] = submitted(b, spec)
    outcome = collected(b, spec, finish(b, [handle])[handle])
    assert outcome.status is Status.SUCCESS, outcome
    assert [(r.model, r.performance, r.metric) for r in outcome.perf] == [("dummy_a", 1.5, "x"), ("dummy_b", 2.5, "y")]
    assert outcome.artifacts is not None and outcome.artifacts.perf_csv is not None
    assert outcome.artifacts.perf_csv.read_text() == "model,performance,metric\na,1.5,x\nb,2.5,y\n"
    assert spec.log_path is not None and "madengine-results" not in spec.log_path.read_text()


def test_a_multi_node_job_is_an_indexed_job_whose_ranks_reach_rank_0(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    spec = job(tmp_path, nnodes=2, env={"MADENGINE_ATTEMPT": "1"})
    [handle] = submitted(b, spec)
    assert kube.kube.objects("Service") == [handle]
    outcome = collected(b, spec, finish(b, [handle])[handle])
    assert outcome.status is Status.SUCCESS, outcome
    ranks = sorted(r["env"]["NODE_RANK"] for r in kube.controller.ran)
    assert ranks == ["0", "1"]
    assert {r["env"]["MASTER_ADDR"] for r in kube.controller.ran} == {f"{handle}-0.{handle}"}
    assert spec.log_path is not None
    log = spec.log_path.read_text()
    assert log.index("rank: 0 of 2") < log.index("rank: 1 of 2")  # rank 0's log first: its performance counts
    assert (f"runner: torchrun --nnodes=2 --nproc_per_node=1 --node_rank=1 --master_addr={handle}-0.{handle} "
            "--master_port=29500") in log
    assert outcome.host == "node1,node2"
    assert kube.kube.objects("Service") == [] and kube.kube.objects("Pod") == []


def test_a_failed_job_is_a_failure_with_its_exit_code(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    spec = job(tmp_path, args=("fail",))
    [handle] = submitted(b, spec)
    state = finish(b, [handle])[handle]
    assert (state.status, state.state) == (Status.FAILURE, "Failed")
    assert state.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    outcome = collected(b, spec, state)
    assert (outcome.status, outcome.exit_code) == (Status.FAILURE, 3)
    assert outcome.message == "exit code 3 (error pattern 'RuntimeError:' at line 4: RuntimeError: boom)"
    assert kube.kube.objects("Job") == []


def test_a_job_past_its_deadline_is_a_timeout(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(log="started\n", exit_code=137, deadline=True)
    b = backend(kube, tmp_path)
    spec = job(tmp_path)
    [handle] = submitted(b, spec)
    state = finish(b, [handle])[handle]
    assert (state.status, state.reason) == (Status.TIMEOUT, "DeadlineExceeded: Job was active longer than "
                                                            "specified deadline")
    outcome = collected(b, spec, state)
    assert outcome.status is Status.TIMEOUT and outcome.perf == ()


def test_a_job_never_scheduled_times_out_saying_why(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(unschedulable="0/3 nodes are available: 3 Insufficient amd.com/gpu.")
    b = backend(kube, tmp_path)
    spec = job(tmp_path, timeout=1)
    [handle] = submitted(b, spec)
    wait_for(lambda: bool(kube.kube.objects("Pod")))
    first = b.poll([handle])[handle]
    assert not first.finished and first.state == "Pending"
    assert first.reason == "Unschedulable: 0/3 nodes are available: 3 Insufficient amd.com/gpu."
    assert first.describe("kubernetes").startswith(f"kubernetes {handle} Pending (Unschedulable: ")
    state = finish(b, [handle])[handle]
    assert state.status is Status.TIMEOUT
    assert state.reason == "timed out after 1 s never started (Unschedulable: 0/3 nodes are available: 3 " \
                           "Insufficient amd.com/gpu.)"
    outcome = collected(b, spec, state)
    assert outcome.status is Status.TIMEOUT and "never started" in outcome.message
    assert kube.kube.objects("Pod") == [] and kube.kube.objects("Job") == []


def test_an_image_that_cannot_be_pulled_is_said_then_times_out(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(waiting=("ImagePullBackOff", 'Back-off pulling image "localhost:5000/x"'))
    b = backend(kube, tmp_path)
    spec = job(tmp_path, timeout=1)
    [handle] = submitted(b, spec)
    wait_for(lambda: bool(kube.kube.objects("Pod")))
    assert b.poll([handle])[handle].reason == 'ImagePullBackOff: Back-off pulling image "localhost:5000/x"'
    state = finish(b, [handle])[handle]
    assert state.status is Status.TIMEOUT and "ImagePullBackOff" in state.reason


def test_an_invalid_image_name_fails_at_once(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(waiting=("InvalidImageName", "couldn't parse image reference"))
    b = backend(kube, tmp_path)
    spec = job(tmp_path, timeout=3600)
    [handle] = submitted(b, spec)
    state = finish(b, [handle])[handle]
    assert (state.status, state.reason) == (Status.FAILURE, "InvalidImageName: couldn't parse image reference")


def test_a_job_deleted_outside_madengine_is_a_failure(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(never=True)
    b = backend(kube, tmp_path)
    [handle] = submitted(b, job(tmp_path))
    from kubernetes import client

    client.BatchV1Api(kube.kube.api()).delete_namespaced_job(handle, "default")
    state = b.poll([handle])[handle]
    assert (state.status, state.reason) == (Status.FAILURE, "deleted outside madengine")


def test_the_api_server_gone(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(never=True)
    b = backend(kube, tmp_path)
    [handle] = submitted(b, job(tmp_path))
    kube.kube.stop()
    with pytest.raises(HostUnavailable) as raised:
        b.poll([handle])
    assert "cannot reach the API server" in raised.value.reason and "\n" not in raised.value.reason
    [failed] = b.submit([job(tmp_path, attempt=2)])
    assert isinstance(failed, Outcome) and failed.status is Status.FAILURE and failed.transient
    assert failed.message.startswith(f"cannot create the Job {render.job_name(job(tmp_path, attempt=2))}: cannot "
                                     "reach the API server: ")
    assert "\n" not in failed.message and "Traceback" not in failed.message
    why = b.observe_runnable("NONE", 0)
    assert why is not None and why[0].startswith("target k8s: cannot reach the API server")


def test_a_kubeconfig_naming_a_port_nothing_listens_on(kube: KubeFixture, tmp_path: Path) -> None:
    config = tmp_path / "wrong-port"
    config.write_text(kube.kube.kubeconfig.read_text().replace(str(kube.kube.port), str(free_port())))
    b = backend(kube, tmp_path, kubeconfig=str(config))
    [failed] = b.submit([job(tmp_path)])
    assert isinstance(failed, Outcome) and "cannot reach the API server" in failed.message
    why = b.observe_runnable("AMD", 1)
    assert why is not None and "cannot reach the API server" in why[0]


def test_a_missing_kubeconfig_is_said(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path, kubeconfig="no/such/kubeconfig")
    why = b.observe_runnable("NONE", 0)
    assert why is not None and why[0].startswith("target k8s: kubeconfig: ") and "\n" not in why[0]
    [failed] = b.submit([job(tmp_path)])
    assert isinstance(failed, Outcome) and failed.status is Status.FAILURE


def test_a_forbidden_namespace(kube: KubeFixture, tmp_path: Path) -> None:
    kube.kube.forbid("locked")
    b = backend(kube, tmp_path, namespace="locked")
    spec = job(tmp_path)
    [failed] = b.submit([spec])
    assert isinstance(failed, Outcome) and failed.status is Status.FAILURE and not failed.transient
    assert failed.message == (f"cannot create the Job {render.job_name(spec)}: 403 Forbidden: jobs.batch is "
                              'forbidden: User "tester" cannot list resource "jobs" in API group "batch" in the '
                              'namespace "locked"')
    assert spec.log_path is not None and failed.message in spec.log_path.read_text()
    why = b.observe_runnable("NONE", 0)
    assert why is not None and why[0].startswith("target k8s: namespace locked: 403 Forbidden: ")
    with pytest.raises(HostUnavailable):
        b.poll(["anything"])


def test_a_quota_refusing_the_job_removes_what_was_created(kube: KubeFixture, tmp_path: Path) -> None:
    import kmock

    kube.kube.emulator["post", kmock.resource("batch", "v1", "jobs")] << kmock.Response(  # type: ignore[attr-defined]
        status=403, payload={"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                             "code": 403, "message": 'jobs.batch "x" is forbidden: exceeded quota: gpu-quota, '
                                                     "requested: amd.com/gpu=8, used: amd.com/gpu=8, limited: "
                                                     "amd.com/gpu=8"})
    kube.scripts["mad-dummy"] = Script(never=True)  # kmock keeps the refused Job all the same: no pod for it
    b = backend(kube, tmp_path)
    [failed] = b.submit([job(tmp_path)])
    assert isinstance(failed, Outcome) and "exceeded quota: gpu-quota" in failed.message
    assert kube.kube.objects("ConfigMap") == [] and kube.kube.objects("Secret") == []


def test_cancel_deletes_the_job_and_what_goes_with_it(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(unschedulable="no nodes")
    b = backend(kube, tmp_path)
    [handle] = submitted(b, job(tmp_path, nnodes=2))
    wait_for(lambda: len(kube.kube.objects("Pod")) == 2)  # both pods made: the controller is done with the Job
    b.cancel([handle])
    for kind in ("Job", "Pod", "ConfigMap", "Secret", "Service"):
        assert kube.kube.objects(kind) == [], kind
    assert b.poll([handle])[handle] == QueueState(handle, "Deleted", Status.INTERRUPTED, reason="cancelled")
    # another process (a later apply) did not cancel it: to it the Job was deleted outside madengine
    assert backend(kube, tmp_path).poll([handle])[handle].reason == "deleted outside madengine"


def test_run_submits_and_waits(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    b.poll_interval = 0.05  # type: ignore[misc]
    started: list[str] = []
    spec = job(tmp_path)
    outcome = judge_job(spec, b.run(spec, Cancel(on_start=started.append)))
    assert outcome.status is Status.SUCCESS and started == [render.job_name(spec)]


def test_cleanup_of_a_killed_applys_jobs(kube: KubeFixture, tmp_path: Path) -> None:
    kube.scripts["mad-dummy"] = Script(never=True)
    b = backend(kube, tmp_path)
    one, two = submitted(b, job(tmp_path, attempt=1), job(tmp_path, attempt=2))
    other = backend(kube, tmp_path)
    other.workspace = Workspace(root=b.workspace.root, state_dir=b.workspace.state_dir, workspace_id="someoneelse1")
    theirs = submitted(other, job(tmp_path, attempt=3))
    # A sweep removes only what no Job holds any more, never a Job (a later apply waits for it).
    from kubernetes import client

    client.BatchV1Api(kube.kube.api()).delete_namespaced_job(two, "default")
    assert sorted(b.cleanup_orphans(None)) == [f"ConfigMap {two}-run", f"Secret {two}-env"]
    assert kube.kube.objects("Job") == sorted([one, *theirs])
    # The records of a killed apply name its Jobs: those go, with their objects; another workspace's stay.
    removed = b.cleanup_orphans([OrphanRecord(attempt=1, handle=one, host="k8s"),
                                 OrphanRecord(attempt=3, handle=theirs[0], host="k8s")])
    assert removed == [f"Job {one}"]
    assert kube.kube.objects("Job") == theirs
    assert kube.kube.objects("ConfigMap") == [f"{theirs[0]}-run"]


def test_hosts_and_what_plan_asks(kube: KubeFixture, tmp_path: Path) -> None:
    b = backend(kube, tmp_path)
    assert is_batch(b) and b.system == "kubernetes" and b.builds_images
    [host] = b.hosts()
    assert (host.name, host.gpus, host.max_parallel) == ("k8s", None, None)
    assert b.observe_facts() == {} and b.max_nodes() is None
    assert b.observe_runnable("AMD", 8) is None
    assert b.validate(job(tmp_path)) == []
    [problem] = backend(kube, tmp_path, registry=None).validate(job(tmp_path))
    assert "pulls images from a registry" in problem.message


def test_a_tools_wrapper_from_the_package_is_beside_the_run_directory(kube: KubeFixture, tmp_path: Path) -> None:
    """ROCm's tools name `../scripts/common/...` from the run directory: those files (and their directory's)
    travel in the ConfigMap and are mounted beside the run directory, read-only, as the docker backend does."""
    b = backend(kube, tmp_path)
    spec = job(tmp_path, cmd_prefix=("bash", "../scripts/common/tools/wrap.sh"))
    docs = b.manifests(spec)
    assert sorted(docs[0]["data"]) == ["0000....scripts.common.tools.banner.txt",
                                       "0001....scripts.common.tools.wrap.sh", "0002.data.txt", "0003.run.sh"]
    volumes = {v["name"]: v for v in docs[1]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["package-0"]["configMap"]["items"][1] == {"key": "0001....scripts.common.tools.wrap.sh",
                                                             "path": "common/tools/wrap.sh", "mode": 0o644}
    mounts = docs[1]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "package-0", "readOnly": True, "mountPath": "/myworkspace/scripts"} in mounts
    [handle] = submitted(b, spec)
    outcome = collected(b, spec, finish(b, [handle])[handle])
    assert outcome.status is Status.SUCCESS, outcome
    assert spec.log_path is not None and "wrap: a file beside the wrapper\n" in spec.log_path.read_text()
