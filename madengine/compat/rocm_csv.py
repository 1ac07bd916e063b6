"""A CSV file as ROCm madengine's results commands read it (`report to-html|to-email`, `database
update-table|upload-mongodb`): a header line and rows. Pure but for reading the file.

The file is hostile input: its size is bounded before it is read (MADENGINE_MAX_PERF_CSV_BYTES), a NUL
byte or bytes that are not UTF-8 are refused at their line and column, a row with more fields than the
header at its line. ROCm's pandas accepts a row with fewer fields (the rest are empty): so do we.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from madengine import limits
from madengine.errors import ConfigError, Diagnostic
from madengine.files import decode_utf8

_HINT = "perf.csv is comma-separated UTF-8 text with a header line, as madengine and ROCm madengine write it"
MAX_ERRORS = 20


@dataclass(frozen=True)
class CsvTable:
    """The header and rows of a CSV file. Every row has one value per column (padded with "");
    `lines[i]` is the line row i starts on, for messages."""

    shown: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def read_csv(path: str | os.PathLike[str], shown: str | None = None,
             required: Iterable[str] = ()) -> CsvTable:
    """The CSV file at `path` (named `shown` in messages), or a ConfigError naming the file and line.

    Column names are stripped of spaces, as ROCm's readers do; values are kept as written. A blank line
    is skipped (pandas does). `required` columns must be in the header."""
    shown = shown if shown is not None else os.fspath(path)
    raw = limits.read_bounded(path, shown, limits.perf_csv_bytes(), limits.PERF_CSV_BYTES_ENV)
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        column = nul - (raw.rfind(b"\n", 0, nul) + 1) + 1
        raise ConfigError("a NUL byte: not a text file", file=shown, line=line, column=column, hint=_HINT)
    text = decode_utf8(raw, shown, hint=_HINT)
    del raw  # a big file is held once, not twice, while it is parsed
    return parse_csv(text, shown, required)


def _lines(text: str) -> Iterator[str]:
    """The lines of `text`, ends kept, without a copy of it (io.StringIO holds 4 bytes a character)."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def parse_csv(text: str, shown: str, required: Iterable[str] = ()) -> CsvTable:
    # A field may be as long as the file (the file's size is what is bounded); the module's default
    # (128 KB) would refuse a long `args` of a real file.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(_lines(text))
    errors: list[Diagnostic] = []
    header: tuple[str, ...] | None = None
    rows: list[tuple[str, ...]] = []
    lines: list[int] = []
    start = 1
    try:
        for record in reader:
            line, start = start, reader.line_num + 1
            if not record or record == [""]:
                continue  # a blank line
            if header is None:
                header = tuple(name.strip() for name in record)
                errors.extend(_header_errors(header, shown, required))
                if errors:
                    break
                continue
            if len(record) > len(header):
                errors.append(Diagnostic(shown, line, None, f"{len(record)} fields, but the header has "
                                         f"{len(header)}", hint="quote a value that has a comma in it"))
                if len(errors) >= MAX_ERRORS:
                    break
                continue
            rows.append((*record, *([""] * (len(header) - len(record)))))
            lines.append(line)
    except csv.Error as exc:
        errors.append(Diagnostic(shown, reader.line_num or 1, None, f"not CSV: {exc}", hint=_HINT))
    if header is None and not errors:
        errors.append(Diagnostic(shown, 1, None, "empty: no header line", hint=_HINT))
    if errors:
        raise ConfigError.many(errors)
    assert header is not None
    return CsvTable(shown, header, tuple(rows), tuple(lines))


def _header_errors(header: tuple[str, ...], shown: str, required: Iterable[str]) -> list[Diagnostic]:
    errors: list[Diagnostic] = []
    seen: set[str] = set()
    for i, name in enumerate(header, start=1):
        if not name:
            errors.append(Diagnostic(shown, 1, None, f"column {i} of the header has no name", hint=_HINT))
        elif name in seen:
            errors.append(Diagnostic(shown, 1, None, f"column {name!r} is in the header twice", hint=_HINT))
        seen.add(name)
    missing = [name for name in required if name not in seen]
    if missing:
        errors.append(Diagnostic(shown, 1, None, f"no {', '.join(missing)} column: not a perf.csv",
                                 hint="give the perf.csv that `madengine run` or `apply` wrote"))
    return errors
