"""Madfile + MAD package -> Project IR (DESIGN §1, §2, §4).

models × params matrix × contexts × targets × repeats become image nodes and job nodes. The compiler
is a pure function of the loaded madfile and the package it names (it reads files, never writes).
All problems are collected and raised together, each pinned to the madfile position at fault.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from madengine.compile.ir import DataMount, ImageNode, JobNode, Project, ScriptCall, run_dir_names
from madengine.errors import ConfigError, Diagnostic
from madengine.limits import ADDRESS_CHARS_PER_JOB
from madengine.mad.data import DataBinding, DataProvider, load_data, resolve_data
from madengine.mad.dockerfiles import DockerfileIndex, base_image, select_dockerfiles
from madengine.mad.fastbuild import gc_paused, sharing_builder
from madengine.mad.model import DEFAULT_TIMEOUT, INT64_MAX, Dockerfile, MadModel, Package, SelectedModel
from madengine.mad.tools import ResolvedTools, Tool, check_tool_files, load_tools, resolve_tools
from madengine.madfile.load import LoadedMadfile
from madengine.madfile.model import (
    DEFAULT_CONTEXT,
    Context,
    Expect,
    InlineModel,
    Run,
    Scalar,
    SelectModels,
    Target,
    runs_in_image,
)
from madengine.results.gates import Better, Gate

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class ModelInstance:
    """One model with one combination of params: the unit that runs produce jobs from."""

    key: str  # `name` or `name[k=v,...]`, the model part of a job address
    model: MadModel
    params: tuple[tuple[str, str | None], ...]  # None: a bare flag from a tag (`name:flag`)
    args: tuple[str, ...]
    base_dir: str  # project-relative directory that the model's paths are relative to
    declared_at: KeyPath


@dataclass
class _Diagnostics:
    loaded: LoadedMadfile
    items: list[Diagnostic] = field(default_factory=list)
    _seen: set[Diagnostic] = field(default_factory=set)

    def add(self, key_path: KeyPath, message: str, hint: str = "") -> None:
        # The job loop meets a model's problem once per context, target and repeat: keep it once.
        self.append(self.loaded.diagnostic(key_path, message, hint))

    def append(self, d: Diagnostic) -> None:
        if d not in self._seen:
            self._seen.add(d)
            self.items.append(d)


def compile_project(loaded: LoadedMadfile, package: Package | None = None) -> Project:
    """Compile a checked madfile. `package` may be passed in when the caller discovered it already."""
    diags = _Diagnostics(loaded)
    mf = loaded.madfile
    root = loaded.root

    package_path: str | None = None
    if mf.package is not None:
        package_path = _relpath(mf.package)
        if package is None:
            package = _discover(root / mf.package, loaded, diags)

    instances = _model_instances(loaded, package, package_path, diags)
    extras = _PackageExtras.load(root, package_path if package is not None else None, diags)
    contexts: dict[str, Context] = dict(mf.contexts) or {DEFAULT_CONTEXT: Context()}
    targets = mf.effective_targets()
    runs = list(mf.runs) or [Run(models=["all"])]
    chosen_by_run = _jobs_within_budget(runs, instances, list(contexts), list(targets), diags)

    images: dict[str, ImageNode] = {}
    jobs: dict[str, JobNode] = {}
    job_origin: dict[str, int] = {}
    resolver = _ImageResolver(root)
    inputs = _Inputs(root, package_path if package is not None else None, diags)
    with gc_paused():  # up to limits.jobs nodes, none of them garbage: no collector passes over them
        for run_index, run in enumerate(runs):
            chosen = chosen_by_run[run_index]
            _check_expect(run, run_index, chosen, diags)
            gates = _gates(loaded, run, run_index, chosen)
            _check_baselines(loaded, run, run_index, diags)
            for ctx_name in run.contexts or list(contexts):
                context = contexts[ctx_name]
                for tgt_name in run.targets or list(targets):
                    target = targets[tgt_name]
                    if not runs_in_image(target) and context.docker_mounts and chosen:
                        _note_unused_mounts(ctx_name, tgt_name, target, loaded, extras.warnings)
                    # The jobs of one model (all its params combinations and repeats) in this context
                    # and target differ only by address, params, args, repeat and gate: what they
                    # share (images, scripts, env, tools, data...) is resolved once per model.
                    shared: dict[tuple[int, str, KeyPath], list[tuple[str, JobNode]]] = {}
                    for inst in chosen:
                        at = (id(inst.model), inst.base_dir, inst.declared_at)
                        templates = shared.get(at)
                        if templates is None:
                            templates = shared[at] = _templates(inst, ctx_name, context, tgt_name, target, run,
                                                                run_index, resolver, inputs, extras, images, diags)
                        expect = gates.get(inst.key)
                        for variant, template in templates:
                            prefix = f"job:{inst.key}{variant}@{ctx_name}/{tgt_name}#"
                            for repeat in range(1, run.repeat + 1):
                                address = prefix + str(repeat)
                                if address in jobs:
                                    first = job_origin[address]
                                    if first != run_index:
                                        diags.add(("runs", run_index, "models"),
                                                  f"{address} is also declared by runs[{first}]",
                                                  "each model, context and target may appear in one run only")
                                    continue
                                jobs[address] = _build_job(template, {
                                    "address": address, "params": inst.params, "args": inst.args,
                                    "repeat": repeat, "expect": expect})
                                job_origin[address] = run_index
                        if len(jobs) > mf.limits.jobs:  # several Dockerfiles per model can pass the estimate
                            diags.add(("runs", run_index) if mf.runs else ("models",),
                                      f"compiles to more than {mf.limits.jobs:,} jobs; the limit is "
                                      f"{mf.limits.jobs:,}", _JOBS_HINT)
                            raise ConfigError.many(diags.items)

    if diags.items:
        raise ConfigError.many(diags.items)
    return Project(
        root=str(root),
        madfile_path=loaded.path.name,
        package_path=package_path,
        name=mf.name,
        registry=mf.registry,
        contexts=contexts,
        targets=targets,
        images=dict(sorted(images.items())),
        jobs={address: jobs[address] for address in sorted(jobs)},
        warnings=(*(package.warnings if package else ()), *extras.warnings),
    )


# --- package and models ---------------------------------------------------------------------------


_JOBS_HINT = "set `limits.jobs` to raise it, or run fewer models, params, contexts, targets or repeats"
_ADDRESS_HINT = ("shorten the model, param, context or target names in job addresses, or set `limits.jobs` "
                 "to raise it")


def _jobs_within_budget(runs: Sequence[Run], instances: Mapping[str, ModelInstance], contexts: Sequence[str],
                        targets: Sequence[str], diags: _Diagnostics) -> list[list[ModelInstance]]:
    """The instances each run names, once the jobs they make (and the characters of their addresses)
    are counted before any is built and found within `limits.jobs`; over it, the ConfigError says by
    how much."""
    limit = diags.loaded.madfile.limits.jobs
    lookup = _InstanceLookup(instances)
    chosen_by_run, total, over_at = [], 0, None
    for run_index, run in enumerate(runs):
        chosen = _run_models(run, run_index, lookup, diags)
        chosen_by_run.append(chosen)
        n_ctx = len(run.contexts) if run.contexts else len(contexts)
        n_tgt = len(run.targets) if run.targets else len(targets)
        total += len(chosen) * n_ctx * n_tgt * run.repeat
        if total > limit and over_at is None:
            over_at = run_index
    declared = bool(diags.loaded.madfile.runs)
    if over_at is not None:
        diags.add(("runs", over_at) if declared else ("models",),
                  f"compiles to {total:,} jobs; the limit is {limit:,}", _JOBS_HINT)
        raise ConfigError.many(diags.items)
    # Within the count, the addresses: `job:<key>@<context>/<target>#<repeat>`, for every combination.
    budget, chars = limit * ADDRESS_CHARS_PER_JOB, 0
    for run_index, (run, chosen) in enumerate(zip(runs, chosen_by_run, strict=True)):
        keys = sum(len(inst.key) for inst in chosen)
        repeats = sum(len(str(r)) for r in range(1, run.repeat + 1))  # the repeat's digits, over all repeats
        for ctx_name in run.contexts or contexts:
            for tgt_name in run.targets or targets:
                fixed = len("job:@/#") + len(ctx_name) + len(tgt_name)
                chars += run.repeat * (keys + len(chosen) * fixed) + len(chosen) * repeats
        if chars > budget and over_at is None:
            over_at = run_index
    if over_at is not None:
        diags.add(("runs", over_at) if declared else ("models",),
                  f"compiles to {total:,} jobs whose addresses take {chars:,} characters; the limit is "
                  f"{budget:,} ({ADDRESS_CHARS_PER_JOB} a job of the limit of {limit:,} jobs)", _ADDRESS_HINT)
        raise ConfigError.many(diags.items)
    return chosen_by_run


def _discover(path: Path, loaded: LoadedMadfile, diags: _Diagnostics) -> Package | None:
    from madengine.mad.discover import discover_package

    if not path.is_dir():
        diags.add(("package",), f"package directory {str(path)!r} does not exist",
                  "`package:` is a MAD package directory, relative to the madfile")
        return None
    try:
        return discover_package(path, script_timeout=loaded.madfile.limits.script_timeout)
    except ConfigError as exc:
        diags.items.extend(exc.diagnostics)
        return None


def _model_instances(loaded: LoadedMadfile, package: Package | None, package_path: str | None,
                     diags: _Diagnostics) -> dict[str, ModelInstance]:
    """Every model the madfile selects or declares, expanded by its params matrix, in order."""
    from madengine.mad.tags import ModelIndex, UnknownTagError, resolve_tag

    out: dict[str, ModelInstance] = {}
    index = ModelIndex(package.models) if package is not None else None
    limit = loaded.madfile.limits.jobs
    key_chars = _KeyChars(limit * ADDRESS_CHARS_PER_JOB)
    for i, entry in enumerate(loaded.madfile.models):
        # Counted before the matrix is expanded: `params` of 10⁹ combinations must not be walked.
        combinations = math.prod(len(v) if isinstance(v, list) else 1 for v in entry.params.values())
        if combinations > limit:
            diags.add(("models", i, "params"), f"the params matrix has {combinations:,} combinations, "
                      f"so more jobs than the limit of {limit:,}", _JOBS_HINT)
            raise ConfigError.many(diags.items)
        if len(out) + combinations > limit:
            diags.add(("models", i), f"the models so far make more than {limit:,} model variants "
                      f"(models × params), so more jobs than the limit of {limit:,}", _JOBS_HINT)
            raise ConfigError.many(diags.items)
        if isinstance(entry, SelectModels):
            if index is None:
                if loaded.madfile.package is None:
                    diags.add(("models", i, "select"), "`select` needs a MAD package",
                              "add `package: ./path/to/MAD` to the madfile, or declare the model inline")
                continue
            base = package_path or "."
            for tag in entry.tags():
                try:
                    selected = resolve_tag(index, tag)
                except UnknownTagError as exc:
                    diags.add(("models", i, "select"), str(exc), exc.hint)
                    continue
                if len(out) + len(selected) * combinations > limit:
                    diags.add(("models", i, "select"), f"selects {len(selected):,} models × {combinations:,} "
                              f"params combinations, more jobs than the limit of {limit:,}", _JOBS_HINT)
                    raise ConfigError.many(diags.items)
                for sel in selected:
                    _expand(out, sel, entry.params, base, ("models", i), diags, key_chars)
        else:
            _expand(out, SelectedModel(_inline_model(entry)), entry.params, ".", ("models", i), diags, key_chars)
    return out


def _inline_model(entry: InlineModel) -> MadModel:
    data = entry.model_dump(exclude={"params"})
    data["tags"] = tuple(data["tags"])
    data["dockerfile"] = data["dockerfile"] or ""
    return MadModel(**data)


@dataclass
class _KeyChars:
    """The characters of the model instances' keys (`name[k=v,...]`), each a part of its jobs'
    addresses: counted before a matrix is expanded, within the budget of job addresses."""

    budget: int
    used: int = 0


def _expand(out: dict[str, ModelInstance], sel: SelectedModel, params: Mapping[str, Scalar | list[Scalar]],
            base_dir: str, at: KeyPath, diags: _Diagnostics, key_chars: _KeyChars) -> None:
    try:
        base_args = split_args(sel.args)
    except ValueError as exc:
        diags.add(at, f"model {sel.model.name!r}: args {sel.args!r} cannot be split: {exc}",
                  "close the quote in `args`")
        return
    # Each key and value is rendered (as a param, an address part and argv) once, not once per combination.
    tag_shown = [_address_part(k) if v is None else f"{_address_part(k)}={_address_part(v)}"
                 for k, v in sel.tag_args]
    columns = _matrix_columns(params)
    combinations = math.prod(len(column) for column in columns)
    parts = len(tag_shown) + len(columns)
    # Every combination's key: the name, `[...]`, the commas and one cell of each column.
    fixed = len(sel.model.name) + (2 + sum(map(len, tag_shown)) + parts - 1 if parts else 0)
    chars = combinations * fixed + sum(combinations // len(column) * sum(len(cell[1]) for cell in column)
                                       for column in columns)
    key_chars.used += chars
    if key_chars.used > key_chars.budget:
        limit = diags.loaded.madfile.limits.jobs
        diags.add((*at, "params") if params else at,
                  f"model {sel.model.name!r}: its {combinations:,} params combinations make job addresses of "
                  f"{chars:,} characters, more than the limit of {key_chars.budget:,} "
                  f"({ADDRESS_CHARS_PER_JOB} a job of the limit of {limit:,} jobs)", _ADDRESS_HINT)
        raise ConfigError.many(diags.items)
    for combo in itertools.product(*columns):
        all_params: tuple[tuple[str, str | None], ...] = sel.tag_args + tuple(map(_PARAM, combo))
        shown = ",".join([*tag_shown, *map(_PART, combo)])
        key = sel.model.name + (f"[{shown}]" if all_params else "")
        if key in out:
            continue  # a model selected twice is one model
        args = base_args + tuple(itertools.chain.from_iterable(map(_ARGV, combo)))
        out[key] = ModelInstance(key, sel.model, all_params, args, base_dir, at)


# A param key or value is written into the job address as it is only when it cannot be mistaken for
# the address's own separators (`,` `]` `@` `#`) or break a line; otherwise it is quoted as a JSON string.
_PLAIN_PARAM = re.compile(r"[A-Za-z0-9_.+\-/:=%~]+")


def _address_part(text: str) -> str:
    return text if _PLAIN_PARAM.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def split_args(args: str) -> tuple[str, ...]:
    """A models.json `args` string as argv, with POSIX shell quoting rules but no shell.

    Most MAD args hold no quote or backslash; those split on whitespace, as shlex would, only faster.
    """
    if not any(c in args for c in "'\"\\"):
        return tuple(args.split())
    return tuple(shlex.split(args))


_Cell = tuple[tuple[str, str], str, tuple[str, str]]  # a param value: (key, value), its address part, argv
_PARAM, _PART, _ARGV = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)


def _matrix_columns(params: Mapping[str, Scalar | list[Scalar]]) -> list[list[_Cell]]:
    """Per param key (sorted), its values as (param, address part, argv): the matrix is their product."""
    columns = []
    for key in sorted(params):
        raw = params[key]
        shown_key = _address_part(key)
        column = []
        for value in raw if isinstance(raw, list) else [raw]:
            text = _render(value)
            column.append(((key, text), f"{shown_key}={_address_part(text)}", (f"--{key}", text)))
        columns.append(column)
    return columns


def _render(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _InstanceLookup:
    """The instances by key, by model name and by tag, so naming them is a lookup, not a scan each."""

    def __init__(self, instances: Mapping[str, ModelInstance]) -> None:
        self.all = list(instances.values())
        self._by_name: dict[str, list[ModelInstance]] | None = None

    @property
    def by_name(self) -> dict[str, list[ModelInstance]]:
        """Built when a run first names something other than `all` (the default run does not)."""
        if self._by_name is None:
            by_name: dict[str, list[ModelInstance]] = {}
            model_names: dict[int, frozenset[str]] = {}  # a model's name and tags, shared by its variants
            for inst in self.all:
                names = model_names.get(id(inst.model))
                if names is None:
                    names = model_names[id(inst.model)] = frozenset((inst.model.name, *inst.model.tags))
                for name in names:
                    by_name.setdefault(name, []).append(inst)
                if inst.key not in names:
                    by_name.setdefault(inst.key, []).append(inst)
            self._by_name = by_name
        return self._by_name

    def named(self, name: str) -> list[ModelInstance]:
        return self.all if name == "all" else self.by_name.get(name, [])

    _hints_left = 20  # difflib over every model name is slow: thousands of unknown names get a plain hint

    def close_hint(self, name: str) -> str:
        if self._hints_left <= 0:
            return "run `madengine discover` to list the models"
        self._hints_left -= 1
        return _close_hint(name, {inst.model.name for inst in self.all})


def _run_models(run: Run, run_index: int, lookup: _InstanceLookup,
                diags: _Diagnostics) -> list[ModelInstance]:
    """The instances a run names: by instance key, model name, tag, or `all`, in declaration order."""
    if list(run.models) == ["all"]:
        return list(lookup.all)  # every instance, once each (the default run)
    chosen: dict[str, ModelInstance] = {}
    for j, name in enumerate(run.models):
        matched = lookup.named(name)
        if not matched and name != "all":
            diags.add(("runs", run_index, "models", j),
                      f"{name!r} names no model that this madfile selects or declares",
                      lookup.close_hint(name))
        for inst in matched:
            chosen.setdefault(inst.key, inst)
    return list(chosen.values())


def _check_expect(run: Run, run_index: int, chosen: list[ModelInstance], diags: _Diagnostics) -> None:
    """A gate must name a model (or model[params]) that the run actually runs."""
    if not run.expect:
        return
    names = {inst.model.name for inst in chosen} | {inst.key for inst in chosen}
    for model in run.expect:
        if model not in names:
            diags.add(("runs", run_index, "expect", model),
                      f"expect names {model!r}, which this run does not run", _close_hint(model, names))


def _gates(loaded: LoadedMadfile, run: Run, run_index: int, chosen: list[ModelInstance]) -> dict[str, Gate]:
    """Each chosen model's gate, by model key: `name[k=v]` names one instance and wins over `name`."""
    out: dict[str, Gate] = {}
    if not run.expect:
        return out
    for inst in chosen:
        key = inst.key if inst.key in run.expect else inst.model.name
        expect = run.expect.get(key)
        if expect is None:
            continue
        pos = loaded.locate(("runs", run_index, "expect", key))
        where = loaded.path.name + (f":{pos[0]}:{pos[1]}" if pos else "")
        out[inst.key] = Gate(metric=expect.metric, better=_gate_direction(loaded, expect), min=expect.min,
                             max=expect.max, where=where, tolerance=expect.tolerance, baseline=expect.baseline)
    return out


