"""The HTML report (results/report.py, templates/report): its sections, tables and charts, read back with the
standard library's HTML parser; escaping; the failures' log tails; what a chart caps."""

from __future__ import annotations

import os
from pathlib import Path

from madengine.results import report as rep
from madengine.results import svgchart
from madengine.state.model import ApplyRecord, Attempt, PerfRow, Status
from tests.unit.results.conftest import attempt, job_address, job_inputs, perf
from tests.unit.results.report_html import external_references, parse

HOSTILE = '<script>alert("x")</script>'


def _apply(id: int, outcome: str = "SUCCESS") -> ApplyRecord:
    return ApplyRecord(id=id, lock_hash=f"sha256:{id:02d}c0ffee{id:02d}", serial=id,
                       started_at=f"2026-11-2{id}T10:00:00.000Z", ended_at=f"2026-11-2{id}T10:05:00.000Z",
                       outcome=outcome, host="ci-01")


def _job(id: int, model: str, apply_id: int, value: float | None, *, context: str = "cpu", target: str = "box",
         repeat: int = 1, metric: str = "samples_per_second", status: Status = Status.SUCCESS,
         log_path: str | None = None, message: str = "", rows: tuple[PerfRow, ...] | None = None) -> Attempt:
    figures = rows if rows is not None else (perf(value, metric, model),) if value is not None else ()
    return attempt(id, job_address(model, context=context, target=target, repeat=repeat),
                   job_inputs(model, context=context, target=target, repeat=repeat), status=status, perf=figures,
                   apply_id=apply_id, start=f"2026-11-2{apply_id}T10:0{repeat}:00Z",
                   end=f"2026-11-2{apply_id}T10:0{repeat}:30Z", log_path=log_path, message=message)


def _store() -> tuple[list[ApplyRecord], list[Attempt]]:
    """Three applies; jobs on two contexts and two targets, two metrics, repeats, a failure, a multiple_results job."""
    applies = [_apply(1), _apply(2), _apply(3, "FAILURE")]
    attempts = []
    n = 0
    for apply_id, scale in ((1, 1.0), (2, 1.1), (3, 0.9)):
        for repeat in (1, 2):
            n += 1
            attempts.append(_job(n, "resnet", apply_id, 100 * scale + repeat, repeat=repeat))
        n += 1
        attempts.append(_job(n, "bert", apply_id, 50 * scale, context="gpu", metric="tokens_per_second"))
        n += 1
        attempts.append(_job(n, "gpt", apply_id, 20 * scale, target="lab", metric="tokens_per_second"))
    n += 1
    attempts.append(_job(n, "broken", 3, None, status=Status.FAILURE, log_path="logs/3/broken.log",
                         message="exit code 2"))
    n += 1
    attempts.append(_job(n, "multi", 3, None, rows=(perf(7.0, "tps", "multi_bs1"), perf(9.0, "tps", "multi_bs8"))))
    return applies, attempts


def _render(applies: list[ApplyRecord], attempts: list[Attempt], **kwargs: object) -> str:
    report = rep.build(project="demo", generated="2026-11-24T00:00:00.000Z", applies=applies, attempts=attempts,
                       **kwargs)  # type: ignore[arg-type]
    return rep.render(report)


def test_sections_tables_and_a_chart_per_metric() -> None:
    applies, attempts = _store()
    html = _render(applies, attempts)
    page = parse(html)
    assert page.sections == ["summary", "comparison", "charts", "history", "results", "failures"]
    tables = page.tables["results"]
    assert [(t.attrs["data-context"], t.attrs["data-target"]) for t in tables] == [
        ("cpu", "box"), ("cpu", "lab"), ("gpu", "box")]
    assert tables[0].header[:8] == ["job", "metric", "value", "status", "host", "lock hash", "apply", "when"]
    jobs = {row[0] for t in tables for row in t.rows}
    assert jobs == {job_address("resnet"), job_address("resnet", repeat=2), job_address("gpt", target="lab"),
                    job_address("bert", context="gpu"), job_address("broken"), job_address("multi")}
    # multiple_results: a row per figure, named by its row model
    multi = [row for row in tables[0].rows if row[0] == job_address("multi")]
    assert [(row[1], row[2]) for row in multi] == [("tps (multi_bs1)", "7"), ("tps (multi_bs8)", "9")]
    # one chart per metric of the latest figures, and one history chart per metric
    assert page.svgs["charts"] == 3 and page.svgs["history"] == 3
    assert "samples_per_second" in page.text["charts"] and "tokens_per_second" in page.text["charts"]
    # the host and lock hash each result came from
    resnet = next(row for row in tables[0].rows if row[0] == job_address("resnet"))
    assert resnet[4] == "bench-01" and resnet[5] == "a00d" and resnet[6] == "3"
    assert "FAILURE" in page.text["summary"] and "3" in page.text["summary"]


