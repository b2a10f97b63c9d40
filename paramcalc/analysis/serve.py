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

from paramcalc.analysis.flops import forward_flops
from paramcalc.analysis.memory import _weight_bytes, kv_cache_bytes
from paramcalc.analysis.settings import DTYPE_BYTES, choose
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu
from paramcalc.errors import UserError
from paramcalc.network import Model, lower
from paramcalc.results.serve import ServePoint, ServeReport
from paramcalc.units import parse_list, parse_positive, parse_positive_int


def estimate_serving(model: Model, *, gpu: str, tp=1, prompt=1024, output=256, batches=(1, 8, 32, 128),
                     dtype: str = "bf16", kv_dtype: str | None = None, compute_efficiency=0.6,
                     bandwidth_efficiency=0.8) -> ServeReport:
    net = lower(model)
    if not net.layers:
        raise UserError("serving estimates need attention layers (a KV cache)",
                        fix="give a transformer preset, config.json or YAML spec (not a bare count or a layers "
                            "network)")
    kv_dtype = kv_dtype or dtype
    choose(dtype, DTYPE_BYTES, "dtype")
    choose(kv_dtype, DTYPE_BYTES, "kv_dtype")
    tp = parse_positive_int(tp, field="tp")
    try:
        prompt = net.seq_len(parse_positive_int(prompt, field="prompt"))
    except UserError as e:
        raise UserError(e.message, field="prompt", fix=e.fix) from None
    output = parse_positive_int(output, field="output")
    eff_c = float(parse_positive(compute_efficiency, field="compute_efficiency"))
    eff_b = float(parse_positive(bandwidth_efficiency, field="bandwidth_efficiency"))
    card = load_gpu(gpu)
    peak = card.peak({"int4": "bf16"}.get(dtype, dtype))  # int4 weight-only quantisation computes in bf16
    params = net.total_params
    weights = -(-_weight_bytes(params, dtype) // tp)
    context = prompt + output
    per_sequence = kv_cache_bytes(net, context, 1, kv_dtype)
    free = card.memory_bytes - weights
    max_batch = max(0, free * tp // per_sequence) if free > 0 else 0
    points = []
    for b in parse_list(batches, parse_positive_int, field="batch") if isinstance(batches, str) else batches:
        b = parse_positive_int(b, field="batch")
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
    return ServeReport(model=net.name, gpu=card.name, tp=tp, prompt_tokens=prompt, output_tokens=output,
                       dtype=dtype, kv_dtype=kv_dtype, weights_per_gpu=weights, kv_cache_per_sequence=per_sequence,
                       max_batch=int(max_batch), points=points, notes=notes)