def _gate_direction(loaded: LoadedMadfile, expect: Expect) -> Better:
    """Which way a gate's metric is better: `compare.metric_direction`, the one rule (its `better`, the
    madfile's `results.better`, the metric's name, what its bounds imply, higher)."""
    from madengine.results.compare import metric_direction

    return metric_direction(expect.metric, better=expect.better, results=loaded.madfile.results.better,
                            low=expect.min is not None, high=expect.max is not None)[0]


def _check_baselines(loaded: LoadedMadfile, run: Run, run_index: int, diags: _Diagnostics) -> None:
    """A gate's `baseline:` must name a saved baseline (`baselines/<name>.json` beside the madfile): at
    validate and plan time, not after an apply has run. Its content is read where it is used."""
    from madengine.madfile.names import BASELINES_DIR, saved_baselines

    for model, expect in run.expect.items():
        if expect.baseline is None:
            continue
        path = loaded.root / BASELINES_DIR / f"{expect.baseline}.json"
        if not path.is_file():
            saved = saved_baselines(loaded.root)
            hint = (f"saved baselines: {', '.join(saved[:10])}" + (", …" if len(saved) > 10 else "") if saved
                    else f"save one: `madengine baseline save {expect.baseline}`")
            diags.append(loaded.diagnostic(("runs", run_index, "expect", model, "baseline"),
                                           f"no baseline {expect.baseline!r} ({BASELINES_DIR}/{expect.baseline}"
                                           ".json does not exist)", hint, at="value"))


