"""ROCm madengine's `report to-html` and `report to-email` (DESIGN §8: the familiar commands), added to
the `report` group by `register(report_app)`."""

from __future__ import annotations

from pathlib import Path

import typer

from madengine.cli.output import refuse_output_file


def register(report_app: typer.Typer) -> None:
    report_app.command("to-html")(to_html)
    report_app.command("to-email")(to_email)


def to_html(
    csv_file_path: Path = typer.Option(..., "--csv-file-path", metavar="FILE",
                                       help="The CSV file (perf.csv); the HTML is written beside it, FILE's "
                                       "name with .html for .csv."),
) -> None:
    """Write a CSV file (perf.csv) as an HTML table, beside it: perf.csv -> perf.html (ROCm's to-html).

    The page is self-contained (inline CSS, nothing fetched to view it); the values are shown as written.
    """
    import sys

    from madengine.compat import rocm_csv, rocm_report

    _check_csv_path(csv_file_path)
    table = rocm_csv.read_csv(csv_file_path)
    output = rocm_report.html_path(csv_file_path)
    refuse_output_file(output, "the page", "", hint="the page goes beside the CSV file: move what is there aside")
    rocm_report.write_html(output, rocm_report.render_table(table, rocm_report.section_name(csv_file_path)))
    sys.stdout.write(f"wrote {output} ({_rows(len(table.rows))})\n")


def to_email(
    directory: Path = typer.Option(Path("."), "--csv-file-path", "--directory", "--dir", metavar="DIR",
                                   help="The directory whose *.csv files are reported."),
    output: Path = typer.Option(Path("run_results.html"), "-o", "--output", metavar="FILE",
                                help="The HTML file, in DIR unless absolute (ROCm's name)."),
) -> None:
    """Write the *.csv files of a directory as one HTML page, a section per file (ROCm's to-email).

    Sections are in file name order, each titled by its file's name without .csv. A file that is not
    a CSV is reported (all of them at once) and nothing is written; no CSV file at all writes nothing
    and exits 0, as ROCm's does.
    """
    import sys

    from madengine.compat import rocm_csv, rocm_report
    from madengine.errors import ConfigError, Diagnostic, UsageError

    if not directory.is_dir():
        raise UsageError(f"--csv-file-path {directory}: " + ("not a directory" if directory.exists()
                                                             else "no such directory"),
                         hint="to-email reports every *.csv of a directory; `report to-html` takes one file")
    files = rocm_report.csv_files(directory)
    target = rocm_report.email_path(directory, output)
    if not files:
        sys.stderr.write(f"no *.csv file in {directory}: nothing written\n")
        return
    sections: list[rocm_report.Section] = []
    errors: list[Diagnostic] = []
    for path in files:
        try:
            sections.append(rocm_report.Section(rocm_report.section_name(path), rocm_csv.read_csv(path)))
        except ConfigError as exc:  # every bad file at once, then nothing written
            errors.extend(exc.diagnostics)
    if errors:
        raise ConfigError.many(errors)
    refuse_output_file(target, "-o", "run_results.html")
    rocm_report.write_html(target, rocm_report.render_sections(sections, f"Results: {directory.resolve().name}"))
    rows = sum(len(s.table.rows) for s in sections)
    sys.stdout.write(f"wrote {target} ({len(sections)} CSV file{'s' if len(sections) != 1 else ''}, "
                     f"{_rows(rows)})\n")


def _check_csv_path(path: Path) -> None:
    from madengine.errors import UsageError

    if not path.name.endswith(".csv"):  # ROCm's check: the output's name is the input's with .html
        raise UsageError(f"--csv-file-path {path}: not a .csv file", hint="give the perf.csv to convert")
    if not path.exists():
        raise UsageError(f"--csv-file-path {path}: no such file")


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"
