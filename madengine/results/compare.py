"""Two result sets compared (DESIGN §7): per job series, row model and metric, both medians, the change,
which way is better, a verdict, and for a real change the inputs that differ between the two. Pure.

Verdicts:
- `improved` / `regressed`: the medians differ by more than the noise band, in the better / worse
  direction. The band is the noise floor (`results: {noise: 2%}`, 2% by default) or the relative spread
  of either side's repeats (their median absolute deviation: one outlier repeat does not widen it),
  whichever is wider: a change smaller than the repeats' own scatter is not
  evidence of anything.
- `within noise`: a difference inside the band.
- `new` / `missing`: a figure only B / only A has (a job added or removed, a metric renamed).
- `failed`: B's result of the job did not succeed (a repeat failed, timed out, was skipped or stopped),
  whatever A is: the very same failed attempts on both sides are still a failure.
- `unchanged`: both sides are the very same successful attempts (an apply compared with itself, or with a file
  written from it): nothing was measured again, so there is nothing to judge.

Direction (`better`, `metric_direction`, the one rule gates follow too): an `expect:` gate's explicit
`better` for its model, else the madfile's `results.better` for the metric, else a default by the metric's
name (`*per_second`, `throughput`, `gflops`... higher; `latency`, `*_ms`, `time`, `ms_per_step`... lower;
the time words first: `samples_latency_ms` is a time), else what the model's gate's bounds imply (only a
`max`: lower), else `higher`, said as assumed.

The changed inputs are named as `plan` names what reruns a job (`planner.JOB_INPUTS`, `IMAGE_INPUTS`), a
level finer where a name alone would not say what to look at: each environment variable and build arg,
the base image's reference apart from its digest, the image's digest where none of its inputs moved,
the host, and host facts as `facts.compare.changed` says them (`rocm 6.2.0 → 6.3.1`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from madengine.results.perfcsv import format_number
from madengine.results.resultset import Figure, ResultSet, SeriesResult
from madengine.state.model import Status

Better = Literal["higher", "lower"]
Verdict = Literal["regressed", "improved", "failed", "missing", "new", "within noise", "unchanged"]
VERDICTS: tuple[Verdict, ...] = ("regressed", "improved", "failed", "missing", "new", "within noise", "unchanged")
# What a comparison shows in full by default; the others are counted.
INTERESTING: frozenset[str] = frozenset({"regressed", "improved", "failed", "missing", "new"})
DEFAULT_NOISE = 0.02

# Metric names -> direction. Lower-is-better words first: a time, or a time unit as the last word or as
# the unit of `<unit>_per_<thing>` (`samples_latency_ms`, `images_time_s`, `ms_per_step`, `sec_per_iteration`
# are times, whatever they count), but not the unit of a rate (`tokens_per_second`, `samples/sec`).
_UNIT = r"(ms|us|ns|s|sec|secs|seconds?|msec|usec|mins?|minutes?)"
_LOWER = re.compile(r"latency|time|duration|elapsed|(^|_)(ttft|tpot|itl)(_|$)|"
                    rf"(^|(?<!_per)_){_UNIT}$|(^|_){_UNIT}_per_", re.IGNORECASE)
# Then the higher ones: a rate (`<x>_per_<unit>`, `<x>/s`), throughput, flops, bandwidth, speedup.
_HIGHER = re.compile(r"_?per_?(sec(ond)?s?|s|min(ute)?)$|/s(ec)?$|throughput|[gtmp]?flops|bandwidth|"
                     r"(^|_)(fps|qps|ips|tps|it_s)$|speedup|ops_per|"
                     r"(samples|tokens|images|items|sequences|requests|img|imgs)(_per_[a-z]+|/[a-z]+)", re.IGNORECASE)


def printable(text: str) -> str:
    """Text for a terminal or a comment: a control character (from a model name in a results file: an
    escape sequence would drive the terminal) shown escaped, as diagnostics show them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def default_direction(metric: str) -> Better | None:
    """The direction a metric's name implies, or None when it says nothing."""
    if _LOWER.search(metric):
        return "lower"
    if _HIGHER.search(metric):
        return "higher"
    return None


