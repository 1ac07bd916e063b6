"""An ansible target's images are delivered by the ssh backend's code: a job placed on a host whose
delivery failed in this command fails there, saying why, before any playbook runs."""

from __future__ import annotations

from pathlib import Path

from madengine.backends.ansible import AnsibleBackend
from madengine.backends.base import ATTEMPT_ENV, Cancel, Workspace
from madengine.backends.specs import JobSpec
from madengine.madfile.model import AnsibleTarget
from madengine.state.model import Status


def test_a_job_on_a_host_its_image_was_not_delivered_to_fails_saying_why(tmp_path: Path) -> None:
    target = AnsibleTarget.model_validate({"backend": "ansible", "container": "docker", "workdir": "/srv/mad",
                                           "hosts": [{"name": "lo", "address": "127.0.0.1", "port": 1}]})
    b = AnsibleBackend("lab", target, Workspace(tmp_path, tmp_path / ".madengine", "ws-test"))
    b._ssh()._undelivered["madengine/x:1", "lo"] = "lo: docker load: no space left on device"  # as a failed deliver
    log = tmp_path / "job.log"
    job = JobSpec(address="job:m@cpu/lab#1", node_hash="sha256:00", model="m", context="cpu", target="lab",
                  script="scripts/m/run.sh", args=(), env={ATTEMPT_ENV: "1"}, n_gpus=0, timeout=60,
                  image_tag="madengine/x:1", image_digest=None, log_path=log, host="lo")
    outcome = b.run(job, Cancel())
    assert outcome.status is Status.FAILURE and outcome.host == "lo"
    assert outcome.message == "lo: image madengine/x:1 was not delivered here: docker load: no space left on device"
    assert outcome.message in log.read_text()
