"""Training at scale: the plan, its communication and its cost (`paramcalc estimate`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result
from paramcalc.results.cost import Cost
from paramcalc.results.count import Params
from paramcalc.results.flops import Flops
from paramcalc.results.memory import Memory


class Collective(Result):
    name: str
    bytes_per_gpu: int
    seconds: float
    overlappable: bool


class Communication(Result):
    collectives: list[Collective]
    compute_seconds: float
    exposed_seconds: float
    bubble_fraction: float


class TrainingPlan(Result):
    """How one training step is spread over GPUs (null where no plan fits)."""

    gpus: int | None = Field(None, description="dp x tp x pp")
    gpu: str
    dp: int = 1
    tp: int = 1
    pp: int = 1
    zero: int = 0
    recompute: str = "none"
    attention: str = "flash"


class EstimateReport(Report):
    command: str = "estimate"
    seq_len: int
    params: Params
    flops: Flops
    plan: TrainingPlan = Field(description="the smallest configuration that fits")
    memory: Memory | None
    cost: Cost
    communication: Communication | None = Field(None, description="per step of the plan; a diagnostic, not added")
    verdict: str
