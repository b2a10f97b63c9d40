"""Two models side by side (`paramcalc diff`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Document, Result


class DiffRow(Result):
    metric: str = Field(description="a stable key, e.g. params.total")
    label: str
    unit: str = Field(description="params, FLOPs or bytes")
    a: int | None
    b: int | None
    delta: int | None = Field(description="b - a; null when either is unknown")
    percent: float | None = Field(description="100 x delta / a; null when a is unknown or zero")


class DiffReport(Document):
    command: str = "diff"
    a: str = Field(description="model name of A")
    b: str = Field(description="model name of B")
    seq_len: int
    rows: list[DiffRow]
