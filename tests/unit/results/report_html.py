"""A report page read back with the standard library's HTML parser: what a test asserts on."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Table:
    attrs: dict[str, str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Page:
    sections: list[str] = field(default_factory=list)  # section ids, in order
    tables: dict[str, list[Table]] = field(default_factory=dict)  # section id -> its tables
    svgs: dict[str, int] = field(default_factory=dict)  # section id -> how many <svg>
    tags: list[str] = field(default_factory=list)  # every start tag, in order
    urls: list[str] = field(default_factory=list)  # every src/href/xlink:href/action value
    style: str = ""
    text: dict[str, str] = field(default_factory=dict)  # section id -> its text
    pre: list[str] = field(default_factory=list)  # the <pre> blocks' text (the logs' tails)
    titles: list[str] = field(default_factory=list)  # the SVG <title> texts (tooltips)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.section = ""
        self.table: Table | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None
        self.header_row = False
        self.stack: list[str] = []
        self.attribute_values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.attribute_values.extend(values.values())
        self.page.tags.append(tag)
        self.stack.append(tag)
        self.page.urls.extend(v for k, v in values.items() if k in ("src", "href", "xlink:href", "action"))
        if tag == "section":
            self.section = values.get("id", "")
            self.page.sections.append(self.section)
        elif tag == "svg":
            self.page.svgs[self.section] = self.page.svgs.get(self.section, 0) + 1
        elif tag == "table":
            self.table = Table(values)
            self.page.tables.setdefault(self.section, []).append(self.table)
        elif tag == "tr":
            self.row = []
            self.header_row = False
        elif tag in ("td", "th"):
            self.cell = []
            self.header_row = self.header_row or tag == "th"

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.row is not None and self.table is not None:
            if self.header_row:
                self.table.header = self.row
            else:
                self.table.rows.append(self.row)
            self.row = None
        elif tag == "table":
            self.table = None
        elif tag == "section":
            self.section = ""

    def handle_data(self, data: str) -> None:
        top = self.stack[-1] if self.stack else ""
        if top == "style":
            self.page.style += data
            return
        if self.cell is not None:
            self.cell.append(data)
        if top == "pre":
            self.page.pre.append(data)
        if top == "title" and "svg" in self.stack:
            self.page.titles.append(data)
        if self.section:
            self.page.text[self.section] = self.page.text.get(self.section, "") + data


def parse(html: str) -> Page:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.page


def external_references(html: str) -> list[str]:
    """Anything in the page's markup that would make a viewer fetch: a URL scheme or a protocol-relative
    reference in any attribute, an @import or url(...) in its CSS. (Text is not markup: a log line quoting
    a URL is shown, never fetched.)"""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    found = [v for v in parser.attribute_values if re.search(r"https?:|ftp:|^\s*//", v, flags=re.IGNORECASE)]
    return found + re.findall(r"@import|url\(|https?:", parser.page.style, flags=re.IGNORECASE)