def _close_hint(name: str, candidates: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=3)
    return f"did you mean {', '.join(close)}?" if close else "add the model under `models:` first"


# --- images and jobs ------------------------------------------------------------------------------


@dataclass
class _ImageResolver:
    """Dockerfile lookups and image nodes, memoized: thousands of models share a few Dockerfiles."""

    root: Path
    _indexes: dict[str, DockerfileIndex] = field(default_factory=dict)
    _nodes: dict[tuple[str, str, str], ImageNode] = field(default_factory=dict)

    def dockerfiles(self, inst: ModelInstance) -> tuple[Dockerfile, ...]:
        index = self._indexes.get(inst.base_dir)
        if index is None:
            index = self._indexes[inst.base_dir] = DockerfileIndex(self.root / inst.base_dir)
        return index.find(inst.model.dockerfile)

    def node(self, inst: ModelInstance, f: Dockerfile, ctx_name: str, context: Context) -> ImageNode:
        dockerfile = _join(inst.base_dir, f.path)
        build_context = _join(inst.base_dir, inst.model.dockercontext) if inst.model.dockercontext \
            else posixpath.dirname(dockerfile) or "."
        key = (dockerfile, ctx_name, build_context)
        if key not in self._nodes:
            build_args = dict(sorted(context.docker_build_arg.items()))
            self._nodes[key] = ImageNode(
                address=f"image:{f.stem}@{ctx_name}",
                name=f.stem,
                context=ctx_name,
                dockerfile=dockerfile,
                build_context=build_context,
                build_args=build_args,
                dockerfile_context=dict(f.context),
                base=base_image(self.root / dockerfile, build_args),
            )
        return self._nodes[key]


