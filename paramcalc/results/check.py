"""Budget checks for CI (`paramcalc check`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Document, Result


class LimitResult(Result):
    limit: str = Field(description="the budget key, e.g. max_params")
    unit: str = Field(description="params, bytes, FLOPs, GPU-hours, hours or USD")
    max: int | float
    actual: int | float
    passed: bool = Field(description="actual <= max")


class BudgetResult(Result):
    name: str
    model: str = Field(description="the TARGET as the budget file writes it")
    passed: bool
    limits: list[LimitResult]
    notes: list[str] = Field([], description="the settings the figures assume")


class CheckReport(Document):
    command: str = "check"
    file: str
    passed: bool = Field(description="every budget holds (exit 0); else exit 1")
    results: list[BudgetResult]