def metric_direction(metric: str, *, better: str | None = None, results: Mapping[str, str] | None = None,
                     low: bool = False, high: bool = False) -> tuple[Better, str]:
    """Which way is better for `metric`, and where that comes from: the one rule of gates (compiler,
    check) and comparisons. A gate's explicit `better` (`expect`), else the madfile's `results.better`
    for the metric (`results`), else the metric's name when it says (`name`), else what a gate's bounds
    imply (`low`/`high`: it has a `min`/`max`; only a max is a ceiling: lower, only a min a floor: higher;
    `bounds`), else higher (`assumed`)."""
    if better in ("higher", "lower"):
        return ("higher" if better == "higher" else "lower"), "expect"
    chosen = (results or {}).get(metric)
    if chosen in ("higher", "lower"):
        return ("higher" if chosen == "higher" else "lower"), "results"
    implied = default_direction(metric)
    if implied is not None:
        return implied, "name"
    if high != low:
        return ("lower" if high else "higher"), "bounds"
    return "higher", "assumed"


@dataclass(frozen=True)
class GateHint:
    """What an `expect:` gate says about its metric's direction: its `better`, and whether it has a
    `min` / a `max`."""

    better: Better | None = None
    low: bool = False
    high: bool = False


@dataclass(frozen=True)
class Policy:
    """How changes are judged: the noise floor and the directions the madfile sets."""

    noise: float = DEFAULT_NOISE
    better: Mapping[str, Better] = field(default_factory=dict)  # metric -> direction (`results.better`)
    # (model key: `name` or `name[k=v]`, metric) -> its `expect:` gate
    by_model: Mapping[tuple[str, str], GateHint] = field(default_factory=dict)

    def direction(self, series: SeriesResult | None, metric: str) -> tuple[Better, str]:
        """Which way is better for `metric` of `series`, and where that comes from (`metric_direction`),
        with the series' model's gate on the metric where there is one."""
        gate = GateHint()
        if series is not None and self.by_model:
            for key in _model_keys(series):
                found = self.by_model.get((key, metric))
                if found is not None:
                    gate = found
                    break
        return metric_direction(metric, better=gate.better, results=self.better, low=gate.low, high=gate.high)


def _model_keys(series: SeriesResult) -> tuple[str, ...]:
    """What an `expect:` key may name a series by: `name[k=v]` (its params), then `name`."""
    head = series.key.removeprefix("job:").split("@", 1)[0].split("~", 1)[0]
    return (head, series.model) if head != series.model else (series.model,)


@dataclass(frozen=True)
class Row:
    """One figure compared."""

    key: str  # the series: `job:dummy@cpu/box` (a perf.csv's model where neither side has addresses)
    model: str  # the perf row's model
    metric: str
    a: Figure | None
    b: Figure | None
    verdict: Verdict
    better: Better
    direction_from: str  # expect | results | name | assumed
    change: float | None = None  # (b - a) / |a|, where both are known and a is not 0
    band: float = 0.0  # the noise band it was judged against (relative)
    changed: tuple[str, ...] = ()  # the inputs that differ (improved and regressed rows)
    a_status: Status | None = None
    b_status: Status | None = None
    message: str = ""  # why B failed, where it did

    def change_text(self) -> str:
        return "" if self.change is None else f"{self.change * 100:+.2f}%"

    def describe(self) -> str:
        """One line: `job:dummy@cpu/box samples_per_second 100 -> 90 (-10.00%, higher is better): script changed`."""
        what = f"{self.key}" + (f" {self.model}" if self.model and not names_model(self.key, self.model) else "")
        if self.metric:
            what += f" {self.metric}"
        a = format_number(self.a.median) if self.a else "-"
        b = format_number(self.b.median) if self.b else "-"
        text = f"{what} {a} -> {b}"
        if self.change is not None:
            text += f" ({self.change_text()}, {self.better} is better)"
        if self.verdict == "failed":
            text += f": {self.b_status.value if self.b_status else 'FAILED'}" + (f" ({self.message})" if self.message
                                                                                 else "")
        elif self.changed:
            text += f": {', '.join(self.changed)} changed"
        return printable(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "series": self.key,
            "model": self.model,
            "metric": self.metric,
            "a": _figure_json(self.a),
            "b": _figure_json(self.b),
            "change": self.change,
            "verdict": self.verdict,
            "better": self.better,
            "direction_from": self.direction_from,
            "band": self.band,
            "changed": list(self.changed),
            "a_status": self.a_status.value if self.a_status else None,
            "b_status": self.b_status.value if self.b_status else None,
            "message": self.message,
        }


def names_model(key: str, model: str) -> bool:
    """Whether the series key already says the row's model (a single-result job, or a perf.csv row)."""
    return key == model or key.removeprefix("job:").split("@", 1)[0].split("[", 1)[0].split("~", 1)[0] == model


def _figure_json(figure: Figure | None) -> dict[str, Any] | None:
    if figure is None:
        return None
    return {"median": figure.median, "spread": figure.spread, "values": list(figure.values)}