def _images_for(inst: ModelInstance, ctx_name: str, context: Context, target: Target,
                resolver: _ImageResolver, run_index: int, diags: _Diagnostics) -> list[ImageNode | None]:
    """The images a model runs in for a context: one per matching Dockerfile; [None] where jobs are host
    processes (`local`, `container: none`)."""
    if not runs_in_image(target):
        return [None]
    model = inst.model
    if not model.dockerfile:
        diags.add(inst.declared_at, f"model {model.name!r} has no `dockerfile` but runs on a "
                  f"{target.backend} target", "give the model a Dockerfile prefix, or run it on `local`")
        return []
    files = resolver.dockerfiles(inst)
    matching = select_dockerfiles(files, context.match_keys())
    if not matching:
        found = ", ".join(f"{f.path} {dict(f.context)}" for f in files) or "none"
        diags.add(("runs", run_index), f"model {model.name!r}: no Dockerfile {model.dockerfile}.*.Dockerfile "
                  f"matches context {ctx_name!r} (found: {found})",
                  "set the context's gpu_vendor/guest_os/match to what a # CONTEXT header says")
        return []
    return [resolver.node(inst, f, ctx_name, context) for f in matching]


def _add_image(images: dict[str, ImageNode], image: ImageNode, inst: ModelInstance,
               diags: _Diagnostics) -> None:
    known = images.setdefault(image.address, image)
    if known != image:
        diags.add(inst.declared_at, f"{image.address} is built two ways: from {known.build_context} and "
                  f"from {image.build_context}", "models sharing a Dockerfile must share `dockercontext`")


