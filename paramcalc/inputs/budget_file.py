"""The budget file of `paramcalc check` (docs/contract.md, "Budget files for
`check`"; docs/ci.md), as typed models.

A top-level `budgets:` list. Each budget names a model (any TARGET; paths are
relative to the budget file), optional `train:` settings (those of `paramcalc
cost`) and `memory:` settings (those of `paramcalc memory`), and `max_*`
limits. Numbers follow the command line's grammar (`9e9`, `15T`); memory
limits also take byte units: `80GiB` is 80 x 2^30 bytes, `80GB` is 80 x 10^9.
"""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from dataclasses import dataclass

from pydantic import BaseModel, Field

from paramcalc.inputs.fields import STRICT, Bytes, Count, Positive, Share, Text


class Train(BaseModel):
    """One training run, as `paramcalc cost` takes it."""

    model_config = STRICT
    tokens: Count = Field(description="training tokens (15e12, 15T)")
    gpu: Text = Field(description="accelerator (paramcalc gpus), or a GPU .yaml file relative to the budget file")
    gpus: Count = Field(1, description="GPUs in the run (wall-clock = GPU-hours / gpus)")
    mfu: Share = Field(0.4, description="model FLOPs utilisation in (0, 1]")
    seq_len: Count | None = Field(None, description="tokens per sequence [default: 2048 or the model's limit]")
    batch: Count = Field(1, description="sequences per step (FLOPs scale per token, so it rarely matters)")
    dtype: str = Field("bf16", description="the dtype whose dense peak sets GPU-hours")
    usd_per_hour: Positive | None = Field(None, description="USD per GPU-hour [default: the built-in price table]")
    recompute: str = Field("none", description="none | selective | full | op | deepseek: hardware FLOPs only, "
                                               "never GPU-hours")


class MemorySettings(BaseModel):
    """How one GPU holds the model, as `paramcalc memory` takes it."""

    model_config = STRICT
    mode: str = Field("train", description="train | infer")
    seq_len: Count | None = Field(None, description="tokens per sequence [default: train.seq_len, else the "
                                                    "model's pre-training context]")
    batch: Count = Field(1, description="micro-batch per GPU")
    dtype: str = Field("bf16", description="weights and activations")
    kv_dtype: str | None = Field(None, description="KV cache dtype (infer) [default: dtype]")
    precision: str = Field("mixed", description="mixed | fp32 | amp | megatron | bf16")
    optimizer: str = Field("adamw", description="adamw | adamw-bf16 | adam | adam-8bit | sgd | sgd-momentum | lion "
                                                "| adafactor")
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage 0-3")
    dp: Count = Field(1, description="data-parallel GPUs")
    tp: Count = Field(1, description="tensor-parallel GPUs")
    pp: Count = Field(1, description="pipeline stages")
    sequence_parallel: bool = Field(False, description="sequence parallelism with TP")
    recompute: str = Field("none", description="none | selective | full | op | deepseek")
    fp8_activations: bool = Field(False, description="with dtype fp8: the Linears' inputs cached in fp8 for "
                                                     "backward (DeepSeek-V3)")
    attention: str = Field("flash", description="eager | flash")


@dataclass(frozen=True)
class Limit:
    key: str
    unit: str  # params | bytes | FLOPs | GPU-hours | hours | USD
    needs: str  # which figure measures it: count, memory or train


LIMITS = (Limit("max_params", "params", "count"), Limit("max_active_params", "params", "count"),
          Limit("max_memory_per_gpu", "bytes", "memory"), Limit("max_training_flops", "FLOPs", "train"),
          Limit("max_gpu_hours", "GPU-hours", "train"), Limit("max_wall_clock_hours", "hours", "train"),
          Limit("max_usd", "USD", "train"))


class Budget(BaseModel):
    """One model and the limits it must stay under."""

    model_config = STRICT
    name: Text = Field(description="shown in reports (a JUnit test case name)")
    model: Text = Field(description="any TARGET; paths are relative to the budget file")
    train: Train | None = Field(None, description="the training run that GPU-hour, FLOP and dollar limits price")
    memory: MemorySettings | None = Field(None, description="the setup that max_memory_per_gpu measures")
    max_params: Count | None = Field(None, description="unique parameters (tied weights once)")
    max_active_params: Count | None = Field(None, description="parameters used per token (MoE: shared + top-k)")
    max_memory_per_gpu: Bytes | None = Field(None, description="peak bytes per GPU (80GiB, 80GB or bytes)")
    max_training_flops: Count | None = Field(None, description="model FLOPs of the training run")
    max_gpu_hours: Positive | None = Field(None, description="GPU-hours of the training run")
    max_wall_clock_hours: Positive | None = Field(None, description="hours on train.gpus GPUs")
    max_usd: Positive | None = Field(None, description="dollars of the training run")


class BudgetFile(BaseModel):
    model_config = STRICT
    budgets: list[Budget] = Field(min_length=1, description="the budgets to check")