def test_the_page_needs_no_network() -> None:
    applies, attempts = _store()
    html = _render(applies, attempts)
    page = parse(html)
    assert external_references(html) == [] and "http" not in html.lower()
    assert page.urls == [f"#{section}" for section in page.sections]  # the contents: links within the page
    # the check itself finds what it looks for
    assert external_references('<svg xmlns="http://www.w3.org/2000/svg"></svg><img src="//x/y.png">'
                               '<style>@import "a.css"; b { background: url(c.png) }</style>') == [
        "http://www.w3.org/2000/svg", "//x/y.png", "@import", "url("]
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert "font-family" in page.style  # the CSS is inline


def test_repeats_are_one_bar_their_median() -> None:
    applies, attempts = _store()
    page = parse(_render(applies, attempts))
    key = job_address("resnet").removesuffix("#1")
    # apply 3 measured 91 and 92: the median is 91.5, said with the repeats in the bar's tooltip
    shown = f"{key}: 91.5 samples_per_second (median of 2 repeats, 91..92, spread ±0.5%)"
    assert any(t.startswith(shown) for t in page.titles)


def test_history_is_a_line_per_series_over_the_applies_shown() -> None:
    applies, attempts = _store()
    html = _render(applies, attempts, history=2)
    page = parse(html)
    assert "#2 to #3" in page.text["history"]
    assert any(t.startswith(f"{job_address('gpt', target='lab').removesuffix('#1')} @ #2: 22 ") for t in page.titles)
    assert not any(" @ #1: " in t for t in page.titles)
    # --apply 2: the latest results as of apply 2, and history up to it
    page = parse(_render(applies, attempts, apply_id=2))
    assert "FAILURE" not in page.text["summary"] and "#1 to #2" in page.text["history"]
    assert {row[6] for t in page.tables["results"] for row in t.rows} == {"2"}