@dataclass(frozen=True)
class Comparison:
    a: ResultSet
    b: ResultSet
    noise: float
    rows: tuple[Row, ...]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(VERDICTS, 0)
        for row in self.rows:
            out[row.verdict] += 1
        return out

    def of(self, *verdicts: str) -> list[Row]:
        return [r for r in self.rows if r.verdict in verdicts]

    def summary(self) -> str:
        """`apply 11 -> apply 12: 1 regressed, 2 improved, 40 within noise`."""
        counts = self.counts()
        parts = [f"{n} {v}" for v, n in counts.items() if n]
        return printable(f"{self.a.label} -> {self.b.label}: " + (", ".join(parts) if parts else "nothing to compare"))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": _side_json(self.a),
            "b": _side_json(self.b),
            "noise": self.noise,
            "summary": self.counts(),
            "rows": [r.to_json() for r in self.rows],
        }


def _side_json(rs: ResultSet) -> dict[str, Any]:
    return {"label": rs.label, "kind": rs.kind, "apply_id": rs.apply_id, "created": rs.created,
            "lock_hash": rs.lock_hash, "project": rs.project}


# --- comparing ----------------------------------------------------------------------------------------


_Slot = tuple[str, str, str]  # (match key, row model, metric)


def _index(rs: ResultSet, loose: bool) -> dict[str, tuple[SeriesResult, str | None]]:
    """Series by match key, each with the row model it stands for (None: all its figures): the job's
    series key, or (`loose`: one side is a perf.csv, which knows no addresses) each figure's row model,
    unless two series share one (then each is keyed by its address too: new/missing, never mismatched)."""
    if not loose:
        return {key: (s, None) for key, s in rs.series.items()}
    owners: dict[str, list[SeriesResult]] = {}
    for s in rs.series.values():
        for name in sorted({m for m, _ in s.figures} or {s.model}):
            owners.setdefault(name, []).append(s)
    out: dict[str, tuple[SeriesResult, str | None]] = {}
    for name, series in owners.items():
        for s in series:
            out[name if len(series) == 1 else f"{name} ({s.key})"] = (s, name)
    return out


def compare(a: ResultSet, b: ResultSet, policy: Policy | None = None, *, metric: str | None = None,
            select: Iterable[str] | None = None) -> Comparison:
    """Compare result set `a` (before) with `b` (after). `metric`: only that metric; `select`: only the
    series whose key (or model) matches one of these shell patterns (`fnmatch`)."""
    policy = policy or Policy()
    loose = not (a.addressed and b.addressed)
    index_a, index_b = _index(a, loose), _index(b, loose)
    patterns = list(select or ())
    rows: list[Row] = []
    changes_cache: dict[tuple[int, int], tuple[str, ...]] = {}
    for match in sorted(set(index_a) | set(index_b)):
        (sa, only_a), (sb, only_b) = index_a.get(match, (None, None)), index_b.get(match, (None, None))
        shown = sb or sa
        assert shown is not None
        if patterns and not _selected(shown, sa, sb, patterns):
            continue
        figures_a, figures_b = _figures(sa, only_a), _figures(sb, only_b)
        names = sorted(set(figures_a) | set(figures_b))
        if metric is not None:
            names = [n for n in names if n[1] == metric]
        elif not names:  # a job that reported nothing on either side: its status still says something
            names = [(shown.model, "")]
        key = (sb.key if sb is not None and sb.key.startswith("job:") else sa.key if sa is not None else match)
        for row_model, row_metric in names:
            fa, fb = figures_a.get((row_model, row_metric)), figures_b.get((row_model, row_metric))
            better, source = policy.direction(_addressed(sa, sb), row_metric) if row_metric else ("higher", "")
            verdict, change, band, changed = _judge(fa, fb, better, sa, sb, policy.noise, changes_cache)
            rows.append(Row(key=key, model=row_model, metric=row_metric, a=fa, b=fb, verdict=verdict, better=better,
                            direction_from=source, change=change, band=band, changed=changed,
                            a_status=sa.status if sa else None, b_status=sb.status if sb else None,
                            message=sb.message if sb is not None and sb.status is not Status.SUCCESS else ""))
    return Comparison(a=a, b=b, noise=policy.noise, rows=tuple(rows))


def _selected(shown: SeriesResult, sa: SeriesResult | None, sb: SeriesResult | None, patterns: list[str]) -> bool:
    from fnmatch import fnmatchcase

    names = {s.key for s in (sa, sb) if s is not None} | {s.model for s in (sa, sb) if s is not None}
    names |= {_model_keys(shown)[0]}
    return any(fnmatchcase(name, p) for name in names for p in patterns)


