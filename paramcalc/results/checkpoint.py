"""Checkpoint sizes on disk (`paramcalc checkpoint`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class CheckpointSizes(Result):
    """Bytes on disk, exact integers."""

    weights: int = Field(description="weights only (inference export), in --dtype")
    training_weights: int = Field(description="the weights as training keeps them (--precision)")
    master_weights: int = Field(description="fp32 master copy (mixed precision), else 0")
    optimizer_state: int = Field(description="optimizer buffers (Adam: fp32 momentum and variance)")
    resumable: int = Field(description="training_weights + master_weights + optimizer_state: one full checkpoint")
    per_rank: int = Field(description="what the busiest rank (rank 0) writes for one checkpoint")
    per_other_rank: int = Field(description="what each other data-parallel rank writes (0 without ZeRO)")
    kept: int = Field(description="keep x resumable: the disk that the last K checkpoints hold")
    rotation_peak: int = Field(description="(keep + 1) x resumable: the newest is written before the oldest goes")


class CheckpointReport(Report):
    command: str = "checkpoint"
    params: int
    dtype: str = Field(description="dtype of the weights-only export")
    train_dtype: str = Field(description="dtype of the weights in the resumable checkpoint (fp32 recipes: fp32)")
    precision: str
    optimizer: str
    zero: int
    dp: int
    keep: int
    bytes_per_param: float = Field(description="resumable / params")
    checkpoint: CheckpointSizes
