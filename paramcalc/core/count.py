"""Parameter counts: unique parameters (tied weights once), embedding tables,
and the parameters one token uses (MoE: shared + router + top-k experts)."""

from __future__ import annotations

from paramcalc.blocks.base import Breakdown
from paramcalc.errors import UserError
from paramcalc.network import build
from paramcalc.stages import Network
from paramcalc.results import CountReport, Params, Row
from paramcalc.spec import CountSpec, TransformerSpec
from paramcalc.target import load_spec

Spec = TransformerSpec | CountSpec  # or a spec_layers.LayersSpec


def resolve(target) -> Spec:
    if isinstance(target, (TransformerSpec, CountSpec)) or getattr(target, "architecture", None) == "layers":
        return target
    return load_spec(target)


def with_lora(spec: Spec, rank=None, targets: str | None = None) -> Spec:
    """The spec with LoRA adapters (the `--lora-rank` / `--lora-targets` flags)."""
    if rank is None:
        if targets:
            raise UserError("--lora-targets needs --lora-rank", where="--lora-targets")
        return spec
    if not isinstance(spec, TransformerSpec):
        raise UserError("LoRA adapters need a transformer architecture", where="--lora-rank",
                        fix="give a preset, config.json or transformer YAML spec")
    from paramcalc.spec import LoRASpec
    from paramcalc.units import parse_positive_int

    fields = {"rank": parse_positive_int(rank, what="--lora-rank")}
    if targets:
        fields["target_modules"] = tuple(t.strip() for t in targets.split(",") if t.strip())
    adapted = spec.model_copy(update={"lora": LoRASpec(**fields)})
    try:
        build(adapted)  # a target that matches no linear is the flag's error
    except UserError as e:
        raise UserError(e.message, where="--lora-targets", fix=e.fix) from None
    return adapted


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


def count_params(target: str | Spec, *, lora_rank=None, lora_targets: str | None = None) -> CountReport:
    """Exact parameter count of a TARGET (preset, config.json, YAML spec, `7.5B`).

    >>> count_params("llama-3.1-8b").params.total
    8030261248
    """
    spec = with_lora(resolve(target), lora_rank, lora_targets)
    if isinstance(spec, CountSpec):
        return CountReport(model=spec.name, params=Params(total=spec.params, embedding=None, non_embedding=None,
                                                          active=None),
                           notes=["a bare count: the architecture (embeddings, experts) is unknown"])
    net = build(spec)
    total, active, embedding = _sum(net.params()), _sum(net.active_params()), net.embedding_params()
    trainable, buffers = _sum(net.trainable_params()), _sum(net.buffers())
    notes = []
    if trainable < total:
        how = f"LoRA rank {spec.lora.rank} on {', '.join(spec.lora.target_modules)} (Hu et al. 2021), base frozen" \
            if getattr(spec, "lora", None) else f"frozen: {', '.join(spec.freeze)}"
        notes.append(f"trainable {trainable:,} of {total:,} parameters: {how}")
    if buffers:
        notes.append(f"buffers (batch norm running statistics, not parameters): {buffers:,}")
    if not isinstance(spec, TransformerSpec):
        return CountReport(model=spec.name or "model", notes=notes,
                           params=Params(total=total, embedding=embedding, non_embedding=total - embedding,
                                         active=active, expected=spec.expected_params, trainable=trainable,
                                         frozen=total - trainable, buffers=buffers),
                           breakdown=rows(net, lambda b: b.params()))
    if spec.tie_word_embeddings and spec.head in ("lm", "mlm"):
        notes.append("the LM head is tied to the token embedding and counted once")
    if spec.moe:
        notes.append(f"active: router, shared experts and {spec.moe.num_experts_per_tok} of "
                     f"{spec.moe.num_experts} routed experts per token")
    return CountReport(model=spec.name or "model", notes=notes,
                       params=Params(total=total, embedding=embedding, non_embedding=total - embedding, active=active,
                                     expected=None if spec.lora else spec.expected_params, trainable=trainable,
                                     frozen=total - trainable, buffers=buffers),
                       breakdown=rows(net, lambda b: b.params()))


def _sum(parts: Breakdown) -> int:
    return sum(parts.values())
