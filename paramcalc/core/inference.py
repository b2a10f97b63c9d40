"""Serving estimates on a roofline (Williams et al. 2009): each phase takes the
longer of its compute time and its memory-traffic time.

- Prefill (time to first token): the prompt's forward FLOPs, causal attention
  (flash kernels), at the GPU's dense peak x a compute efficiency.
- Decode (time per output token): every step reads all weights and the whole
  KV cache once, at memory bandwidth x a bandwidth efficiency; its FLOPs are
  one token per sequence attending over the cache (usually far below peak).
- Tensor parallelism splits weights, cache and FLOPs over `tp` GPUs; its
  all-reduces are left out (they err low at large tp).

The efficiencies are stated defaults (0.6 of peak compute, 0.8 of peak
bandwidth: what tuned serving engines reach on H100-class GPUs); pass your own.
"""

from __future__ import annotations

from pydantic import Field

from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu
from paramcalc.core.count import resolve
from paramcalc.core.flops import forward_flops, make_pass
from paramcalc.core.memory import DTYPE_BYTES, _weight_bytes, kv_cache_bytes
from paramcalc.errors import UserError
from paramcalc.network import build
from paramcalc.results import Report, _Result
from paramcalc.spec import TransformerSpec
from paramcalc.units import parse_positive, parse_positive_int


class ServePoint(_Result):
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


def estimate_serving(target, *, gpu: str, tp=1, prompt=1024, output=256, batches=(1, 8, 32, 128),
                     dtype: str = "bf16", kv_dtype: str | None = None, compute_efficiency=0.6,
                     bandwidth_efficiency=0.8) -> ServeReport:
    spec = resolve(target)
    if not isinstance(spec, TransformerSpec):
        raise UserError("serving estimates need the architecture (KV cache, attention)",
                        fix="give a transformer preset, config.json or YAML spec (not a bare count or a layers network)")
    kv_dtype = kv_dtype or dtype
    for flag, value in (("--dtype", dtype), ("--kv-dtype", kv_dtype)):
        if value not in DTYPE_BYTES:
            raise UserError(f"unknown dtype {value!r}", where=flag, fix=f"choose from: {', '.join(DTYPE_BYTES)}")
    tp = parse_positive_int(tp, what="--tp")
    prompt = make_pass(spec, prompt, 1, "causal").seq
    output = parse_positive_int(output, what="--output")
    eff_c = float(parse_positive(compute_efficiency, what="--compute-efficiency"))
    eff_b = float(parse_positive(bandwidth_efficiency, what="--bandwidth-efficiency"))
    card = load_gpu(gpu)
    peak = card.peak({"int4": "bf16"}.get(dtype, dtype))  # int4 weight-only quantisation computes in bf16
    net = build(spec)
    params = sum(net.params().values())
    weights = -(-_weight_bytes(params, dtype) // tp)
    context = prompt + output
    per_sequence = kv_cache_bytes(net, context, 1, kv_dtype)
    free = card.memory_bytes - weights
    max_batch = max(0, free * tp // per_sequence) if free > 0 else 0
    points = []
    for b in batches:
        b = parse_positive_int(b, what="--batch")
        cache = -(-kv_cache_bytes(net, context, b, kv_dtype) // tp)
        prefill = forward_flops(net, Pass(b, prompt, "causal")) / tp
        ttft = prefill / (peak * eff_c)
        step_flops = forward_flops(net, Pass(b, 1, "causal", context=context)) / tp
        t_compute = step_flops / (peak * eff_c)
        t_memory = (weights + cache) / (card.memory_bandwidth * eff_b)
        tpot = max(t_compute, t_memory)
        points.append(ServePoint(batch=b, fits=weights + cache <= card.memory_bytes, memory_per_gpu=weights + cache,
                                 ttft_seconds=ttft, tpot_seconds=tpot,
                                 decode_bound="memory" if t_memory >= t_compute else "compute",
                                 tokens_per_second=b / tpot, request_seconds=ttft + output * tpot))
    notes = [f"roofline: prefill at {eff_c:.0%} of the dense {dtype} peak, decode at {eff_b:.0%} of "
             f"{card.memory_bandwidth / 1e12:.2f} TB/s; tensor-parallel all-reduces left out",
             f"KV cache per sequence of {context:,} tokens: {per_sequence:,} bytes ({kv_dtype})"]
    return ServeReport(model=spec.name or "model", gpu=card.name, tp=tp, prompt_tokens=prompt, output_tokens=output,
                       dtype=dtype, kv_dtype=kv_dtype, weights_per_gpu=weights, kv_cache_per_sequence=per_sequence,
                       max_batch=int(max_batch), points=points, notes=notes)
