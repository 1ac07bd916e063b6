"""Which command lives in which module. Each module exposes `register(app)`."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand

# Order here is the order of `madengine --help`.
COMMAND_MODULES = (
    "init",
    "validate",
    "lock",
    "graph",
    "plan",
    "apply",
    "discover",
    "run",
    "build",
    "runner",
    "generate",
    "results",
    "compare",
    "baseline",
    "check",
    "report",
    "database",
    "state",
    "unlock",
)

# The end of each command's --help: a command line to start from. Keys are command paths.
EXAMPLES = {
    "init": ["madengine init", "madengine init --from-package ../MAD"],
    "validate": ["madengine validate", "madengine validate -f nightly.yaml --json"],
    "lock": ["madengine lock", "madengine lock --check", "madengine lock --update image:dummy.ubuntu.none@cpu"],
    "graph": ["madengine graph --format mermaid --select nightly", "madengine graph --json"],
    "plan": ["madengine plan --select nightly", "madengine plan -o plan.json && madengine apply plan.json"],
    "apply": ["madengine apply --yes", "madengine apply --yes -j 4 --target box --select 'job:dummy*'"],
    "discover": ["madengine discover -p ../MAD --tags dummy", "madengine discover --json"],
    "run": ["madengine run --tags dummy", "madengine run --tags dummy --backend local --timeout 600"],
    "build": ["madengine build --tags dummy --registry localhost:5000"],
    "runner": ["madengine runner ssh --inventory nodes.yml --manifest-file build_manifest.json",
               "madengine runner ansible --inventory nodes.yml --tags dummy"],
    "runner ssh": ["madengine runner ssh --inventory nodes.yml --manifest-file build_manifest.json",
                   "madengine runner ssh -i nodes.yml --tags dummy --report-output report.json -j 8"],
    "runner ansible": ["madengine runner ansible --inventory nodes.yml --manifest-file build_manifest.json"],
    "generate k8s": ["madengine generate k8s -o manifests",
                     "madengine generate k8s -o manifests --namespace bench --target k8s --json"],
    "runner slurm": ["madengine runner slurm --inventory cluster.yml --manifest-file build_manifest.json",
                     "madengine runner slurm -i cluster.yml --tags dummy --timeout 3600"],
    "runner k8s": ["madengine runner k8s --inventory k8s.yml --manifest-file build_manifest.json --namespace bench"],
    "generate": ["madengine generate ansible -o generated", "madengine generate slurm -o generated",
                 "madengine generate k8s -o manifests"],
    "generate ansible": ["madengine generate ansible -o generated",
                         "madengine generate ansible -o out --target lab --json"],
    "generate slurm": ["madengine generate slurm -o generated", "madengine generate slurm -o out --target hpc --json"],
    "results": ["madengine results", "madengine results --history dummy --csv perf.csv",
                "madengine results --history dummy --metric samples_per_second --json"],
    "results export": ["madengine results export --format json -o history.json",
                       "madengine results export --format csv -o all.csv"],
    "results import": ["madengine results import history.json",
                       "madengine results import history.json --state postgresql://ci@db:5432/bench"],
    "compare": ["madengine compare", "madengine compare main latest --fail-on-regression",
                "madengine compare 11 12 --markdown > comment.md", "madengine compare old/perf.csv perf.csv --json"],
    "baseline": ["madengine baseline save main", "madengine baseline list",
                 "madengine baseline show main --json", "madengine baseline rm main"],
    "baseline save": ["madengine baseline save main", "madengine baseline save release-1.2 --from 12"],
    "baseline list": ["madengine baseline list", "madengine baseline list --json"],
    "baseline show": ["madengine baseline show main", "madengine baseline show main --json"],
    "baseline rm": ["madengine baseline rm main"],
    "check": ["madengine check", "madengine check 12 --json"],
    "report": ["madengine report -o report.html", "madengine report -o report.html --against nightly --history 10"],
    "report to-html": ["madengine report to-html --csv-file-path perf.csv"],
    "report to-email": ["madengine report to-email --csv-file-path results/",
                        "madengine report to-email --dir results/ -o summary.html"],
    "database": ["madengine database update-table --csv-file-path perf.csv --db-url postgresql://ci@db/perf",
                 "madengine database upload-mongodb --database-name mad --collection-name perf --db-url mongodb://db"],
    "database create-table": ["madengine database create-table --db-url postgresql://ci@db.example.org/perf"],
    "database update-table": ["madengine database update-table --csv-file-path perf.csv",
                              "madengine database update-table --db-url sqlite:///results/perf.db"],
    "database upload-mongodb": ["madengine database upload-mongodb --database-name mad --collection-name perf "
                                "--db-url mongodb://db.example.org:27017"],
    "state": ["madengine state list", "madengine state forget 'job:dummy@cpu/box#1'"],
    "state list": ["madengine state list --json"],
    "state show": ["madengine state show 'job:dummy@cpu/box#1'"],
    "state forget": ["madengine state forget 'image:dummy.ubuntu.none@cpu'"],
    "unlock": ["madengine unlock", "madengine unlock --force"],
}


def epilog(path: str) -> str:
    lines = EXAMPLES[path]
    # \b keeps click from re-wrapping the lines below it.
    return ("Examples:" if len(lines) > 1 else "Example:") + "\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


class Command(TyperCommand):
    """Every command's help in madengine's words, the same with any typer: arguments read NAME, [NAME] or
    [NAME]... and show no Python type (typer 0.2x prints `IMAGE <list[str]>` and `[[IMAGE]...]...`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        params = self.get_params(ctx)
        arguments = [(_argument_name(p), getattr(p, "help", None) or "")
                     for p in params if p.param_type_name == "argument" and not getattr(p, "hidden", False)]
        options = [record for p in params if p.param_type_name == "option" and (record := p.get_help_record(ctx))]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _argument_name(param: Any) -> str:
    return str(param.metavar or param.name.upper())


def _argument_usage(param: Any) -> str:
    name = _argument_name(param)
    name = name if param.required else f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


def register(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"madengine.cli.cmd_{name}").register(app)
    _finish(app, "")


def _finish(app: typer.Typer, prefix: str) -> None:
    """Every command with madengine's help layout and its examples."""
    for info in app.registered_commands:
        info.cls = Command  # every command is ours (typer's default is a placeholder, not None)
        info.epilog = epilog(prefix + str(info.name))
    for group in app.registered_groups:
        group.epilog = epilog(prefix + str(group.name))
        if group.typer_instance is not None:
            _finish(group.typer_instance, f"{prefix}{group.name} ")
