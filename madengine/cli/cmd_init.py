"""`madengine init`: write a commented starter madfile."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.options import ChdirOption, FileOption


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    file: Path | None = FileOption,
    chdir: Path | None = ChdirOption,
    from_package: Path | None = typer.Option(None, "--from-package", metavar="DIR", help="Select models from this "
                                             "MAD package directory."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing madfile."),
) -> None:
    """Write a commented starter madfile.yaml, and add .madengine/ to the .gitignore beside it."""
    import os

    from madengine.errors import UsageError

    base = chdir if chdir is not None else Path()  # relative, so that messages show what the user typed
    target = base / (file or Path("madfile.yaml"))
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    package = None
    if from_package is not None:
        package_dir = base / from_package  # like -f, relative to -C (an absolute path replaces base)
        package = Path(os.path.relpath(package_dir.resolve(), target.parent.resolve())).as_posix()
    text = render_starter(target.parent.resolve().name, package, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    if package is None:
        _write_hello_script(target.parent)
    ignored = " (and added .madengine/ to .gitignore)" if _ignore_workspace(target.parent) else ""
    typer.echo(f"wrote {target}{ignored}; next: `madengine validate`, then `madengine lock`")


def render_starter(name: str, package: str | None, base: Path) -> str:
    """The starter text; with a package, a first selector taken from the package's own tags."""
    from collections import Counter

    import jinja2

    from madengine.backends.registry import available
    from madengine.mad.discover import discover_package

    # Only backends that are installed are suggested: a target of another one would not validate.
    values: dict[str, object] = {"name": _yaml_name(name), "package": package, "backends": sorted(available())}
    if package is not None:
        pkg = discover_package(base / package)
        counts = Counter(t for m in pkg.models for t in m.tags)
        common = [t for t, _ in counts.most_common(8)]
        values.update(n_models=len(pkg.models), common_tags=", ".join(common) or "(none)",
                      first_selector=pkg.models[0].name if pkg.models else "all")
    env = jinja2.Environment(loader=jinja2.PackageLoader("madengine", "templates"), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.get_template("madfile.yaml.j2").render(**values)


HELLO_SCRIPT = """#!/usr/bin/env bash
# A stand-in benchmark: replace with your model's run script. madengine reads the line below.
echo "performance: 1.0 hellos_per_second"
"""


def _write_hello_script(base: Path) -> None:
    script = base / "scripts" / "hello" / "run.sh"
    if not script.exists():
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(HELLO_SCRIPT, encoding="utf-8")


IGNORED = ".madengine/"  # the state, caches and logs beside the madfile: never committed


def _ignore_workspace(base: Path) -> bool:
    """Add .madengine/ to the .gitignore beside the madfile (appended to one that exists); False when it
    is already there."""
    path = base / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.strip().strip("/") == IGNORED.strip("/") for line in text.splitlines()):
        return False
    separator = "" if not text or text.endswith("\n") else "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{separator}{IGNORED}\n")
    return True


def _yaml_name(name: str) -> str:
    """The directory name as a YAML string scalar: quoted when YAML would read it as something else
    (a directory named `2024`, `true` or `null`)."""
    import json

    from ruamel.yaml import YAML

    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "benchmarks"
    return safe if isinstance(YAML(typ="safe").load(safe), str) else json.dumps(safe)
