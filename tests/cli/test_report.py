"""`madengine report -o FILE` through the real entry point, over a store written by the real StateStore; the page
rendered by a real headless Chromium (Debian's `chromium`), its screenshot's pixels read back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from madengine.cli import cmd_report
from madengine.errors import UsageError
from madengine.results import svgchart
from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.conftest import RunCli
from tests.infra import png
from tests.unit.results.conftest import job_address, job_inputs
from tests.unit.results.report_html import external_references, parse

USAGE = 4
CHROMIUM = "/usr/bin/chromium"
HEADER_BACKGROUND = (0xDF, 0xE7, 0xF1)  # th's background in templates/report/report.css


def _colour(text: str) -> tuple[int, int, int]:
    value = int(text.removeprefix("#"), 16)
    return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF


def _job(store: StateStore, apply_id: int, model: str, value: float | None, *, repeat: int = 1,
         status: Status = Status.SUCCESS, log_path: str | None = None, message: str = "",
         target: str = "box", args: list[str] | None = None) -> None:
    attempt = store.start_attempt(apply_id, job_address(model, repeat=repeat, target=target), "sha256:a00d",
                                  job_inputs(model, repeat=repeat, target=target, args=args), "bench-01", log_path)
    store.finish_attempt(attempt, status, exit_code=0 if status is Status.SUCCESS else 1, message=message,
                         perf=(PerfRow(model, value, "samples_per_second"),) if value is not None else ())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Four applies of two jobs with two repeats each; in the last one, resnet got faster, gpt slower (its
    arguments changed) and a `broken` job failed, its log kept."""
    db = tmp_path / ".madengine" / "state.db"
    log = tmp_path / ".madengine" / "logs" / "4" / "broken.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"step {i}\n" for i in range(100)) + "Traceback: <script>boom()</script>\n")
    with StateStore.open(db) as store:
        for n, scale in enumerate((1.0, 1.05, 0.97, 1.1), start=1):
            apply_id = store.begin_apply(f"sha256:lock{n}")
            for repeat in (1, 2):
                _job(store, apply_id, "resnet", 100 * scale + repeat, repeat=repeat)
                _job(store, apply_id, "gpt", (30 if n == 4 else 40) - repeat / 10, repeat=repeat, target="lab",
                     args=["--batch", "64" if n == 4 else "32"])
            if n == 4:
                _job(store, apply_id, "broken", None, status=Status.FAILURE, log_path="logs/4/broken.log",
                     message="exit code 1")
            store.finish_apply(apply_id, "FAILURE" if n == 4 else "SUCCESS")
    return tmp_path


