"""The docker backend's facts: a local socket's engine runs its containers on this machine, whose facts
they are; a remote engine's host is another machine, whose facts are not taken for this one's."""

from __future__ import annotations

from pathlib import Path

from madengine.backends.base import Workspace
from madengine.backends.docker import DockerBackend
from madengine.madfile.model import DockerTarget


def test_a_remote_engine_observes_no_facts_and_asks_it_nothing(tmp_path: Path) -> None:
    workspace = Workspace(root=tmp_path, state_dir=tmp_path / ".madengine", workspace_id="w")
    backend = DockerBackend("far", DockerTarget(backend="docker", host="tcp://192.0.2.1:2375"), workspace)
    assert backend.observe_facts() == {}
    assert workspace.facts.known() == {}  # nothing probed either
