"""A result set: what one apply, baseline or results file measured, one series per job (DESIGN §7).

A job's repeats (`job:dummy@cpu/box#1`, `#2`...) are one series (`job:dummy@cpu/box`): each figure it
reports (a perf row's model and metric) has one value per repeat that reported it, their median and
their spread (the median absolute deviation relative to the median: robust to one outlier repeat).
`compare` reads two of these; a baseline file is `ResultSet.to_json()`.

Loading is pure: `from_apply` takes store records (the CLI reads the store), `from_perf_csv` and
`from_json` take a file's text; `resolve` turns a reference typed by a user (`latest`, `previous`,
`12`, `@{2026-12-01}`, a baseline's name, a file) into a result set, through the `StoreReader` it is
given (a `StateStore` is one).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, Protocol

from madengine import limits
from madengine.errors import ConfigError, Diagnostic, UsageError
from madengine.madfile.names import baseline_name_problem, saved_baselines
from madengine.results.perfcsv import IMAGE_PREFIX, PERF_CSV_COLUMNS, is_job
from madengine.state.model import ApplyRecord, Attempt, ImageRecord, Status

Kind = Literal["apply", "baseline", "file"]

FORMAT = "madengine-results"  # the `format` key of the JSON form: what tells it from other JSON
VERSION = 1

# Lock-entry keys left out of a series' inputs: the same for every repeat of a job (its `hash` and
# `repeat` are not), and nothing that churns a baseline file without changing a result. `meta` is what
# perf.csv needs beyond the lock (tags, owner...): not an input of the measurement.
_JOB_NOISE = frozenset({"hash", "repeat", "meta", "depends_on"})
# An image's `hash` and `tag` are derived from its other keys (which say what changed).
_IMAGE_NOISE = frozenset({"hash", "tag"})

# Worst first: a series' status is SUCCESS only if every repeat's is, else the worst of them.
_SEVERITY = {Status.FAILURE: 5, Status.TIMEOUT: 4, Status.INTERRUPTED: 3, Status.RUNNING: 2, Status.SKIPPED: 1,
             Status.SUCCESS: 0}
_STATUSES = {s.value: s for s in Status}


def median(values: Iterable[float]) -> float:
    """The median of repeats, as every view and gate takes it. Of an even number, the mean of the middle two at
    15 significant digits: (24.191 + 24.21) / 2 is 24.2005, not the 24.200499999999998 of binary floating point."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("a median needs at least one value")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else float(f"{(ordered[mid - 1] + ordered[mid]) / 2:.15g}")


@dataclass(frozen=True)
class Figure:
    """One figure of one series: a perf row's model and metric, one value per repeat that reported it."""

    model: str  # the perf row's model: `<model>`, or `<model>_<row>` of multiple_results
    metric: str
    values: tuple[float, ...]
    median: float
    # relative: the median absolute deviation / |median| (half the range for two repeats); 0 for one value
    # (or a zero median). Robust: one outlier repeat does not widen it (the range would hide a regression).
    spread: float

    @classmethod
    def of(cls, model: str, metric: str, values: Iterable[float]) -> Figure:
        vals = tuple(values)
        if len(vals) == 1:  # the common case, made cheap: one repeat
            return cls(model, metric, vals, vals[0], 0.0)
        if not vals:
            raise ValueError("a figure needs at least one value")
        mid = median(vals)
        spread = median([abs(v - mid) for v in vals]) / abs(mid) if mid != 0 else 0.0
        return cls(model, metric, vals, mid, spread)

    def spread_text(self) -> str:
        """`±1.5%` (the spread as people read it), or nothing for one repeat or no scatter."""
        return f"±{self.spread * 100:.1f}%" if len(self.values) > 1 and self.spread else ""

    def to_json(self) -> dict[str, Any]:
        # median and spread follow from the values: not written, so a hand edit cannot make them disagree
        return {"model": self.model, "metric": self.metric, "values": list(self.values)}


@dataclass(frozen=True)
class SeriesResult:
    """One job across its repeats: the job's address without `#<repeat>`."""

    key: str  # `job:dummy[k=v]@cpu/box`; a perf.csv row's model where no address is known
    model: str  # the job's model (a multiple_results job's rows are in `figures`)
    status: Status  # SUCCESS only if every repeat succeeded, else the worst
    figures: dict[tuple[str, str], Figure]  # (row model, metric) -> figure
    inputs: dict[str, Any] = field(default_factory=dict)  # the job's lock entry (less per-repeat keys)
    image_inputs: dict[str, Any] | None = None  # its image's lock entry, where recorded
    host: str | None = None
    facts: dict[str, Any] | None = None  # the host facts it ran under, where recorded
    image_digest: str | None = None
    apply_id: int | None = None
    attempt_ids: tuple[int, ...] = ()
    log_path: str | None = None  # the first repeat's log (relative to the state directory)
    message: str = ""  # why it failed, where it did: the worst repeat's message

    @property
    def repeats(self) -> int:
        return len(self.attempt_ids) or max((len(f.values) for f in self.figures.values()), default=0)

    def to_json(self) -> dict[str, Any]:
        """What a baseline keeps of a series. Not written: attempt ids, log path, message and the apply id
        per series (they differ on every run, and say nothing of what was measured under which inputs)."""
        return {
            "model": self.model,
            "status": self.status.value,
            "figures": [self.figures[k].to_json() for k in sorted(self.figures)],
            "inputs": self.inputs,
            "image_inputs": self.image_inputs,
            "host": self.host,
            "facts": self.facts,
            "image_digest": self.image_digest,
        }