def test_writes_one_page_and_says_where_and_how_big(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("report", "-o", "out/report.html", cwd=workspace)
    page = workspace / "out" / "report.html"
    assert (code, err) == (0, "")
    assert out == f"out/report.html: {page.stat().st_size / 1024:.1f} KB written (5 jobs)\n"
    assert [p.name for p in page.parent.iterdir()] == ["report.html"]  # no temporary file left
    html = page.read_text()
    parsed = parse(html)
    assert parsed.sections == ["summary", "comparison", "charts", "history", "results", "failures"]
    assert [(t.attrs["data-context"], t.attrs["data-target"]) for t in parsed.tables["results"]] == [
        ("cpu", "box"), ("cpu", "lab")]
    assert parsed.svgs == {"charts": 1, "history": 1}
    assert external_references(html) == [] and "script" not in parsed.tags
    assert parsed.urls == [f"#{section}" for section in parsed.sections]  # the contents: links within the page
    assert parsed.pre == ["\n".join([*(f"step {i}" for i in range(61, 100)), "Traceback: <script>boom()</script>"])]


def test_the_comparison_with_the_previous_apply_or_a_reference(run_cli: RunCli, workspace: Path) -> None:
    assert run_cli("report", "-o", "r.html", cwd=workspace)[0] == 0
    parsed = parse((workspace / "r.html").read_text())
    assert "apply 4 against apply 3; regressions first" in parsed.text["comparison"]
    rows = parsed.tables["comparison"][0].rows
    gpt, resnet, broken = (job_address(m, target=t).removesuffix("#1")
                           for m, t in (("gpt", "lab"), ("resnet", "box"), ("broken", "box")))
    assert rows == [
        [gpt, "samples_per_second", "39.85", "29.85", "-25.09%", "regressed", "args"],
        [resnet, "samples_per_second", "98.5", "111.5", "+13.20%", "improved", ""],
        [broken, "", "", "", "", "failed", "FAILURE: exit code 1"],
    ]
    assert "1regressed" in parsed.text["summary"].replace(" ", "").replace("\n", "")
    assert run_cli("report", "-o", "r.html", "--against", "1", cwd=workspace)[0] == 0
    assert "apply 4 against apply 1" in parse((workspace / "r.html").read_text()).text["comparison"]
    assert run_cli("report", "-o", "r.html", "--apply", "1", cwd=workspace)[0] == 0
    assert "apply 1 is the first apply with results" in parse((workspace / "r.html").read_text()).text["comparison"]


def test_jobs_an_apply_found_up_to_date_are_unchanged_not_missing(run_cli: RunCli, workspace: Path) -> None:
    """An apply reruns only what changed: the report compares results as of each apply, as compare does."""
    with StateStore.open(workspace / ".madengine" / "state.db") as store:
        apply_id = store.begin_apply("sha256:lock5")
        for repeat in (1, 2):
            _job(store, apply_id, "resnet", 200 + repeat, repeat=repeat)
        store.finish_apply(apply_id, "SUCCESS")
    assert run_cli("report", "-o", "r.html", cwd=workspace)[0] == 0
    parsed = parse((workspace / "r.html").read_text())
    shown, folded = parsed.tables["comparison"]
    gpt = job_address("gpt", target="lab").removesuffix("#1")
    # a job that failed before and was not rerun is still failing: shown as failed, not folded as unchanged
    assert [(row[0], row[5]) for row in shown.rows] == [(job_address("resnet").removesuffix("#1"), "improved"),
                                                        (job_address("broken").removesuffix("#1"), "failed")]
    assert (gpt, "unchanged") in [(row[0], row[5]) for row in folded.rows]
    assert "missing" not in parsed.text["comparison"]
    assert "5 jobs" in run_cli("report", "-o", "r.html", cwd=workspace).stdout  # the tables: every job's latest


def test_apply_and_history_options(run_cli: RunCli, workspace: Path) -> None:
    assert run_cli("report", "-o", "r.html", "--apply", "2", "--history", "2", cwd=workspace)[0] == 0
    parsed = parse((workspace / "r.html").read_text())
    assert "#1 to #2" in parsed.text["history"] and "FAILURE" not in parsed.text["summary"]
    assert run_cli("report", "-o", "r.html", "--history", "0", cwd=workspace)[0] == 0
    assert "No history." in parse((workspace / "r.html").read_text()).text["history"]


def test_an_empty_store_writes_an_empty_report(run_cli: RunCli, tmp_path: Path) -> None:
    """Nothing has run: a page that says so (a CI step that publishes the report does not fail), exit 0,
    and no state is created by reading it."""
    code, out, err = run_cli("report", "-o", "report.html", cwd=tmp_path)
    assert (code, err) == (0, "")
    assert out.startswith("report.html: ") and out.endswith(" written (no results yet; run `madengine apply`)\n")
    assert "No results yet" in parse((tmp_path / "report.html").read_text()).text["summary"]
    assert not (tmp_path / ".madengine").exists()
    code, out, err = run_cli("report", "-o", "report.html", "--state", "typo.db", cwd=tmp_path)
    assert (code, err) == (0, "") and out.endswith(" written (no results yet: typo.db does not exist)\n")


def test_bad_arguments_write_nothing(run_cli: RunCli, workspace: Path) -> None:
    code, out, err = run_cli("report", cwd=workspace)
    assert (code, out) == (USAGE, "")
    assert err == "error: report: -o/--output FILE is required (hint: madengine report -o report.html)\n"
    code, out, err = run_cli("report", "-o", "r.html", "--apply", "9", cwd=workspace)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: --apply 9: no such apply (applies are 1..4)")
    code, out, err = run_cli("report", "-o", "r.html", "-f", "nightly.yaml", cwd=workspace)
    assert (code, out, err) == (USAGE, "", "error: nightly.yaml: no such madfile (hint: name the madfile with -f, "
                                           "or leave -f out)\n")
    code, out, err = run_cli("report", "-o", "r.html", "--against", "nightly", cwd=workspace)
    assert (code, out) == (USAGE, "")
    assert err.startswith("error: 'nightly' is not an apply, a baseline or a results file")
    assert not (workspace / "r.html").exists()


def test_an_output_that_cannot_be_a_page(run_cli: RunCli, workspace: Path) -> None:
    (workspace / "adir").mkdir()
    assert run_cli("report", "-o", "adir", cwd=workspace) == (
        USAGE, "", "error: -o adir: a directory (hint: name a file, e.g. -o report.html)\n")
    (workspace / "file").write_text("")
    code, out, err = run_cli("report", "-o", "file/r.html", cwd=workspace)
    assert (code, out) == (USAGE, "")
    assert err == ("error: cannot write file/r.html: file is not a directory "
                   "(hint: name a file in a directory you can write)\n")
    assert sorted(p.name for p in workspace.iterdir()) == [".madengine", "adir", "file"]  # nothing left behind


def test_a_group_with_and_without_subcommands(tmp_path: Path) -> None:
    """ROCm's `report to-html` is added to the group by another module: `report --help` lists it, `report -o`
    still writes madengine's page, and the subcommand runs without the callback's -o."""
    ran: list[str] = []

    def add(report_app: typer.Typer) -> None:
        @report_app.command("to-html")
        def to_html() -> None:
            ran.append("to-html")

    app = typer.Typer()

    @app.callback()
    def root() -> None:
        pass

    app.add_typer(cmd_report.group([add]), name="report")
    runner = CliRunner()
    shown = runner.invoke(app, ["report", "--help"])
    assert shown.exit_code == 0 and "to-html" in shown.output and "--output" in shown.output
    done = runner.invoke(app, ["report", "to-html"])
    assert (done.exit_code, ran) == (0, ["to-html"])
    # the group's own options would do nothing there: refused, the subcommand not run
    done = runner.invoke(app, ["report", "-o", "x.html", "--history", "3", "to-html"])
    assert isinstance(done.exception, UsageError) and ran == ["to-html"]
    assert str(done.exception) == "-o, --history are for `madengine report -o FILE`, not `report to-html`"
    done = runner.invoke(app, ["report", "-o", str(tmp_path / "r.html"), "--state", str(tmp_path / "none.db")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "r.html").is_file()
    alone = typer.Typer()
    alone.callback()(root)
    alone.add_typer(cmd_report.group(), name="report")
    assert "Commands" not in runner.invoke(alone, ["report", "--help"]).output


def _bands(image: png.Image, colour: tuple[int, int, int], *, width: int) -> int:
    """The height of the tallest band of rows that each hold at least `width` pixels of `colour`."""
    r, g, b = colour
    best = run = 0
    for row in image.pixels:
        count = sum(1 for i in range(0, len(row), 3) if row[i] == r and row[i + 1] == g and row[i + 2] == b)
        run = run + 1 if count >= width else 0
        best = max(best, run)
    return best


def screenshot(page: Path, shot: Path, profile: Path, size: str = "1280,1600") -> png.Image:
    """`page` as a real headless Chromium renders it, from the file alone (every network feature off)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (dev/services start does)")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--force-color-profile=srgb", "--hide-scrollbars", f"--user-data-dir={profile}",
                           f"--screenshot={shot}", f"--window-size={size}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return png.read(shot)


def test_chromium_shows_the_table_and_a_chart(run_cli: RunCli, workspace: Path, tmp_path: Path) -> None:
    assert run_cli("report", "-o", "report.html", cwd=workspace)[0] == 0
    image = screenshot(workspace / "report.html", tmp_path / "shot.png", tmp_path / "profile")
    colours = image.colours()
    white = colours[(255, 255, 255)]
    assert len(colours) > 100 and white < 0.97 * image.width * image.height  # not blank
    # the table's header row (a band as tall as a row, as wide as the table), and the bars of a chart
    assert _bands(image, HEADER_BACKGROUND, width=400) >= 15
    assert _bands(image, _colour(svgchart.BAR_COLOUR), width=100) >= 10
    # a history chart's lines
    assert colours[_colour(svgchart.PALETTE[0])] > 100


def test_chromium_is_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without chromium the screenshot test fails: it never skips."""
    monkeypatch.setattr(__import__(__name__, fromlist=["CHROMIUM"]), "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match="no-chromium is missing"):
        screenshot(tmp_path / "x.html", tmp_path / "x.png", tmp_path / "p")

