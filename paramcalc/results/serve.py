"""Serving estimates (`paramcalc serve`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class ServePoint(Result):
    batch: int
    fits: bool
    memory_per_gpu: int
    ttft_seconds: float = Field(description="prefill of one batch of prompts (time to first token)")
    tpot_seconds: float = Field(description="time per output token at the final context length")
    decode_bound: str = Field(description="memory or compute: what limits a decode step")
    tokens_per_second: float = Field(description="output tokens per second per replica (batch / TPOT)")
    request_seconds: float = Field(description="TTFT + output tokens x TPOT")


class ServeReport(Report):
    command: str = "serve"
    gpu: str
    tp: int
    prompt_tokens: int
    output_tokens: int
    dtype: str
    kv_dtype: str
    weights_per_gpu: int
    kv_cache_per_sequence: int
    max_batch: int = Field(description="concurrent sequences that fit after weights (prompt + output tokens each)")
    points: list[ServePoint]
