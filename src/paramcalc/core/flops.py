"""FLOPs of one training step, exact for matmuls, with the rules of thumb beside.

Forward: each block's matmuls (blocks/*). Backward: every matmul y = x W needs
dL/dx = dL/dy W^T and dL/dW = x^T dL/dy, two matmuls of the forward's size, so
backward = 2 x forward (exact for FlopCounterMode when every weight trains).
Recomputation (Korthikanti et al. 2022, "Reducing Activation Recomputation"):
`full` reruns every layer's forward, `selective` only the attention core
(QK^T, softmax, AV); that extra work counts in hardware FLOPs (HFU), never in
model FLOPs (MFU), as PaLM (Chowdhery et al. 2022, appendix B) defines them.
"""

from __future__ import annotations

from paramcalc.blocks.base import Pass
from paramcalc.core.count import resolve, rows
from paramcalc.errors import UserError
from paramcalc.network import Network, build
from paramcalc.results import Flops, FlopsReport
from paramcalc.spec import CountSpec, TransformerSpec
from paramcalc.units import parse_positive_int

ATTENTION = ("dense", "causal")
RECOMPUTE = ("none", "selective", "full")


def default_seq_len(spec: TransformerSpec | CountSpec) -> int:
    """2048, or the model's learned-position limit when smaller (GPT-2: 1024, BERT: 512); T5: 512."""
    if isinstance(spec, TransformerSpec):
        if spec.position_embedding == "learned" and spec.max_position_embeddings:
            return min(2048, spec.max_position_embeddings)
        if spec.position_embedding == "relative":
            return 512
    return 2048


def make_pass(spec, seq_len, batch, attention: str = "dense") -> Pass:
    """Parse and check the shape flags shared by flops, memory and bench."""
    if attention not in ATTENTION:
        raise UserError(f"unknown attention convention {attention!r}", where="--attention", fix="use dense or causal")
    seq = default_seq_len(spec) if seq_len is None else parse_positive_int(seq_len, what="--seq-len")
    b = parse_positive_int(batch, what="--batch")
    if isinstance(spec, TransformerSpec) and spec.position_embedding == "learned" \
            and spec.max_position_embeddings and seq > spec.max_position_embeddings:
        raise UserError(f"--seq-len {seq} exceeds this model's {spec.max_position_embeddings} learned positions",
                        fix=f"use --seq-len {spec.max_position_embeddings} or less")
    return Pass(batch=b, seq=seq, attention=attention)


def forward_flops(net: Network, p: Pass) -> int:
    return sum(net.flops(p).values())


def recompute_flops(net: Network, p: Pass, recompute: str) -> int:
    """Extra forward FLOPs of recomputation in the backward pass."""
    if recompute not in RECOMPUTE:
        raise UserError(f"unknown recomputation {recompute!r}", where="--recompute", fix="use none, selective or full")
    if recompute == "none":
        return 0
    total = 0
    for stage in net.layers:
        parts = stage.block.flops(p)
        if recompute == "selective":  # only the attention core: QK^T and AV
            parts = {k: v for k, v in parts.items() if k.rsplit("/", 1)[-1] in ("scores", "values")}
        total += sum(parts.values()) * stage.count
    return total


def non_matmul_flops(spec: TransformerSpec, net: Network, p: Pass) -> int:
    """Elementwise work, roughly: ~5 FLOPs per element for a norm, softmax and
    GELU/SiLU; 1 per residual add and gate product. An estimate (it errs high
    for fused kernels), reported apart and never added to matmul FLOPs."""
    T, h = p.tokens, spec.hidden_size
    total = 0
    for stage in net.layers:
        layer = stage.block
        pairs = p.attended_pairs(getattr(layer.attention, "window", None))
        per = 5 * T * h * len(layer.norm_names) + 2 * T * h  # norms + two residual adds
        per += 5 * p.batch * spec.num_attention_heads * pairs  # scale, mask, softmax
        ffn = getattr(layer.mlp, "ffn", None) or getattr(getattr(layer.mlp, "expert", None), "ffn", 0)
        k = getattr(layer.mlp, "top_k", 1)
        per += k * T * ffn * (6 if spec.mlp == "gated" else 5)  # activation (+ gate product)
        total += per * stage.count
    return total


def count_flops(target, *, seq_len=None, batch=1, attention: str = "dense", recompute: str = "none") -> FlopsReport:
    """Matmul FLOPs of one forward and backward over batch x seq_len tokens.

    >>> count_flops("gpt2", seq_len=1024).flops.forward
    291648307200
    """
    spec = resolve(target)
    p = make_pass(spec, seq_len, batch, attention)
    if isinstance(spec, CountSpec):
        six_n = 6 * spec.params * p.tokens
        return FlopsReport(model=spec.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=attention,
                           flops=Flops(forward=None, backward=None, train_step=None, recompute=None, hardware_step=None,
                                       forward_per_token=None, train_per_token=None, non_matmul_forward=None,
                                       six_n=six_n, palm=None),
                           notes=["a bare count: only the 6N rule of thumb is known"])
    net = build(spec)
    fwd = forward_flops(net, p)
    bwd = 2 * fwd
    extra = recompute_flops(net, p, recompute)
    active = sum(net.active_params().values())
    L = sum(s.count for s in net.layers)
    palm = (6 * active + 12 * L * spec.num_attention_heads * _score_dim(spec) * p.seq) * p.tokens
    notes = [f"FLOPs: 2 per multiply-add; {attention} attention "
             + ("(full s x s scores, as eager kernels compute)" if attention == "dense"
                else "(unmasked pairs only, as flash kernels compute)"),
             "backward = 2 x forward: an input-gradient and a weight-gradient matmul per forward matmul",
             f"6N uses N = {active:,} parameters per token (embedding table included)"]
    return FlopsReport(
        model=spec.name or "model", seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=attention, notes=notes,
        flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=extra, hardware_step=fwd + bwd + extra,
                    forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                    prefill=forward_flops(net, Pass(p.batch, p.seq, "causal")),
                    decode_per_token=forward_flops(net, Pass(1, 1, "causal", context=p.seq + 1)),
                    non_matmul_forward=non_matmul_flops(spec, net, p), six_n=6 * active * p.tokens, palm=palm),
        breakdown=rows(net, lambda b: b.flops(p)))


def _score_dim(spec: TransformerSpec) -> int:
    return spec.mla.qk_nope_head_dim + spec.mla.qk_rope_head_dim if spec.mla else spec.attention_head_dim
