"""Two models side by side: parameters, FLOPs per token, training memory and KV
cache, each with B - A and the change relative to A (`paramcalc diff A B`).

Both run at one sequence length (the smaller default of the two unless
given), so per-token FLOPs and activations compare like for like.
"""

from __future__ import annotations

from pydantic import Field

from paramcalc.results import SCHEMA_VERSION, _Result


class DiffRow(_Result):
    metric: str = Field(description="a stable key, e.g. params.total")
    label: str
    unit: str = Field(description="params, FLOPs or bytes")
    a: int | None
    b: int | None
    delta: int | None = Field(description="b - a; null when either is unknown")
    percent: float | None = Field(description="100 x delta / a; null when a is unknown or zero")


class DiffReport(_Result):
    schema_version: int = SCHEMA_VERSION
    command: str = "diff"
    a: str = Field(description="model name of A")
    b: str = Field(description="model name of B")
    seq_len: int
    rows: list[DiffRow]
    notes: list[str] = Field([])


def _figures(spec, seq: int) -> dict[str, int | None]:
    from paramcalc.core.count import count_params
    from paramcalc.core.flops import count_flops
    from paramcalc.core.memory import estimate_memory

    p = count_params(spec).params
    return {"params.total": p.total, "params.embedding": p.embedding, "params.active": p.active,
            "flops.forward_per_token": count_flops(spec, seq_len=seq).flops.forward_per_token,
            "memory.train_per_gpu": estimate_memory(spec, mode="train", seq_len=seq).memory.total_per_gpu,
            "kv_cache.per_token": estimate_memory(spec, mode="infer", seq_len=1).memory.kv_cache}


METRICS = (("params.total", "params", "params"), ("params.embedding", "embedding params", "params"),
           ("params.active", "active params / token", "params"),
           ("flops.forward_per_token", "forward FLOPs / token", "FLOPs"),
           ("memory.train_per_gpu", "train memory / GPU", "bytes"),
           ("kv_cache.per_token", "KV cache / token", "bytes"))


def diff(a, b, *, seq_len=None) -> DiffReport:
    """Compare two TARGETs; deltas are B - A.

    >>> diff("gpt2", "llama-3.1-8b").rows[0].delta
    7905821440
    """
    from paramcalc.core.count import resolve
    from paramcalc.core.flops import default_seq_len
    from paramcalc.units import parse_positive_int

    spec_a, spec_b = resolve(a), resolve(b)
    seq = (min(default_seq_len(spec_a), default_seq_len(spec_b)) if seq_len is None
           else parse_positive_int(seq_len, what="--seq-len"))
    fa, fb = _figures(spec_a, seq), _figures(spec_b, seq)
    rows = []
    for metric, label, unit in METRICS:
        x, y = fa[metric], fb[metric]
        delta = None if x is None or y is None else y - x
        rows.append(DiffRow(metric=metric, label=label, unit=unit, a=x, b=y, delta=delta,
                            percent=100 * delta / x if delta is not None and x else None))
    notes = [f"seq {seq}, batch 1; deltas are B - A, percentages relative to A",
             "FLOPs: matmuls of one forward, dense attention, 2 per multiply-add",
             "training memory: one GPU, bf16 mixed precision, AdamW, ZeRO-0, eager attention, no recomputation, "
             "runtime overheads included",
             "KV cache: bf16 K and V of one token in every layer (sliding windows cap it only at long contexts)"]
    return DiffReport(a=spec_a.name or str(a), b=spec_b.name or str(b), seq_len=seq, rows=rows, notes=notes)
