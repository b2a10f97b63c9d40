"""FLOPs of one training step and of inference (`paramcalc flops`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result, Row


class Flops(Result):
    forward: int | None
    backward: int | None
    train_step: int | None = Field(description="forward + backward: model FLOPs (the MFU numerator)")
    recompute: int | None = Field(description="extra forward work of activation recomputation")
    hardware_step: int | None = Field(description="train_step + recompute: hardware FLOPs (the HFU numerator)")
    forward_per_token: int | None
    train_per_token: int | None
    non_matmul_forward: int | None = Field(
        description="elementwise work (norms, softmax, activations); estimated, not in forward")
    prefill: int | None = Field(
        None, description="inference: forward over the batch's prompts, causal attention (flash)")
    decode_per_token: int | None = Field(
        None, description="inference: one new token per sequence attending over seq_len "
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