def _addressed(sa: SeriesResult | None, sb: SeriesResult | None) -> SeriesResult | None:
    """The side whose series is a job (it has a model key an `expect:` gate may name)."""
    for s in (sb, sa):
        if s is not None and s.key.startswith("job:"):
            return s
    return sb or sa


def _figures(series: SeriesResult | None, only_model: str | None) -> dict[tuple[str, str], Figure]:
    if series is None:
        return {}
    if only_model is None:
        return series.figures
    return {k: f for k, f in series.figures.items() if k[0] == only_model}


_Judged = tuple[Verdict, float | None, float, tuple[str, ...]]  # verdict, change, band, changed inputs


def _judge(fa: Figure | None, fb: Figure | None, better: Better, sa: SeriesResult | None, sb: SeriesResult | None,
           noise: float, cache: dict[tuple[int, int], tuple[str, ...]]) -> _Judged:
    if sb is not None and sb.status is not Status.SUCCESS:  # still failing (not rerun) is no less failed
        return "failed", None, 0.0, ()
    if sb is not None and sa is not None and sa.attempt_ids and sa.attempt_ids == sb.attempt_ids:
        return "unchanged", 0.0 if fa and fb else None, 0.0, ()
    if fb is None:
        return "missing", None, 0.0, ()
    if fa is None:
        return "new", None, 0.0, ()
    a, b = fa.median, fb.median
    band = max(noise, fa.spread, fb.spread)
    change = (b - a) / abs(a) if a != 0 else (0.0 if b == 0 else math.copysign(math.inf, b))
    shown = change if math.isfinite(change) else None
    if abs(change) <= band:
        return "within noise", shown, band, ()
    verdict: Verdict = "improved" if (change > 0) == (better == "higher") else "regressed"
    assert sa is not None and sb is not None
    pair = (id(sa), id(sb))
    changed = cache.get(pair)
    if changed is None:
        changed = cache[pair] = changed_inputs(sa, sb)
    return verdict, shown, band, changed


# --- what changed ---------------------------------------------------------------------------------


def changed_inputs(a: SeriesResult, b: SeriesResult) -> tuple[str, ...]:
    """The inputs that differ between two results of a job, named for humans, image first. A key one
    side does not know (a perf.csv knows few) is not a change: not knowing is no evidence."""
    from madengine.plan.planner import IMAGE_INPUTS, JOB_INPUTS

    out: list[str] = []
    image_moved = False
    ia, ib = a.image_inputs or {}, b.image_inputs or {}
    for key, label in IMAGE_INPUTS.items():
        if key not in ia or key not in ib or ia[key] == ib[key]:
            continue
        image_moved = True
        if key == "build_args":
            out += [f"build arg {name}" for name in _differing(ia[key], ib[key])] or [label]
        elif key == "base":
            before, after = _mapping(ia[key]), _mapping(ib[key])
            if before.get("ref") != after.get("ref"):
                out.append("base image")
            if before.get("digest") != after.get("digest") and before.get("digest") and after.get("digest"):
                out.append("base image digest")
        else:
            out.append(label)
    if not image_moved and a.image_digest and b.image_digest and a.image_digest != b.image_digest:
        out.append("image digest")  # the same inputs built another image (a base tag moved, a cache...)
    ja, jb = a.inputs, b.inputs
    for key, label in JOB_INPUTS.items():
        if key == "image_hash" or key not in ja or key not in jb or ja[key] == jb[key]:
            continue  # the image's own inputs say what changed in it
        if key == "env":
            out += [f"env var {name}" for name in _differing(ja[key], jb[key])] or [label]
        elif key == "script":
            before, after = _mapping(ja[key]), _mapping(jb[key])
            if before.get("path") != after.get("path") or before.get("sha256") != after.get("sha256"):
                out.append("script")
            else:
                out.append("script directory")
        else:
            out.append(label)
    if a.host and b.host and a.host != b.host:
        out.append(f"host {a.host} → {b.host}")
    out += _facts_changed(a.facts, b.facts)
    return tuple(dict.fromkeys(out))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _differing(before: Any, after: Any) -> list[str]:
    x, y = _mapping(before), _mapping(after)
    return sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))


def _facts_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    if not before or not after or before == after:
        return []
    from madengine.facts.compare import FACT_KEYS, changed
    from madengine.facts.model import HostFacts

    try:
        return changed(HostFacts.from_dict(before), HostFacts.from_dict(after), FACT_KEYS)
    except ValueError:  # recorded otherwise by another version: as if unknown
        return []


# --- the madfile's settings -------------------------------------------------------------------------