def _templates(inst: ModelInstance, ctx_name: str, context: Context, tgt_name: str, target: Target, run: Run,
               run_index: int, resolver: _ImageResolver, inputs: _Inputs, extras: _PackageExtras,
               images: dict[str, ImageNode], diags: _Diagnostics) -> list[tuple[str, JobNode]]:
    """A model's jobs in one context and target, one per image variant, as the field values they share
    (`_build_job` adds each job's address, params, args, repeat and gate): `~<stem>` tells several
    Dockerfiles' jobs apart. Empty when the model cannot run there (the reason is in `diags`)."""
    variants = _images_for(inst, ctx_name, context, target, resolver, run_index, diags)
    scripts = inputs.job_scripts(inst, ctx_name, context, extras)
    if not variants:
        return []
    for image in variants:
        if image is not None:
            _add_image(images, image, inst, diags)
            inputs.build_context(inst, image)
    timeout = _timeout(inst, run, context)
    if timeout > INT64_MAX:
        diags.add(("contexts", ctx_name, "timeout_multiplier"),
                  f"model {inst.model.name!r}: its timeout times timeout_multiplier does not fit in 64 bits",
                  "give a smaller timeout_multiplier, or timeout 0 for none")
        return []
    env = _env(inst, ctx_name, context, extras)
    return [(f"~{image.name}" if image is not None and len(variants) > 1 else "",
             _job(inst, ctx_name, context, tgt_name, image, timeout, env, extras, scripts))
            for image in variants]


