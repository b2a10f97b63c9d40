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


class ContinuousPoint(Result):
    concurrency: float = Field(description="requests in flight (running and queued), given or by Little's law; "
                                           "when saturated, the running batch (the queue grows without bound)")
    offered_rate: float | None = Field(None, description="requests per second offered (--rate); null for --concurrency")
    saturated: bool = Field(False, description="the offered rate exceeds the most the replica sustains: the queue and "
                                              "the latency grow without bound")
    running: float = Field(description="sequences the engine holds (at most what the KV cache and max_num_seqs allow)")
    limited_by: str | None = Field(None, description="kv_cache, max_num_seqs or token_budget when that caps it")
    decode_batch: float = Field(description="sequences decoding in a step (the rest wait for or run their prefill)")
    prefill_tokens_per_step: float = Field(description="prompt tokens prefilled per step, chunks interleaved with "
                                                       "the decodes")
    step_seconds: float = Field(description="mean time of one engine step (every decode plus its prefill chunk)")
    requests_per_second: float
    tokens_per_second: float = Field(description="output tokens per second per replica")
    ttft_seconds: float | None = Field(description="queueing plus the chunked prefill; null when saturated")
    tpot_seconds: float = Field(description="time per output token after the first: the mean step over a "
                                            "request's decode, prefill chunks interleaved")
    request_seconds: float | None = Field(description="TTFT + (output - 1) x TPOT; null when saturated")


class ContinuousReport(Result):
    max_batched_tokens: int = Field(description="tokens one step may run (vLLM's max_num_batched_tokens)")
    max_num_seqs: int = Field(description="sequences one step may run (vLLM's max_num_seqs)")
    max_running: int = Field(description="sequences the replica runs at once: the KV capacity's and max_num_seqs' "
                                         "lesser")
    max_requests_per_second: float = Field(description="the most requests per second the replica sustains")
    max_tokens_per_second: float = Field(description="output tokens per second at that rate")
    points: list[ContinuousPoint]


class SpeculativePoint(Result):
    batch: int
    draft_seconds: float = Field(description="the draft's lookahead decode steps of one verify step")
    verify_seconds: float = Field(description="one target forward over lookahead + 1 tokens a sequence")
    step_seconds: float = Field(description="draft_seconds + verify_seconds")
    tpot_seconds: float = Field(description="step_seconds / expected tokens per step")
    speedup: float = Field(description="plain decoding's TPOT over this TPOT")
    bound: str = Field(description="memory or compute: what limits the verify step")
    tokens_per_second: float = Field(
        description="batch x output / (TTFT with the draft's prefill + output x TPOT)")


class SpeculativeReport(Result):
    draft: str
    accept: float = Field(description="probability the target accepts each draft token (Leviathan et al.'s alpha)")
    lookahead: int = Field(description="draft tokens proposed per verify step (gamma)")
    expected_tokens_per_step: float = Field(description="(1 - accept^(lookahead + 1)) / (1 - accept)")
    draft_weights_per_gpu: int
    draft_kv_bytes_per_token: int = Field(description="the draft's KV bytes per GPU of one token")
    points: list[SpeculativePoint]


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
    continuous: ContinuousReport | None = Field(
        None, description="in-flight batching with chunked prefill at --concurrency or --rate")
    speculative: SpeculativeReport | None = Field(None, description="speculative decoding with --draft")
