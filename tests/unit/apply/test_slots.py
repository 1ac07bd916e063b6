"""GPU slots: best fit, -1 = a whole host, hosts without a GPU count are not limited."""

from __future__ import annotations

from madengine.backends.session import HostInfo
from madengine.backends.slots import Slots


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


def test_a_multi_node_job_takes_all_its_hosts_at_once_or_none() -> None:
    slots = Slots({"lab": [HostInfo("a", 2), HostInfo("b", 2), HostInfo("c", 2)]})
    single = slots.take("lab", 2)
    assert single is not None and single.host == "a"
    assert slots.take("lab", 1, nnodes=3) is None  # a is full: nothing of b or c is held meanwhile
    assert slots.free_gpus("lab") == 4
    pair = slots.take("lab", 1, nnodes=2)  # backfills beside the single job
    assert pair is not None and [h for h, _ in pair.hosts] == ["b", "c"] and pair.gpu_ids == (0,)
    assert pair.peers == (("c", (0,)),)
    slots.give_back(single)
    slots.give_back(pair)
    assert slots.free_gpus("lab") == 6
    three = slots.take("lab", 2, nnodes=3)
    assert three is not None and sorted(h for h, _ in three.hosts) == ["a", "b", "c"]
    assert all(ids == (0, 1) for _, ids in three.hosts) and slots.free_gpus("lab") == 0
    slots.give_back(three)
    assert slots.free_gpus("lab") == 6


def test_a_multi_node_job_needs_that_many_distinct_hosts_ever() -> None:
    slots = Slots({"lab": [HostInfo("a", 8), HostInfo("b", 8), HostInfo("c", 2)]})
    assert slots.fits_ever("lab", 4, nnodes=2) and not slots.fits_ever("lab", 4, nnodes=3)
    assert slots.hosts_ever("lab", 4) == 2 and slots.hosts_ever("lab", 4, only=["a", "c"]) == 1
    assert slots.fits_ever("lab", 2, nnodes=3) and not slots.fits_ever("lab", 2, nnodes=4)
    assert not slots.fits_ever("lab", 1, only=["a"], nnodes=2)
    # Hosts not scheduled by GPUs: each counts once, however many jobs it runs at once.
    free = Slots({"lab": [HostInfo("a", None), HostInfo("b", None)]})
    assert free.fits_ever("lab", 0, nnodes=2) and not free.fits_ever("lab", 0, nnodes=3)
    both = free.take("lab", 0, nnodes=2)
    again = free.take("lab", 0, nnodes=2)
    assert both is not None and again is not None and {both.host, *(h for h, _ in both.peers)} == {"a", "b"}


def test_hosts_capped_by_max_parallel_hold_a_multi_node_job_until_enough_are_free() -> None:
    slots = Slots({"lab": [HostInfo(n, None, max_parallel=1) for n in ("a", "b", "c")]})
    one = slots.take("lab", 0)
    assert one is not None
    assert slots.take("lab", 0, nnodes=3) is None
    two = slots.take("lab", 0, nnodes=2)
    assert two is not None and one.host not in [h for h, _ in two.hosts]
    slots.give_back(one)
    slots.give_back(two)
    assert slots.take("lab", 0, nnodes=3) is not None


def test_a_multi_node_job_avoids_an_unreachable_host_while_enough_others_fit() -> None:
    slots = Slots({"lab": [HostInfo("a", 4), HostInfo("b", 4), HostInfo("c", 4)]})
    slots.unreachable("lab", "a")
    pair = slots.take("lab", 1, nnodes=2)
    assert pair is not None and sorted(h for h, _ in pair.hosts) == ["b", "c"]
    assert slots.take("lab", 4, nnodes=2) is None  # b and c have 3 free each: it waits for them, not for a
    slots.give_back(pair)
    three = slots.take("lab", 1, nnodes=3)  # needs a too: tried again there (the failure was transient)
    assert three is not None and sorted(h for h, _ in three.hosts) == ["a", "b", "c"]
    assert slots.fits_ever("lab", 4, nnodes=3)
