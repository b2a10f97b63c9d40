"""Real layers on a device, measured against the predictions (`paramcalc bench`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class Predicted(Result):
    forward_flops: int = Field(description="matmul FLOPs of one forward (2 per multiply-add, dense attention)")
    backward_flops: int = Field(description="2 x forward, plus SDPA's recomputed scores when a fused kernel runs")
    activations: int = Field(description="bytes saved for backward (the blocks' saved(), dropout off)")
    weights: int = Field(description="bytes of the benchmarked parameters")
    peak_memory: int = Field(description="most bytes alive in one step: weights, inputs, saved activations, and "
                                         "backward's weight gradients and temporaries, replayed block by block")
    activations_breakdown: dict[str, int] = Field({})


class Measured(Result):
    forward_flops: int = Field(description="FlopCounterMode's count of one forward")
    backward_flops: int = Field(description="FlopCounterMode's count of one backward")
    activations: int = Field(description="bytes saved_tensors_hooks saw, each storage once, parameters excluded")
    weights: int
    peak_allocated: int | None = Field(description="torch.cuda.max_memory_allocated over the timed steps; null on CPU")
    peak_live: int = Field(description="most tensor bytes alive at once in one step, tracked op by op (any device)")
    peak_memory: int = Field(description="peak_allocated on CUDA, else peak_live")
    seconds_per_step: float = Field(description="mean wall time of one forward + backward")
    seconds_min: float
    seconds_median: float
    achieved_tflops: float = Field(description="3 x forward FLOPs / seconds per step / 1e12")
    mfu: float | None = Field(description="achieved / the GPU's dense peak for the dtype; null when no GPU is known")
    attention_kernels: list[str] = Field([], description="fused attention ops dispatched (SDPA)")


class Check(Result):
    figure: str
    predicted: int | None
    measured: int | None
    ratio: float | None = Field(description="measured / predicted")
    exact: bool
    verdict: str = Field(description="ok: within 10%; differs; unknown")


class Bench(Result):
    predicted: Predicted
    measured: Measured
    checks: list[Check]


class BenchReport(Report):
    command: str = "bench"
    device: str
    device_name: str
    gpu: str | None = Field(description="catalog GPU whose peak the MFU uses")
    gpu_peak_flops: int | None
    dtype: str
    layers: int
    stage: str = Field(description="the layer stage benchmarked")
    seq_len: int
    batch: int
    attention: str
    with_head: bool
    warmup: int
    steps: int
    torch_version: str
    date: str
    bench: Bench
