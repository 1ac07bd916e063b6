"""Where the top-level `templates/` directory is at run time (DESIGN §1): inside the installed wheel as
`madengine/_templates/` (pyproject's force-include), else the checkout's own `templates/`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def template_dir(name: str) -> Path:
    """`templates/<name>/`: the wheel's copy when installed, else the checkout's."""
    shipped = resources.files("madengine").joinpath("_templates", name)
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[1] / "templates" / name
