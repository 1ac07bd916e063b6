"""SVG charts for the HTML report, drawn here: no charting library, no script, nothing fetched to view them.

Two shapes: a horizontal bar chart (one figure per job: labels are job addresses, long, so they go on the
left, one row each) and a line chart (a figure per series over the applies). Pure: values in, SVG text
out. Every label and value is escaped here (the result is `Markup`, pasted as is by the template).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

BAR_COLOUR = "#2f6db5"  # the bars' fill (the Chromium test looks for it in the screenshot)
FAILED_COLOUR = "#c0392b"
# Lines, in order: distinguishable, and none of them the bars' colour.
PALETTE = ("#e6550d", "#31a354", "#756bb1", "#d62728", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#1f77b4", "#ff9896", "#393b79")
WIDTH = 900
_LABEL_WIDTH = 330  # bar chart: the labels' column
_ROW = 20  # bar chart: pixels per bar
_MAX_LABEL = 52  # characters of a label shown (the whole label is the element's tooltip)
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str = ""  # the tooltip's extra words (repeats, spread)


@dataclass(frozen=True)
class Series:
    label: str
    values: tuple[float | None, ...]  # one per x position; None: no figure there


def number(value: float) -> str:
    """A figure as a chart shows it: 4 significant digits, no exponent below 1e9."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if magnitude >= 1e9 or magnitude < 1e-4:
        return f"{value:.3e}"
    text = f"{value:.4g}" if magnitude < 1e4 else f"{value:.0f}"
    return text.replace("e+0", "e").replace("e-0", "e-")


def _short(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[:_MAX_LABEL - 1] + "…"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step) * step
    ticks = [round(first, 12)]
    while ticks[-1] < hi - step * 1e-9:  # up to the first tick at or above hi
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def bar_chart(bars: Sequence[Bar], *, metric: str, total: int | None = None) -> Markup:
    """One horizontal bar per figure, in the given order; `total`: how many there were before a cap
    (said under the chart)."""
    values = [b.value for b in bars if math.isfinite(b.value)]
    lo, hi = min([0.0, *values]), max([0.0, *values])
    ticks = nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    plot = WIDTH - _LABEL_WIDTH - 70
    top, height = 8, _ROW * max(len(bars), 1)

    def x(v: float) -> float:
        return _LABEL_WIDTH + (v - lo) / (hi - lo) * plot

    out = [f'<svg class="chart bar" width="{WIDTH}" '
           f'height="{top + height + 40}" viewBox="0 0 {WIDTH} {top + height + 40}" role="img" '
           f'aria-label="{escape(metric)} by job" {_FONT}>']
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + height}" stroke="#e3e3e3"/>'
                   f'<text x="{x(t):.1f}" y="{top + height + 14}" text-anchor="middle" fill="#555">'
                   f'{escape(number(t))}</text>')
    zero = x(0.0)
    for i, bar in enumerate(bars):
        y = top + i * _ROW
        value = bar.value if math.isfinite(bar.value) else 0.0
        left, right = sorted((zero, x(value)))
        tip = f"{bar.label}: {number(bar.value)} {metric}" + (f" ({bar.note})" if bar.note else "")
        out.append(f'<g><title>{escape(tip)}</title>'
                   f'<text x="{_LABEL_WIDTH - 6}" y="{y + 14}" text-anchor="end">{escape(_short(bar.label))}</text>'
                   f'<rect x="{left:.1f}" y="{y + 3}" width="{max(right - left, 1):.1f}" height="{_ROW - 6}" '
                   f'fill="{BAR_COLOUR}"/>'
                   f'<text x="{right + 4:.1f}" y="{y + 14}" fill="#333">{escape(number(bar.value))}</text></g>')
    out.append(f'<line x1="{zero:.1f}" y1="{top}" x2="{zero:.1f}" y2="{top + height}" stroke="#888"/>')
    caption = metric if total is None or total <= len(bars) else f"{metric} (top {len(bars)} of {total} shown)"
    out.append(f'<text x="{_LABEL_WIDTH + plot / 2:.1f}" y="{top + height + 32}" text-anchor="middle" '
               f'fill="#555">{escape(caption)}</text></svg>')
    return Markup("".join(out))


def line_chart(x_labels: Sequence[str], series: Sequence[Series], *, metric: str,
               total: int | None = None) -> Markup:
    """A line per series over the x positions (applies); a gap where a series has no figure. At most
    len(PALETTE) series are drawn (the caller caps; `total`: how many there were)."""
    series = series[:len(PALETTE)]
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    # no axis below zero for figures that are all positive (a throughput is never negative)
    ticks = nice_ticks(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
    lo, hi = ticks[0], ticks[-1]
    left, right, top, plot_h = 70, WIDTH - 20, 10, 220
    legend_rows = (len(series) + 1) // 2
    height = top + plot_h + 52 + legend_rows * 18 + 6
    n = len(x_labels)

    def x(i: int) -> float:
        return left + (right - left) * (i + 0.5) / max(n, 1)

    def y(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    out = [f'<svg class="chart line" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(metric)} over applies" {_FONT}>']
    for t in ticks:
        out.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{right}" y2="{y(t):.1f}" stroke="#e3e3e3"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" fill="#555">'
                   f'{escape(number(t))}</text>')
    step = max(1, math.ceil(n / 20))  # at most ~20 x labels
    for i, label in enumerate(x_labels):
        if i % step == 0 or i == n - 1:
            out.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">'
                       f'{escape(label)}</text>')
    for k, s in enumerate(series):
        colour = PALETTE[k]
        segment: list[str] = []
        segments: list[list[str]] = [segment]
        dots = []
        for i, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                segment = []
                segments.append(segment)
                continue
            segment.append(f"{x(i):.1f},{y(v):.1f}")
            dots.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}">'
                        f'<title>{escape(f"{s.label} @ {x_labels[i]}: {number(v)} {metric}")}</title></circle>')
        out.append("<g>" + "".join(
            f'<polyline points="{" ".join(seg)}" fill="none" stroke="{colour}" stroke-width="2"/>'
            for seg in segments if len(seg) > 1) + "".join(dots) + "</g>")
        lx, ly = (left if k % 2 == 0 else left + (right - left) / 2), top + plot_h + 54 + (k // 2) * 18
        out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{lx + 18:.1f}" y="{ly + 1}"><title>{escape(s.label)}</title>'
                   f'{escape(_short(s.label))}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{right}" y2="{top + plot_h}" stroke="#888"/>')
    caption = "apply" if total is None or total <= len(series) else \
        f"apply ({len(series)} of {total} series shown: those that moved most)"
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{top + plot_h + 30}" text-anchor="middle" fill="#555">'
               f'{escape(caption)}</text></svg>')
    return Markup("".join(out))
