"""`madengine generate ansible|slurm -o DIR`: what a backend would submit, for review or hand-off (DESIGN §6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from madengine.cli.options import ChdirOption, FileOption, JsonOption, SelectOption, TargetOption

if TYPE_CHECKING:
    from madengine.backends.specs import JobSpec
    from madengine.compile.ir import Project
    from madengine.lock.lockfile import Lock


def register(app: typer.Typer) -> None:
    generate_app = typer.Typer(name="generate", help="Write what a backend would submit, for review or hand-off.",
                               no_args_is_help=True, rich_markup_mode=None)
    generate_app.command("ansible")(ansible)
    generate_app.command("slurm")(slurm)
    generate_app.command("k8s")(k8s)
    app.add_typer(generate_app, name="generate")


def ansible(
    output: Path = typer.Option(..., "-o", "--output", metavar="DIR",
                                help="Where to write them: DIR/TARGET/ for each ansible target."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    target: list[str] = TargetOption,
    select: list[str] = SelectOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the inventory, playbook, ansible.cfg and run directories of the ansible targets' jobs.

    Each DIR/TARGET/ runs as it is: `cd DIR/TARGET && ansible-playbook -i inventory.yml playbook.yml`
    (one play per job, on the host it is placed on; logs and results come back to results/JOB/).
    """
    import sys

    from madengine.backends.ansible import AnsibleBackend
    from madengine.backends.ansible_render import job_name
    from madengine.backends.base import Workspace
    from madengine.cli import output as out
    from madengine.cli.options import madfile_path
    from madengine.errors import UsageError
    from madengine.madfile.locate import display_path
    from madengine.madfile.model import AnsibleTarget
    from madengine.pipeline import lock_project

    output = (chdir or Path()) / output  # as if started in -C's directory
    locked = lock_project(madfile_path(file, chdir), resolve=lambda ref: None)
    project = locked.project
    by_target = _backend_jobs(locked.lock, project, select, target, "ansible")
    if not by_target:
        named = f" among {', '.join(target)}" if target else ""
        raise UsageError(f"no jobs on an ansible target{named}",
                         hint="give a target `backend: ansible` and run models on it (`runs:`), or check --select")
    root = locked.loaded.path.parent
    workspace = Workspace(root=root, state_dir=root / ".madengine", workspace_id="generated")
    written: dict[str, list[str]] = {}
    for name, jobs in by_target.items():
        config = project.targets[name]
        assert isinstance(config, AnsibleTarget)  # _backend_jobs keeps ansible targets' jobs only
        backend = AnsibleBackend(name, config, workspace)
        directory = output / name
        files = backend.generate(jobs, directory)
        written[name] = [display_path(p) for p in files] + [display_path(directory / "runs" / job_name(j.address))
                                                             + "/" for j in jobs]
    mark_generated(output)
    if as_json:
        out.print_json({"targets": {n: {"directory": display_path(output / n), "files": f}
                                    for n, f in written.items()}})
        return
    for name, jobs in by_target.items():
        sys.stdout.write(f"{display_path(output / name)}/: inventory.yml, playbook.yml, ansible.cfg, "
                         f"{len(jobs)} run director{'y' if len(jobs) == 1 else 'ies'} (target {name})\n")


ManifestOption = typer.Option(None, "--manifest-file", "-m", metavar="FILE",
                              help="ROCm's way: the models of this build_manifest.json (and its registry) on the "
                              "cluster of --inventory, as `madengine runner` submits them; instead of a madfile.")


def _refused_environment(value: str | None) -> str | None:
    if value is not None:
        from madengine.errors import UsageError

        raise UsageError("--environment is not supported by madengine's generate",
                         hint="ROCm's --environment picks a file of cluster settings: madengine reads them from "
                         "the madfile's target, or from --inventory (ROCm's inventory format)")
    return value


EnvironmentOption = typer.Option(None, "--environment", hidden=True, callback=_refused_environment)


