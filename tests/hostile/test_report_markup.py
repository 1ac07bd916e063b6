"""Markup and paths from recorded results in `madengine report`'s page: text on the page, never markup, never a
template, never a file read from outside the state directory."""

from __future__ import annotations

from pathlib import Path

from madengine.state.model import PerfRow, Status
from madengine.state.store import StateStore
from tests.conftest import RunCli
from tests.unit.results.conftest import job_inputs
from tests.unit.results.report_html import external_references, parse

MARKUP = "<script>alert(1)</script></style></svg><img src=//evil.example/x>{{ 7*7 }}{% raw %}]]>"


def _report(run_cli: RunCli, tmp_path: Path, model: str, *, host: str = "h", message: str = "",
            log_path: str | None = None, metric: str = "m", status: Status = Status.SUCCESS) -> str:
    with StateStore.open(tmp_path / ".madengine" / "state.db") as store:
        apply_id = store.begin_apply("sha256:1")
        attempt = store.start_attempt(apply_id, f"job:{model}@cpu/box#1", "sha256:2", job_inputs(model), host,
                                      log_path)
        store.finish_attempt(attempt, status, message=message,
                             perf=(PerfRow(model, 1.0, metric),) if status is Status.SUCCESS else ())
        store.finish_apply(apply_id, status.value)
    code, _, err = run_cli("report", "-o", "r.html", cwd=tmp_path)
    assert (code, err) == (0, "")
    return (tmp_path / "r.html").read_text()


def _inert(html: str) -> None:
    page = parse(html)
    assert not {"script", "img"} & set(page.tags)
    assert page.tags.count("svg") == 2 and page.tags.count("style") == 1
    assert external_references(html) == []
    assert "49" not in page.text.get("results", "")  # no template evaluated


def test_markup_in_a_model_name_and_metric(run_cli: RunCli, tmp_path: Path) -> None:
    html = _report(run_cli, tmp_path, MARKUP, metric=MARKUP)
    _inert(html)
    assert MARKUP in parse(html).text["results"]


def test_markup_in_a_host_and_a_failure_message_and_log(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / ".madengine" / "logs" / "x.log"
    log.parent.mkdir(parents=True)
    log.write_text(MARKUP + "\n")
    html = _report(run_cli, tmp_path, "m", host=MARKUP, message=MARKUP, log_path="logs/x.log", status=Status.FAILURE)
    page = parse(html)
    assert not {"script", "img", "svg"} & set(page.tags) and external_references(html) == []
    assert page.pre == [MARKUP] and MARKUP in page.text["failures"]


def test_a_log_path_outside_the_state_directory_is_not_read(run_cli: RunCli, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("the secret\n")
    html = _report(run_cli, tmp_path, "m", log_path="../secret.txt", status=Status.FAILURE)
    assert "the secret" not in html
    assert "log path '../secret.txt' is outside the state directory" in parse(html).text["failures"]
