"""Golden lockfiles: the committed locks of the examples are exactly what the code computes.

They are reviewed like any source file. After an intended change to the lock format or hashing,
regenerate with `madengine lock -C examples/<name>` (and copy the mad-package lock to
madengine.lock.example), then review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from madengine.lock.lockfile import build_lock, render
from tests.unit.compile.conftest import compile_file

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p.parent for p in (REPO / "examples").glob("*/madfile.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_lock_is_up_to_date(example: Path) -> None:
    expected = (example / "madengine.lock").read_text(encoding="utf-8")
    assert render(build_lock(compile_file(example / "madfile.yaml"))) == expected


def test_top_level_example_is_the_mad_package_lock() -> None:
    assert (REPO / "madengine.lock.example").read_bytes() == \
        (REPO / "examples" / "mad-package" / "madengine.lock").read_bytes()


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart", "mad-package"}
