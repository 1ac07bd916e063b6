"""GPU slots: best fit, -1 = a whole host, hosts without a GPU count are not limited."""

from __future__ import annotations

from madengine.apply.slots import Slots


def test_best_fit_keeps_a_whole_host_free() -> None:
    slots = Slots({"lab": [("a", 8), ("b", 8)]})
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
    slots = Slots({"lab": [("a", 4)]})
    assert slots.fits_ever("lab", 4) and slots.fits_ever("lab", -1)
    assert not slots.fits_ever("lab", 8)


def test_hosts_without_gpu_counts_do_not_limit() -> None:
    slots = Slots({"here": [("me", None)]})
    taken = [slots.take("here", 8) for _ in range(5)]
    assert all(t is not None and t.gpu_ids == () for t in taken)
    assert slots.fits_ever("here", 64)
