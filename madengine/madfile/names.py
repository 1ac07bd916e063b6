"""Names a madfile refers to that become file names: baselines (`baselines/<name>.json`). Pure.

A baseline's name is a file name in the project's `baselines/` directory, written in a madfile and on
command lines: it must stay inside that directory and read the same everywhere, so the rule is short.
"""

from __future__ import annotations

import re
from pathlib import Path

BASELINES_DIR = "baselines"  # beside the madfile
MAX_BASELINE_NAME = 64
_BASELINE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
BASELINE_NAME_RULE = (f"letters, digits, `_`, `-` and `.`, starting with a letter or digit, at most "
                      f"{MAX_BASELINE_NAME} characters (`main`, `release-1.2`)")


def baseline_name_problem(name: str) -> str | None:
    """What is wrong with `name` as a baseline's name, or None. Never echoes a long or binary name whole."""
    shown = repr(name if len(name) <= 40 else name[:40] + "…")
    if not name:
        return "a baseline name must not be empty"
    if len(name) > MAX_BASELINE_NAME:
        return f"baseline name {shown} is too long ({len(name)} characters, at most {MAX_BASELINE_NAME})"
    if "/" in name or "\\" in name or ".." in name:
        return f"baseline name {shown} is a path: a baseline is named, its file is baselines/<name>.json"
    if name.endswith(".json"):
        return f"baseline name {shown} ends in `.json`: the name is the file's name without it"
    if not _BASELINE_NAME.fullmatch(name):
        return f"baseline name {shown} is not a plain name"
    return None


def saved_baselines(root: Path) -> list[str]:
    """The baselines saved beside the madfile at `root`, by name (files whose names are baseline names)."""
    directory = root / BASELINES_DIR
    try:
        return sorted(p.stem for p in directory.glob("*.json") if baseline_name_problem(p.stem) is None and p.is_file())
    except OSError:
        return []
