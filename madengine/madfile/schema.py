"""The JSON Schema of madfile.yaml, generated from the pydantic models and checked in.

    python -m madengine.madfile.schema           # write schemas/madfile.schema.json
    python -m madengine.madfile.schema --check   # exit 1 if the checked-in file is out of date

Editors (yaml-language-server) use the checked-in file for completion and inline errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from madengine.madfile.model import Madfile

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "schemas" / "madfile.schema.json"


def generate_schema() -> dict[str, Any]:
    schema = Madfile.model_json_schema()
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "madfile.yaml"}


def render_schema() -> str:
    """The exact bytes of the checked-in file: sorted keys, 2-space indent, one trailing newline."""
    return json.dumps(generate_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    unknown = [a for a in args if a != "--check"]
    if unknown:
        sys.stderr.write(f"unknown arguments: {' '.join(unknown)}\n"
                         "usage: python -m madengine.madfile.schema [--check]\n")
        return 4
    expected = render_schema()
    if check:
        current = DEFAULT_PATH.read_text(encoding="utf-8") if DEFAULT_PATH.is_file() else None
        if current != expected:
            sys.stderr.write(f"{DEFAULT_PATH} is out of date: run `python -m madengine.madfile.schema`\n")
            return 1
        return 0
    DEFAULT_PATH.parent.mkdir(parents=True, exist_ok=True)
    DEFAULT_PATH.write_text(expected, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
