"""Numbers in, numbers out: the one place for parsing and formatting.

Counts, bytes and FLOPs are Python ints everywhere inside paramcalc. Units:
- parameter counts are decimal (8.03B = 8.03e9), never divided by 1024;
- GiB = 2**30 bytes, GB = 10**9 bytes; tables show GiB, with GB where it helps;
- FLOPs are floating-point operations, 2 per multiply-add (never MACs).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from paramcalc.errors import UserError

GIB = 2**30
GB = 10**9

# K, M, B (or G), T: decimal multipliers for counts and token budgets.
_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12, "P": 10**15}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([KMBGTP]?)\s*$", re.IGNORECASE)


def parse_number(text: object, *, what: str = "number") -> int | float:
    """`15e12`, `1.56e+13`, `7.5B`, `15T`, `405e9`, `0.4` -> int when whole, else float.

    Whole values come back as exact ints (Decimal arithmetic, no float rounding),
    so `405e9` is 405_000_000_000 exactly.
    """
    if isinstance(text, bool):
        raise UserError(f"expected a {what}, got {text!r}", fix="write a number such as 7.5B or 15e12")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        return int(text) if text.is_integer() else text
    match = _NUMBER.match(str(text))
    if not match:
        raise UserError(f"{text!r} is not a {what}", fix="write a number such as 7.5B, 405e9, 15T or 0.4")
    try:
        value = Decimal(match.group(1).replace("_", "")) * _SUFFIX[match.group(2).upper()]
    except InvalidOperation:
        raise UserError(f"{text!r} is not a {what}", fix="write a number such as 7.5B or 15e12") from None
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def parse_positive_int(text: object, *, what: str) -> int:
    value = parse_number(text, what=what)
    if not isinstance(value, int) or value <= 0:
        raise UserError(f"{what} must be a positive whole number, got {text!r}")
    return value


def parse_positive(text: object, *, what: str) -> int | float:
    value = parse_number(text, what=what)
    if value <= 0:
        raise UserError(f"{what} must be positive, got {text!r}")
    return value


def human_count(n: int | float | None) -> str:
    """8030261248 -> '8.03B' (decimal prefixes: parameter and token counts)."""
    if n is None:
        return "unknown"
    for div, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}" if abs(n) / div < 100 else f"{n / div:,.0f}{suffix}"
    return f"{n:,}" if isinstance(n, int) else f"{n:.3g}"


def human_bytes(n: int | float | None) -> str:
    """Binary units: 16106127360 -> '15.00 GiB'."""
    if n is None:
        return "unknown"
    for div, suffix in ((2**50, "PiB"), (2**40, "TiB"), (GIB, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:,.2f} {suffix}"
    return f"{n:,} B"


def human_flops(n: int | float | None) -> str:
    """29261612187648 -> '29.26 TFLOP' (decimal prefixes)."""
    if n is None:
        return "unknown"
    for div, suffix in ((10**24, "YFLOP"), (10**21, "ZFLOP"), (10**18, "EFLOP"), (10**15, "PFLOP"),
                        (10**12, "TFLOP"), (10**9, "GFLOP"), (10**6, "MFLOP")):
        if abs(n) >= div:
            return f"{n / div:,.2f} {suffix}"
    return f"{n:,} FLOP"


def human_hours(h: float | None) -> str:
    """30840000 -> '30.84M', 5439 -> '5.4K' (callers name the unit: GPU-hours, hours)."""
    if h is None:
        return "unknown"
    if h >= 1e6:
        return f"{h / 1e6:,.2f}M"
    if h >= 1e3:
        return f"{h / 1e3:,.1f}K"
    return f"{h:,.1f}"


def human_usd(x: float | None) -> str:
    if x is None:
        return "unknown"
    if x >= 1e6:
        return f"${x / 1e6:,.2f}M"
    return f"${x:,.0f}"


def percent(part: int | float, whole: int | float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
