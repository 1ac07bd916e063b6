"""`madengine run --tags ...`: ROCm madengine's run, in a MAD package, over the declarative core."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, ContextFileOption, ContextOption, TagsOption


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    tags: list[str] = TagsOption,
    additional_context: str | None = ContextOption,
    additional_context_file: Path | None = ContextFileOption,
    timeout: int | None = typer.Option(None, "--timeout", min=0, metavar="SECONDS",
                                       help="Seconds per model; 0 = none."),
    live_output: bool = typer.Option(False, "--live-output", help="Stream the models' logs."),
    keep_alive: bool = typer.Option(False, "--keep-alive", help="Keep containers after their runs."),
    keep_model_dir: bool = typer.Option(False, "--keep-model-dir",
                                        help="Accepted for compatibility: run directories are always kept "
                                        "under .madengine/runs."),
    skip_model_run: bool = typer.Option(False, "--skip-model-run", help="Build the images, run nothing."),
    manifest_file: Path | None = typer.Option(None, "--manifest-file", metavar="FILE",
                                              help="A build_manifest.json: run its models (with --tags unset), "
                                              "pulling its pushed images instead of building them."),
    output: Path = typer.Option(Path("perf.csv"), "--output", "-o", metavar="FILE", help="Append the results here."),
    backend: str = typer.Option("docker", "--backend", metavar="BACKEND",
                                help="docker (ROCm's way) or local (no container)."),
    gpus: int | None = typer.Option(None, "--gpus", min=0, metavar="N", help="GPUs of this host, for scheduling."),
    parallelism: int = typer.Option(1, "--parallelism", "-j", min=1, metavar="N", help="Models to run at once."),
    resume: bool = typer.Option(False, "--resume", help="Run only models without a recorded result for these "
                                "inputs (as `apply` does); by default every selected model runs, as in ROCm."),
    chdir: Path | None = ChdirOption,
) -> None:
    """Build and run the models the tags select, recording results and appending them to perf.csv."""
    from madengine.apply.engine import ApplyOptions, ApplyResult
    from madengine.cli.applying import ApplyRequest, apply_realization, exit_with
    from madengine.compat.rocm import RocmArgs, generated_path, madfile_text, parse_context
    from madengine.mad.tags import split_tags
    from madengine.pipeline import realization
    from madengine.results.export import append_perf_csv
    from madengine.results.manifest import read_build_manifest
    from madengine.state.store import StateStore

    base = chdir if chdir is not None else Path()
    registry = None
    if manifest_file is not None:
        manifest_tags, registry = read_build_manifest(base / manifest_file)
        tags = tags or manifest_tags
    # With the manifest's registry, an image built and pushed elsewhere is pulled (its tag is its inputs' hash).
    args = RocmArgs(tags=split_tags(tags), backend=backend, gpus=gpus,
                    registry=registry, additional_context=parse_context(additional_context, additional_context_file))
    path = generated_path(base)
    r = realization(path, locked=False, text=madfile_text(args), select=["image:*"] if skip_model_run else ())
    # Images are reused when unchanged either way: they are content-addressed.
    replace = [] if resume else [n for n in r.graph.nodes if n.startswith("job:")]
    request = ApplyRequest(yes=True, live_output=live_output, replace=replace,
                           replace_reason="run runs every selected model again; --resume keeps recorded results",
                           options=ApplyOptions(parallelism=parallelism, timeout=timeout, keep_alive=keep_alive,
                                                keep_going=True))

    def export(store: StateStore, result: ApplyResult | None) -> None:
        if result is not None and not skip_model_run:
            count = append_perf_csv(base / output, store, result.apply_id)
            typer.echo(f"{count} result row(s) appended to {base / output}")

    exit_with(apply_realization(r, request, "madengine run", after=export))
