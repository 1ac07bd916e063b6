"""Percentages as a madfile writes them (`tolerance: 5%`), parsed strictly. Pure.

Only `<number>%` is a percentage: a bare `0.05` could mean 5% or 0.05%, and a gate that guesses wrong
lets a regression twenty times larger pass, so it is refused with a hint instead.
"""

from __future__ import annotations

import re

# An optional sign (so that `-5%` is refused as negative, not as unreadable), digits, an optional
# fraction, `%`. No exponent, no spaces, no `nan`/`inf`: what a reviewer reads is what is used.
_PERCENT = re.compile(r"(-?)(\d{1,6})(?:\.(\d{1,6}))?%")
PERCENT_PATTERN = r"^-?\d{1,6}(\.\d{1,6})?%$"  # for the JSON schema: the same language as _PERCENT


def parse_percent(value: object) -> float:
    """`"5%"` -> 0.05, `"2.5%"` -> 0.025, `"-1%"` -> -0.01; ValueError naming what is wrong otherwise."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a percentage such as `5%`, found {type(value).__name__}")
    if not isinstance(value, str):
        raise ValueError(f"expected a percentage, found the number {value!r}: 5% or {value!r}%?")
    match = _PERCENT.fullmatch(value)
    if match is None:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise ValueError(f"expected a percentage such as `5%` or `2.5%`, found {shown!r}")
    sign, whole, fraction = match.groups()
    # Decimal text -> fraction without a binary round trip through percent: `7%` is 0.07 exactly as
    # Python reads "0.07", not 7 * 0.01 (0.07000000000000001).
    digits = whole + (fraction or "")
    scale = 2 + len(fraction or "")
    return float(f"{sign}{digits}e-{scale}")


def format_percent(fraction: float) -> str:
    """0.05 -> `5%`, 0.025 -> `2.5%`: as the madfile wrote it."""
    return f"{round(fraction * 100, 9):g}%"
