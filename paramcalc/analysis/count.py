"""Parameter counts: unique parameters (tied weights once), embedding tables,
and the parameters one token uses (MoE: shared + router + top-k experts).

The count is built as plain data first (`count_data`, the JSON document
itself), then as the typed `CountReport` every caller gets; pydantic is
imported only for the latter, so the fast path (cli/fast.py) prints a stored
preset's count without it (issue #19's cold start).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from paramcalc.blocks.embed import LMHead
from paramcalc.blocks.moe import MoE
from paramcalc.network import Model, Network, lower, lower_source, transformer_layer
from paramcalc.network.measured import MeasuredCount
from paramcalc.results import SCHEMA_VERSION

if TYPE_CHECKING:
    from paramcalc.blocks.base import Breakdown
    from paramcalc.inputs.checkpoint import Checkpoint
    from paramcalc.results.base import Row
    from paramcalc.results.count import CheckpointCount, CountReport


def component(stage: str, key: str) -> str:
    """The table row a breakdown key belongs to: embedding, attention, mlp, experts, norms or head."""
    parts = key.split("/")
    if "norm" in parts or any(p.endswith(("layernorm", "norm")) for p in parts[:-1]) or stage.endswith("final_norm"):
        return "norms"
    if stage == "embedding":
        return "embedding"
    if stage == "head":
        return "head"
    first = parts[0]
    names = {"attention": "attention", "cross_attention": "cross-attention", "mlp": "mlp", "moe": "experts"}
    return names.get(first, first)


_ORDER = {name: i for i, name in enumerate(("embedding", "conv", "recurrent", "attention", "cross-attention", "mlp",
                                            "experts", "linear", "lora", "norms", "head"))}


def rows(net: Network, figure, *, weights: bool = False) -> list[Row]:
    """Group a per-block figure by stage and component, once and times the stage's count
    (`weights`: its copies of the weights, which ALBERT's shared layers hold once)."""
    from paramcalc.results.base import Row

    return [Row(**row) for row in row_data(net, figure, weights=weights)]


def row_data(net: Network, figure, *, weights: bool = False) -> list[dict[str, Any]]:
    """`rows` as plain data: one dict per row, keyed as `Row`'s fields."""
    out: list[dict[str, Any]] = []
    for stage in net.stages:
        grouped: dict[str, int] = {}
        own = getattr(stage.block, "component", None)  # shaped blocks name their rows (conv, norms, recurrent)
        for key, value in figure(stage.block).items():
            name = "lora" if "/lora_A" in key or "/lora_B" in key else own(key) if own else component(stage.name, key)
            grouped[name] = grouped.get(name, 0) + value
        count = stage.copies if weights else stage.count
        out += [{"stage": stage.name, "component": name, "each": v, "count": count, "total": v * count}
                for name, v in sorted(grouped.items(), key=lambda kv: _ORDER.get(kv[0], 99)) if v]
    return out


def count_params(model: Model, *, lora_rank=None, lora_targets: str | None = None,
                 revision: str | None = None) -> CountReport:
    """Exact parameter count of a model (a TARGET: preset, config.json, safetensors checkpoint, YAML spec,
    Hugging Face model id at `revision`, `7.5B`; or a Network).

    >>> count_params("llama-3.1-8b").params.total
    8030261248
    """
    from paramcalc.analysis.settings import with_lora_flags

    source = None
    if isinstance(model, (str, Path)):
        from paramcalc.inputs.target import read_target

        source = read_target(model, revision=revision, checkpoint=True)
    base = lower_source(source) if source is not None else lower(model)
    report = _count(with_lora_flags(base, lora_rank, lora_targets))
    if source is None or source.checkpoint is None:
        return report
    tensors = _checkpoint(source.checkpoint, base.total_params if source.config is not None else None,
                          source.config or {})
    notes = list(report.notes)
    if source.config is None:
        notes = [f"counted from the safetensors headers of {len(tensors.files)} file(s), no weights loaded: "
                 "each tensor's elements (its header shape), names sharing one storage once; no config.json "
                 "beside it, so the architecture is unknown"]
    else:
        notes.append(f"params: the config.json beside the checkpoint; the checkpoint's headers hold "
                     f"{tensors.total:,} elements ({tensors.difference:+,})")
    return report.model_copy(update={"checkpoint": tensors, "notes": notes})


def _count(net: Network) -> CountReport:
    from paramcalc.results.count import CountReport

    return CountReport.model_validate(count_data(net))


def count_data(net: Network) -> dict[str, Any]:
    """The count of `net` as plain data: exactly `CountReport.model_dump(mode="json")` of its
    report, keys in the report's field order (tests/test_presets_store.py checks it)."""
    notes: list[str] = []
    breakdown: list[dict[str, Any]] = []
    if isinstance(net, MeasuredCount):
        notes += [net.note, "embedding: the nn.Embedding tables the model holds"]
        if net.buffer_count:
            notes.append(f"buffers (not parameters): {net.buffer_count:,}")
        trainable = _sum(net.trainable_params())
        if net.parts:
            notes.append("breakdown: the model's top-level modules (a parameter shared by two counted in the first)")
        params = _params(total=net.count, embedding=net.embedding, non_embedding=net.count - net.embedding,
                         active=None, trainable=trainable, frozen=net.count - trainable, buffers=net.buffer_count)
        breakdown = [{"stage": part.name, "component": part.kind, "each": part.params, "count": 1,
                      "total": part.params} for part in net.parts]
    elif not net.has_architecture:
        params = _params(total=net.total_params, embedding=None, non_embedding=None, active=None)
        notes.append("a bare count: the architecture (embeddings, experts) is unknown")
    else:
        total, active, embedding = _sum(net.params()), _sum(net.active_params()), net.embedding_params()
        trainable, buffers = _sum(net.trainable_params()), _sum(net.buffers())
        if trainable < total:
            lora = net.adapters
            how = f"LoRA rank {lora.rank} on {', '.join(lora.targets)} (Hu et al. 2021), base frozen" \
                if lora else f"frozen: {', '.join(net.freeze)}"
            notes.append(f"trainable {trainable:,} of {total:,} parameters: {how}")
        if buffers:
            notes.append(f"buffers (batch norm running statistics, not parameters): {buffers:,}")
        head = net.head
        if isinstance(head, LMHead) and head.tied:
            notes.append("the LM head is tied to the token embedding and counted once")
        moe = next((mlp for mlp in (transformer_layer(s).mlp for s in net.layers) if isinstance(mlp, MoE)), None)
        if moe is not None:
            notes.append(f"active: router, shared experts and {moe.top_k} of {moe.experts} routed experts per token")
        params = _params(total=total, embedding=embedding, non_embedding=total - embedding, active=active,
                         expected=None if net.adapters else net.expected_params, trainable=trainable,
                         frozen=total - trainable, buffers=buffers)
        breakdown = row_data(net, lambda b: b.params(), weights=True)
    return {"schema_version": SCHEMA_VERSION, "command": "count", "notes": notes, "model": net.name,
            "params": params, "breakdown": breakdown, "checkpoint": None}


def _params(*, total: int, embedding: int | None, non_embedding: int | None, active: int | None,
            expected: int | None = None, trainable: int | None = None, frozen: int | None = None,
            buffers: int | None = None) -> dict[str, int | None]:
    """`Params` as plain data, its fields in order."""
    return {"total": total, "embedding": embedding, "non_embedding": non_embedding, "active": active,
            "expected": expected, "trainable": trainable, "frozen": frozen, "buffers": buffers}


def _checkpoint(ckpt: Checkpoint, analytic: int | None, config: dict) -> CheckpointCount:
    """A checkpoint's tensors by dtype and, beside a config, what sets them apart from its count."""
    from paramcalc.inputs.checkpoint import explain
    from paramcalc.results.count import CheckpointCount, Difference, DtypeCount

    explained = []
    if analytic is not None:
        parts = explain(ckpt, config)
        rest = ckpt.total - analytic - sum(parts.values())
        explained = [Difference(reason=k, params=v) for k, v in parts.items()]
        if rest:
            explained.append(Difference(reason="not explained (names paramcalc does not recognise, packed "
                                               "quantised weights, or a config that differs from the weights)",
                                        params=rest))
    return CheckpointCount(files=[str(f) for f in ckpt.files], tensors=len(ckpt.tensors), shared=len(ckpt.shared),
                           total=ckpt.total, bytes=ckpt.nbytes,
                           by_dtype=[DtypeCount(dtype=d, params=n, bytes=b) for d, (n, b) in ckpt.by_dtype().items()],
                           analytic_total=analytic, difference=None if analytic is None else ckpt.total - analytic,
                           explained=explained)


def _sum(parts: Breakdown) -> int:
    return sum(parts.values())
