"""`madengine runner ssh|ansible --inventory FILE`: ROCm madengine's runners, in a MAD package, over the
declarative core (an in-memory madfile whose one target is the inventory's nodes; `compat.runner`).

ROCm's flags that are refused rather than accepted and ignored (each says why): `--verbose/-v`,
`--registry` (the manifest names it), `--additional-context[-file]` (the context is the nodes'),
`--node-selector` (every node of the inventory runs jobs), and `runner ansible --playbook` (madengine
renders the playbook from the lock, so that each task's outcome is a job's; `generate ansible` writes it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from madengine.cli.options import ChdirOption, TagsOption

if TYPE_CHECKING:
    from madengine.pipeline import Realization
    from madengine.results.runner_report import RunInfo

DEFAULT_INVENTORY = Path("inventory.yml")  # ROCm's defaults
DEFAULT_REPORT = Path("runner_report.json")


def register(app: typer.Typer) -> None:
    runner_app = typer.Typer(name="runner", help="ROCm madengine's runners: the models of a build manifest (or of "
                             "--tags) on the nodes of an inventory, over SSH or Ansible, or on a SLURM or "
                             "Kubernetes cluster.",
                             no_args_is_help=True, rich_markup_mode=None)
    runner_app.command("ssh")(ssh)
    runner_app.command("ansible")(ansible)
    runner_app.command("slurm")(slurm)
    runner_app.command("k8s")(k8s)
    app.add_typer(runner_app, name="runner")


def _refused(flag: str, hint: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in (None, False):
            from madengine.errors import UsageError

            raise UsageError(f"{flag} is not supported by madengine's runner", hint=hint)
        return value
    return check


def _refuse(names: tuple[str, ...], hint: str, *, flag: bool = False) -> Any:
    # A flag is one by its `bool` annotation (typer's way): only the default differs here.
    return typer.Option(False if flag else None, *names, hidden=True, callback=_refused(names[0], hint))


InventoryOption = typer.Option(DEFAULT_INVENTORY, "--inventory", "-i", metavar="FILE",
                               help="ROCm madengine's inventory (`nodes: [{hostname, address, ...}]`, YAML or JSON).")
SlurmInventoryOption = typer.Option(DEFAULT_INVENTORY, "--inventory", "-i", metavar="FILE",
                                    help="ROCm madengine's SLURM inventory (`slurm_cluster: {login_node, partitions, "
                                    "workspace}`, YAML or JSON).")
K8sInventoryOption = typer.Option(DEFAULT_INVENTORY, "--inventory", "-i", metavar="FILE",
                                  help="ROCm madengine's Kubernetes inventory (`pods: [{name, node_selector, "
                                  "resources, gpu_vendor}]`, YAML or JSON).")
ManifestOption = typer.Option(None, "--manifest-file", "-m", metavar="FILE",
                              help="A build_manifest.json: run its models, pulling the images its build pushed "
                              "(default build_manifest.json, unless --tags is given).")
ReportOption = typer.Option(DEFAULT_REPORT, "--report-output", metavar="FILE",
                            help="Write a JSON report of every job here (written even when jobs fail).")
TimeoutOption = typer.Option(None, "--timeout", min=0, metavar="SECONDS", help="Seconds per model; 0 = none.")
ParallelismOption = typer.Option(None, "--parallelism", "-j", min=1, metavar="N",
                                 help="Jobs at once over all nodes, spread evenly (default: one per node).")
LiveOutputOption = typer.Option(False, "--live-output", help="Stream the models' logs.")
VerboseOption = _refuse(("--verbose", "-v"), "the plan and the progress lines say what runs; each job's log is "
                        "under .madengine/runs", flag=True)
RegistryOption = _refuse(("--registry",), "the images come from the registry the build manifest names (`madengine "
                         "build --registry R` writes it)")
_CONTEXT_HINT = ("the context is the inventory nodes' GPU vendor; for another, write a madfile with an ssh target "
                 "(see examples/ssh)")
ClusterRegistryOption = typer.Option(None, "--registry", metavar="HOST:PORT",
                                     help="Where images built for --tags are pushed for the cluster's nodes to pull "
                                     "(a build manifest names its own).")
ContextOption = _refuse(("--additional-context", "-a"), _CONTEXT_HINT)
ContextFileOption = _refuse(("--additional-context-file",), _CONTEXT_HINT)
NodeSelectorOption = _refuse(("--node-selector",), "every node of the inventory runs jobs: give an inventory of "
                             "the nodes you want")


def ssh(
    inventory: Path = InventoryOption,
    manifest_file: Path | None = ManifestOption,
    tags: list[str] = TagsOption,
    report_output: Path = ReportOption,
    timeout: int | None = TimeoutOption,
    parallelism: int | None = ParallelismOption,
    live_output: bool = LiveOutputOption,
    chdir: Path | None = ChdirOption,
    verbose: bool = VerboseOption,
    registry: str | None = RegistryOption,
    additional_context: str | None = ContextOption,
    additional_context_file: str | None = ContextFileOption,
    node_selector: str | None = NodeSelectorOption,
) -> None:
    """Run the models on the inventory's nodes over SSH; record results and write the report."""
    _run("ssh", inventory, manifest_file, tags, report_output, timeout, parallelism, live_output, chdir)


