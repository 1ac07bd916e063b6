"""Observing facts never fails a plan: a host that cannot be reached, a backend that cannot be made or
that does not answer are facts unknown, with why; the other targets' facts are there."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from madengine.backends.base import Backend
from madengine.backends.session import HostInfo, HostUnavailable
from madengine.errors import ConfigError
from madengine.facts.model import HostFacts
from madengine.plan.observe import observe_facts
from tests.unit.apply.fake_backend import FakeBackend

N1 = HostFacts(hostname="n1", gpu_vendor="AMD", gpu_count=8, gpu_arch="gfx942", rocm="6.3.1")


class Broken(FakeBackend):
    def observe_facts(self) -> Mapping[str, HostFacts | HostUnavailable]:
        raise RuntimeError("the engine\nhung up")


class Backends(Mapping[str, Backend]):
    """As LazyBackends: made on first use; `missing` names a backend that is not installed."""

    def __init__(self, made: dict[str, Backend], missing: str) -> None:
        self.made, self.missing = made, missing

    def __getitem__(self, name: str) -> Backend:
        if name == self.missing:
            raise ConfigError(f"no backend named {name!r} is installed")
        return self.made[name]

    def __iter__(self) -> Iterator[str]:
        return iter([*self.made, self.missing])

    def __len__(self) -> int:
        return len(self.made) + 1


def test_facts_of_what_can_be_observed_and_why_the_rest_cannot() -> None:
    lab = FakeBackend(hosts_=[HostInfo("n1", 8), HostInfo("n2", 8)], facts={"n1": N1, "n2": "connection refused"})
    backends = Backends({"lab": lab, "hung": Broken()}, missing="slurmy")
    facts, unknown = observe_facts(backends, ["lab", "hung", "slurmy", "not-a-target"])
    assert facts == {("lab", "n1"): N1}
    assert unknown == {("lab", "n2"): "connection refused", ("hung", ""): "the engine hung up",
                       ("slurmy", ""): "no backend named 'slurmy' is installed"}
    assert observe_facts(backends, []) == ({}, {})


def test_the_hosts_whose_facts_are_unknown_are_named_once_each() -> None:
    from madengine.plan.render import facts_notes
    from madengine.state.model import Observed

    observed = Observed(serial=1, images={}, latest={}, facts={("lab", "n1"): N1},
                        facts_unknown={("lab", "n3"): "connection refused", ("dock", ""): "engine down"})
    assert facts_notes(observed) == [
        "facts of dock unknown (engine down): its jobs are planned without them",
        "facts of lab/n3 unknown (connection refused): its jobs are planned without them"]
    assert facts_notes(Observed(serial=1, images={}, latest={})) == []
