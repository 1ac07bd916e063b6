"""`madengine report`: one self-contained HTML page of what the applies measured (DESIGN §7).

`build` turns the store's records (applies, attempts, the comparison, the failures' log tails) into a
`Report`, purely; `render` writes it through the jinja2 templates of the top-level `templates/report/`
(autoescaped: a model name or a log line holding `<script>` is text on the page, never markup). The
page needs nothing from the network: its CSS is inline, its charts are inline SVG drawn by `svgchart`,
it has no script.

What a chart draws is capped so that it stays readable with a thousand jobs (the tables list everything):
a bar chart shows the `MAX_BARS` highest figures of its metric, a history chart the `MAX_LINES` series
that moved most over the applies shown. Each says so under it when it leaves some out.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from operator import attrgetter
from pathlib import Path, PurePosixPath

import jinja2
from markupsafe import Markup

from madengine import shipped
from madengine.files import NotAFileError, open_file
from madengine.results import compare, svgchart
from madengine.results.gates import Verdict
from madengine.results.gates import summary as gates_summary
from madengine.results.perfcsv import format_number, is_job
from madengine.results.resultset import Figure, series_key
from madengine.state.model import ApplyRecord, Attempt, Status

MAX_BARS = 40  # bars per chart: the highest figures of the metric
MAX_LINES = len(svgchart.PALETTE)  # lines per history chart: the series that moved most
MAX_FAILURES = 50  # failures shown with their log's tail (the tables list every one)
TAIL_LINES = 40  # lines of a failed attempt's log shown
TAIL_BYTES = 16 * 1024  # read from the end of the log at most
TAIL_LINE_CHARS = 400  # a longer line is cut (a progress bar without newlines...)
HASH_CHARS = 12  # of a lock hash, in the tables (the whole hash is the cell's tooltip)


@dataclass(frozen=True)
class Row:
    """One figure of one job's latest attempt (an attempt without figures has one row, metric empty)."""

    job: str
    metric: str
    value: str
    status: str
    host: str
    lock_hash: str
    apply_id: int
    when: str
    gate: str = ""  # "met", "UNMET" or "" (no gate recorded)
    note: str = ""

    @property
    def short_hash(self) -> str:
        return short_hash(self.lock_hash)


@dataclass(frozen=True)
class Table:
    context: str
    target: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Chart:
    metric: str
    svg: Markup
    shown: int
    total: int


@dataclass(frozen=True)
class Failure:
    job: str
    status: str
    host: str
    exit_code: int | None
    message: str
    when: str
    apply_id: int
    log_path: str
    tail: str | None  # None: no log to show; `tail_note` says why
    tail_note: str = ""


@dataclass(frozen=True)
class ComparisonRow:
    """One line of the comparison, as the report shows it (from `compare`'s rows)."""

    job: str
    metric: str
    before: str
    after: str
    change: str
    verdict: str
    inputs: tuple[str, ...] = ()  # the inputs that changed between the two results


@dataclass(frozen=True)
class Comparison:
    before: str  # what the report is compared against: `apply 3`, `baseline nightly`...
    after: str
    rows: tuple[ComparisonRow, ...]  # what changed (regressions first), shown in full
    counts: tuple[tuple[str, int], ...]
    quiet: tuple[ComparisonRow, ...] = ()  # within noise, unchanged: folded away


@dataclass(frozen=True)
class Summary:
    apply: ApplyRecord | None  # the apply the report is about
    applies: int  # recorded in the store
    jobs: int
    statuses: tuple[tuple[str, int], ...]
    gates: str  # `gates: 4 met, 1 unmet`, or "" when no result shown has a gate
    figures: int


@dataclass(frozen=True)
class Report:
    project: str
    generated: str
    summary: Summary
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()
    comparison: Comparison | None = None
    comparison_note: str = ""  # why there is no comparison (the first apply...)
    history: tuple[Chart, ...] = ()
    history_applies: tuple[int, ...] = ()
    failures: tuple[Failure, ...] = ()
    failures_total: int = 0
    caps: Mapping[str, int] = field(default_factory=lambda: {"bars": MAX_BARS, "lines": MAX_LINES,
                                                             "failures": MAX_FAILURES, "tail": TAIL_LINES})

    @property
    def empty(self) -> bool:
        return not self.tables


