"""GPU slots: which host of a target runs a job, and on which of its GPUs.

A job of `n_gpus: k` waits for k free GPUs on one host of its target; `-1` means all of that host's
GPUs. A host without a GPU count (`gpus` unset) does not limit jobs by GPUs. A host's `max_parallel`
caps how many jobs run on it at once, whatever their GPUs. Among hosts that fit, the one with the
fewest free GPUs is taken (best fit), which keeps whole hosts free for large jobs. A host found
unreachable takes no more jobs while another host of the target could ever take them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from madengine.backends.session import HostInfo


@dataclass
class Host:
    name: str
    gpus: int | None  # None: not scheduled by GPUs
    max_parallel: int | None = None  # None: no cap besides GPUs
    free: list[int] = field(default_factory=list)
    running: int = 0
    unreachable: bool = False

    def __post_init__(self) -> None:
        self.free = list(range(self.gpus or 0))

    def need(self, n_gpus: int) -> int:
        if self.gpus is None:
            return 0
        return self.gpus if n_gpus < 0 else n_gpus

    def fits_ever(self, n_gpus: int) -> bool:
        return self.need(n_gpus) <= (self.gpus or 0) and self.max_parallel != 0

    def can_take(self, n_gpus: int) -> bool:
        full = self.max_parallel is not None and self.running >= self.max_parallel
        return not full and self.need(n_gpus) <= len(self.free)


@dataclass(frozen=True)
class Slot:
    target: str
    host: str
    gpu_ids: tuple[int, ...]


class Slots:
    def __init__(self, hosts: Mapping[str, Sequence[HostInfo]]) -> None:
        self._hosts = {target: [Host(h.name, h.gpus, h.max_parallel) for h in entries]
                       for target, entries in hosts.items()}

    def names(self, target: str) -> list[str]:
        """The target's hosts, by name."""
        return [h.name for h in self._hosts.get(target, ())]

    def _candidates(self, target: str, only: Sequence[str], n_gpus: int) -> list[Host]:
        hosts = [h for h in self._hosts[target] if not only or h.name in only]
        reachable = [h for h in hosts if not h.unreachable and h.fits_ever(n_gpus)]
        return reachable or hosts  # all the job could use are down: it tries them again (a transient failure)

    def unreachable(self, target: str, host: str) -> None:
        """The host could not be reached: jobs go to the others while they can."""
        for h in self._hosts.get(target, ()):
            h.unreachable = h.unreachable or h.name == host

    def fits_ever(self, target: str, n_gpus: int, only: Sequence[str] = ()) -> bool:
        """Could this job run on some host of the target (of `only`, when given) at all, when every GPU
        is free?"""
        return any(h.fits_ever(n_gpus) for h in self._candidates(target, only, n_gpus))

    def take(self, target: str, n_gpus: int, only: Sequence[str] = ()) -> Slot | None:
        """A host and GPUs for the job now, or None if it must wait. `only`: the hosts it may run on
        (those a model's skip_gpu_arch leaves it; empty: any)."""
        fitting = [h for h in self._candidates(target, only, n_gpus) if h.can_take(n_gpus)]
        if not fitting:
            return None
        if any(h.gpus is not None for h in fitting):
            host = min(fitting, key=lambda h: (len(h.free) - h.need(n_gpus), h.name))
        else:  # no GPUs to fit: the least busy host (the first of equals), so jobs spread over hosts
            host = min(fitting, key=lambda h: h.running)
        need = host.need(n_gpus)
        ids, host.free = host.free[:need], host.free[need:]
        host.running += 1
        return Slot(target, host.name, tuple(ids))

    def give_back(self, slot: Slot) -> None:
        host = next(h for h in self._hosts[slot.target] if h.name == slot.host)
        host.free = sorted({*host.free, *slot.gpu_ids})
        host.running -= 1

    def free_gpus(self, target: str) -> int:
        return sum(len(h.free) for h in self._hosts[target])
