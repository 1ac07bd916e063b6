"""ROCm madengine's `runner ssh|ansible`, translated into a madfile. Pure: arguments in, madfile text out.

`madengine runner ssh --inventory nodes.yml --tags dummy` in a MAD package is `run --tags dummy` with one
target made of the inventory's nodes:

    targets: {ssh: {backend: ssh, inventory: /abs/path/nodes.yml, max_parallel_per_host: 1}}
    contexts: {default: {gpu_vendor: <the nodes' GPUs>, guest_os: UBUNTU}}

which is then validated, compiled, locked (in memory), planned and applied like any madfile. What differs
from ROCm's runner, on purpose:

- Each model runs once, on whichever node has room (the GPU-slot scheduler places it), not once on every
  node: a fleet is one pool of machines. Nodes run in parallel, each one job at a time as ROCm's nodes do
  (`madengine-cli run` there runs its models one after another); `--parallelism N` allows N jobs at once,
  spread evenly (at most ceil(N / nodes) per node), GPUs permitting.
- The context's `gpu_vendor` is the vendor of the nodes that have GPUs (`gpu_count` > 0; all the same), or
  NONE when no node has any: the jobs run there, not on this machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from madengine.compat.cluster_inventory import Meant
from madengine.compat.rocm import RocmArgs
from madengine.compat.rocm import madfile_text as rocm_madfile_text
from madengine.errors import UsageError
from madengine.madfile.model import Host

RunnerBackend = Literal["ssh", "ansible"]


@dataclass(frozen=True)
class RunnerArgs:
    backend: RunnerBackend
    inventory: Path  # absolute: the generated madfile names it
    hosts: Sequence[Host]  # the inventory's nodes, as read (for the vendor and the parallelism)
    tags: Sequence[str]
    registry: str | None = None
    parallelism: int | None = None  # jobs at once over all nodes; None: one per node


def gpu_vendor(hosts: Sequence[Host]) -> str:
    """The context's GPU vendor: that of the nodes with GPUs, NONE when none has any."""
    vendors: dict[str, list[str]] = {}
    for host in hosts:
        if host.gpus:
            vendors.setdefault(host.gpu_vendor or "AMD", []).append(host.label)
    if len(vendors) > 1:
        which = "; ".join(f"{vendor}: {', '.join(names)}" for vendor, names in sorted(vendors.items()))
        raise UsageError(f"the inventory's nodes have GPUs of several vendors ({which})",
                         hint="one runner command runs one context: give each vendor's nodes an inventory of their "
                         "own, or write a madfile with a target and a context per vendor")
    return next(iter(vendors), "NONE")


def parallelism(args: RunnerArgs) -> tuple[int, int]:
    """(jobs at once over all nodes, jobs at once per node)."""
    nodes = max(1, len(args.hosts))
    if args.parallelism is None:
        return nodes, 1
    return args.parallelism, math.ceil(args.parallelism / nodes)


def madfile_text(args: RunnerArgs) -> str:
    """The madfile the runner command means (JSON, which the loader reads as the YAML it is)."""
    _, per_node = parallelism(args)
    target = {"inventory": str(args.inventory), "max_parallel_per_host": per_node}
    return rocm_madfile_text(RocmArgs(tags=args.tags, additional_context={"gpu_vendor": gpu_vendor(args.hosts)},
                                      backend=args.backend, registry=args.registry, target=target))


def cluster_madfile_text(meant: Meant, tags: Sequence[str], registry: str | None) -> str:
    """The madfile of `runner slurm|k8s`: one target, the inventory's cluster; the context's vendor is its
    GPUs' and its environment the inventory's."""
    target = {k: v for k, v in meant.target.items() if k != "backend"}
    context = {"gpu_vendor": meant.gpu_vendor, **({"docker_env_vars": dict(meant.env)} if meant.env else {})}
    return rocm_madfile_text(RocmArgs(tags=tags, additional_context=context, backend=str(meant.target["backend"]),
                                      registry=registry, target=target))
