"""MAD package discovery: models.json, scripts/<dir>/models.json, get_models_json.py, tags, Dockerfiles.

Reads ROCm MAD packages with ROCm madengine's semantics (DESIGN §3) into plain typed values
(`madengine.mad.model`), fast enough for packages of thousands of models.

The names below are imported on first use, so that `import madengine.mad.model` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from madengine.mad.discover import discover_package
    from madengine.mad.dockerfiles import DockerfileIndex, base_image, find_dockerfiles, select_dockerfiles
    from madengine.mad.model import Dockerfile, MadModel, Origin, Package, SelectedModel
    from madengine.mad.tags import ModelIndex, UnknownTagError, parse_tag, resolve_tag, select_models

_HOMES = {
    "discover_package": "discover",
    "DockerfileIndex": "dockerfiles", "base_image": "dockerfiles", "find_dockerfiles": "dockerfiles",
    "select_dockerfiles": "dockerfiles",
    "Dockerfile": "model", "MadModel": "model", "Origin": "model", "Package": "model",
    "SelectedModel": "model",
    "ModelIndex": "tags", "UnknownTagError": "tags", "parse_tag": "tags", "resolve_tag": "tags",
    "select_models": "tags",
}

__all__ = [
    "Dockerfile", "DockerfileIndex", "MadModel", "ModelIndex", "Origin", "Package", "SelectedModel",
    "UnknownTagError", "base_image", "discover_package", "find_dockerfiles", "parse_tag", "resolve_tag",
    "select_dockerfiles", "select_models",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
