"""One figure across a range of one setting (`paramcalc sweep`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report


class SweepReport(Report):
    command: str = "sweep"
    figure: str
    over: str
    values: list[int]
    unit: str
    series: dict[str, list[float | int | None]] = Field(description="one list per part, aligned with values")