def policy_of(madfile: Any, noise: float | None = None) -> Policy:
    """The policy a madfile sets (`results:` and the `expect:` gates' directions); `noise` (a command
    line's `--noise`) wins over the madfile's."""
    if madfile is None:
        return Policy(noise=DEFAULT_NOISE if noise is None else noise)
    settings = madfile.results
    by_model: dict[tuple[str, str], GateHint] = {}
    for run in madfile.runs:
        for key, gate in run.expect.items():
            by_model[(key, gate.metric)] = GateHint(gate.better, gate.min is not None, gate.max is not None)
    return Policy(noise=settings.noise if noise is None else noise, better=dict(settings.better), by_model=by_model)


# --- how it reads --------------------------------------------------------------------------------------

HEADER = ("JOB", "METRIC", "A", "B", "CHANGE", "BETTER", "VERDICT", "CHANGED INPUTS")
# The order rows are shown in: what needs attention first.
_SHOWN_ORDER = {v: i for i, v in enumerate(VERDICTS)}


def ordered(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (_SHOWN_ORDER[r.verdict], r.key, r.model, r.metric))


def _metric_cell(row: Row) -> str:
    named = row.metric or "(no result)"
    return named if names_model(row.key, row.model) else f"{row.model} {named}"


def _figure_cell(figure: Figure | None) -> str:
    if figure is None:
        return "-"
    text = format_number(figure.median)
    if len(figure.values) > 1:  # the repeats' spread around the median, and how many there were
        text += (f" {figure.spread_text()}" if figure.spread else "") + f" (n={len(figure.values)})"
    return text


def _better_cell(row: Row) -> str:
    if not row.metric:
        return ""
    return f"{row.better} (assumed)" if row.direction_from == "assumed" else row.better


def _inputs_cell(row: Row) -> str:
    if row.verdict == "failed":
        status = row.b_status.value if row.b_status else "FAILED"
        return f"{status}: {row.message}" if row.message else status
    return ", ".join(row.changed)


def cells(row: Row) -> tuple[str, ...]:
    """One row of the table: job, metric, A, B, change, better, verdict, changed inputs (or why B failed)."""
    return tuple(map(printable, (row.key, _metric_cell(row), _figure_cell(row.a), _figure_cell(row.b),
                                 row.change_text(), _better_cell(row), row.verdict, _inputs_cell(row))))


def shown_rows(comparison: Comparison, *, everything: bool = False) -> tuple[list[Row], int]:
    """The rows a human sees (the interesting ones, or all) and how many others there are."""
    rows = ordered(comparison.rows)
    if everything:
        return rows, 0
    shown = [r for r in rows if r.verdict in INTERESTING]
    return shown, len(rows) - len(shown)


def _md(text: str) -> str:
    """A markdown table cell: `|` escaped, on one line."""
    return " ".join(printable(text).replace("\\", "\\\\").replace("|", "\\|").split())


def _md_table(rows: Sequence[Row], a_label: str, b_label: str) -> list[str]:
    head = ("Job", "Metric", a_label, b_label, "Change", "Better", "Verdict", "Changed inputs")
    out = ["| " + " | ".join(_md(h) for h in head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        key, metric, a, b, change, better, verdict, inputs = cells(row)
        if verdict in ("regressed", "failed"):
            verdict = f"**{verdict}**"
        out.append("| " + " | ".join((f"`{_md(key)}`", _md(metric), _md(a), _md(b), _md(change), _md(better),
                                      verdict, _md(inputs))) + " |")
    return out


def markdown(comparison: Comparison) -> str:
    """A pull-request comment: the summary, a table of what regressed, improved or failed (with the inputs
    that changed), then the rest collapsed in a `<details>`."""
    from madengine.madfile.percent import format_percent

    rows = ordered(comparison.rows)
    main = [r for r in rows if r.verdict in ("regressed", "improved", "failed")]
    rest = [r for r in rows if r.verdict not in ("regressed", "improved", "failed")]
    a, b = comparison.a.label, comparison.b.label
    lines = [f"**madengine compare** {_md(comparison.summary())} (noise floor {format_percent(comparison.noise)})",
             ""]
    if main:
        lines += _md_table(main, a, b)
    else:
        lines.append("Nothing regressed, improved or failed.")
    if rest:
        counts = ", ".join(f"{n} {v}" for v, n in comparison.counts().items()
                           if n and v not in ("regressed", "improved", "failed"))
        lines += ["", f"<details><summary>{len(rest)} more: {counts}</summary>", "", *_md_table(rest, a, b), "",
                  "</details>"]
    return "\n".join(lines) + "\n"