def comparison(result: compare.Comparison) -> Comparison:
    """`compare`'s comparison as the report shows it: regressions first (the largest first), then the other
    verdicts in `compare.VERDICTS`' order; rows within noise or unchanged apart, folded."""
    order = {v: i for i, v in enumerate(compare.VERDICTS)}

    def worst_first(row: compare.Row) -> tuple[int, float, str, str, str]:
        return order[row.verdict], -abs(row.change or 0.0), row.key, row.model, row.metric

    rows = [ComparisonRow(job=row.key if compare.names_model(row.key, row.model) else f"{row.key} {row.model}",
                          metric=row.metric, before=_median(row.a), after=_median(row.b), change=row.change_text(),
                          verdict=row.verdict,
                          inputs=row.changed or ((f"{row.b_status.value if row.b_status else 'FAILED'}"
                                                  + (f": {row.message}" if row.message else ""),)
                                                 if row.verdict == "failed" else ()))
            for row in sorted(result.rows, key=worst_first)]
    counts = tuple((v, n) for v, n in result.counts().items() if n)
    return Comparison(before=result.a.label, after=result.b.label, counts=counts,
                      rows=tuple(r for r in rows if r.verdict in compare.INTERESTING),
                      quiet=tuple(r for r in rows if r.verdict not in compare.INTERESTING))


def _median(figure: Figure | None) -> str:
    """A median as the comparison shows it: 6 significant digits (that of two repeats is no exact figure)."""
    return "" if figure is None else format_number(float(f"{figure.median:.6g}"))


def short_hash(value: str) -> str:
    _, _, digest = value.rpartition(":")
    return digest[:HASH_CHARS]


def _where(attempt: Attempt) -> tuple[str, str]:
    """(context, target) of a job: from its lock entry, else from its address (`job:m@ctx/target#1`)."""
    context, target = attempt.inputs.get("context"), attempt.inputs.get("target")
    if isinstance(context, str) and isinstance(target, str):
        return context, target
    _, _, place = series_key(attempt.address).rpartition("@")
    ctx, _, tgt = place.partition("/")
    return ctx, tgt


def latest(attempts: Iterable[Attempt], up_to: int | None = None, current: Collection[str] | None = None
           ) -> list[Attempt]:
    """The latest finished attempt of every job as of apply `up_to` (every apply when None), by address.
    `current`: the series keys of the project's lock (`resultset.current_series`): an earlier apply's result
    is kept only for a job still in it, as `resultset.from_apply` keeps them; the reported apply's own always."""
    out: dict[str, Attempt] = {}
    for attempt in sorted(attempts, key=attrgetter("chronology")):
        if is_job(attempt) and attempt.status is not Status.RUNNING and (up_to is None or attempt.apply_id <= up_to):
            out[attempt.address] = attempt
    if current is not None and out:
        newest = up_to if up_to is not None else max(a.apply_id for a in out.values())
        ran = {series_key(a.address) for a in out.values() if a.apply_id == newest}
        out = {k: a for k, a in out.items() if (key := series_key(k)) in ran or key in current}
    return [out[a] for a in sorted(out)]


def _gate(attempt: Attempt) -> Verdict | None:
    return Verdict.from_json(attempt.address, attempt.gate) if attempt.gate is not None else None


def _rows(attempt: Attempt) -> list[Row]:
    verdict = _gate(attempt)
    gate = "" if verdict is None else "met" if verdict.met else "UNMET"
    note = " ".join((attempt.message or (verdict.reason if verdict and not verdict.met else "")).split())
    model = attempt.inputs.get("model")
    figures: list[tuple[str, str, str]] = [
        (p.metric if p.model == model else f"{p.metric} ({p.model})", format_number(p.performance),
         p.status.value if attempt.status is Status.SUCCESS else attempt.status.value) for p in attempt.perf]
    return [Row(job=attempt.address, metric=metric, value=value, status=status, host=attempt.host or "",
                lock_hash=attempt.node_hash, apply_id=attempt.apply_id, when=attempt.ended_at or attempt.started_at,
                gate=gate, note=note)
            for metric, value, status in figures or [("", "", attempt.status.value)]]


