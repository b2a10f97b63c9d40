"""Two models side by side: parameters, FLOPs per token, training memory and KV
cache, each with B - A and the change relative to A (`paramcalc diff A B`).

Both run at one sequence length (the smaller default of the two unless
given), so per-token FLOPs and activations compare like for like.
"""

from __future__ import annotations

from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.network import Model, Network, lower
from paramcalc.results.diff import DiffReport, DiffRow
from paramcalc.units import parse_positive_int


def _figures(net: Network, seq: int) -> dict[str, int | None]:
    p = count_params(net).params
    return {"params.total": p.total, "params.embedding": p.embedding, "params.active": p.active,
            "flops.forward_per_token": count_flops(net, seq_len=seq).flops.forward_per_token,
            "memory.train_per_gpu": estimate_memory(net, mode="train", seq_len=seq).memory.total_per_gpu,
            "kv_cache.per_token": estimate_memory(net, mode="infer", seq_len=1).memory.kv_cache}


METRICS = (("params.total", "params", "params"), ("params.embedding", "embedding params", "params"),
           ("params.active", "active params / token", "params"),
           ("flops.forward_per_token", "forward FLOPs / token", "FLOPs"),
           ("memory.train_per_gpu", "train memory / GPU", "bytes"),
           ("kv_cache.per_token", "KV cache / token", "bytes"))


def diff(a: Model, b: Model, *, seq_len=None) -> DiffReport:
    """Compare two TARGETs; deltas are B - A.

    >>> diff("gpt2", "llama-3.1-8b").rows[0].delta
    7905821440
    """
    net_a, net_b = lower(a), lower(b)
    seq = (min(net_a.default_seq_len, net_b.default_seq_len) if seq_len is None
           else parse_positive_int(seq_len, field="seq_len"))
    fa, fb = _figures(net_a, seq), _figures(net_b, seq)
    rows = []
    for metric, label, unit in METRICS:
        x, y = fa[metric], fb[metric]
        delta = None if x is None or y is None else y - x
        rows.append(DiffRow(metric=metric, label=label, unit=unit, a=x, b=y, delta=delta,
                            percent=100 * delta / x if delta is not None and x else None))
    notes = [f"seq {seq}, batch 1; deltas are B - A, percentages relative to A",
             "FLOPs: matmuls of one forward, dense attention, 2 per multiply-add",
             "training memory: one GPU, bf16 mixed precision, AdamW, ZeRO-0, flash attention, no recomputation, "
             "runtime overheads included",
             "KV cache: bf16 K and V of one token in every layer (sliding windows cap it only at long contexts)"]
    return DiffReport(a=net_a.name, b=net_b.name, seq_len=seq, rows=rows, notes=notes)