_share_job, _build_job = sharing_builder(JobNode, own=("address", "params", "args", "repeat", "expect"))


def _env(inst: ModelInstance, ctx_name: str, context: Context, extras: _PackageExtras) -> dict[str, str]:
    """A job's environment, sorted: ROCm madengine's precedence is data, then tools, then the
    context's env, then the model's own."""
    model = inst.model
    tools = extras.context_tools(ctx_name, context)
    data = extras.data_for(inst)
    env = {
        "MAD_MODEL_NAME": model.name,
        "MAD_GPU_VENDOR": context.gpu_vendor,
        "MAD_GUEST_OS": context.guest_os,
        **({"MAD_OUTPUT_CSV": model.multiple_results} if model.multiple_results else {}),
        **(data.env if data else {}),
        **(tools.env_vars if tools else {}),
        **context.docker_env_vars,
        **model.env_vars,
    }
    return dict(sorted(env.items()))


def _job(inst: ModelInstance, ctx_name: str, context: Context, tgt_name: str, image: ImageNode | None,
         timeout: int, env: dict[str, str], extras: _PackageExtras, scripts: _JobScripts) -> JobNode:
    """The template of a model's jobs: what they share (address, params, args, repeat and expect are
    each job's own)."""
    model = inst.model
    tools = extras.context_tools(ctx_name, context)
    data = extras.data_for(inst)
    package = extras.package_path or "."
    return _share_job(dict(
        model=model.name,
        context=ctx_name,
        target=tgt_name,
        image=image.address if image else None,
        script=scripts.script,
        env=env,
        n_gpus=model.n_gpus,
        nnodes=model.nnodes,
        timeout=timeout,
        multiple_results=model.multiple_results,
        data=model.data,
        tags=model.tags,
        owner=model.owner,
        training_precision=model.training_precision,
        additional_docker_run_options=model.additional_docker_run_options,
        cred=model.cred,
        tools=tools.names if tools else (),
        pre_scripts=scripts.pre,
        post_scripts=scripts.post,
        cmd_prefix=tools.cmd_prefix if tools else (),
        data_mounts=tuple(DataMount(_join(package, m.host_path) if m.in_package else m.host_path,
                                    m.container_path, m.readwrite, m.in_package) for m in data.mounts)
        if data else (),
        data_provider=data.provider_type if data else "",
        skip_gpu_arch=model.skip_gpu_arch,
    ))


def model_script(model: MadModel) -> str:
    """The script a model runs: as in ROCm madengine, a `scripts` value that is not a .sh file is a
    directory whose run.sh runs."""
    return model.scripts if model.scripts.endswith(".sh") else posixpath.join(model.scripts, "run.sh")


@dataclass(frozen=True)
class _JobScripts:
    """A job's script and pre/post scripts (project-relative), each once checked."""

    script: str
    pre: tuple[ScriptCall, ...]
    post: tuple[ScriptCall, ...]


