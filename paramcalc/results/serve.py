"""Serving estimates (`paramcalc serve`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Report, Result


class ServePoint(Result):
    batch: int = Field(description="concurrent sequences")
    fits: bool = Field(description="the batch's KV cache fits the replica's KV capacity (kv_cache_tokens)")
    memory_per_gpu: int = Field(description="weights, working set, overheads and this batch's KV cache, bytes")
    ttft_seconds: float = Field(description="prefill of one batch of prompts (time to first token)")
    tpot_seconds: float = Field(description="time per output token after the first, at the mean context")
    prefill_bound: str = Field(description="compute or memory: what limits the prefill")
    decode_bound: str = Field(description="memory or compute: what limits a decode step")
    ttft_allreduce_seconds: float = Field(
        description="the tensor-parallel all-reduces (and pipeline hand-offs) inside the TTFT")
    tpot_allreduce_seconds: float = Field(
        description="the tensor-parallel all-reduces (and pipeline hand-offs) inside each TPOT")
    tokens_per_second: float = Field(
        description="output tokens per second per replica over whole requests, prefill included: "
                    "batch x output / (TTFT + output x TPOT)")
    request_seconds: float = Field(description="TTFT + output tokens x TPOT")


class ServeReport(Report):
    command: str = "serve"
    gpu: str
    tp: int
    pp: int = Field(1, description="pipeline stages of the replica")
    prompt_tokens: int
    output_tokens: int
    dtype: str
    kv_dtype: str
    weights_per_gpu: int
    kv_cache_per_sequence: int = Field(description="KV bytes per GPU of one sequence of prompt + output tokens")
    kv_cache_tokens: int = Field(
        description="tokens of KV cache the replica holds beside weights and working memory at the "
                    "memory-utilisation cap (vLLM's sizing, whole 16-token blocks); with TP each GPU holds its "
                    "share of every token's heads")
    kv_cache_bytes_per_token: int = Field(description="KV bytes per GPU of one token (every layer)")
    gpu_memory_utilization: float = Field(description="the share of each GPU's memory the engine may use")
    working_set_per_gpu: int = Field(description="the activation peak of a profiling forward, bytes per GPU")
    overhead_per_gpu: int = Field(description="CUDA context and library workspaces (and NCCL's buffers with TP)")
    max_batched_tokens: int = Field(description="tokens of the profiling forward (vLLM's max_num_batched_tokens)")
    max_batch: int = Field(description="concurrent sequences of prompt + output tokens the KV capacity holds")
    points: list[ServePoint]