def tables(shown: Sequence[Attempt]) -> tuple[Table, ...]:
    by_place: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for attempt in shown:
        by_place[_where(attempt)].extend(_rows(attempt))
    return tuple(Table(context, target, tuple(rows)) for (context, target), rows in sorted(by_place.items()))


def _figures(attempts: Iterable[Attempt]) -> dict[str, dict[str, Figure]]:
    """metric -> series label -> its figure, as `resultset.series_of` counts them (the latest attempt of each
    address; the repeats of a job are one series; a failed run's numbers are not results), without the rest
    of a series (inputs, image) that a chart does not need: a history reads twenty applies of it. A
    multiple_results row's label is its job's and the row's model."""
    last: dict[str, Attempt] = {}
    for attempt in sorted(attempts, key=attrgetter("chronology")):
        if is_job(attempt):
            last[attempt.address] = attempt
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for address in sorted(last, key=_repeat_order):
        attempt = last[address]
        if attempt.status is not Status.SUCCESS:
            continue
        key, model = series_key(address), attempt.inputs.get("model")
        for p in attempt.perf:
            if p.status is Status.SUCCESS and p.performance is not None and math.isfinite(p.performance):
                values[p.metric][key if p.model == model else f"{key} {p.model}"].append(float(p.performance))
    return {metric: {label: Figure.of(label, metric, v) for label, v in by_label.items()}
            for metric, by_label in values.items()}


def _repeat_order(address: str) -> tuple[str, int]:
    head, _, repeat = address.rpartition("#")
    return (head, int(repeat)) if repeat.isdigit() else (address, 0)


def bar_charts(shown: Sequence[Attempt]) -> tuple[Chart, ...]:
    """A chart per metric of the latest figures, one bar per series (the median of its repeats)."""
    charts = []
    for metric, figures in sorted(_figures(shown).items()):
        bars = sorted((svgchart.Bar(label, f.median, _repeats(f)) for label, f in figures.items()),
                      key=lambda b: (-b.value, b.label))
        charts.append(Chart(metric, svgchart.bar_chart(bars[:MAX_BARS], metric=metric, total=len(bars)),
                            min(len(bars), MAX_BARS), len(bars)))
    return tuple(charts)


def _repeats(figure: Figure) -> str:
    if len(figure.values) < 2:
        return ""
    return (f"median of {len(figure.values)} repeats, "
            f"{format_number(min(figure.values))}..{format_number(max(figure.values))}"
            + (f", spread {figure.spread_text()}" if figure.spread else ""))


def history_charts(attempts: Sequence[Attempt], applies: Sequence[int]) -> tuple[Chart, ...]:
    """A chart per metric over `applies`: a line per series, the median of what each apply measured."""
    per_apply: dict[int, list[Attempt]] = defaultdict(list)
    wanted = set(applies)
    for attempt in attempts:
        if attempt.apply_id in wanted:
            per_apply[attempt.apply_id].append(attempt)
    points: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for apply_id, done in per_apply.items():
        for metric, figures in _figures(done).items():
            for label, figure in figures.items():
                points[metric][label][apply_id] = figure.median
    charts = []
    labels = [f"#{a}" for a in applies]
    for metric, by_series in sorted(points.items()):
        lines = [svgchart.Series(label, tuple(by_apply.get(a) for a in applies))
                 for label, by_apply in by_series.items()]
        lines.sort(key=lambda s: (-_movement(s.values), s.label))
        drawn = lines[:MAX_LINES]
        charts.append(Chart(metric, svgchart.line_chart(labels, drawn, metric=metric, total=len(lines)),
                            len(drawn), len(lines)))
    return tuple(charts)