@dataclass
class _Inputs:
    """The files a job needs, checked as the lock will need them (existence) and as a run directory
    will hold them (inside the project or the package; no copy replacing another), each problem
    pinned to the madfile or models.json line that named the file. Memoized: thousands of jobs
    share a few scripts."""

    root: Path
    package_path: str | None
    diags: _Diagnostics
    _roots: tuple[str, ...] = ()
    _checked: dict[str, str | None] = field(default_factory=dict)  # script -> its checked path (None: bad)
    _contexts: dict[str, tuple[tuple[tuple[ScriptCall, KeyPath], ...], ...]] = field(default_factory=dict)
    _jobs: dict[tuple[str, str], _JobScripts] = field(default_factory=dict)
    _listings: dict[str, frozenset[str]] = field(default_factory=dict)
    _scripts: dict[tuple[int, str], str] = field(default_factory=dict)  # (model id, base dir) -> its script

    def __post_init__(self) -> None:
        roots = [self.root] + ([self.root / self.package_path] if self.package_path is not None else [])
        self._roots = tuple(os.path.realpath(r) for r in roots)

    def inside(self, path: str) -> bool:
        """Whether the project-relative `path` resolves (symlinks and `..` followed) inside the project
        or the package."""
        real = os.path.realpath(self.root / path)
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self._roots)

    def project_path(self, path: str, base_dir: str = ".") -> str:
        """A path as written, relative to `base_dir`, as a normalized project-relative path (an absolute
        path is made relative to the project, so that no absolute path reaches the lock)."""
        if posixpath.isabs(path):
            return posixpath.normpath(os.path.relpath(path, self.root).replace(os.sep, "/"))
        return _join(base_dir, path)

    def job_scripts(self, inst: ModelInstance, ctx_name: str, context: Context,
                    extras: _PackageExtras) -> _JobScripts:
        model_at = (id(inst.model), inst.base_dir)
        script = self._scripts.get(model_at)
        if script is None:  # the model's, whatever the context: once per model
            script = self._scripts[model_at] = self.project_path(model_script(inst.model), inst.base_dir)
        key = (script, ctx_name)
        if key not in self._jobs:
            self._model_script(inst, script)
            tools = extras.context_tools(ctx_name, context)
            package = extras.package_path or "."
            tool_at: KeyPath = ("contexts", ctx_name, "tools")
            tool_pre = tuple((ScriptCall(self.project_path(c.path, package), c.args), tool_at)
                             for c in tools.pre_scripts) if tools else ()
            tool_post = tuple((ScriptCall(self.project_path(c.path, package), c.args), tool_at)
                              for c in tools.post_scripts) if tools else ()
            own_pre, own_post = self._context_calls(ctx_name, context)
            pre, post = tool_pre + own_pre, own_post + tool_post
            for call, at in (*tool_pre, *tool_post):
                self._call_inside(call, at)
            self._collisions(script, pre, post)
            self._jobs[key] = _JobScripts(script, tuple(c for c, _ in pre), tuple(c for c, _ in post))
        return self._jobs[key]

    def build_context(self, inst: ModelInstance, image: ImageNode) -> None:
        path = image.build_context
        if path in self._checked:
            return
        self._checked[path] = path
        if not (self.root / path).is_dir():
            self._model_error(inst, "dockercontext", f"model {inst.model.name!r}: build context {path!r} is "
                              "not a directory", "`dockercontext` names a directory of the package")

    # --- parts ------------------------------------------------------------------------------------

    def _model_script(self, inst: ModelInstance, script: str) -> None:
        if script in self._checked:
            return
        self._checked[script] = script
        if not self.inside(script):
            self._model_error(inst, "scripts", f"model {inst.model.name!r}: script {script!r} is outside the "
                              "project and the package", _OUTSIDE_HINT)
        elif not (self.root / script).is_file():
            self._model_error(inst, "scripts", f"model {inst.model.name!r}: script {script!r} does not exist",
                              "paths are relative to the madfile (or, for packaged models, to the "
                              "models.json that declares them)")
        elif not os.access(self.root / script, os.R_OK):  # lock hashes it, a run copies it: both read it
            self._model_error(inst, "scripts", f"model {inst.model.name!r}: script {script!r} cannot be read "
                              "(permission denied)", f"check its permissions and owner (`ls -l {script}`)")

    def _listing(self, directory: str) -> frozenset[str]:
        """The names in a project directory, read once (a missing one is empty: its script is reported)."""
        if directory not in self._listings:
            try:
                self._listings[directory] = frozenset(os.listdir(self.root / directory))
            except OSError:
                self._listings[directory] = frozenset()
        return self._listings[directory]

    def _model_error(self, inst: ModelInstance, key: str, message: str, hint: str) -> None:
        origin = inst.model.origin
        if origin is None:  # an inline model: its key in the madfile
            self.diags.add((*inst.declared_at, key), message, hint)
            return
        # A packaged model: its entry in the package's models.json (files named as discovery names them).
        self.diags.append(Diagnostic(file=origin.file, line=origin.line, column=None, message=message,
                                     key_path=f"[{origin.index}].{key}", hint=hint))

    def _context_calls(self, ctx_name: str, context: Context) -> tuple[tuple[tuple[ScriptCall, KeyPath], ...], ...]:
        """The context's own pre/post scripts as calls, checked (each once per context)."""
        if ctx_name not in self._contexts:
            out = []
            for key, entries in (("pre_scripts", context.pre_scripts), ("post_scripts", context.post_scripts)):
                calls = []
                for i, entry in enumerate(entries):
                    at: KeyPath = ("contexts", ctx_name, key, i)
                    raw_path, raw_args = (entry, "") if isinstance(entry, str) else (entry.path, entry.args)
                    args = self._split(raw_args, (*at, "args"))
                    call = ScriptCall(self.project_path(raw_path.strip().replace("\\", "/")), args)
                    if self._call_inside(call, at) and not (self.root / call.path).is_file():
                        self.diags.add(at, f"{key[:-1].replace('_', '-')} {call.path!r} does not exist",
                                       "paths are relative to the madfile")
                    calls.append((call, at))
                out.append(tuple(calls))
            self._contexts[ctx_name] = (out[0], out[1])
        return self._contexts[ctx_name]

    def _split(self, args: str | list[str], at: KeyPath) -> tuple[str, ...]:
        if isinstance(args, list):
            return tuple(args)
        try:
            return split_args(args)
        except ValueError as exc:
            self.diags.add(at, f"args {args!r} cannot be split into arguments: {exc}", "close the quote")
            return ()

    def _call_inside(self, call: ScriptCall, at: KeyPath) -> bool:
        if self.inside(call.path):
            return True
        self.diags.add(at, f"script {call.path!r} is outside the project and the package", _OUTSIDE_HINT)
        return False

    def _collisions(self, script: str, pre: tuple[tuple[ScriptCall, KeyPath], ...],
                    post: tuple[tuple[ScriptCall, KeyPath], ...]) -> None:
        """No pre/post script may take the name of a file of the run directory: the model's directory
        is copied there first (`backends.rundir.fill_run_dir`), so one named `run.sh` would run instead
        of the model."""
        if not (pre or post):
            return
        directory = posixpath.dirname(script) or "."
        present: frozenset[str]
        if os.path.realpath(self.root / directory) == self._roots[0]:
            present = frozenset((posixpath.basename(script),))  # a script at the project root is copied alone
        else:
            present = self._listing(directory)
        names = run_dir_names(tuple(c for c, _ in pre), tuple(c for c, _ in post))
        for (call, at), name in zip((*pre, *post), (*names[0], *names[1]), strict=True):
            mine = os.path.realpath(self.root / directory / name)
            if name in present and os.path.realpath(self.root / call.path) != mine:
                self.diags.add(at, f"script {call.path!r} would replace {name} of the run directory, "
                               f"a copy of {directory}/", "rename the script: the run directory holds the "
                               "model's directory and the pre/post scripts side by side")