def slurm(
    output: Path = typer.Option(..., "-o", "--output", "--output-dir", metavar="DIR",
                                help="Where to write them: DIR/TARGET/ for each slurm target."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    target: list[str] = TargetOption,
    select: list[str] = SelectOption,
    manifest_file: Path | None = ManifestOption,
    inventory: Path | None = typer.Option(None, "--inventory", "-i", metavar="FILE",
                                          help="With --manifest-file: ROCm's SLURM inventory (`slurm_cluster:`)."),
    environment: str | None = EnvironmentOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the sbatch scripts of the slurm targets' jobs, exactly as the backend submits them.

    Each DIR/TARGET/ holds jobs/*.sbatch (one per job, or per job array of one image and shape), the run
    directories and MAD package to copy into the target's shared_dir, and submit.sh, which copies them
    there and submits the scripts in order (run it on the login node). Images are pulled by the nodes
    from the registry: push them first (`madengine build`). With --manifest-file and --inventory (in a MAD
    package, as ROCm's `generate slurm`), the scripts are those `madengine runner slurm` submits; it checks
    them with --job-scripts-dir DIR.
    """
    import sys

    from madengine.cli import output as out
    from madengine.madfile.locate import display_path

    output = (chdir or Path()) / output  # as if started in -C's directory
    source = _source("slurm", file, chdir, manifest_file, inventory)
    written = write_slurm(source, output, select, target)
    if as_json:
        out.print_json({"targets": {n: {"directory": display_path(output / n), "files": [display_path(p) for p in f]}
                                    for n, (f, _) in written.items()}})
        return
    for name, (paths, jobs) in written.items():
        scripts = len(paths) - 1
        sys.stdout.write(f"{display_path(output / name)}/: {scripts} sbatch script{'' if scripts == 1 else 's'}, "
                         f"submit.sh, {jobs} run director{'y' if jobs == 1 else 'ies'} (target {name})\n")


@dataclass(frozen=True)
class Source:
    """What generate writes from: a madfile's lock and project, or those of a runner's in-memory madfile."""

    lock: Lock
    project: Project
    root: Path  # the madfile's directory


def _source(backend: str, file: Path | None, chdir: Path | None, manifest_file: Path | None,
            inventory: Path | None, namespace: str | None = None) -> Source:
    from madengine.cli.options import madfile_path
    from madengine.errors import UsageError
    from madengine.pipeline import lock_project

    if manifest_file is None and inventory is None:
        locked = lock_project(madfile_path(file, chdir), resolve=lambda ref: None)
        return Source(locked.lock, locked.project, locked.loaded.path.parent)
    if manifest_file is None or inventory is None:
        given = "--manifest-file" if manifest_file is not None else "--inventory"
        raise UsageError(f"{given} needs {'--inventory' if manifest_file is not None else '--manifest-file'} too",
                         hint="both say what `madengine runner` would submit: the build manifest's models on the "
                         "inventory's cluster; or give neither, to write the madfile's targets")
    if file is not None:
        raise UsageError("-f/--file and --manifest-file/--inventory are two sources; give one",
                         hint="a madfile's targets, or ROCm's build manifest and inventory")
    from madengine.cli.runner_input import runner_input

    r = runner_input(backend, chdir or Path(), inventory, manifest_file, [], namespace=namespace).realization
    return Source(r.lock, r.compiled(), r.workspace.root)


def writer(backend: str) -> Callable[[Source, Path, list[str], list[str]], Mapping[str, tuple[list[Path], int]]]:
    """What writes a backend's files (`write_slurm`...), for `generate` and the runners that check them."""
    return {"slurm": write_slurm, "kubernetes": write_k8s}[backend]


def write_slurm(source: Source, output: Path, select: list[str],
                target: list[str]) -> dict[str, tuple[list[Path], int]]:
    """Write the slurm targets' scripts under `output`; per target, the files written and its job count."""
    from madengine.backends.base import Workspace
    from madengine.backends.session import HostUnavailable
    from madengine.backends.slurm import SlurmBackend
    from madengine.errors import MadengineError, UsageError
    from madengine.madfile.model import SlurmTarget

    project = source.project
    by_target = _backend_jobs(source.lock, project, select, target, "slurm")
    if not by_target:
        named = f" among {', '.join(target)}" if target else ""
        raise UsageError(f"no jobs on a slurm target{named}",
                         hint="give a target `backend: slurm` and run models on it (`runs:`), or check --select")
    workspace = Workspace(root=source.root, state_dir=source.root / ".madengine", workspace_id="generated")
    written: dict[str, tuple[list[Path], int]] = {}
    for name, jobs in by_target.items():
        config = project.targets[name]
        assert isinstance(config, SlurmTarget)  # _backend_jobs keeps slurm targets' jobs only
        backend = SlurmBackend(name, config, workspace, registry=project.registry)
        try:
            files = backend.generate(jobs, output / name)
        except HostUnavailable as e:  # `~` in shared_dir is the login node's home: asked of it
            raise MadengineError(f"target {name}: cannot ask the login node where shared_dir is: {e.reason}",
                                 hint=e.diagnostics[0].hint or "give shared_dir as an absolute path") from None
        except (OSError, ValueError) as e:  # RunDirConflict: a pre/post script would replace another file
            raise MadengineError(f"target {name}: cannot write its scripts: {e}") from None
        finally:
            backend.close()
        written[name] = (list(files), len(jobs))
    mark_generated(output)
    return written


def k8s(
    output: Path = typer.Option(..., "-o", "--output", "--output-dir", metavar="DIR",
                                help="Where to write them: DIR/TARGET/JOB.yaml for each job of a kubernetes target."),
    namespace: str | None = typer.Option(None, "--namespace", metavar="NAMESPACE",
                                         help="The namespace of every manifest, instead of the targets' own."),
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    target: list[str] = TargetOption,
    select: list[str] = SelectOption,
    manifest_file: Path | None = ManifestOption,
    inventory: Path | None = typer.Option(None, "--inventory", "-i", metavar="FILE",
                                          help="With --manifest-file: ROCm's Kubernetes inventory (`pods:`)."),
    environment: str | None = EnvironmentOption,
    as_json: bool = JsonOption,
) -> None:
    """Write the manifests the kubernetes targets' jobs would be submitted as, one file per job.

    Each DIR/TARGET/JOB.yaml holds the job's ConfigMap (its run directory), its Job, and for a multi-node
    job its headless Service: `kubectl apply -f DIR/TARGET/JOB.yaml`. A job's secret variables are never
    written: the file's first lines name the Secret and keys its Job reads them from. With --manifest-file
    and --inventory (in a MAD package, as ROCm's `generate k8s`), the manifests are those `madengine runner
    k8s` creates; it checks them with --manifests-dir DIR.
    """
    import re
    import sys

    from madengine.cli import output as out
    from madengine.errors import UsageError
    from madengine.madfile.locate import display_path

    if namespace is not None and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", namespace):
        raise UsageError(f"--namespace {namespace!r} is not a Kubernetes namespace name",
                         hint="at most 63 lowercase letters, digits and `-`, beginning and ending with a letter or "
                         "digit")
    output = (chdir or Path()) / output  # as if started in -C's directory
    source = _source("kubernetes", file, chdir, manifest_file, inventory, namespace)
    written = write_k8s(source, output, select, target, namespace)
    if as_json:
        out.print_json({"targets": {n: {"directory": display_path(output / n), "files": [display_path(p) for p in f]}
                                    for n, (f, _) in written.items()}})
        return
    for name, (files, _) in written.items():
        sys.stdout.write(f"{display_path(output / name)}/: {len(files)} manifest file{'' if len(files) == 1 else 's'} "
                         f"(target {name})\n")


def write_k8s(source: Source, output: Path, select: list[str], target: list[str],
              namespace: str | None = None) -> dict[str, tuple[list[Path], int]]:
    """Write the kubernetes targets' manifests under `output` (DIR/TARGET/JOB.yaml), every namespace
    `namespace` when given; per target, the files written and its job count."""
    import tempfile

    from madengine.backends import kubernetes_render as render
    from madengine.backends.base import Workspace
    from madengine.backends.kubernetes import KubernetesBackend
    from madengine.errors import UsageError
    from madengine.madfile.model import KubernetesTarget

    lock, project, root = source.lock, source.project, source.root
    by_target = _backend_jobs(lock, project, select, target, "kubernetes")
    if not by_target:
        named = f" among {', '.join(target)}" if target else ""
        raise UsageError(f"no jobs on a kubernetes target{named}",
                         hint="give a target `backend: kubernetes` and run models on it (`runs:`), or check --select")
    written: dict[str, tuple[list[Path], int]] = {}
    with tempfile.TemporaryDirectory(prefix="madengine-generate-") as staging:  # run directories, then dropped
        workspace = Workspace(root=root, state_dir=Path(staging), workspace_id="generated")
        for name, jobs in by_target.items():
            config = project.targets[name]
            assert isinstance(config, KubernetesTarget)  # _backend_jobs keeps kubernetes targets' jobs only
            if namespace is not None:
                config = config.model_copy(update={"namespace": namespace})
            backend = KubernetesBackend(name, config, workspace, registry=project.registry)
            directory = output / name
            directory.mkdir(parents=True, exist_ok=True)
            files = []
            for job in jobs:
                problems = [d.message for d in backend.validate(job)]
                try:
                    docs = backend.manifests(job) if not problems else []
                except ValueError as e:  # a run directory too big for a ConfigMap, a render error
                    problems.append(f"{job.address}: {e}")
                if problems:
                    raise UsageError(problems[0], hint="fix the madfile, or leave the job out (--select, --target)")
                path = directory / f"{render.job_name(job)}.yaml"
                path.write_text(_k8s_header(job, backend) + render.dump(docs), encoding="utf-8")
                files.append(path)
            written[name] = (files, len(jobs))
    mark_generated(output)
    return written


def _k8s_header(job: JobSpec, backend: object) -> str:
    """What a file says before its manifests: the job, and the Secret its variables are read from."""
    from madengine.backends import kubernetes_render as render
    from madengine.backends.kubernetes import KubernetesBackend

    assert isinstance(backend, KubernetesBackend)
    lines = [f"# {job.address}: generated by madengine; kubectl apply -f this file"]
    secrets = sorted(render.secret_values(job, backend.settings))
    if secrets:
        name = render.secret_name(render.job_name(job))
        lines.append(f"# Its Job reads {', '.join(secrets)} from Secret {name} (values are never written): "
                     f"kubectl -n {backend.namespace} create secret generic {name} "
                     + " ".join(f"--from-literal={k}=..." for k in secrets))
    return "\n".join(lines) + "\n"


def mark_generated(output: Path) -> None:
    """A directory `generate` wrote is never part of the MAD package (it may be written inside it)."""
    from madengine.backends.rundir import GENERATED_MARKER

    (output / GENERATED_MARKER).write_text("written by `madengine generate`: not part of the MAD package\n")


def _backend_jobs(lock: Lock, project: Project, select: list[str], targets: list[str],
                  backend: str) -> dict[str, list[JobSpec]]:
    """The jobs of `backend`'s targets that --select/--target leave, by target, in address order (as a backend
    is handed them: `${env:NAME}` references resolved from madengine's environment)."""
    from madengine.backends.specs import job_spec
    from madengine.graph.build import build_graph
    from madengine.graph.build import select as select_nodes

    graph = select_nodes(build_graph(lock, registry=project.registry, tags=project.model_tags()), select, targets)
    out: dict[str, list[JobSpec]] = {}
    for address in sorted(a for a, data in graph.nodes.items() if data["kind"] == "job"):
        spec = job_spec(address, lock, project)
        if project.targets[spec.target].backend == backend:
            out.setdefault(spec.target, []).append(spec)
    return dict(sorted(out.items()))
