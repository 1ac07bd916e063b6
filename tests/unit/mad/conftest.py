"""Helpers for MAD package tests: write real packages into temporary directories."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "mad"

WritePackage = Callable[[Mapping[str, Any]], Path]


def write_files(root: Path, files: Mapping[str, Any]) -> Path:
    """Write `files` under `root`: str values verbatim (dedented), others as 4-space-indented JSON."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(textwrap.dedent(content), encoding="utf-8")
        else:
            path.write_text(json.dumps(content, indent=4) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def write_package(tmp_path: Path) -> WritePackage:
    """Write a MAD package into a fresh temporary directory and return its root."""
    counter = iter(range(1_000_000))

    def write(files: Mapping[str, Any]) -> Path:
        return write_files(tmp_path / f"pkg{next(counter)}", files)

    return write


@pytest.fixture(autouse=True)
def _bytecode_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep compiled get_models_json.py scripts out of the user's cache directory."""
    monkeypatch.setenv("MADENGINE_CACHE_DIR", str(tmp_path / "cache"))


def entry(name: str, **fields: Any) -> dict[str, Any]:
    """A models.json entry with MAD's usual keys."""
    return {"name": name, "dockerfile": "docker/dummy", "scripts": f"scripts/{name}/run.sh", "n_gpus": "1",
            "owner": "mad.support@amd.com", "training_precision": "", "tags": ["dummies"], "args": "",
            **fields}
