"""Parameter counts: unique parameters (tied weights once), embedding tables,
and the parameters one token uses (MoE: shared + router + top-k experts)."""

from __future__ import annotations

from paramcalc.analysis.settings import with_lora_flags
from paramcalc.blocks.base import Breakdown
from paramcalc.blocks.embed import LMHead
from paramcalc.blocks.moe import MoE
from paramcalc.network import Model, Network, lower, transformer_layer
from paramcalc.results.base import Row
from paramcalc.results.count import CountReport, Params


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


def rows(net: Network, figure) -> list[Row]:
    """Group a per-block figure by stage and component, once and times the stage's count."""
    out: list[Row] = []
    for stage in net.stages:
        grouped: dict[str, int] = {}
        own = getattr(stage.block, "component", None)  # shaped blocks name their rows (conv, norms, recurrent)
        for key, value in figure(stage.block).items():
            name = "lora" if "/lora_A" in key or "/lora_B" in key else own(key) if own else component(stage.name, key)
            grouped[name] = grouped.get(name, 0) + value
        out += [Row(stage=stage.name, component=name, each=v, count=stage.count, total=v * stage.count)
                for name, v in sorted(grouped.items(), key=lambda kv: _ORDER.get(kv[0], 99)) if v]
    return out


def count_params(model: Model, *, lora_rank=None, lora_targets: str | None = None) -> CountReport:
    """Exact parameter count of a model (a TARGET: preset, config.json, YAML spec, `7.5B`; or a Network).

    >>> count_params("llama-3.1-8b").params.total
    8030261248
    """
    net = with_lora_flags(lower(model), lora_rank, lora_targets)
    if not net.has_architecture:
        return CountReport(model=net.name, params=Params(total=net.total_params, embedding=None, non_embedding=None,
                                                         active=None),
                           notes=["a bare count: the architecture (embeddings, experts) is unknown"])
    total, active, embedding = _sum(net.params()), _sum(net.active_params()), net.embedding_params()
    trainable, buffers = _sum(net.trainable_params()), _sum(net.buffers())
    notes = []
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
    return CountReport(model=net.name, notes=notes,
                       params=Params(total=total, embedding=embedding, non_embedding=total - embedding, active=active,
                                     expected=None if net.adapters else net.expected_params, trainable=trainable,
                                     frozen=total - trainable, buffers=buffers),
                       breakdown=rows(net, lambda b: b.params()))


def _sum(parts: Breakdown) -> int:
    return sum(parts.values())
