"""Where the madfile is, and how paths are shown: kept free of heavy imports for the CLI's fast paths."""

from __future__ import annotations

from pathlib import Path

DEFAULT_NAMES = ("madfile.yaml", "madfile.yml")


def find_madfile(base: Path, file: Path | None) -> Path:
    """`-f FILE` relative to `base` if given, else `base/madfile.yaml`, then `base/madfile.yml`.

    When neither exists, `base/madfile.yaml` is returned so that the loader reports it missing.
    """
    if file is not None:
        return base / file  # an absolute FILE replaces base
    for name in DEFAULT_NAMES:
        candidate = base / name
        if candidate.exists():
            return candidate
    return base / DEFAULT_NAMES[0]


def display_path(path: Path) -> str:
    """How a path is shown in messages: as given when relative, else relative to cwd when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
