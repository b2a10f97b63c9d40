"""Typed results: what the library returns and `--json` prints.

Counts, bytes and FLOPs are ints (exact, unbounded), or None where the target
does not say enough (a bare count has no architecture). Hours and dollars
are floats. Every document carries `schema_version`.
"""

# No `from __future__ import annotations`: pydantic reads these classes' fields
# at import, and real annotations spare it evaluating strings on every cold start.
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class _Result(BaseModel):
    # Empty defaults are plain values, `Field([])`: pydantic copies a default for each
    # instance, while `default_factory=list` makes it parse the builtin's text
    # signature, compiling tokenize's regular expression (2 ms of a cold start).
    model_config = ConfigDict(frozen=True, defer_build=True)


class Report(_Result):
    schema_version: int = SCHEMA_VERSION
    command: str
    model: str
    notes: list[str] = Field([], description="conventions used and caveats")


class Row(_Result):
    """One line of a breakdown: a component of a stage, once and times its count."""

    stage: str
    component: str
    each: int | None
    count: int
    total: int | None


class Params(_Result):
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


class Flops(_Result):
    forward: int | None
    backward: int | None
    train_step: int | None = Field(description="forward + backward: model FLOPs (the MFU numerator)")
    recompute: int | None = Field(description="extra forward work of activation recomputation")
    hardware_step: int | None = Field(description="train_step + recompute: hardware FLOPs (the HFU numerator)")
    forward_per_token: int | None
    train_per_token: int | None
    non_matmul_forward: int | None = Field(description="elementwise work (norms, softmax, activations); estimated, not in forward")
    prefill: int | None = Field(None, description="inference: forward over the batch's prompts, causal attention (flash)")
    decode_per_token: int | None = Field(None, description="inference: one new token per sequence attending over seq_len "
                                                           "cached positions, per sequence")
    six_n: int = Field(description="rule of thumb 6 x N x tokens (Kaplan et al. 2020)")
    palm: int | None = Field(description="6N + 12 L H Q T per token x tokens (PaLM, Chowdhery et al. 2022, appendix B)")


class FlopsReport(Report):
    command: str = "flops"
    seq_len: int
    batch: int
    tokens: int
    attention: str
    flops: Flops
    breakdown: list[Row] = Field([])


class Memory(_Result):
    weights: int
    gradients: int
    optimizer: int
    activations: int | None
    kv_cache: int | None
    model_states_per_gpu: int
    overhead: int | None
    total_per_gpu: int | None


class MemoryReport(Report):
    command: str = "memory"
    mode: str
    seq_len: int
    batch: int
    settings: dict[str, str | int | float | bool | None]
    memory: Memory
    breakdown: dict[str, int | None] = Field({})
    fits: dict[str, bool | int | str | None] = Field({})


class Cost(_Result):
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
