"""Numbers in, numbers out: the one place for parsing and formatting them.

Counts, bytes and FLOPs are Python ints everywhere inside paramcalc. Units:
- parameter and token counts are decimal (8.03B = 8.03e9), never divided by 1024;
- GiB = 2**30 bytes, GB = 10**9 bytes; tables show GiB, with GB where it helps;
- FLOPs are floating-point operations, 2 per multiply-add (never MACs).

The grammar, for the command line and every file a user writes (specs,
budgets, pipelines, GPU files) alike: any float literal (`15e12`, `1.56e+13`,
`0.4`, `1_000`), optionally with a decimal suffix K, M, B (or G), T, P
(`7.5B`, `15T`) or a binary one Ki, Mi, Gi, Ti, Pi (`8Ki` = 8192). Byte sizes
also take B-units: `80GiB` (80 x 2^30), `80GB` (80 x 10^9). Whole values come
back as exact ints (decimal arithmetic, no float rounding): `405e9` is
405_000_000_000 exactly.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import overload

from paramcalc.errors import UserError

GIB = 2**30
GB = 10**9

# Numbers above this are refused by name: no count, token budget, byte size or FLOP
# budget comes near it, and beyond it float arithmetic (hours, dollars) would overflow.
LIMIT = 10**30

_DECIMAL = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
_LITERAL = r"[+-]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(rf"^\s*({_LITERAL})\s*((?:[kmgtp]i)|[kmbgtp])?\s*$", re.IGNORECASE)
_BYTES = re.compile(rf"^\s*({_LITERAL})\s*([kmgtp]i?b)\s*$", re.IGNORECASE)
_EXAMPLES = "write a number such as 7.5B, 405e9, 15T, 8Ki or 0.4"


def parse_number(text: object, *, field: str | None = None) -> int | float:
    """`15e12`, `1.56e+13`, `7.5B`, `15T`, `8Ki`, `0.4` -> int when whole, else float.

    A bool is not a number (YAML's `true` is no layer count).
    """
    if isinstance(text, bool):
        raise UserError(f"expected a number, got {text!r}", field=field, fix=_EXAMPLES)
    if isinstance(text, int):
        return _bounded(text, text, field)
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise UserError(f"{text!r} is not a finite number", field=field, fix=_EXAMPLES)
        return _bounded(int(text) if text.is_integer() else text, text, field)
    match = _NUMBER.match(str(text))
    if not match:
        raise UserError(f"{text!r} is not a number", field=field, fix=_EXAMPLES)
    suffix = (match.group(2) or "").lower()
    return _exact(match.group(1), _BINARY.get(suffix) or _DECIMAL[suffix], text, field)


def parse_bytes(text: object, *, field: str | None = None) -> int:
    """`80GiB` -> 85899345920, `80GB` -> 80000000000, `8.5e10` -> 85000000000: whole bytes,
    rounded down. A bare number is bytes, in the number grammar (`80G` = 80e9, `80Gi` = 80 x 2^30)."""
    match = _BYTES.match(text) if isinstance(text, str) else None
    if match:
        unit = match.group(2).lower()[:-1]  # 'gib' -> 'gi', 'gb' -> 'g'
        value = _exact(match.group(1), _BINARY.get(unit) or _DECIMAL[unit], text, field)
    else:
        try:
            value = parse_number(text, field=field)
        except UserError as e:
            if "too large" in e.message:
                raise
            raise UserError(f"{text!r} is not a byte size", field=field,
                            fix="write 80GiB (2^30 bytes each), 80GB (10^9) or a number of bytes") from None
    if value < 1:
        raise UserError(f"a byte size must be at least one byte, got {text!r}", field=field,
                        fix="write 80GiB, 80GB or a number of bytes")
    return int(value)


def _exact(literal: str, multiplier: int, text: object, field: str | None) -> int | float:
    try:
        value = Decimal(literal.replace("_", "")) * multiplier
    except InvalidOperation:
        raise UserError(f"{text!r} is not a number", field=field, fix=_EXAMPLES) from None
    if abs(value) > LIMIT:
        raise UserError(f"{text!r} is too large (the limit is 1e30)", field=field, fix=_EXAMPLES)
    return int(value) if value == value.to_integral_value() else float(value)


def _bounded(value: int | float, text: object, field: str | None) -> int | float:
    if abs(value) > LIMIT:
        raise UserError(f"{text!r} is too large (the limit is 1e30)", field=field, fix=_EXAMPLES)
    return value


def parse_positive_int(text: object, *, field: str | None = None) -> int:
    value = parse_number(text, field=field)
    if not isinstance(value, int) or value <= 0:
        raise UserError(f"must be a positive whole number, got {text!r}", field=field)
    return value


def parse_natural(text: object, *, field: str | None = None) -> int:
    """A whole number >= 0 (warm-up steps, a `--max` where 0 means all)."""
    value = parse_number(text, field=field)
    if not isinstance(value, int) or value < 0:
        raise UserError(f"must be a whole number >= 0, got {text!r}", field=field)
    return value


def parse_positive(text: object, *, field: str | None = None) -> int | float:
    value = parse_number(text, field=field)
    if value <= 0:
        raise UserError(f"must be positive, got {text!r}", field=field)
    return value


def parse_share(text: object, *, field: str | None = None) -> float:
    """A fraction in (0, 1]: an MFU, an efficiency, a memory-utilisation cap."""
    value = parse_number(text, field=field)
    if not 0 < value <= 1:
        raise UserError(f"must be a fraction in (0, 1], got {text!r}", field=field,
                        fix="write 0.4 for 40%, not a percentage")
    return float(value)


def parse_list(text: str, parse, *, field: str | None = None) -> list:
    """`1,8,32` -> [1, 8, 32] through `parse(item, field=...)`; an empty list is refused."""
    items = [parse(item.strip(), field=field) for item in str(text).split(",") if item.strip()]
    if not items:
        raise UserError("no values given", field=field, fix="give a comma-separated list such as 1,8,32")
    return items


# ---------------------------------------------------------------- formatting


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


@overload
def gib(n: int | float) -> float: ...


@overload
def gib(n: None) -> None: ...


def gib(n: int | float | None) -> float | None:
    """Bytes in GiB (2^30), as a plain number for plots."""
    return None if n is None else n / GIB


def human_flops(n: int | float | None) -> str:
    """29261612187648 -> '29.26 TFLOP' (decimal prefixes)."""
    if n is None:
        return "unknown"
    for div, suffix in ((10**24, "YFLOP"), (10**21, "ZFLOP"), (10**18, "EFLOP"), (10**15, "PFLOP"),
                        (10**12, "TFLOP"), (10**9, "GFLOP"), (10**6, "MFLOP")):
        if abs(n) >= div:
            return f"{n / div:,.2f} {suffix}"
    return f"{n:,} FLOP"


def human_rate(flops_per_second: int | float | None) -> str:
    """989.4e12 -> '989 TFLOP/s' (a GPU's peak, an achieved throughput)."""
    if flops_per_second is None:
        return "-"
    return f"{flops_per_second / 1e12:,.0f} TFLOP/s"


def human_bandwidth(bytes_per_second: int | float | None) -> str:
    """3.35e12 -> '3.35 TB/s', 4.5e11 -> '450.00 GB/s' (decimal: links are quoted in GB/s)."""
    if bytes_per_second is None:
        return "-"
    if bytes_per_second >= 1e12:
        return f"{bytes_per_second / 1e12:,.2f} TB/s"
    return f"{bytes_per_second / 1e9:,.2f} GB/s"


def human_seconds(s: float | None) -> str:
    """0.0123 -> '12.3 ms', 2.5 -> '2.50 s', 7200 -> '2.00 h'."""
    if s is None:
        return "unknown"
    if s < 1:
        return f"{s * 1e3:,.1f} ms"
    if s < 3600:
        return f"{s:,.2f} s"
    return f"{s / 3600:,.2f} h"


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
