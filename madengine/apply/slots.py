"""GPU slots: which host of a target runs a job, and on which of its GPUs.

A job of `n_gpus: k` waits for k free GPUs on one host of its target; `-1` means all of that host's
GPUs. A host without a GPU count (`gpus` unset) does not limit jobs by GPUs. Among hosts that fit,
the one with the fewest free GPUs is taken (best fit), which keeps whole hosts free for large jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Host:
    name: str
    gpus: int | None  # None: not scheduled by GPUs
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = list(range(self.gpus or 0))

    def need(self, n_gpus: int) -> int:
        if self.gpus is None:
            return 0
        return self.gpus if n_gpus < 0 else n_gpus


@dataclass(frozen=True)
class Slot:
    target: str
    host: str
    gpu_ids: tuple[int, ...]


class Slots:
    def __init__(self, hosts: dict[str, Sequence[tuple[str, int | None]]]) -> None:
        self._hosts = {target: [Host(name, gpus) for name, gpus in entries] for target, entries in hosts.items()}

    def fits_ever(self, target: str, n_gpus: int) -> bool:
        """Could this job run on some host of the target at all (when every GPU is free)?"""
        return any(h.need(n_gpus) <= (h.gpus if h.gpus is not None else 0) for h in self._hosts[target])

    def take(self, target: str, n_gpus: int) -> Slot | None:
        """A host and GPUs for the job now, or None if it must wait."""
        fitting = [h for h in self._hosts[target] if h.need(n_gpus) <= len(h.free)]
        if not fitting:
            return None
        host = min(fitting, key=lambda h: (len(h.free) - h.need(n_gpus), h.name)) \
            if any(h.gpus is not None for h in fitting) else fitting[0]
        need = host.need(n_gpus)
        ids, host.free = host.free[:need], host.free[need:]
        return Slot(target, host.name, tuple(ids))

    def give_back(self, slot: Slot) -> None:
        host = next(h for h in self._hosts[slot.target] if h.name == slot.host)
        host.free = sorted({*host.free, *slot.gpu_ids})

    def free_gpus(self, target: str) -> int:
        return sum(len(h.free) for h in self._hosts[target])