_OUTSIDE_HINT = ("scripts must be files of the project (the madfile's directory) or of the MAD package; "
                 "symlinks and `..` are followed")


def _note_unused_mounts(ctx_name: str, tgt_name: str, target: Target, loaded: LoadedMadfile,
                        warnings: list[Diagnostic]) -> None:
    """A job outside a container has nothing to mount into: say so rather than accept the mounts silently."""
    where, who = (f"local target `{tgt_name}`", "a local job") if target.backend == "local" else \
        (f"target `{tgt_name}` (container: none)", "a job outside a container")
    d = replace(loaded.diagnostic(("contexts", ctx_name, "docker_mounts"),
                                  f"docker_mounts are not used by jobs on {where}",
                                  f"{who} sees the host's files where they are"), severity="warning")
    if d not in warnings:
        warnings.append(d)


def _timeout(inst: ModelInstance, run: Run, context: Context) -> int:
    """The job's timeout in seconds (0: none): the run's or the model's, times the context's multiplier."""
    timeout = run.timeout if run.timeout is not None else inst.model.timeout
    if timeout == -1:
        timeout = DEFAULT_TIMEOUT
    if timeout > 0:
        scaled = timeout * context.timeout_multiplier
        # A product past 64 bits (or past a float's range) is reported by the caller, not rounded.
        timeout = max(1, round(scaled)) if scaled <= INT64_MAX else INT64_MAX + 1
    return timeout


@dataclass
class _PackageExtras:
    """The package's tools.json and data.json, resolved per context and per model, each once."""

    package_path: str | None
    root: Path
    diags: _Diagnostics
    tools: Mapping[str, Tool]
    data: Mapping[str, Sequence[DataProvider]]
    warnings: list[Diagnostic]
    data_declared: bool = False  # the package has a data.json
    _contexts: dict[str, ResolvedTools | None] = field(default_factory=dict)
    _models: dict[str, DataBinding | None] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, package_path: str | None, diags: _Diagnostics) -> _PackageExtras:
        warnings: list[Diagnostic] = []
        tools: Mapping[str, Tool] = {}
        data: Mapping[str, Sequence[DataProvider]] = {}
        if package_path is not None:
            # Separately: a broken tools.json must not hide what is wrong in data.json.
            try:
                tools = load_tools(root / package_path, warnings=warnings)
            except ConfigError as exc:
                diags.items.extend(exc.diagnostics)
            try:
                data = load_data(root / package_path, warnings=warnings)
            except ConfigError as exc:
                diags.items.extend(exc.diagnostics)
        declared = package_path is not None and (root / package_path / "data.json").is_file()
        return cls(package_path, root, diags, tools, data, warnings, declared)

    def context_tools(self, name: str, context: Context) -> ResolvedTools | None:
        if not context.tools:
            return None
        if name not in self._contexts:
            self._contexts[name] = None
            where = f"contexts.{name}.tools"
            try:
                resolved = resolve_tools([t.model_dump() for t in context.tools], self.tools, where)
                if self.package_path is not None:
                    check_tool_files(resolved, self.root / self.package_path, where)
                self.warnings.extend(resolved.warnings)
                self._contexts[name] = resolved
            except ConfigError as exc:
                for d in exc.diagnostics:
                    self.diags.add(("contexts", name, "tools"), d.message, d.hint)
        return self._contexts[name]

    def data_for(self, inst: ModelInstance) -> DataBinding | None:
        model = inst.model
        if not model.data:
            return None
        if model.name not in self._models:
            self._models[model.name] = None
            if not self.data_declared:
                # As ROCm madengine: without a data.json the model fetches its own data (most of MAD's
                # `huggingface` models); only the name is passed on.
                self._models[model.name] = DataBinding(name=model.data.strip(),
                                                       env={"MAD_DATANAME": model.data.strip()})
                return self._models[model.name]
            try:
                self._models[model.name] = resolve_data(model.data, self.data, f"models[{model.name}].data")
            except ConfigError as exc:
                for d in exc.diagnostics:
                    self.diags.add(inst.declared_at, f"model {model.name!r}: {d.message}", d.hint)
        return self._models[model.name]


def _relpath(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def _join(base: str, path: str) -> str:
    return posixpath.normpath(posixpath.join(base, path))

