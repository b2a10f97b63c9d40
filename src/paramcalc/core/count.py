"""Parameter counts: unique parameters (tied weights once), embedding tables,
and the parameters one token uses (MoE: shared + router + top-k experts)."""

from __future__ import annotations

from paramcalc.blocks.base import Breakdown
from paramcalc.network import Network, build
from paramcalc.results import CountReport, Params, Row
from paramcalc.spec import CountSpec, TransformerSpec
from paramcalc.target import load_spec

Spec = TransformerSpec | CountSpec


def resolve(target: str | Spec) -> Spec:
    return target if isinstance(target, (TransformerSpec, CountSpec)) else load_spec(target)


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
    return {"attention": "attention", "cross_attention": "cross-attention", "mlp": "mlp", "moe": "experts"}.get(first, first)


_ORDER = {name: i for i, name in enumerate(("embedding", "attention", "cross-attention", "mlp", "experts", "norms", "head"))}


def rows(net: Network, figure) -> list[Row]:
    """Group a per-block figure by stage and component, once and times the stage's count."""
    out: list[Row] = []
    for stage in net.stages:
        grouped: dict[str, int] = {}
        for key, value in figure(stage.block).items():
            name = component(stage.name, key)
            grouped[name] = grouped.get(name, 0) + value
        out += [Row(stage=stage.name, component=name, each=v, count=stage.count, total=v * stage.count)
                for name, v in sorted(grouped.items(), key=lambda kv: _ORDER.get(kv[0], 99)) if v]
    return out


def count_params(target: str | Spec) -> CountReport:
    """Exact parameter count of a TARGET (preset, config.json, YAML spec, `7.5B`).

    >>> count_params("llama-3.1-8b").params.total
    8030261248
    """
    spec = resolve(target)
    if isinstance(spec, CountSpec):
        return CountReport(model=spec.name, params=Params(total=spec.params, embedding=None, non_embedding=None,
                                                          active=None),
                           notes=["a bare count: the architecture (embeddings, experts) is unknown"])
    net = build(spec)
    total, active, embedding = _sum(net.params()), _sum(net.active_params()), net.embedding_params()
    notes = []
    if spec.tie_word_embeddings and spec.head in ("lm", "mlm"):
        notes.append("the LM head is tied to the token embedding and counted once")
    if spec.moe:
        notes.append(f"active: router, shared experts and {spec.moe.num_experts_per_tok} of "
                     f"{spec.moe.num_experts} routed experts per token")
    return CountReport(model=spec.name or "model", notes=notes,
                       params=Params(total=total, embedding=embedding, non_embedding=total - embedding, active=active,
                                     expected=spec.expected_params),
                       breakdown=rows(net, lambda b: b.params()))


def _sum(parts: Breakdown) -> int:
    return sum(parts.values())
