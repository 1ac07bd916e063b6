"""ROCm madengine's `report to-html` and `report to-email`: CSV files as HTML tables.

As theirs (reporting/csv_to_html.py, csv_to_email.py): to-html writes `<dir>/<name>.html` beside
`<dir>/<name>.csv`; to-email writes one file (`run_results.html` in the directory by default) with a
section per `*.csv` of the directory, in file name order, titled by the file's name without `.csv`.
Theirs is pandas' bare `<table>`; ours is a whole page (inline CSS, nothing fetched to view it) with the
same table: the values as written in the CSV (pandas prints `NaN` for an empty cell and `100.0` for
`100` in a column of floats), each HTML-escaped. Rendered with jinja2 from `templates/rocm_report/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from madengine.compat.rocm_csv import CsvTable
from madengine.files import write_atomic


@dataclass(frozen=True)
class Section:
    name: str
    table: CsvTable


def template_dir() -> Path:
    """`templates/rocm_report/`, found as every template directory is (`madengine.shipped`)."""
    from madengine.shipped import template_dir as shipped_dir

    return shipped_dir("rocm_report")


@cache
def _environment() -> jinja2.Environment:
    # autoescape: a model name or value of a perf.csv is text, never markup (`<script>` stays visible text).
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir())), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


# Rendered piece by piece into the file: a page of 200,000 rows is millions of small strings, which
# `render()` would hold all at once before joining them (1.2 GB for a 50 MB perf.csv).


def render_table(table: CsvTable, title: str) -> Iterator[str]:
    return _environment().get_template("to_html.html.j2").generate(table=table, title=title)


def render_sections(sections: Sequence[Section], title: str) -> Iterator[str]:
    return _environment().get_template("to_email.html.j2").generate(sections=sections, title=title)


def html_path(csv_path: Path) -> Path:
    """Where to-html writes: beside the CSV, `.csv` replaced by `.html` (ROCm's name)."""
    return csv_path.with_suffix(".html")


def email_path(directory: Path, output: Path) -> Path:
    """Where to-email writes: `output` in the directory (an absolute `output` as it is), as ROCm's."""
    return directory / output


def csv_files(directory: Path) -> list[Path]:
    """The `*.csv` files of `directory` (not its subdirectories), by name."""
    return sorted((p for p in directory.iterdir() if p.name.endswith(".csv") and p.is_file()),
                  key=lambda p: p.name)


def section_name(path: Path) -> str:
    return path.name[: -len(".csv")] if path.name.endswith(".csv") else path.name


def write_html(path: Path, text: Iterable[str]) -> None:
    """Write atomically (a mail job reading the report never sees half of it), readable by others."""
    write_atomic(path, "".join(text).encode("utf-8"))
