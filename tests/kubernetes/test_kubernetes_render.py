"""The kubernetes backend's manifests (kubernetes_render), golden and checked against the official schemas."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from madengine.backends import kubernetes_render as render
from madengine.backends.specs import JobSpec
from madengine.compile.ir import DataMount
from tests.infra.kube import expand

pytestmark = pytest.mark.kubernetes

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "kubernetes"
IMAGE = "localhost:5000/madengine/dummy.ubuntu.amd:0123456789ab"
WORKSPACE = "0f1e2d3c4b5a"

JOB = JobSpec(address="job:dummy[batch=8]@mi300x/k8s#1", node_hash="sha256:" + "ab" * 32, model="dummy",
              context="mi300x", target="k8s", script="scripts/dummy/run.sh",
              args=("--batch", "8", "$(MAD_MODEL_NAME)", "$x; rm -rf /"),
              env={"MADENGINE_ATTEMPT": "42", "HF_TOKEN": "hf_secret_value", "HSA_ENABLE_SDMA": "0",
                   "REF": "$(HSA_ENABLE_SDMA)"},
              n_gpus=2, timeout=600, image_tag="madengine/dummy.ubuntu.amd:0123456789ab", image_digest=None,
              multiple_results="perf.csv", gpu_vendor="AMD", docker_options="--shm-size 16g --env X=1")
MULTI = replace(JOB, address="job:train@h100/k8s#1", model="train", context="h100", gpu_vendor="NVIDIA", nnodes=2,
                n_gpus=8, multiple_results="", docker_options="", env={"MADENGINE_ATTEMPT": "7"})
SETTINGS = render.PodSettings(namespace="bench", node_selector={"node.kubernetes.io/instance-type": "mi300x"},
                              tolerations=({"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
                              image_pull_secret="regcred", service_account="bench-runner", ttl_seconds=3600)
FILES = render.run_files([("run.sh", b'#!/bin/bash\necho "performance: $1 samples_per_second"\n', True),
                          ("README", b"notes\n", False), ("data/weights.bin", b"\x00\xff\x10", False)])


def manifests(job: JobSpec = JOB) -> list[dict[str, Any]]:
    return render.manifests(job, image=IMAGE, workspace_id=WORKSPACE, settings=SETTINGS, files=FILES)


def check_golden(name: str, docs: list[dict[str, Any]]) -> None:
    text = render.dump(docs)
    path = GOLDEN / name
    if os.environ.get("MADENGINE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed: review it, then MADENGINE_UPDATE_GOLDEN=1"


def test_job_golden() -> None:
    check_golden("job.yaml", [manifests()[1]])


def test_configmap_golden() -> None:
    check_golden("configmap.yaml", [manifests()[0]])


def test_indexed_job_and_service_golden() -> None:
    docs = manifests(MULTI)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job", "Service"]
    check_golden("indexed-job.yaml", docs[1:])


@pytest.mark.parametrize("job", [JOB, MULTI, replace(JOB, timeout=0, n_gpus=0, docker_options="")],
                         ids=["job", "indexed", "no-gpus"])
def test_every_manifest_passes_the_official_schema_strictly(job: JobSpec) -> None:
    tools = render.run_files([("../scripts/common/wrap.sh", b'"$@"\n', True), ("run.sh", b"true\n", False)])
    docs = [*yaml.safe_load_all(render.dump(manifests(job))),
            *render.manifests(job, image=IMAGE, workspace_id=WORKSPACE, settings=SETTINGS, files=tools),
            render.secret(job, name=render.job_name(job), workspace_id=WORKSPACE, namespace="bench",
                          values={"HF_TOKEN": "x"})]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)


def test_the_schema_check_can_fail() -> None:
    job = manifests()[1]
    job["spec"]["backofLimit"] = 0  # a misspelt key
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.32", strict=True)


def test_yaml_reads_back_as_built() -> None:
    docs = manifests(MULTI) + manifests()
    assert list(yaml.safe_load_all(render.dump(docs))) == docs


def test_values_reach_the_container_as_written_after_kubernetes_expansion() -> None:
    job = manifests()[1]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
    assert env["REF"] == "$(HSA_ENABLE_SDMA)"  # defined before it: Kubernetes would expand it, unescaped
    args = [expand(a, env) for a in container["args"]]
    assert args[-4:] == ["--batch", "8", "$(MAD_MODEL_NAME)", "$x; rm -rf /"]
    assert expand(container["command"][2], env) == render.POD_DRIVER
    # the launcher's own variables are references Kubernetes does expand
    multi = {e["name"]: e for e in manifests(MULTI)[1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "--node_rank=$(NODE_RANK)" in multi["MAD_MULTI_NODE_RUNNER"]["value"]
    assert multi["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == render.COMPLETION_INDEX
    names = [e["name"] for e in manifests(MULTI)[1]["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.index("MAD_MULTI_NODE_RUNNER") > max(names.index(n) for n in ("NODE_RANK", "MASTER_ADDR",
                                                                                  "MASTER_PORT"))


def test_a_secret_is_referenced_never_written() -> None:
    text = render.dump(manifests())
    assert "hf_secret_value" not in text
    env = {e["name"]: e for e in manifests()[1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": render.secret_name(render.job_name(JOB)), "key": "HF_TOKEN"}}}
    assert render.secret_values(JOB, SETTINGS) == {"HF_TOKEN": "hf_secret_value"}


def test_names_are_dns_labels_unique_per_attempt() -> None:
    long = replace(JOB, address="job:" + "Very_Long.Model-Name" * 8 + "[a=1,b=2]@ctx/k8s#12")
    names = {render.job_name(j) for j in (JOB, long, replace(JOB, env={"MADENGINE_ATTEMPT": "43"}),
                                          replace(long, address=long.address.replace("#12", "#13")))}
    assert len(names) == 4
    for name in names:
        assert len(name) <= render.NAME_LIMIT and render._DNS_LABEL.match(name), name
    assert render.job_name(JOB).endswith("-a42")


def test_labels_are_label_values() -> None:
    labels = manifests()[1]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "madengine", "madengine.node": "ab" * 16,
                      "madengine.attempt": "42", "madengine.workspace": WORKSPACE}


def test_what_a_pod_cannot_do_is_refused_not_dropped() -> None:
    cases = [
        (replace(JOB, docker_options="--device /dev/infiniband"), "--device has no Kubernetes form"),
        (replace(JOB, n_gpus=-1), "n_gpus -1 (all of a node's GPUs) needs the target's `gpus:`"),
        (replace(JOB, gpu_vendor="NONE"), "give the target's `gpu_resource:`"),
        (replace(JOB, data_mounts=(DataMount("data/x", "/data", in_project=True),)), "is in the project"),
    ]
    for job, problem in cases:
        found = render.validate_job(job, SETTINGS)
        assert any(problem in p for p in found), (problem, found)
        with pytest.raises(render.KubernetesRenderError):
            manifests(job)
    assert render.validate_job(JOB, SETTINGS) == []
    assert render.validate_job(replace(JOB, n_gpus=-1), replace(SETTINGS, gpus=8)) == []


def test_a_value_given_by_an_env_reference_goes_through_the_secret_whatever_its_name() -> None:
    spec = replace(JOB, env={"NGC_KEY": "supersecret-ngc", "PLAIN": "1"}, referenced=frozenset({"NGC_KEY"}))
    written = render.dump(manifests(spec))
    assert "NGC_KEY" in written and "supersecret-ngc" not in written and render.secret_names(spec.env, spec) == \
        ["NGC_KEY"]
