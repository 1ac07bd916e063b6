"""What `apply` shows while it works: a bar, a live line per running node, a line per finished one,
and (with --live-output) the running jobs' logs as they are written. Then a summary table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from madengine.plan.model import Change
from madengine.state.model import PerfRow, Status

STYLE = {Status.SUCCESS: "green", Status.FAILURE: "red", Status.TIMEOUT: "red", Status.SKIPPED: "yellow",
         Status.INTERRUPTED: "yellow", Status.RUNNING: "cyan"}


class RichReporter:
    def __init__(self, console: Console, live_output: bool = False) -> None:
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.overall: Any = None
        self.running: dict[str, Any] = {}
        self.rows: list[tuple[str, Status, float, str]] = []
        self.tailer = LogTailer(console) if live_output else None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        if self.tailer:
            self.tailer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tailer:
            self.tailer.stop()
        self.progress.stop()

    def begin(self, total: int) -> None:
        self.overall = self.progress.add_task("apply", total=total)

    def started(self, change: Change, where: str, log_path: Path) -> None:
        verb = {"image": "building", "push": "pushing"}.get(change.kind, "running")
        self.running[change.address] = self.progress.add_task(escape(f"  {verb} {change.address} on {where}"),
                                                              total=None)
        if self.tailer and change.kind == "job":
            self.tailer.follow(change.address, log_path)

    def finished(self, change: Change, status: Status, message: str, seconds: float,
                 perf: tuple[PerfRow, ...]) -> None:
        task = self.running.pop(change.address, None)
        if task is not None:
            self.progress.remove_task(task)
        if self.tailer:
            self.tailer.unfollow(change.address)
        result = ", ".join(f"{p.performance:g} {p.metric}" for p in perf[:2] if p.performance is not None)
        detail = result if status is Status.SUCCESS else message
        self.rows.append((change.address, status, seconds, detail))
        self.progress.console.print(f"[{STYLE[status]}]{status.value:<11}[/] {escape(change.address)} "
                                    f"[dim]{seconds:.1f}s[/] {escape(detail)}", highlight=False)
        if self.overall is not None and status is not Status.RUNNING:
            self.progress.advance(self.overall)

    def note(self, text: str) -> None:
        self.progress.console.print(f"[dim]{escape(text)}[/]", highlight=False)

    def summary(self) -> Table:
        table = Table(title="Apply summary", title_justify="left", show_lines=False)
        for col in ("node", "status", "time", "result"):
            table.add_column(col, overflow="fold")
        for address, status, seconds, detail in self.rows:
            table.add_row(escape(address), f"[{STYLE[status]}]{status.value}[/]", f"{seconds:.1f}s", escape(detail))
        return table


class LogTailer:
    """Follows the log files of running jobs and prints their new lines, prefixed by the job."""

    def __init__(self, console: Console, interval: float = 0.1) -> None:
        self.console = console
        self.interval = interval
        self.files: dict[str, tuple[Path, int]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="madengine-live-output", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self._poll()

    def follow(self, address: str, path: Path) -> None:
        with self.lock:
            self.files[address] = (path, 0)

    def unfollow(self, address: str) -> None:
        self._poll(only=address)
        with self.lock:
            self.files.pop(address, None)

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            self._poll()

    def _poll(self, only: str | None = None) -> None:
        with self.lock:
            for address, (path, offset) in list(self.files.items()):
                if only is not None and address != only:
                    continue
                try:
                    with path.open("rb") as f:
                        f.seek(offset)
                        data = f.read()
                except FileNotFoundError:
                    continue
                complete = data.rfind(b"\n") + 1
                if not complete:
                    continue
                for line in data[:complete].decode("utf-8", "replace").splitlines():
                    self.console.print(f"[dim]{escape(address)} |[/] {escape(line)}", highlight=False,
                                       soft_wrap=True)
                self.files[address] = (path, offset + complete)

