"""The madfile's `results:` section (noise floor, `better:` per metric) and its strict percentages."""

from __future__ import annotations

import pytest

from madengine.madfile.percent import format_percent, parse_percent
from tests.unit.madfile.conftest import Errors, Load, at, one

BASE = "version: 1\nmodels:\n  - {name: a, scripts: run.sh}\n"


@pytest.mark.parametrize(("text", "fraction"), [("2%", 0.02), ("0.5%", 0.005), ("100%", 1.0), ("0%", 0.0)])
def test_percentages(text: str, fraction: float) -> None:
    assert parse_percent(text) == pytest.approx(fraction)
    assert format_percent(parse_percent(text)) == text


@pytest.mark.parametrize(("value", "message"), [
    (0.02, "`0.02` is not a percentage: write it with `%` (`0.02%`, or `2%` for a fraction)"),
    ("2", "`2` is not a percentage such as `2%`"),
    ("-2%", "`-2%` is not a percentage"),
    ("2 %", "`2 %` is not a percentage"),
    ("1e3%", "is not a percentage"),
    ("150%", "`150%` is more than 100%"),
    (True, "expected a percentage such as `2%`, found bool"),
    (None, "found NoneType"),
])
def test_anything_else_is_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_percent(value)
    assert message in str(caught.value)


def test_results_section_defaults_and_values(load: Load) -> None:
    assert load(BASE).madfile.results.noise == 0.02
    settings = load(BASE + "results:\n  noise: 5%\n  better: {gflops: lower, latency_ms: higher}\n").madfile.results
    assert settings.noise == pytest.approx(0.05)
    assert settings.better == {"gflops": "lower", "latency_ms": "higher"}


def test_a_bare_number_is_refused_at_its_position(errors: Errors) -> None:
    d = one(errors(BASE + "results:\n  noise: 0.02\n"))
    assert d.key_path == "results.noise" and at(d) == (5, 10)
    assert "write it with `%`" in d.message


def test_better_is_higher_or_lower_and_unknown_keys_are_refused(errors: Errors) -> None:
    found = errors(BASE + "results:\n  better: {gflops: up}\n  nosie: 2%\n")
    assert sorted(d.key_path for d in found) == ["results.better.gflops", "results.nosie"]