def _movement(values: Sequence[float | None]) -> float:
    """How much a series moved: its range over its mean's magnitude (0 for one point)."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return 0.0
    mean = abs(statistics.fmean(known))
    return (max(known) - min(known)) / mean if mean else max(known) - min(known)


def failures(shown: Sequence[Attempt], tails: Mapping[int, tuple[str | None, str]]) -> tuple[Failure, ...]:
    """The failed results shown (failed, timed out, interrupted), each with its log's tail (`tails`:
    attempt id -> (tail, why there is none))."""
    out = []
    for attempt in failed(shown)[:MAX_FAILURES]:
        tail, note = tails.get(attempt.id, (None, "log not read"))
        out.append(Failure(job=attempt.address, status=attempt.status.value, host=attempt.host or "",
                           exit_code=attempt.exit_code, message=attempt.message,
                           when=attempt.ended_at or attempt.started_at, apply_id=attempt.apply_id,
                           log_path=attempt.log_path or "", tail=tail, tail_note=note))
    return tuple(out)


def failed(shown: Iterable[Attempt]) -> list[Attempt]:
    return [a for a in shown if a.status.failed or a.status is Status.INTERRUPTED]


def summary(applies: Sequence[ApplyRecord], apply: ApplyRecord | None, shown: Sequence[Attempt]) -> Summary:
    counts = Counter(a.status.value for a in shown)
    verdicts = [v for v in map(_gate, shown) if v is not None]
    return Summary(apply=apply, applies=len(applies), jobs=len(shown), statuses=tuple(sorted(counts.items())),
                   gates=gates_summary(verdicts) if verdicts else "",
                   figures=sum(len(a.perf) for a in shown))


def build(*, project: str, generated: str, applies: Sequence[ApplyRecord], attempts: Sequence[Attempt],
          apply_id: int | None = None, history: int = 20, comparison: Comparison | None = None,
          comparison_note: str = "", tails: Mapping[int, tuple[str | None, str]] | None = None,
          current: Collection[str] | None = None) -> Report:
    """The report on apply `apply_id` (the latest when None): the latest result of every job as of it
    (of the jobs still in the project: `current`, see `latest`), and the `history` applies up to it."""
    chosen = next((a for a in applies if a.id == apply_id), None) if apply_id is not None else \
        (applies[-1] if applies else None)
    up_to = chosen.id if chosen is not None else None
    shown = latest(attempts, up_to, current)
    window = [a.id for a in applies if up_to is None or a.id <= up_to][-history:] if history > 0 else []
    every_failure = failed(shown)
    return Report(project=project, generated=generated, summary=summary(applies, chosen, shown),
                  tables=tables(shown), charts=bar_charts(shown), comparison=comparison,
                  comparison_note=comparison_note, history=history_charts(attempts, window) if window else (),
                  history_applies=tuple(window), failures=failures(shown, tails or {}),
                  failures_total=len(every_failure))


# --- the failures' logs (read from the state directory) -------------------------------------------


def log_tail(state_dir: Path, log_path: str | None, *, lines: int = TAIL_LINES,
             max_bytes: int = TAIL_BYTES) -> tuple[str | None, str]:
    """The last `lines` lines of a log recorded relative to the state directory: (text, "") or (None, why
    not). Only a regular file inside the state directory is read (a path recorded elsewhere, a FIFO or a
    device where the log was are refused, never opened), at most `max_bytes` from its end."""
    if not log_path:
        return None, "no log recorded"
    relative = PurePosixPath(log_path)
    if relative.is_absolute() or ".." in relative.parts:
        return None, f"log path {log_path!r} is outside the state directory"
    path = state_dir.joinpath(*relative.parts)
    try:
        fd = open_file(path)
    except FileNotFoundError:
        return None, f"{log_path} no longer exists"
    except NotAFileError as exc:
        return None, f"{log_path} is {exc.what}"
    except OSError as exc:
        return None, f"{log_path} cannot be read: {exc.strerror or exc}"
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        os.lseek(fd, start, os.SEEK_SET)
        raw = os.read(fd, max_bytes)
    except OSError as exc:
        return None, f"{log_path} cannot be read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    text = raw.decode("utf-8", errors="replace")
    kept = text.splitlines()
    if start > 0 and kept:
        kept = kept[1:]  # the first line read is cut at the window's start
    kept = kept[-lines:]
    cut = [line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " …" for line in kept]
    if not cut:
        return None, f"{log_path} is empty"
    return "\n".join(cut), ""


# --- rendering --------------------------------------------------------------------------------------


def template_dir() -> Path:
    return shipped.template_dir("report")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["shorthash"] = short_hash
    return env


def render(report: Report) -> str:
    return _environment().get_template("report.html.j2").render(report=report, r=report)
