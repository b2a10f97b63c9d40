"""Training at scale: the plan, its step time, memory and cost (`paramcalc estimate`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result
from paramcalc.results.cost import Cost
from paramcalc.results.count import Params
from paramcalc.results.flops import Flops
from paramcalc.results.memory import Memory


class Collective(Result):
    name: str
    bytes_per_gpu: int = Field(description="bytes one GPU sends per optimizer step")
    seconds: float = Field(description="per step, at the link's effective bandwidth and latency")
    overlappable: bool = Field(description="hidden behind compute where the step has enough of it")


class Communication(Result):
    collectives: list[Collective]
    compute_seconds: float = Field(description="the busiest stage's kernels over one step")
    exposed_seconds: float = Field(description="communication on the critical path or not hidden")
    bubble_fraction: float = Field(description="the pipeline's fill and drain, as a share of the step")


class TrainingPlan(Result):
    """How one optimizer step is spread over GPUs (Megatron-LM's degrees)."""

    gpus: int | None = Field(None, description="tp x cp x pp x dp (null: no plan for a bare count)")
    gpu: str
    searched: bool = Field(True, description="false: the layout (tp, pp, cp, ep) was given")
    tp: int = 1
    pp: int = 1
    vpp: int = Field(1, description="virtual stages per pipeline rank (interleaved 1F1B)")
    cp: int = 1
    ep: int = Field(1, description="expert-parallel ranks, inside dp x cp")
    dp: int = 1
    sp: bool = Field(False, description="sequence parallelism with TP")
    micro_batch: int = Field(1, description="sequences per micro-batch per data-parallel rank")
    micro_batches: int = Field(1, description="micro-batches per step on each pipeline (gradient accumulation)")
    global_batch: int = Field(1, description="sequences per optimizer step")
    zero: int = Field(0, description="ZeRO stage over dp x cp (3 = FSDP)")
    recompute: str = Field("none", description="none | selective | full | op (torchtitan's op-level selective) | "
                                               "deepseek (DeepSeek-V3: norms, MLA up-projections, MoE SwiGLU rerun)")
    attention: str = "flash"
    dtype: str = Field("bf16", description="bf16 | fp8 (fp8 GEMMs, bf16 weights, fp32 master state)")
    schedule: str = Field("1f1b", description="pipeline schedule: 1f1b (interleaved with vpp > 1) | dualpipe")
    grad_reduce: str = Field("fp32", description="precision gradients accumulate and reduce in: fp32 | bf16")
    optimizer: str = Field("adamw", description="adamw (fp32 moments) | adamw-bf16 (DeepSeek-V3's bf16 moments) | ...")
    fp8_activations: bool = Field(False, description="Linear inputs cached in fp8 for backward (DeepSeek-V3)")


class Step(Result):
    seconds: float = Field(description="one optimizer step over the global batch on every GPU of the plan")
    mfu: float = Field(description="model FLOPs / (GPUs x dense peak of the dtype x seconds)")
    hfu: float = Field(description="as mfu, recomputation counted (hardware FLOPs)")
    tflops_per_gpu: float = Field(description="model FLOPs per GPU per second / 1e12")
    tokens_per_second: float = Field(description="all GPUs together")
    mfu_source: str = Field(description="predicted (from the plan) | given (--mfu)")
    compute_seconds: float | None = None
    communication_seconds: float | None = Field(None, description="exposed: on the critical path or not hidden")
    bubble_seconds: float | None = None
    optimizer_seconds: float | None = None


class EstimateReport(Report):
    command: str = "estimate"
    seq_len: int
    tokens: int
    params: Params
    flops: Flops
    plan: TrainingPlan = Field(description="the plan evaluated (pinned) or the fastest that fits (searched)")
    step: Step
    memory: Memory | None = Field(description="the busiest GPU of the plan")
    cost: Cost
    communication: Communication | None = Field(None, description="per step of the plan")
    verdict: str