def ansible(
    inventory: Path = InventoryOption,
    playbook: str | None = _refuse(("--playbook",), "madengine renders the playbook from the lock, so that each "
                                   "task reports a job's outcome; drop --playbook (`madengine generate ansible -o DIR` "
                                   "writes what it runs, for review)"),
    manifest_file: Path | None = ManifestOption,
    tags: list[str] = TagsOption,
    report_output: Path = ReportOption,
    timeout: int | None = TimeoutOption,
    parallelism: int | None = ParallelismOption,
    live_output: bool = LiveOutputOption,
    chdir: Path | None = ChdirOption,
    verbose: bool = VerboseOption,
    registry: str | None = RegistryOption,
    additional_context: str | None = ContextOption,
    additional_context_file: str | None = ContextFileOption,
    node_selector: str | None = NodeSelectorOption,
) -> None:
    """Run the models on the inventory's nodes through ansible-runner; record results and write the report."""
    _run("ansible", inventory, manifest_file, tags, report_output, timeout, parallelism, live_output, chdir)


def slurm(
    inventory: Path = SlurmInventoryOption,
    manifest_file: Path | None = ManifestOption,
    tags: list[str] = TagsOption,
    job_scripts_dir: Path | None = typer.Option(
        None, "--job-scripts-dir", metavar="DIR", help="The scripts `madengine generate slurm --manifest-file F "
        "--inventory I -o DIR` wrote for review: refused unless they are what generate writes now from the same "
        "inputs (what is submitted differs only in the workspace and attempt ids)."),
    report_output: Path = ReportOption,
    timeout: int | None = TimeoutOption,
    live_output: bool = LiveOutputOption,
    chdir: Path | None = ChdirOption,
    verbose: bool = VerboseOption,
    registry: str | None = ClusterRegistryOption,
    additional_context: str | None = ContextOption,
    additional_context_file: str | None = ContextFileOption,
) -> None:
    """Run the models on the SLURM cluster of the inventory (`slurm_cluster:`); record results and write the report."""
    _run("slurm", inventory, manifest_file, tags, report_output, timeout, None, live_output, chdir,
         handed_off=job_scripts_dir, registry=registry)


def k8s(
    inventory: Path = K8sInventoryOption,
    manifest_file: Path | None = ManifestOption,
    tags: list[str] = TagsOption,
    manifests_dir: Path | None = typer.Option(
        None, "--manifests-dir", metavar="DIR", help="The manifests `madengine generate k8s --manifest-file F "
        "--inventory I -o DIR` wrote for review: refused unless they are what generate writes now from the same "
        "inputs (what is created differs only in the workspace and attempt ids)."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", metavar="NAME",
                                         help="Overrides the inventory's namespace."),
    report_output: Path = ReportOption,
    timeout: int | None = TimeoutOption,
    live_output: bool = LiveOutputOption,
    chdir: Path | None = ChdirOption,
    verbose: bool = VerboseOption,
    registry: str | None = ClusterRegistryOption,
    additional_context: str | None = ContextOption,
    additional_context_file: str | None = ContextFileOption,
) -> None:
    """Run the models as Kubernetes Jobs like the inventory's pods (`pods:`); record results, write the report."""
    _run("kubernetes", inventory, manifest_file, tags, report_output, timeout, None, live_output, chdir,
         handed_off=manifests_dir, namespace=namespace, registry=registry)