@dataclass(frozen=True)
class ResultSet:
    """What one apply, baseline or results file measured."""

    label: str  # how to say it: `apply 12`, `baseline main`, `perf.csv`
    kind: Kind
    project: str | None  # the madfile's `name:`
    lock_hash: str | None
    apply_id: int | None
    created: str | None  # UTC, the store's time format: when its apply started (None for a perf.csv)
    series: dict[str, SeriesResult]

    @property
    def addressed(self) -> bool:
        """Whether its series are known by job address (a perf.csv's are known by model only)."""
        return all(key.startswith("job:") for key in self.series)

    def figure_count(self) -> int:
        return sum(len(s.figures) for s in self.series.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the content of a baseline file (`to_text` gives its bytes).

        It keeps what a comparison needs and a reviewer can read: where it came from (project, lock
        hash, apply id and start: one line each, changing only when the baseline is taken from another
        apply) and per series its status, figures (every repeat's value) and the inputs they were
        measured under. Nothing of a run that does not change a result (attempt ids, log paths,
        durations, messages) is written: saving the same results again gives the same bytes.
        `label` and `kind` are not written either: they say how the set was loaded, not what it is."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "project": self.project,
            "lock_hash": self.lock_hash,
            "apply_id": self.apply_id,
            "created": self.created,
            "series": {key: self.series[key].to_json() for key in sorted(self.series)},
        }

    def to_text(self) -> str:
        """`to_json()` as a file's text: sorted keys, 2-space indent, UTF-8 kept, one trailing newline
        (as the lockfile), so equal result sets give equal bytes."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, data: Any, where: str, *, label: str | None = None, kind: Kind = "file") -> ResultSet:
        """A result set from its JSON form (a baseline file), strictly: anything of another shape is a
        ConfigError naming `where` (the file) and the key at fault, every problem found at once."""
        return _Reader(where).result_set(data, label or where, kind)


# --- from the store ---------------------------------------------------------------------------------


def series_key(address: str) -> str:
    """`job:dummy[k=v]@cpu/box#2` -> `job:dummy[k=v]@cpu/box`: the series a repeat belongs to."""
    return _split_repeat(address)[0]


def _split_repeat(address: str) -> tuple[str, int]:
    head, sep, tail = address.rpartition("#")
    return (head, int(tail)) if sep and tail.isdigit() and tail.isascii() else (address, 0)


def _strip(entry: Mapping[str, Any], noise: frozenset[str]) -> dict[str, Any]:
    out = dict(entry)
    for key in noise:
        out.pop(key, None)
    return out


def _worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.SUCCESS)


class _Images:
    """The image a job ran from (its record of the job's image hash, on its target if there is one) and
    that record's inputs as a series keeps them, found once per (image, hash, target)."""

    def __init__(self, records: Mapping[str, Sequence[ImageRecord]]) -> None:
        self.records = records
        self.found: dict[tuple[object, object, object], dict[str, Any] | None] = {}

    def inputs(self, attempt: Attempt) -> dict[str, Any] | None:
        job = attempt.inputs
        key = (job.get("image"), job.get("image_hash"), job.get("target"))
        if key in self.found:
            return self.found[key]
        address, wanted, target = key
        chosen: ImageRecord | None = None
        if isinstance(address, str):
            built = [r for r in self.records.get(address, ()) if r.status is Status.SUCCESS and r.node_hash == wanted]
            on_target = [r for r in built if r.target == target]
            chosen = (on_target or built)[-1] if built else None
        inputs = self.found[key] = _strip(chosen.inputs, _IMAGE_NOISE) if chosen is not None else None
        return inputs


def series_of(attempts: Iterable[Attempt], images: Mapping[str, Sequence[ImageRecord]] | None = None
              ) -> dict[str, SeriesResult]:
    """Series from attempts: the final attempt (the last recorded) of each job address, grouped by series
    key, repeats in order. `images`: image address -> its records (`StateStore.image_records`), to know
    what each image was built from."""
    groups: dict[str, list[tuple[int, Attempt]]] = {}
    for attempt in series_firsts(attempts):
        key, repeat = _split_repeat(attempt.address)
        groups.setdefault(key, []).append((repeat, attempt))
    found = _Images(images or {})
    return {key: _series(key, [a for _, a in sorted(groups[key], key=_first)], found) for key in sorted(groups)}


def _first(item: tuple[int, Attempt]) -> int:
    return item[0]


def _series(key: str, group: Sequence[Attempt], images: _Images) -> SeriesResult:
    first = group[0]
    values: dict[tuple[str, str], list[float]] = {}
    success = Status.SUCCESS
    for attempt in group:
        if attempt.status is not success:  # a failed run's numbers are not results
            continue
        for row in attempt.perf:
            value = row.performance
            if row.status is success and value is not None and math.isfinite(value):
                values.setdefault((row.model, row.metric), []).append(float(value))
    statuses = {a.status for a in group}
    status = success if len(statuses) == 1 and success in statuses else _worst(statuses)
    worst = first if status is success else next(a for a in group if a.status is status)
    hosts = sorted({a.host for a in group if a.host}) if len(group) > 1 else [first.host] if first.host else []
    model = first.inputs.get("model")
    return SeriesResult(
        key=key, model=model if isinstance(model, str) else _model_of_key(key), status=status,
        figures={k: Figure.of(k[0], k[1], values[k]) for k in sorted(values)},
        inputs=_strip(first.inputs, _JOB_NOISE), image_inputs=images.inputs(first),
        host=", ".join(hosts) or None, facts=first.facts, image_digest=first.image_digest,
        apply_id=first.apply_id, attempt_ids=tuple(a.id for a in group), log_path=first.log_path,
        message=worst.message if status is not Status.SUCCESS else "")


def _model_of_key(key: str) -> str:
    """`job:dummy[k=v]~stem@cpu/box` -> `dummy`."""
    name = key.removeprefix("job:").split("@", 1)[0]
    return re.split(r"[\[~]", name, maxsplit=1)[0]


def from_apply(apply: ApplyRecord, attempts: Iterable[Attempt], images: Mapping[str, Sequence[ImageRecord]]
               | None = None, *, project: str | None = None, label: str | None = None,
               only_ran: bool = False, current: Collection[str] | None = None) -> ResultSet:
    """The results as of one apply: the final attempt (its retries' last) of each job, in that apply or
    before it. An apply reruns only what changed: a job it found up to date keeps the result of the apply
    that ran it (its series' `apply_id` says which), so that `compare previous latest` says it is
    unchanged, not missing, and a baseline taken from it holds every job. `only_ran`: the jobs it ran only.
    `current`: the series keys of the project's current lock (`current_series`): a result carried forward
    from an earlier apply is kept only for a job still in it (a job removed from the madfile is then
    missing, not carried forever); what the apply itself ran is always kept. None (no project, no lock):
    every earlier result is carried."""
    mine = [a for a in attempts if (a.apply_id == apply.id if only_ran else a.apply_id <= apply.id)]
    if current is not None and not only_ran:
        ran = {series_key(a.address) for a in mine if a.apply_id == apply.id}
        mine = [a for a in mine if a.apply_id == apply.id or (key := series_key(a.address)) in ran or key in current]
    return ResultSet(label=label or f"apply {apply.id}", kind="apply", project=project, lock_hash=apply.lock_hash,
                     apply_id=apply.id, created=apply.started_at, series=series_of(mine, images))


def current_series(root: Path | None) -> frozenset[str] | None:
    """The series keys (job addresses without `#<repeat>`) of the project's current lock, `madengine.lock`
    in `root` (beside the madfile), read cheaply: only its job addresses. None without a project, a lock,
    or with one that cannot be read (then results are carried as the store has them)."""
    if root is None:
        return None
    import orjson

    from madengine.lock import LOCK_NAME

    try:
        data = orjson.loads((root / LOCK_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        return None
    return frozenset(series_key(address) for address in jobs if isinstance(address, str))


def has_results(attempts: Iterable[Attempt]) -> bool:
    """Whether an apply recorded results: a job attempt that finished (a failure is a result too)."""
    return any(is_job(a) and a.status not in (Status.RUNNING, Status.SKIPPED) for a in attempts)


# --- from files -----------------------------------------------------------------------------------


def read_text(path: Path, shown: str) -> str:
    """A results file's text: refused before it is read when over MADENGINE_MAX_INPUT_BYTES (as a
    models.json), a ConfigError at the line and column of a byte that is not UTF-8."""
    from madengine.files import decode_utf8

    try:
        raw = limits.read_bounded(path, shown, limits.input_bytes(), limits.INPUT_BYTES_ENV)
    except FileNotFoundError:
        raise UsageError(f"{shown}: no such file", hint="name a perf.csv or a madengine results JSON file") \
            from None
    except IsADirectoryError:
        raise UsageError(f"{shown} is a directory", hint="name a perf.csv or a madengine results JSON file") \
            from None
    except OSError as exc:
        from madengine.errors import FileSystemError

        raise FileSystemError.of(exc, shown, doing="read") or ConfigError(
            f"cannot read {shown}: {exc.strerror or exc}", file=shown) from None
    text = decode_utf8(raw, shown, hint="save it as UTF-8")
    if "\x00" in text:
        offset = text.index("\x00")
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise ConfigError("a NUL byte: not a text file", file=shown, line=line, column=column,
                          hint="name a perf.csv or a madengine results JSON file")
    return text


def load_file(path: Path, shown: str | None = None, *, kind: Kind = "file", label: str | None = None) -> ResultSet:
    """A result set from a file: a perf.csv (`.csv`), or madengine's JSON (`results --json` output, or a
    result set / baseline)."""
    shown = shown or str(path)
    text = read_text(path, shown)
    if path.suffix.lower() == ".csv":
        return from_perf_csv(text, shown, label=label)
    return from_json_text(text, shown, kind=kind, label=label)


def from_json_text(text: str, shown: str, *, kind: Kind = "file", label: str | None = None) -> ResultSet:
    from madengine.mad.jsonlist import TooDeepError, loads

    try:
        data = loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", file=shown, line=exc.lineno, column=exc.colno,
                          hint="fix the JSON syntax here") from None
    except TooDeepError:
        raise ConfigError(f"the JSON is nested more than {limits.MAX_DEPTH} levels deep", file=shown,
                          hint="results files need a few levels; this limit is fixed") from None
    except ValueError as exc:  # a number of thousands of digits
        raise ConfigError(f"invalid JSON: {exc}", file=shown) from None
    if isinstance(data, list):
        return from_results_json(data, shown, label=label)
    return ResultSet.from_json(data, shown, label=label, kind=kind)


def from_results_json(data: list[Any], shown: str, *, label: str | None = None) -> ResultSet:
    """`madengine results --json` output: a list of attempts (address, status, perf...)."""
    reader = _Reader(shown)
    attempts: list[Attempt] = []
    for i, item in enumerate(data):
        attempt = reader.attempt(item, f"[{i}]")
        if attempt is not None:
            attempts.append(attempt)
    reader.done()
    applies = {a.apply_id for a in attempts}
    return ResultSet(label=label or shown, kind="file", project=None, lock_hash=None,
                     apply_id=applies.pop() if len(applies) == 1 else None, created=None, series=series_of(attempts))


def from_perf_csv(text: str, shown: str, *, label: str | None = None) -> ResultSet:
    """A perf.csv in ROCm madengine's columns (madengine's `results --csv`, or ROCm madengine's own).

    It has no job addresses: a series is a `model` value (with multiple_results, `<model>_<row>`), and
    its rows (ROCm madengine appends one per run) are its repeats. `args`, `docker_file`, `base_docker`,
    `docker_sha`, `docker_image`, `machine_name` and `gpu_architecture` are what it knows of the inputs."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ConfigError(f"not a CSV file: {exc}", file=shown, line=reader.line_num or 1) from None
    if not header:
        raise ConfigError("empty: no header row", file=shown, line=1,
                          hint=f"a perf.csv starts with its header ({', '.join(PERF_CSV_COLUMNS[:3])}, ...)")
    columns = {name.strip(): i for i, name in reversed(list(enumerate(header)))}
    missing = [c for c in ("model", "performance", "metric") if c not in columns]
    if missing:
        raise ConfigError(f"not a perf.csv: no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}",
                          file=shown, line=1, hint="a perf.csv has ROCm madengine's columns (model, performance, "
                                                   "metric, status...)")
    problems: list[Diagnostic] = []
    i_model, i_perf, i_metric = columns["model"], columns["performance"], columns["metric"]
    i_status = columns.get("status")
    width = len(header)
    values: dict[str, dict[tuple[str, str], list[float]]] = {}  # model -> (model, metric) -> values
    statuses: dict[str, set[Status]] = {}
    last: dict[str, list[str]] = {}  # model -> its last row: what the file says of its inputs
    success = Status.SUCCESS
    try:
        for row in reader:  # one pass, a few operations a row: 8 MB of rows (400,000) are read in about a second
            if len(problems) >= limits.MAX_ERRORS_PER_FILE:
                break
            if not any(row):
                continue
            if len(row) != width:
                problems.append(Diagnostic(shown, reader.line_num, None, f"{len(row)} fields where the header has "
                                           f"{width}", hint="each row has one value per column"))
                continue
            model = row[i_model].strip()
            if not model:
                problems.append(Diagnostic(shown, reader.line_num, None, "no model", hint="each row names its model"))
                continue
            status_text = row[i_status].strip().upper() if i_status is not None else ""
            status = _STATUSES.get(status_text or "SUCCESS")
            if status is None:
                problems.append(Diagnostic(shown, reader.line_num, i_status + 1 if i_status is not None else None,
                                           f"status {status_text[:40]!r} is not one of SUCCESS, FAILURE, SKIPPED"))
                continue
            statuses.setdefault(model, set()).add(status)
            last[model] = row
            perf = row[i_perf].strip()
            if not perf:
                continue
            try:
                value = float(perf)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                problems.append(Diagnostic(shown, reader.line_num, i_perf + 1,
                                           f"performance {perf[:40]!r} is not a finite number"))
                continue
            if status is success:
                values.setdefault(model, {}).setdefault((model, row[i_metric].strip()), []).append(value)
    except csv.Error as exc:
        problems.append(Diagnostic(shown, reader.line_num, None, f"not a CSV file: {exc}"))
    if problems:
        raise ConfigError.many(problems[:limits.MAX_ERRORS_PER_FILE])
    series: dict[str, SeriesResult] = {}
    for model, row in last.items():
        cells = {name: row[i] for name, i in columns.items()}
        figures = values.get(model, {})
        arch = cells.get("gpu_architecture", "").strip()
        series[model] = SeriesResult(
            key=model, model=model, status=_worst(statuses[model]),
            figures={k: Figure.of(k[0], k[1], figures[k]) for k in sorted(figures)},
            inputs=_csv_inputs(cells), image_inputs=_csv_image(cells),
            host=cells.get("machine_name", "").strip() or None, facts={"gpu_arch": arch} if arch else None,
            image_digest=None)
    return ResultSet(label=label or shown, kind="file", project=None, lock_hash=None, apply_id=None, created=None,
                     series=series)


def _csv_inputs(cells: Mapping[str, str]) -> dict[str, Any]:
    import shlex

    out: dict[str, Any] = {}
    args = cells.get("args", "").strip()
    if args:
        try:
            out["args"] = shlex.split(args)
        except ValueError:
            out["args"] = args
    return out


def _csv_image(cells: Mapping[str, str]) -> dict[str, Any] | None:
    dockerfile, base, digest = (cells.get(c, "").strip() for c in ("docker_file", "base_docker", "docker_sha"))
    if not (dockerfile or base or digest):
        return None
    return {"dockerfile": {"path": dockerfile or None}, "base": {"ref": base or None, "digest": digest or None}}


class _Reader:
    """Strict reading of madengine's JSON forms, collecting every problem with its key path."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[Diagnostic] = []

    def bad(self, path: str, message: str) -> None:
        if len(self.problems) < limits.MAX_ERRORS_PER_FILE:
            self.problems.append(Diagnostic(self.where, None, None, message, key_path=path,
                                            hint="is it a madengine results or baseline file?"))

    def done(self) -> None:
        if self.problems:
            raise ConfigError.many(self.problems)

    def typed(self, data: Mapping[str, Any], key: str, path: str, types: tuple[type, ...], *,
              required: bool = True, what: str = "") -> Any:
        if key not in data:
            if required:
                self.bad(path, f"missing key {key!r}")
            return None
        value = data[key]
        if value is None and not required:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            self.bad(f"{path}.{key}" if path else key, f"must be {what or _names(types)}, not {_describe(value)}")
            return None
        return value

    def status(self, value: Any, path: str) -> Status | None:
        status = _STATUSES.get(value) if isinstance(value, str) else None
        if status is None:
            self.bad(path, f"status {_describe(value)} is not one of {', '.join(_STATUSES)}")
        return status

    def result_set(self, data: Any, label: str, kind: Kind) -> ResultSet:
        if not isinstance(data, dict):
            self.bad("", f"the top level must be a JSON object (a result set) or list (`results --json`), "
                         f"not {_describe(data)}")
            self.done()
        if data.get("format") != FORMAT:
            self.bad("format", f"must be {FORMAT!r}, not {_describe(data.get('format'))}")
            self.done()
        if data.get("version") != VERSION:
            self.bad("version", f"version {_describe(data.get('version'))} is not {VERSION}: written by another "
                                "madengine?")
            self.done()
        unknown = sorted(set(data) - {"format", "version", "project", "lock_hash", "apply_id", "created", "series"})
        for key in unknown:
            self.bad(str(key), "unknown key")
        project = self.typed(data, "project", "", (str,), required=False)
        lock_hash = self.typed(data, "lock_hash", "", (str,), required=False)
        apply_id = self.typed(data, "apply_id", "", (int,), required=False)
        created = self.typed(data, "created", "", (str,), required=False)
        raw = self.typed(data, "series", "", (dict,), what="an object of job series") or {}
        series = {}
        for key, entry in raw.items():
            s = self.series(key, entry, f"series.{key}")
            if s is not None:
                series[key] = s
        self.done()
        return ResultSet(label=label, kind=kind, project=project, lock_hash=lock_hash, apply_id=apply_id,
                         created=created, series=series)

    def series(self, key: str, entry: Any, path: str) -> SeriesResult | None:
        if not isinstance(entry, dict):
            self.bad(path, f"must be an object, not {_describe(entry)}")
            return None
        known = {"model", "status", "figures", "inputs", "image_inputs", "host", "facts", "image_digest"}
        for extra in sorted(set(entry) - known):
            self.bad(f"{path}.{extra}", "unknown key")
        model = self.typed(entry, "model", path, (str,))
        status = self.status(entry.get("status"), f"{path}.status")
        figures: dict[tuple[str, str], Figure] = {}
        for i, item in enumerate(self.typed(entry, "figures", path, (list,)) or []):
            figure = self.figure(item, f"{path}.figures[{i}]")
            if figure is not None:
                if (figure.model, figure.metric) in figures:
                    self.bad(f"{path}.figures[{i}]", f"{figure.metric} of {figure.model} is given twice")
                figures[(figure.model, figure.metric)] = figure
        inputs = self.typed(entry, "inputs", path, (dict,), required=False) or {}
        image_inputs = self.typed(entry, "image_inputs", path, (dict,), required=False)
        host = self.typed(entry, "host", path, (str,), required=False)
        facts = self.typed(entry, "facts", path, (dict,), required=False)
        digest = self.typed(entry, "image_digest", path, (str,), required=False)
        if model is None or status is None:
            return None
        return SeriesResult(key=key, model=model, status=status, figures=figures, inputs=inputs,
                            image_inputs=image_inputs, host=host, facts=facts, image_digest=digest)

    def figure(self, item: Any, path: str) -> Figure | None:
        if not isinstance(item, dict):
            self.bad(path, f"must be an object, not {_describe(item)}")
            return None
        for extra in sorted(set(item) - {"model", "metric", "values"}):
            self.bad(f"{path}.{extra}", "unknown key")
        model = self.typed(item, "model", path, (str,))
        metric = self.typed(item, "metric", path, (str,))
        values = self.typed(item, "values", path, (list,), what="a list of numbers")
        if values is not None:
            if not values:
                self.bad(f"{path}.values", "is empty: a figure has at least one value")
                return None
            # C-speed checks (a figure may hold millions of values): JSON numbers, not true/false, finite
            if not set(map(type, values)) <= {int, float} or not all(map(math.isfinite, values)):
                self.bad(f"{path}.values", "must be finite numbers")
                return None
        if model is None or metric is None or values is None:
            return None
        return Figure.of(model, metric, map(float, values))

    def attempt(self, item: Any, path: str) -> Attempt | None:
        """One entry of `results --json`."""
        if not isinstance(item, dict):
            self.bad(path, f"must be an object (an attempt), not {_describe(item)}")
            return None
        address = self.typed(item, "address", path, (str,))
        status = self.status(item.get("status"), f"{path}.status")
        attempt_id = self.typed(item, "attempt_id", path, (int,), required=False) or 0
        apply_id = self.typed(item, "apply_id", path, (int,), required=False) or 0
        perf_items = self.typed(item, "perf", path, (list,)) or []
        host = self.typed(item, "host", path, (str,), required=False)
        facts = self.typed(item, "facts", path, (dict,), required=False)
        model = self.typed(item, "model", path, (str,), required=False)
        rows = []
        from madengine.state.model import PerfRow

        for i, row in enumerate(perf_items):
            where = f"{path}.perf[{i}]"
            if not isinstance(row, dict):
                self.bad(where, f"must be an object, not {_describe(row)}")
                continue
            row_model = self.typed(row, "model", where, (str,))
            metric = self.typed(row, "metric", where, (str,))
            perf = self.typed(row, "performance", where, (int, float), required=False)
            row_status = self.status(row.get("status", "SUCCESS"), f"{where}.status")
            if row_model is None or metric is None or row_status is None:
                continue
            rows.append(PerfRow(row_model, float(perf) if perf is not None else None, metric, row_status))
        if address is None or status is None:
            return None
        if address.startswith(IMAGE_PREFIX):
            return None
        started = self.typed(item, "started_at", path, (str,), required=False) or ""
        return Attempt(id=attempt_id, apply_id=apply_id, address=address, node_hash="", status=status,
                       started_at=started, host=host, facts=facts, inputs={"model": model} if model else {},
                       perf=tuple(rows), message=str(item.get("message") or ""))


def _names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list",
             bool: "true or false"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


# --- by reference -----------------------------------------------------------------------------------


class StoreReader(Protocol):
    """What `resolve` reads of the state store (`madengine.state.store.StateStore` is one)."""

    def applies(self) -> list[ApplyRecord]: ...

    def attempts(self, address: str | None = None, apply_id: int | None = None,
                 model: str | None = None) -> list[Attempt]: ...

    def image_records(self, address: str) -> list[ImageRecord]: ...


class Snapshot:
    """A `StoreReader` that asks the store each question once (the applies, the attempts of one apply, the
    latest attempts, an image's records), so that resolving two references (`compare previous latest`),
    walking back to `previous` and reading the attempts as of an apply read the store once each. It does
    not see what is written to the store after it was asked."""

    def __init__(self, store: StoreReader) -> None:
        self._store = store
        self._applies: list[ApplyRecord] | None = None
        self._all: list[Attempt] | None = None
        self._by_apply: dict[int, list[Attempt]] = {}
        self._latest: dict[str, Attempt] | None = None
        self._images: dict[str, list[ImageRecord]] = {}

    def applies(self) -> list[ApplyRecord]:
        if self._applies is None:
            self._applies = self._store.applies()
        return list(self._applies)

    def attempts(self, address: str | None = None, apply_id: int | None = None,
                 model: str | None = None) -> list[Attempt]:
        if address is not None or model is not None:
            chosen = self._store.attempts(address=address, apply_id=apply_id, model=model)
        elif apply_id is not None:
            chosen = self._by_apply.get(apply_id)  # type: ignore[assignment]
            if chosen is None:
                chosen = self._by_apply[apply_id] = (
                    [a for a in self._all if a.apply_id == apply_id] if self._all is not None
                    else self._store.attempts(apply_id=apply_id))
        else:
            if self._all is None:
                self._all = self._store.attempts()
            chosen = self._all
        return list(chosen)

    def latest_attempts(self) -> dict[str, Attempt] | None:
        """The store's latest attempt of every address, where the store can say (`StateStore` can)."""
        if self._latest is None:
            method = getattr(self._store, "latest_attempts", None)
            if method is None:
                return None
            self._latest = method()
        return dict(self._latest)

    def image_records(self, address: str) -> list[ImageRecord]:
        records = self._images.get(address)
        if records is None:
            records = self._images[address] = self._store.image_records(address)
        return list(records)


# Addresses looked up one by one (an indexed query each) rather than by walking back through applies.
_PER_ADDRESS = 64


def attempts_as_of(store: StoreReader, apply_id: int) -> list[Attempt]:
    """The final attempt of each job address as of apply `apply_id` (in it or before it), reading no more
    of a long history than it must: a job whose latest attempt is that old or older is taken as the store's
    latest; only the jobs run again later are looked for further back (apply by apply, or one by one when
    few are left: a job first run after `apply_id` has nothing to find)."""
    method = getattr(store, "latest_attempts", None)
    latest: dict[str, Attempt] | None = method() if method is not None else None
    if latest is None:
        return [a for a in store.attempts() if a.apply_id <= apply_id]
    out: dict[str, Attempt] = {}
    pending: set[str] = set()
    for address, attempt in latest.items():
        if not is_job(attempt):
            continue
        if attempt.apply_id <= apply_id:
            out[address] = attempt
        else:
            pending.add(address)
    for walked, k in enumerate(sorted((a.id for a in store.applies() if a.id <= apply_id), reverse=True)):
        if not pending:
            break
        if walked >= 2 and len(pending) <= _PER_ADDRESS:
            for address in sorted(pending):
                older = [a for a in store.attempts(address=address) if a.apply_id <= apply_id]
                if older:
                    out[address] = max(older, key=attrgetter("id"))
            break
        found: dict[str, Attempt] = {}
        for attempt in store.attempts(apply_id=k):
            if attempt.address in pending:
                known = found.get(attempt.address)
                if known is None or attempt.id > known.id:
                    found[attempt.address] = attempt
        out.update(found)
        pending -= found.keys()
    return list(out.values())


REFS = "latest, previous, an apply id, @{date}, a baseline name or a .csv/.json file"
_DATE_REF = re.compile(r"@\{(.+)\}")


def looks_like_file(ref: str) -> bool:
    return ref.lower().endswith((".csv", ".json")) or "/" in ref or ref.startswith(".")


def resolve(ref: str, store: StoreReader | None, *, project: str | None = None, root: Path | None = None,
            cwd: Path | None = None, current: Collection[str] | None = None) -> ResultSet:
    """The result set a reference names: `latest` (the newest apply that recorded results), `previous`
    (the one before it that did), an apply id, `@{date}` (the newest apply with results started at or
    before it, UTC; a date alone means the end of that day), the
    name of a baseline in `<root>/baselines/`, or a perf.csv / madengine JSON file (relative to `cwd`).

    A reference to nothing is a UsageError naming what exists; a file of the wrong shape a ConfigError
    naming it. `store` None: no state store here (only files and baselines can be named). `current`: the
    project's current jobs (`current_series`), as `from_apply` keeps an apply's earlier results."""
    base = cwd or Path.cwd()
    if looks_like_file(ref):
        path = Path(ref).expanduser()
        return load_file(path if path.is_absolute() else base / path, ref)
    if ref in ("latest", "previous") or ref.isdigit() or _DATE_REF.fullmatch(ref):
        return _resolve_apply(ref, store, project, current)
    if root is not None and baseline_name_problem(ref) is None:
        from madengine.results import baseline

        if baseline.path_of(root, ref).exists():
            return baseline.load(root, ref, project)
    names = saved_baselines(root) if root is not None else []
    raise UsageError(f"{ref!r} is not an apply, a baseline or a results file"
                     + (f" (baselines: {', '.join(names)})" if names else " (no baseline saved)"),
                     hint=f"name {REFS}")


def _with_results(store: StoreReader) -> Iterable[ApplyRecord]:
    """Applies that recorded results, newest first, reading as little as it can: an apply that holds the
    latest result of a job is known from the store's latest attempts; another one's attempts are read."""
    method = getattr(store, "latest_attempts", None)
    latest: dict[str, Attempt] = method() if method is not None else {}
    unfinished = (Status.RUNNING, Status.SKIPPED)  # as has_results says
    known = {a.apply_id for a in latest.values() if a.status not in unfinished and is_job(a)}
    for apply in sorted(store.applies(), key=attrgetter("id"), reverse=True):
        if apply.id in known or has_results(store.attempts(apply_id=apply.id)):
            yield apply


def _images(store: StoreReader, attempts: Iterable[Attempt]) -> dict[str, list[ImageRecord]]:
    addresses = sorted({a.inputs["image"] for a in attempts if isinstance(a.inputs.get("image"), str)})
    return {address: store.image_records(address) for address in addresses}


def load_apply(store: StoreReader, apply: ApplyRecord, attempts: Sequence[Attempt] | None = None, *,
               project: str | None = None, current: Collection[str] | None = None) -> ResultSet:
    """The results as of `apply` (`from_apply`), read from `store` (`attempts_as_of`). `attempts`: the
    store's attempts where they were read already: all of them (those of later applies are left out here);
    give only those of `apply` itself for what it ran alone."""
    if attempts is None:
        every = attempts_as_of(store, apply.id)  # one per job already
        return from_apply(apply, every, _images(store, every), project=project, current=current)
    every = [a for a in attempts if a.apply_id <= apply.id]
    return from_apply(apply, every, _images(store, series_firsts(every)), project=project, current=current)


def series_firsts(attempts: Iterable[Attempt]) -> list[Attempt]:
    """The latest attempt of each job address (whose image records a result set reads)."""
    latest: dict[str, Attempt] = {}
    for attempt in attempts:
        known = latest.get(attempt.address)
        if (known is None or attempt.id > known.id) and is_job(attempt):
            latest[attempt.address] = attempt
    return list(latest.values())


def _resolve_apply(ref: str, store: StoreReader | None, project: str | None,
                   current: Collection[str] | None = None) -> ResultSet:
    if store is None:
        raise UsageError(f"{ref!r} names an apply, and there is no state store here",
                         hint="run in a madengine project (or pass -f/--state), or compare results files")
    if ref.isdigit():
        applies = sorted(store.applies(), key=attrgetter("id"))
        wanted_id = int(ref)
        match = next((a for a in applies if a.id == wanted_id), None)
        if match is None:
            span = f"applies are {applies[0].id}..{applies[-1].id}" if applies else "no apply has run yet"
            raise UsageError(f"apply {ref}: no such apply ({span})", hint="`madengine results --json` lists them")
        attempts = store.attempts(apply_id=wanted_id)
        if not has_results(attempts):
            raise UsageError(f"apply {ref} recorded no results (it ran no job to its end)",
                             hint="name another apply: `latest`, `previous`, an id")
        return load_apply(store, match, project=project, current=current)
    if ref in ("latest", "previous"):
        wanted = 2 if ref == "previous" else 1
        found = []
        for apply in _with_results(store):
            found.append(apply)
            if len(found) == wanted:
                return load_apply(store, apply, project=project, current=current)
        have = "no apply has recorded results yet" if not found else \
            f"only apply {found[0].id} has recorded results"
        raise UsageError(f"{ref}: {have}", hint="run `madengine apply`" if not found
                         else "compare with a baseline or a results file")
    when = parse_when(ref)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    first = None
    for apply in _with_results(store):
        if apply.started_at <= stamp:
            return load_apply(store, apply, project=project, current=current)
        first = apply
    since = f"the first with results started {first.started_at}" if first else "no apply has recorded results yet"
    raise UsageError(f"{ref}: no apply with results started at or before {stamp} ({since})", hint=f"name {REFS}")


def parse_when(ref: str) -> datetime:
    """`@{2026-12-01}` (the end of that day), `@{2026-12-01 10:00}`, `@{2026-12-01T10:00:00Z}`: UTC."""
    match = _DATE_REF.fullmatch(ref)
    text = match.group(1).strip() if match else ref
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) - timedelta(milliseconds=1)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{ref}: {text!r} is not a date or time",
                         hint="write @{YYYY-MM-DD} or @{YYYY-MM-DD HH:MM} (UTC)") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
