"""GPU slots: best fit, -1 = a whole host, hosts without a GPU count are not limited."""

from __future__ import annotations

from madengine.apply.slots import Slots
from madengine.backends.session import HostInfo


def test_best_fit_keeps_a_whole_host_free() -> None:
    slots = Slots({"lab": [HostInfo("a", 8), HostInfo("b", 8)]})
    first = slots.take("lab", 2)
    assert first is not None and first.host == "a" and first.gpu_ids == (0, 1)
    second = slots.take("lab", 4)
    assert second is not None and second.host == "a"  # fits in a's 6 free GPUs: b stays whole
    whole = slots.take("lab", -1)
    assert whole is not None and whole.host == "b" and whole.gpu_ids == tuple(range(8))
    assert slots.take("lab", 4) is None  # a has 2 left, b is taken
    small = slots.take("lab", 2)
    assert small is not None and small.gpu_ids == (6, 7)
    slots.give_back(first)
    assert slots.free_gpus("lab") == 2


def test_a_job_larger_than_every_host_never_fits() -> None:
    slots = Slots({"lab": [HostInfo("a", 4)]})
    assert slots.fits_ever("lab", 4) and slots.fits_ever("lab", -1)
    assert not slots.fits_ever("lab", 8)


def test_hosts_without_gpu_counts_do_not_limit() -> None:
    slots = Slots({"here": [HostInfo("me", None)]})
    taken = [slots.take("here", 8) for _ in range(5)]
    assert all(t is not None and t.gpu_ids == () for t in taken)
    assert slots.fits_ever("here", 64)


def test_max_parallel_caps_the_jobs_of_a_host_besides_its_gpus() -> None:
    slots = Slots({"lab": [HostInfo("a", 4, max_parallel=2), HostInfo("b", 8, max_parallel=1)]})
    first, second = slots.take("lab", 1), slots.take("lab", 1)
    assert first is not None and second is not None and (first.host, second.host) == ("a", "a")
    third = slots.take("lab", 1)  # a has GPUs left (the best fit) but runs two jobs: b takes it
    assert third is not None and third.host == "b"
    assert slots.take("lab", 1) is None  # both hosts are at their cap, with 9 GPUs free
    slots.give_back(first)
    again = slots.take("lab", 1)
    assert again is not None and again.host == "a" and again.gpu_ids == first.gpu_ids


def test_hosts_without_gpus_take_jobs_in_turn() -> None:
    slots = Slots({"lab": [HostInfo("a", None), HostInfo("b", None, max_parallel=1)]})
    taken = [slots.take("lab", 0) for _ in range(3)]
    assert [s.host for s in taken if s is not None] == ["a", "b", "a"]


def test_a_host_that_takes_no_job_never_fits() -> None:
    assert not Slots({"lab": [HostInfo("a", 8, max_parallel=0)]}).fits_ever("lab", 1)


def test_an_unreachable_host_takes_no_job_another_host_could_ever_take() -> None:
    slots = Slots({"lab": [HostInfo("a", 4), HostInfo("b", 8)]})
    slots.unreachable("lab", "a")
    taken = [slots.take("lab", 1) for _ in range(3)]
    assert [t.host for t in taken if t is not None] == ["b", "b", "b"]  # a (the best fit) is passed over
    big = slots.take("lab", 4)
    assert big is not None and big.host == "b"
    assert slots.take("lab", 2) is None  # b is full: the job waits for b rather than go to the host that is down
    only_a = slots.take("lab", 1, only=["a"])  # the only host it may use: tried again (the failure was transient)
    assert only_a is not None and only_a.host == "a"


def test_a_job_only_an_unreachable_host_fits_is_tried_there() -> None:
    slots = Slots({"lab": [HostInfo("a", 8), HostInfo("b", 2)]})
    slots.unreachable("lab", "a")
    assert slots.fits_ever("lab", 8)
    taken = slots.take("lab", 8)
    assert taken is not None and taken.host == "a"