def _run(backend: str, inventory: Path, manifest_file: Path | None, tags: list[str], report_output: Path,
         timeout: int | None, parallelism: int | None, live_output: bool, chdir: Path | None, *,
         handed_off: Path | None = None, namespace: str | None = None, registry: str | None = None) -> None:
    import time

    from madengine.apply.engine import ApplyOptions
    from madengine.cli.applying import ApplyRequest, apply_realization, exit_with
    from madengine.cli.runner_input import runner_input
    from madengine.madfile.locate import display_path
    from madengine.results.runner_report import RunInfo
    from madengine.state.model import utc_now

    started = time.monotonic()
    base = chdir if chdir is not None else Path()
    if (base / report_output).is_dir():  # said now, not after the jobs ran
        from madengine.errors import UsageError

        raise UsageError(f"--report-output {base / report_output} is a directory", hint="name the report's file")
    given = runner_input(backend, base, inventory, manifest_file, tags, parallelism=parallelism, namespace=namespace,
                         registry=registry)
    r, inventory_path, nodes = given.realization, given.inventory, given.nodes
    if handed_off is not None:
        _check_handed_off(r, backend, base / handed_off)
    # Idempotent and resumable as `apply` is (what succeeded stays done), but what failed runs again:
    # a runner is re-run after a node is fixed.
    request = ApplyRequest(yes=True, live_output=live_output, rerun_failed=True,
                           options=ApplyOptions(parallelism=given.parallelism, timeout=timeout, keep_going=True))
    command = f"madengine runner {backend}"

    def info(apply_id: int | None, outcome: str, code: int) -> RunInfo:
        return RunInfo(command=command, inventory=display_path(inventory_path), total_nodes=nodes,
                       total_duration=time.monotonic() - started, apply_id=apply_id, outcome=outcome, exit_code=code)

    def report(store: Any, result: Any) -> None:
        if result is None:
            run = info(None, "NO CHANGES", 0)
        else:
            run = info(result.apply_id, result.outcome, int(result.exit_code))
        _write_report(base / report_output, r, store.latest_attempts(), run)

    since = utc_now()
    try:
        applied = apply_realization(r, request, command, after=report)
    except KeyboardInterrupt:  # a second Ctrl-C: the report still says what finished
        _report_after_interrupt(base / report_output, r, since, info)
        raise
    exit_with(applied)


def _check_handed_off(r: Realization, backend: str, directory: Path) -> None:
    """The files `generate` wrote for review (ROCm's --job-scripts-dir / --manifests-dir) must be what
    `generate` writes now from the same manifest and inventory: the runner submits exactly that, so a
    directory that differs was reviewed against something else (stale, or edited) and is refused."""
    import tempfile

    from madengine.cli.cmd_generate import Source, writer
    from madengine.errors import MadengineError
    from madengine.madfile.locate import display_path

    with tempfile.TemporaryDirectory(prefix="madengine-generated-") as tmp:
        fresh = Path(tmp)
        written = writer(backend)(Source(r.lock, r.compiled(), r.workspace.root), fresh, [], [])  # namespace in r
        for name in written:
            differs = _tree_difference(fresh / name, directory / name)
            if differs:
                raise MadengineError(f"{display_path(directory / name / differs)} is not what the runner submits "
                                     "now", hint=f"write it again with `madengine generate {_GENERATE[backend]} "
                                     f"--manifest-file ... --inventory ... -o {display_path(directory)}`, review it, "
                                     "and run the runner again")


_GENERATE = {"slurm": "slurm", "kubernetes": "k8s"}


def _tree_difference(fresh: Path, given: Path) -> str:
    """The first file (relative path) that one tree has and the other has not, or has with other bytes;
    "" when they are the same."""
    def files(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()} \
            if root.is_dir() else {}

    ours, theirs = files(fresh), files(given)
    for rel in sorted(ours.keys() | theirs.keys()):
        if rel not in ours or rel not in theirs or ours[rel].read_bytes() != theirs[rel].read_bytes():
            return rel
    return ""


def _write_report(path: Path, r: Realization, latest: Any, run: RunInfo) -> None:
    from madengine.results.runner_report import ReportJob, runner_report, write_runner_report

    jobs = [ReportJob(address, str(data["hash"]), str(data["model"]), str(data["context"]), str(data["target"]))
            for address, data in r.graph.nodes.items() if data["kind"] == "job"]
    report = runner_report(jobs, latest, run, r.workspace.state_dir)
    write_runner_report(path, report)
    typer.echo(f"wrote {path} ({report['successful_executions']} of {len(jobs)} job(s) SUCCESS)")


def _report_after_interrupt(path: Path, r: Realization, since: str,
                            info: Callable[[int | None, str, int], RunInfo]) -> None:
    """Best effort, on the way out of an interrupted apply: the store has what finished (and the apply
    this command began, if it got that far: the last one begun since the command started)."""
    from madengine.cli import output
    from madengine.errors import ExitCode, MadengineError
    from madengine.state.store import StateStore

    try:
        with StateStore.open(r.state_path) as store:
            latest = store.latest_attempts()
            ours = [a.id for a in store.applies() if a.started_at >= since]
        _write_report(path, r, latest, info(max(ours, default=None), "INTERRUPTED", int(ExitCode.INTERRUPTED)))
    except (MadengineError, OSError) as exc:
        output.error(f"could not write the report {path}: {exc}")
