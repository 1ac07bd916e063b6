"""Percentages in a madfile (`noise: 2%`, `tolerance: 5%`): one strict reader, reused by every key that
takes one.

Only `<number>%` is a percentage: a bare `0.02` or `2` would be a guess (2% or 0.02%? 2% or 200%?), so it
is refused with the form to write, at the value's file:line:col like every other madfile error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)%\Z")
PATTERN = r"^[0-9]+(\.[0-9]+)?%$"


def parse_percent(value: Any, *, maximum: float = 100.0) -> float:
    """`2%` -> 0.02, `0.5%` -> 0.005. Raises ValueError (one sentence, for a diagnostic) for anything
    else: a number without `%`, a negative or non-decimal one, or one above `maximum` percent."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a percentage such as `2%`, found {type(value).__name__}")
    if not isinstance(value, str):
        raise ValueError(f"`{value}` is not a percentage: write it with `%` (`{value}%`, or `{value * 100:g}%` "
                         f"for a fraction)")
    match = _PERCENT.match(value.strip())
    if match is None:
        raise ValueError(f"`{value}` is not a percentage such as `2%` or `0.5%`")
    percent = float(match.group(1))
    if percent > maximum:
        raise ValueError(f"`{value}` is more than {maximum:g}%")
    return percent / 100


def format_percent(fraction: float) -> str:
    """0.02 -> `2%`: as a madfile writes it (and as messages say a percentage read from one)."""
    return f"{fraction * 100:g}%"


# A pydantic field type: the madfile's `2%` as the fraction 0.02; the schema tells editors the string form.
Percent = Annotated[float, BeforeValidator(parse_percent),
                    WithJsonSchema({"type": "string", "pattern": PATTERN,
                                    "description": "a percentage: `2%`, `0.5%`"})]
