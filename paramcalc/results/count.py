"""Parameter counts (`paramcalc count`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result, Row


class Params(Result):
    total: int
    embedding: int | None
    non_embedding: int | None
    active: int | None
    expected: int | None = Field(None, description="the preset's published count, when it has one")
    trainable: int | None = Field(None, description="parameters that get gradients and optimizer state")
    frozen: int | None = Field(None, description="parameters kept fixed (freeze patterns, the base of a LoRA model)")
    buffers: int | None = Field(None, description="non-trained state elements (batch norm's running statistics)")


class CountReport(Report):
    command: str = "count"
    params: Params
    breakdown: list[Row] = Field([])
