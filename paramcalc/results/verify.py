"""Analytic counts against instantiated modules (`paramcalc verify`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class StageParams(Result):
    stage: str
    count: int = Field(description="how often the stage repeats in the network")
    analytic: int = Field(description="params() x count")
    counted: int = Field(description="sum(p.numel()) of the instantiated modules, scaled to count")


class ParamsCheck(Result):
    analytic: int
    counted: int
    exact: bool
    by_stage: list[StageParams]


class Component(Result):
    stage: str
    kind: str = Field(description="embedding, layer, norm or head")
    instantiated: int = Field(description="modules built and run for this stage")
    count: int = Field(description="how often the stage repeats in the network")
    analytic_forward: int
    flop_counter_forward: int | None = Field(description="null: not run (no input is known for this block)")
    fvcore_forward: int | None = Field(description="fvcore's MACs x 2; null when its tracer failed or did not run")
    analytic_backward: int = Field(description="2 x forward: an input- and a weight-gradient matmul per matmul "
                                   "(1 x for a ViT's patch projection, whose images need no gradient)")
    flop_counter_backward: int | None
    exact: bool | None = Field(description="null: not counted")


class VerifyTotals(Result):
    analytic_forward: int = Field(description="the whole network, as `paramcalc flops` counts it")
    counted_forward: int | None = Field(description="each stage's FlopCounterMode count, scaled to its repeat "
                                        "count; null when a stage was not counted")
    exact: bool | None


class OptimizerCheck(Result):
    optimizer: str
    params: int = Field(description="parameters of the module stepped (one layer)")
    predicted: int = Field(description="paramcalc's optimizer state bytes for them (fp32 states)")
    measured: int = Field(description="bytes of the state torch.optim holds after one step (scalar steps excluded)")
    exact: bool


class VerifyReport(Report):
    command: str = "verify"
    seq_len: int
    batch: int
    layers: int = Field(description="layers instantiated per layer stage")
    params: ParamsCheck
    components: list[Component]
    totals: VerifyTotals
    optimizer: list[OptimizerCheck] = Field([])
    passed: bool
