"""Bytes per GPU (`paramcalc memory`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class Setup(Result):
    """Every setting that shapes memory, as parsed and checked (analysis/memory.py)."""

    mode: str = Field("train", description="train | infer")
    dtype: str = Field("bf16", description="weights and activations")
    kv_dtype: str | None = Field(None, description="KV cache [default: dtype]")
    precision: str = Field("mixed", description="mixed | fp32 | amp | megatron")
    optimizer: str = "adamw"
    zero: int = Field(0, description="ZeRO stage 0-3")
    dp: int = 1
    tp: int = 1
    pp: int = 1
    sequence_parallel: bool = False
    recompute: str = Field("none", description="none | selective | full")
    attention: str = Field("eager", description="eager | flash")
    quantized_base: bool = Field(False, description="QLoRA: the frozen base stored in int4, adapters trained in bf16")

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp


class Fit(Result):
    """Whether the per-GPU total fits a GPU, and the largest batch that does."""

    gpu: str
    gpu_bytes: int
    fits: bool
    headroom: int = Field(description="gpu_bytes - total_per_gpu (negative: short by that much)")
    gpus: int = Field(description="dp x tp x pp")
    max_batch: int = Field(description="the largest micro-batch (serving: concurrent sequences) that fits; 0: none")


class Memory(Result):
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
    settings: Setup
    memory: Memory
    breakdown: dict[str, int | None] = Field({})
    fits: Fit | None = Field(None, description="with a GPU: whether it fits, and the largest batch that does")
