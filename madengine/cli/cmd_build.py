"""`madengine build --tags ...`: ROCm madengine's build, in a MAD package, over the declarative core."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, ContextFileOption, ContextOption, TagsOption


def register(app: typer.Typer) -> None:
    app.command("build")(build)


def build(
    tags: list[str] = TagsOption,
    additional_context: str | None = ContextOption,
    additional_context_file: Path | None = ContextFileOption,
    registry: str | None = typer.Option(None, "--registry", metavar="HOST[:PORT]", help="Push the images here."),
    batch_manifest: Path | None = typer.Option(None, "--batch-manifest", metavar="FILE",
                                               help="ROCm's batch build list: models with build_new true."),
    clean_docker_cache: bool = typer.Option(False, "--clean-docker-cache",
                                            help="Rebuild every image, reusing no cached layer."),
    manifest_output: Path = typer.Option(Path("build_manifest.json"), "--manifest-output", metavar="FILE",
                                         help="Where to write build_manifest.json."),
    summary_output: Path | None = typer.Option(None, "--summary-output", metavar="FILE",
                                               help="Also write a JSON summary."),
    parallelism: int = typer.Option(1, "--parallelism", "-j", min=1, metavar="N", help="Images to build at once."),
    chdir: Path | None = ChdirOption,
) -> None:
    """Build (and with --registry push) the images of the models the tags select; write the manifest."""
    import json

    from madengine.apply.engine import ApplyOptions, ApplyResult
    from madengine.backends.specs import job_metadata
    from madengine.cli.applying import ApplyRequest, apply_realization, exit_with
    from madengine.compat.rocm import RocmArgs, batch_models, generated_path, madfile_text, parse_context
    from madengine.mad.tags import split_tags
    from madengine.pipeline import realization
    from madengine.results.export import export_build_manifest
    from madengine.state.store import StateStore

    base = chdir if chdir is not None else Path()
    if batch_manifest is not None:
        tags = [*tags, *batch_models(base / batch_manifest)]
    args = RocmArgs(tags=split_tags(tags), registry=registry,
                    additional_context=parse_context(additional_context, additional_context_file))
    r = realization(generated_path(base), locked=False, text=madfile_text(args), select=["image:*"])
    replace = [n for n in r.graph.nodes if n.startswith("image:")] if clean_docker_cache else []
    request = ApplyRequest(yes=True, replace=replace, replace_reason="--clean-docker-cache",
                           options=ApplyOptions(parallelism=parallelism, keep_going=True, no_cache=clean_docker_cache))

    def export(store: StateStore, result: ApplyResult | None) -> None:
        # This command's jobs with their metadata: the manifest describes them, never an earlier run's.
        project = r.compiled()
        jobs = {address: {**entry, "meta": job_metadata(address, r.lock, project,
                                                        project.targets[entry["target"]].backend)}
                for address, entry in r.lock["jobs"].items()}
        manifest = export_build_manifest(base / manifest_output, store, jobs, registry)
        typer.echo(f"wrote {base / manifest_output} ({len(manifest['built_images'])} images)")
        if summary_output is not None:
            (base / summary_output).write_text(json.dumps(manifest["summary"], indent=2, sort_keys=True) + "\n")

    exit_with(apply_realization(r, request, "madengine build", after=export))
