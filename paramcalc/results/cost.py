"""GPU-hours, wall-clock, dollars and energy of one training run (`paramcalc cost`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from paramcalc.results.base import Report, Result


class Cost(Result):
    training_flops: int
    gpu_hours: float
    wall_clock_hours: float
    usd: float | None
    usd_per_gpu_hour: float | None
    energy_kwh: float | None
    peak_flops_per_gpu: int
    mfu: float


class CostReport(Report):
    command: str = "cost"
    gpu: str
    gpus: int
    tokens: int
    seq_len: int
    dtype: str
    cost: Cost
    chinchilla_tokens: int | None = None
