"""Discover the models of a MAD package, with ROCm madengine's semantics (DESIGN §3).

A package declares models in three places, read in this order:

1. `models.json` at the root: a list of entries;
2. `scripts/<dir>/models.json`: entries named `<dir>/<name>`, paths relative to `scripts/<dir>/`;
3. `scripts/<dir>/get_models_json.py`: `list_models()` returns `CustomModel`s, named and resolved the
   same way.

Directories are visited in sorted order, so discovery does not depend on the file system. Every
problem found is reported at once, each pinned to a file (and line where there is one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from madengine import limits
from madengine.errors import ConfigError, Diagnostic
from madengine.mad.dynamic import RunningScripts, Script, ScriptResult
from madengine.mad.entries import EntryReader
from madengine.mad.fastbuild import gc_paused
from madengine.mad.jsonlist import (
    NotAListError,
    TooDeepError,
    TooManyItemsError,
    line_of,
    parse_list,
    read_json_text,
)
from madengine.mad.model import MadModel, Package
from madengine.madfile.source import huge_number_diagnostic

MODELS_JSON = "models.json"
DYNAMIC_SCRIPT = "get_models_json.py"
MAX_ERRORS_PER_FILE = limits.MAX_ERRORS_PER_FILE


def discover_package(root: Path, *, script_timeout: float | None = None) -> Package:
    """Every model of the MAD package at `root`, in discovery order.

    Raises ConfigError with one diagnostic per problem (invalid JSON, malformed entries, failing
    scripts, duplicate names). Unknown keys are kept and returned as `Package.warnings`.
    `script_timeout`: seconds each get_models_json.py may run (default: limits.script_timeout()).
    """
    with gc_paused():
        return _discover(root, limits.script_timeout(script_timeout))


def _discover(root: Path, script_timeout: float) -> Package:
    root_dir = os.path.abspath(root)
    errors: list[Diagnostic] = []
    warnings: list[Diagnostic] = []
    models: list[MadModel] = []

    if not os.path.isdir(root_dir):
        raise ConfigError(f"MAD package directory {str(root)!r} does not exist",
                          hint="`package:` names a directory holding models.json and scripts/")
    root_json = os.path.join(root_dir, MODELS_JSON)
    has_root_json = os.path.isfile(root_json)
    scripts_dir = os.path.join(root_dir, "scripts")
    model_dirs = _model_dirs(scripts_dir)
    if not has_root_json and not model_dirs:
        raise ConfigError(f"{str(root)!r} is not a MAD package: it has no models.json",
                          file=MODELS_JSON,
                          hint="a MAD package has models.json and/or scripts/<dir>/models.json")
    # Every get_models_json.py of the package runs in one child process, started first: the scripts
    # run while the models.json files are read here.
    scripts = [Script(os.path.join(scripts_dir, name, DYNAMIC_SCRIPT), f"scripts/{name}/{DYNAMIC_SCRIPT}", name)
               for name, has_json, has_script in model_dirs if has_script and not has_json]
    with RunningScripts(scripts, script_timeout) as running:
        if has_root_json:
            _read_models_json(root_dir, root_json, MODELS_JSON, "", models, errors, warnings)
        from_json: dict[str, list[MadModel]] = {}
        for name, has_json, has_script in model_dirs:
            rel_dir = f"scripts/{name}"
            if has_json and has_script:
                errors.append(Diagnostic(
                    f"{rel_dir}/{DYNAMIC_SCRIPT}", None, None,
                    f"{rel_dir} has both {MODELS_JSON} and {DYNAMIC_SCRIPT}; a directory declares its models "
                    "one way", hint=f"move the models of {rel_dir}/{MODELS_JSON} into list_models(), or the "
                    "other way round"))
            elif has_json:
                from_json[name] = []
                _read_models_json(root_dir, os.path.join(scripts_dir, name, MODELS_JSON), f"{rel_dir}/{MODELS_JSON}",
                                  name, from_json[name], errors, warnings,
                                  counted=len(models) + sum(map(len, from_json.values())))
        dynamic = dict(zip((s.directory for s in scripts), running.results(), strict=True))
    for name, _, _ in model_dirs:  # the models in directory order
        if name in from_json:
            models += from_json[name]
        elif name in dynamic:
            _read_dynamic(root_dir, dynamic[name], f"scripts/{name}/{DYNAMIC_SCRIPT}", name, models, errors,
                          warnings)

    errors.extend(_duplicates(models))
    if errors:
        raise ConfigError.many(errors)
    return Package(root=root_dir, models=tuple(models), warnings=tuple(warnings))


def _model_dirs(scripts_dir: str) -> list[tuple[str, bool, bool]]:
    """(name, has models.json, has get_models_json.py) of each scripts/<dir> that declares models."""
    try:
        with os.scandir(scripts_dir) as it:
            names = sorted(entry.name for entry in it if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        directory = os.path.join(scripts_dir, name)
        has_json = os.path.isfile(os.path.join(directory, MODELS_JSON))
        has_script = os.path.isfile(os.path.join(directory, DYNAMIC_SCRIPT))
        if has_json or has_script:
            found.append((name, has_json, has_script))
    return found


def _read_text(path: str, rel_file: str, errors: list[Diagnostic]) -> str | None:
    try:
        return read_json_text(path, rel_file, limits.input_bytes(), limits.INPUT_BYTES_ENV)
    except ConfigError as exc:  # too big, or not UTF-8
        errors.extend(exc.diagnostics)
    except OSError as exc:
        errors.append(Diagnostic(rel_file, None, None, f"cannot read: {exc.strerror}"))
    return None


def _read_models_json(root_dir: str, path: str, rel_file: str, directory: str, models: list[MadModel],
                      errors: list[Diagnostic], warnings: list[Diagnostic], counted: int = 0) -> None:
    """The entries of one models.json, appended to `models`; `counted`: models of the package read before."""
    text = _read_text(path, rel_file, errors)
    if text is None:
        return
    max_models = limits.models()
    try:
        items = parse_list(text, max_models - counted - len(models))
    except TooManyItemsError as exc:
        line, column = line_of(text, exc.offset)
        errors.append(Diagnostic(rel_file, line, column, f"the package has more than {max_models:,} models",
                                 hint=f"set {limits.MODELS_ENV} to raise the limit"))
        return
    except json.JSONDecodeError as exc:
        errors.append(Diagnostic(rel_file, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}",
                                 hint="check for a missing comma or quote, or a trailing comma"))
        return
    except TooDeepError as exc:
        line, column = line_of(text, exc.offset)
        errors.append(Diagnostic(rel_file, line, column, f"JSON {exc}", hint="this limit is fixed"))
        return
    except NotAListError as exc:
        errors.append(Diagnostic(rel_file, 1, 1, f"{MODELS_JSON} must be a list of models; {exc}",
                                 hint='write [{"name": ..., ...}, ...]'))
        return
    except ValueError:  # a number of thousands of digits, which Python refuses to convert
        huge = huge_number_diagnostic(text, rel_file)
        if huge is None:
            raise
        errors.append(huge)
        return
    reader = EntryReader(root=root_dir, file=rel_file, directory=directory, prefix_names=True,
                         errors=errors, text=text)
    read = reader.read
    errors_before = len(errors)
    for index, (value, offset, line) in enumerate(items):
        model = read(value, index, line, offset)
        if model is not None:
            models.append(model)
        elif len(errors) - errors_before >= MAX_ERRORS_PER_FILE:  # a broken file is not read to its end
            errors.append(Diagnostic(rel_file, line, None, f"{MAX_ERRORS_PER_FILE} errors before this entry; "
                                     "the rest of the file is not read", hint="fix these first"))
            break
    warnings.extend(reader.warnings())


def _read_dynamic(root_dir: str, result: ScriptResult, rel_file: str, directory: str, models: list[MadModel],
                  errors: list[Diagnostic], warnings: list[Diagnostic]) -> None:
    reader = EntryReader(root=root_dir, file=rel_file, directory=directory, prefix_names=False,
                         errors=errors)
    errors.extend(result.errors)
    max_models = limits.models()
    if len(models) + len(result.models) > max_models:
        errors.append(Diagnostic(rel_file, None, None, f"the package has more than {max_models:,} models",
                                 hint=f"set {limits.MODELS_ENV} to raise the limit"))
        return
    for index, entry in result.models:
        model = reader.read(entry, index, where="list_models()")
        if model is not None:
            models.append(model)
    warnings.extend(reader.warnings())


def _duplicates(models: list[MadModel]) -> list[Diagnostic]:
    """A model name is an address: it must be unique within the package."""
    if len({model.name for model in models}) == len(models):
        return []  # the usual case, decided without a Python-level loop body
    first_seen: dict[str, MadModel] = {}
    errors: list[Diagnostic] = []
    for model in models:
        first = first_seen.setdefault(model.name, model)
        if first is model:
            continue
        if len(errors) == MAX_ERRORS_PER_FILE:
            errors.append(Diagnostic(None, None, None, f"more than {MAX_ERRORS_PER_FILE} duplicate model names; "
                                     "the rest are not listed", hint="fix these first"))
            break
        here = model.origin
        errors.append(Diagnostic(
            here.file if here else None, here.line if here else None, None,
            f"duplicate model name {model.name!r}: also declared at {_place(first)}",
            key_path=f"[{here.index}].name" if here else "",
            hint="model names must be unique within a package; rename one of them"))
    return errors


def _place(model: MadModel) -> str:
    origin = model.origin
    if origin is None:
        return "?"
    return f"{origin.file}:{origin.line}" if origin.line else f"{origin.file} (entry {origin.index})"
