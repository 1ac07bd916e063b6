"""GPU slots: which host of a target runs a job, and on which of its GPUs.

A job of `n_gpus: k` waits for k free GPUs on one host of its target; `-1` means all of that host's
GPUs. A host without a GPU count (`gpus` unset) does not limit jobs by GPUs. A host's `max_parallel`
caps how many jobs run on it at once, whatever their GPUs. Among hosts that fit, the one with the
fewest free GPUs is taken (best fit), which keeps whole hosts free for large jobs. A host found
unreachable takes no more jobs while another host of the target could ever take them.

A job of `nnodes: N` (N > 1) takes N distinct hosts at once, each with its `n_gpus` free, or none at all:
a partial hold would keep hosts from the jobs that could run while it waits for the rest (and two such
jobs holding halves would wait for each other forever). The rest backfill around it as for any job.
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
    host: str  # the job's host; of a multi-node job, its first node (rank 0, the master)
    gpu_ids: tuple[int, ...]
    peers: tuple[tuple[str, tuple[int, ...]], ...] = ()  # a multi-node job's other nodes, by rank, with their GPUs

    @property
    def hosts(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Every node of the job, by rank, with its GPUs."""
        return ((self.host, self.gpu_ids), *self.peers)


class Slots:
    def __init__(self, hosts: Mapping[str, Sequence[HostInfo]]) -> None:
        self._hosts = {target: [Host(h.name, h.gpus, h.max_parallel) for h in entries]
                       for target, entries in hosts.items()}

    def names(self, target: str) -> list[str]:
        """The target's hosts, by name."""
        return [h.name for h in self._hosts.get(target, ())]

    def _candidates(self, target: str, only: Sequence[str], n_gpus: int, nnodes: int = 1) -> list[Host]:
        hosts = [h for h in self._hosts[target] if not only or h.name in only]
        reachable = [h for h in hosts if not h.unreachable and h.fits_ever(n_gpus)]
        # Too few of those the job could use are up: it tries them again (the failure was transient).
        return reachable if len(reachable) >= nnodes else hosts

    def unreachable(self, target: str, host: str) -> None:
        """The host could not be reached: jobs go to the others while they can."""
        for h in self._hosts.get(target, ()):
            h.unreachable = h.unreachable or h.name == host

    def hosts_ever(self, target: str, n_gpus: int, only: Sequence[str] = ()) -> int:
        """How many hosts of the target (of `only`, when given) could take this job, when every GPU is
        free: a job of `nnodes` more than that never runs there."""
        return sum(h.fits_ever(n_gpus) for h in self._hosts.get(target, ()) if not only or h.name in only)

    def fits_ever(self, target: str, n_gpus: int, only: Sequence[str] = (), nnodes: int = 1) -> bool:
        """Could this job run on some host of the target (of `only`, when given) at all, when every GPU
        is free? A job of `nnodes` > 1 needs that many distinct such hosts."""
        return self.hosts_ever(target, n_gpus, only) >= max(1, nnodes)

    def take(self, target: str, n_gpus: int, only: Sequence[str] = (), nnodes: int = 1) -> Slot | None:
        """A host and GPUs for the job now, or None if it must wait. `only`: the hosts it may run on
        (those a model's skip_gpu_arch leaves it; empty: any). `nnodes` > 1: that many distinct hosts,
        all taken at once or none; the first is rank 0."""
        nnodes = max(1, nnodes)
        fitting = [h for h in self._candidates(target, only, n_gpus, nnodes) if h.can_take(n_gpus)]
        if len(fitting) < nnodes or not fitting:
            return None  # nothing is held while it waits
        if any(h.gpus is not None for h in fitting):
            chosen = sorted(fitting, key=lambda h: (len(h.free) - h.need(n_gpus), h.name))[:nnodes]
        else:  # no GPUs to fit: the least busy hosts (the first of equals), so jobs spread over hosts
            chosen = sorted(fitting, key=lambda h: h.running)[:nnodes]
        taken: list[tuple[str, tuple[int, ...]]] = []
        for host in chosen:
            need = host.need(n_gpus)
            taken.append((host.name, tuple(host.free[:need])))
            host.free = host.free[need:]
            host.running += 1
        return Slot(target, taken[0][0], taken[0][1], tuple(taken[1:]))

    def give_back(self, slot: Slot) -> None:
        """Every host of the slot (each node of a multi-node job) gets its GPUs back."""
        for name, ids in slot.hosts:
            host = next(h for h in self._hosts[slot.target] if h.name == name)
            host.free = sorted({*host.free, *ids})
            host.running -= 1

    def free_gpus(self, target: str) -> int:
        return sum(len(h.free) for h in self._hosts[target])


NODES_HINT = "lower the model's nnodes, add hosts to the target, or run it on a slurm or kubernetes target"


def nodes_problem(nnodes: int, n_gpus: int, target: str, hosts: int, among: str = "") -> str:
    """Why a multi-node job never runs on its target (too few hosts), in one line, said at plan and at
    apply after the job's address."""
    gpus = f" (with {n_gpus} GPU{'s' * (n_gpus != 1)} free)" if n_gpus > 0 else ""
    return (f"needs {nnodes} nodes; target {target!r}{among} has {hosts} host{'s' * (hosts != 1)} "
            f"that could take it{gpus}")
