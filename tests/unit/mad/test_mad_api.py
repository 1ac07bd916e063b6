"""The public names of madengine.mad, loaded on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import madengine.mad

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", madengine.mad.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(madengine.mad, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        madengine.mad.nothing_here  # noqa: B018


def test_importing_the_model_types_does_not_load_discovery() -> None:
    code = ("import sys, madengine.mad.model; "
            "print(sorted(m for m in sys.modules if m.startswith('madengine.mad')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)

    assert done.stdout.strip() == "['madengine.mad', 'madengine.mad.model']"
