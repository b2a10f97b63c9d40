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


class DtypeCount(Result):
    dtype: str = Field(description="the safetensors dtype (BF16, F8_E4M3, ...)")
    params: int = Field(description="tensor elements of this dtype")
    bytes: int = Field(description="their bytes on disk")


class Difference(Result):
    reason: str
    params: int


class CheckpointCount(Result):
    """A safetensors checkpoint read from its headers (no weights loaded)."""

    files: list[str]
    tensors: int = Field(description="tensors counted (names sharing one storage once)")
    shared: int = Field(description="tensor names sharing another's storage (tied), not counted again")
    total: int = Field(description="tensor elements in the checkpoint")
    bytes: int = Field(description="tensor bytes on disk (headers excluded)")
    by_dtype: list[DtypeCount]
    analytic_total: int | None = Field(None, description="the config.json beside it, counted as paramcalc models it")
    difference: int | None = Field(None, description="total - analytic_total")
    explained: list[Difference] = Field([], description="what the difference is made of, where known")


class CountReport(Report):
    command: str = "count"
    params: Params
    breakdown: list[Row] = Field([])
    checkpoint: CheckpointCount | None = Field(None, description="a checkpoint TARGET's tensors")
