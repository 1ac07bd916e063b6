"""What a ROCm-style runner command means, as a madfile realized in memory: its inventory (read strictly,
errors at the inventory's file:line:col) and the models of a build manifest or of --tags. Shared by
`runner ssh|ansible|slurm|k8s`, and by `generate slurm|k8s --manifest-file`, which writes what the
runner would submit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from madengine.pipeline import Realization

DEFAULT_MANIFEST = Path("build_manifest.json")
_NODES = "`nodes: [{hostname: gpu-1, address: 10.0.0.5}]`"
_FORMATS = {"ssh": _NODES, "ansible": _NODES, "slurm": "`slurm_cluster: {partitions: [...], workspace: {...}}`",
            "kubernetes": "`pods: [{name, node_selector, resources}]`"}


@dataclass(frozen=True)
class RunnerInput:
    realization: Realization
    inventory: Path
    nodes: int  # the inventory's nodes (1 for a cluster: its system places the jobs)
    parallelism: int  # jobs at once over all nodes


def runner_input(backend: str, base: Path, inventory: Path, manifest_file: Path | None, tags: list[str], *,
                 parallelism: int | None = None, namespace: str | None = None,
                 registry: str | None = None) -> RunnerInput:
    """The in-memory madfile of a runner command in the MAD package at `base`, realized (not yet planned)."""
    from madengine.compat import runner
    from madengine.compat.cluster_inventory import read_k8s_inventory, read_slurm_inventory
    from madengine.compat.rocm import generated_path
    from madengine.errors import ConfigError
    from madengine.mad.tags import split_tags
    from madengine.madfile.inventory import read_inventory
    from madengine.madfile.locate import display_path
    from madengine.pipeline import realization

    path = base / inventory
    if not path.exists():
        raise ConfigError(f"the inventory {display_path(path)} does not exist", file=display_path(path),
                          hint=f"name the inventory with --inventory FILE (ROCm's format: {_FORMATS[backend]})")
    # The inventory's errors at its file:line:col, before anything else.
    if backend in ("ssh", "ansible"):
        hosts = read_inventory(path)
        selected, registry = models(base, manifest_file, tags)
        args = runner.RunnerArgs(backend="ssh" if backend == "ssh" else "ansible", inventory=path.absolute(),
                                 hosts=hosts, tags=split_tags(selected), registry=registry, parallelism=parallelism)
        text, nodes, (total, _) = runner.madfile_text(args), len(hosts), runner.parallelism(args)
    else:
        meant = read_slurm_inventory(path) if backend == "slurm" else read_k8s_inventory(path, namespace)
        selected, named = models(base, manifest_file, tags)
        if named and registry and named != registry:
            from madengine.errors import UsageError

            raise UsageError(f"--registry {registry} is not the build manifest's registry ({named})",
                             hint="the images are where the manifest's build pushed them: drop --registry")
        registry = named or registry
        if registry is None:
            from madengine.errors import UsageError

            raise UsageError(f"the images of a {backend} target must be in a registry its nodes pull from",
                             hint="give --registry HOST:PORT (images built for --tags are pushed there), or "
                             "--manifest-file of a `madengine build --registry` that pushed them")
        # Workers only collect finished jobs: the cluster's queue holds the rest, not a thread each.
        text, nodes, total = runner.cluster_madfile_text(meant, split_tags(selected), registry), 1, 8
    return RunnerInput(realization(generated_path(base), locked=False, text=text), path, nodes, total)


def models(base: Path, manifest_file: Path | None, tags: list[str]) -> tuple[list[str], str | None]:
    """The tags to run and the registry their images come from: --tags over the package, or the build
    manifest's models (its registry either way, when one is given)."""
    from madengine.errors import UsageError
    from madengine.results.manifest import read_build_manifest

    if manifest_file is None and tags:
        return tags, None
    path = base / (manifest_file or DEFAULT_MANIFEST)
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise UsageError(f"the build manifest {path} {what}",
                         hint="write it with `madengine build --tags T --registry HOST:PORT` (the images are pushed "
                         "there for the nodes to pull), or name the models with --tags")
    manifest_tags, registry = read_build_manifest(path)
    return tags or manifest_tags, registry