def test_hostile_names_messages_and_logs_are_text(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.log").write_text(f"starting\n{HOSTILE}\n</pre><img src=x onerror=alert(1)>\n")
    hostile = _job(1, HOSTILE, 1, 5.0, metric=HOSTILE)
    failed = _job(2, "m", 1, None, status=Status.FAILURE, log_path="logs/x.log", message=HOSTILE,
                  context=HOSTILE, target="t&t")
    tails = {2: rep.log_tail(tmp_path, "logs/x.log")}
    html = _render([_apply(1)], [hostile, failed], tails=tails)
    page = parse(html)
    assert "script" not in page.tags and "img" not in page.tags
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert page.pre == [f"starting\n{HOSTILE}\n</pre><img src=x onerror=alert(1)>"]
    assert any(HOSTILE in t for t in page.titles)  # the chart's tooltip, escaped by svgchart
    assert [(t.attrs["data-context"], t.attrs["data-target"]) for t in page.tables["results"]] == [
        (HOSTILE, "t&t"), ("cpu", "box")]


def test_failures_show_the_tail_of_their_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "3" / "broken.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    applies, attempts = _store()
    broken = next(a for a in attempts if a.status is Status.FAILURE)
    tails = {broken.id: rep.log_tail(tmp_path, broken.log_path)}
    page = parse(_render(applies, attempts, tails=tails))
    assert page.pre == ["\n".join(f"line {i}" for i in range(1001 - rep.TAIL_LINES, 1001))]
    assert "exit code 2" in page.text["failures"] and "logs/3/broken.log" in page.text["failures"]


def test_a_log_tail_is_capped_and_read_only_inside_the_state_directory(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "long.log").write_bytes(b"x" * 100_000 + b"\n" + b"y" * 5000 + b"\nlast\xff\n")
    tail, note = rep.log_tail(tmp_path, "logs/long.log")
    assert note == "" and tail is not None
    assert tail.splitlines() == ["y" * rep.TAIL_LINE_CHARS + " …", "last\ufffd"]  # not UTF-8: replaced, not refused
    assert rep.log_tail(tmp_path, "../secret.log") == (None, "log path '../secret.log' is outside the state directory")
    assert rep.log_tail(tmp_path, "/etc/passwd") == (None, "log path '/etc/passwd' is outside the state directory")
    assert rep.log_tail(tmp_path, "logs/gone.log") == (None, "logs/gone.log no longer exists")
    assert rep.log_tail(tmp_path, None) == (None, "no log recorded")
    os.mkfifo(logs / "fifo.log")  # read, it would wait for a writer forever
    assert rep.log_tail(tmp_path, "logs/fifo.log") == (None, "logs/fifo.log is not a regular file")
    (logs / "empty.log").write_bytes(b"")
    assert rep.log_tail(tmp_path, "logs/empty.log") == (None, "logs/empty.log is empty")


def test_a_failure_without_a_log_says_why() -> None:
    applies, attempts = _store()
    page = parse(_render(applies, attempts, tails={}))
    assert page.pre == [] and "log not read" in page.text["failures"]


def test_charts_stay_readable_with_a_thousand_jobs() -> None:
    attempts = [_job(i, f"m{i:04d}", 1, float(i)) for i in range(1, 1001)]
    attempts += [_job(1000 + i, f"m{i:04d}", 2, float(i) * (2 if i % 100 == 0 else 1)) for i in range(1, 1001)]
    report = rep.build(project="demo", generated="now", applies=[_apply(1), _apply(2)], attempts=attempts)
    (bars,) = report.charts
    assert (bars.shown, bars.total) == (rep.MAX_BARS, 1000)
    assert bars.svg.count("<rect") == rep.MAX_BARS
    assert f"top {rep.MAX_BARS} of 1000 shown" in bars.svg
    assert f"{job_address('m1000').removesuffix('#1')}: 2000 " in bars.svg  # the highest first
    (history,) = report.history
    assert (history.shown, history.total) == (rep.MAX_LINES, 1000)
    assert history.svg.count("<polyline") == rep.MAX_LINES
    # those that moved most: the ten that doubled come before the rest, which did not move
    assert all(f"m{i:04d}" in history.svg for i in range(100, 1001, 100))
    assert len(report.tables[0].rows) == 1000  # the table lists everything


def test_an_empty_store_is_an_empty_report() -> None:
    html = _render([], [])
    page = parse(html)
    assert page.sections == ["summary"]
    assert "No results yet" in page.text["summary"] and "madengine apply" in page.text["summary"]


def test_comparison_rows_in_their_order_with_changed_inputs() -> None:
    applies, attempts = _store()
    comparison = rep.Comparison(before="apply 2", after="apply 3", counts=(("regressed", 1), ("improved", 1)), rows=(
        rep.ComparisonRow(HOSTILE, "tps", "10", "8", "-20.0%", "regressed", ("script", "base image digest")),
        rep.ComparisonRow("job:b@cpu/box", "tps", "10", "12", "+20.0%", "improved"),
    ))
    page = parse(_render(applies, attempts, comparison=comparison))
    (table,) = page.tables["comparison"]
    assert table.header == ["job", "metric", "before", "after", "change", "verdict", "changed inputs"]
    assert table.rows == [[HOSTILE, "tps", "10", "8", "-20.0%", "regressed", "script, base image digest"],
                          ["job:b@cpu/box", "tps", "10", "12", "+20.0%", "improved", ""]]
    assert "apply 3 against apply 2" in page.text["comparison"]
    assert "1regressed" in page.text["summary"].replace("\n", "").replace(" ", "")


def test_svg_numbers_and_ticks() -> None:
    assert svgchart.number(1234567.0) == "1234567" and svgchart.number(0.000012) == "1.200e-05"
    assert svgchart.number(3.14159) == "3.142"
    assert svgchart.nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert svgchart.nice_ticks(0, 1090) == [0, 250, 500, 750, 1000, 1250]
    # figures all positive: no axis below zero, however far apart they are
    svg = svgchart.line_chart(["#1", "#2"], [svgchart.Series("a", (11.0, 12.0)), svgchart.Series("b", (990.0, 980.0))],
                              metric="m")
    assert ">-" not in svg and ">0<" in svg
    # a gap: no figure in the middle apply draws two points, no line across it
    svg = svgchart.line_chart(["#1", "#2", "#3"], [svgchart.Series("s", (1.0, None, 2.0))], metric="m")
    assert svg.count("<circle") == 2 and "<polyline" not in svg


def test_a_charts_figures_are_the_result_sets() -> None:
    """The charts count figures as `resultset.series_of` does (latest attempt per address, repeats one series,
    failed runs left out), without building whole series."""
    from madengine.results.resultset import series_of

    _, attempts = _store()
    retried = _job(99, "resnet", 3, 500.0, status=Status.FAILURE)  # a later failed attempt replaces a repeat's
    every = [*attempts, retried]
    expected = {(metric, key if row_model == s.model else f"{key} {row_model}"): (f.values, f.median)
                for key, s in series_of(every).items() for (row_model, metric), f in s.figures.items()}
    got = {(metric, label): (f.values, f.median) for metric, by_label in rep._figures(every).items()
           for label, f in by_label.items()}
    assert got == expected
    assert (("samples_per_second", job_address("resnet").removesuffix("#1"))) in got


def test_a_job_no_longer_in_the_project_is_not_carried_into_the_tables() -> None:
    """`gone` ran in apply 1 only and was removed from the madfile: with the project's lock, the tables of
    apply 2 hold only its jobs; what apply 2 ran is kept even when the lock no longer has it."""
    attempts = [_job(1, "gone", 1, 5.0), _job(2, "kept", 1, 6.0), _job(3, "dummy", 2, 7.0)]
    every = {a.address for a in rep.latest(attempts)}
    assert every == {job_address(m) for m in ("gone", "kept", "dummy")}  # no project: carried, as before
    current = {job_address("kept").removesuffix("#1")}
    assert {a.address for a in rep.latest(attempts, None, current)} == {job_address("kept"), job_address("dummy")}
    assert {a.address for a in rep.latest(attempts, 1, current)} == {job_address(m) for m in ("gone", "kept")}
