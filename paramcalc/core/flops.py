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
from paramcalc.network import build
from paramcalc.stages import Network
from paramcalc.results import Flops, FlopsReport
from paramcalc.spec import CountSpec, TransformerSpec
from paramcalc.units import parse_positive_int

ATTENTION = ("dense", "causal")
RECOMPUTE = ("none", "selective", "full")


def fixed_seq_len(spec) -> int | None:
    """Positions the architecture fixes, whatever --seq-len says: a ViT's patches
    plus its class token; 1 for a layers network without a time axis (a CNN
    sees one input of input_shape per sample)."""
    if isinstance(spec, TransformerSpec) and spec.architecture == "vit":
        return (spec.image_size // spec.patch_size) ** 2 + 1
    if getattr(spec, "architecture", None) == "layers" and not spec.sequential:
        return 1
    return None


def seq_note(spec, seq_len) -> list[str]:
    """Say how --seq-len was read where the architecture decides it."""
    fixed = fixed_seq_len(spec)
    ignored = " (--seq-len ignored)" if seq_len is not None else ""
    if fixed is None:
        if getattr(spec, "architecture", None) == "layers":
            return [f"sequence model: {spec.input_shape[0] if seq_len is None else seq_len} time steps per sample "
                    "(--seq-len; default input_shape[0])"]
        return []
    if fixed == 1:
        return [f"one input of shape {list(spec.input_shape)} per sample; counts per token are per sample{ignored}"]
    return [f"{fixed} tokens per image: ({spec.image_size}/{spec.patch_size})^2 patches + the class token{ignored}"]


def default_seq_len(spec: TransformerSpec | CountSpec) -> int:
    """2048, or the model's learned-position limit when smaller (GPT-2: 1024, BERT: 512); T5: 512;
    fixed by the architecture for ViTs and CNNs; input_shape[0] for a layers sequence model."""
    fixed = fixed_seq_len(spec)
    if fixed is not None:
        return fixed
    if getattr(spec, "architecture", None) == "layers":
        return spec.seq_len
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
    seq = fixed_seq_len(spec) or seq
    b = parse_positive_int(batch, what="--batch")
    if isinstance(spec, TransformerSpec) and spec.position_embedding == "learned" \
            and spec.max_position_embeddings and seq > spec.max_position_embeddings:
        raise UserError(f"--seq-len {seq} exceeds this model's {spec.max_position_embeddings} learned positions",
                        fix=f"use --seq-len {spec.max_position_embeddings} or less")
    return Pass(batch=b, seq=seq, attention=attention)


def forward_flops(net: Network, p: Pass) -> int:
    return sum(net.flops(p).values())


def backward_flops(net: Network, p: Pass) -> int:
    """2 x forward when every weight trains. A matmul whose weight is frozen
    still passes the gradient to its input but computes no weight gradient:
    1 x its forward (it errs high before the first trainable parameter, where
    autograd skips the input gradient too)."""
    fwd = net.flops(p)
    # The network's first matmul reads data (pixels, features), not a trained tensor: weight gradient only.
    skipped = net.stages[0].block.data_input_flops(p)
    if not net.freeze:
        return 2 * sum(fwd.values()) - skipped
    params = list(net.params())
    total = 0
    for key, value in fwd.items():
        own = [k for k in params if k == key or k.startswith(key + "/") and "lora_" not in k[len(key):]]
        frozen = bool(own) and all(net.is_frozen(k) for k in own)
        total += value if frozen else 2 * value
    return total - skipped


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
    bwd = backward_flops(net, p)
    extra = recompute_flops(net, p, recompute)
    if not isinstance(spec, TransformerSpec):
        return _layers_report(spec, net, p, fwd, bwd, seq_len)
    active = sum(net.active_params().values())
    L = sum(s.count for s in net.layers)
    palm = (6 * active + 12 * L * spec.num_attention_heads * _score_dim(spec) * p.seq) * p.tokens
    notes = [f"FLOPs: 2 per multiply-add; {attention} attention "
             + ("(full s x s scores, as eager kernels compute)" if attention == "dense"
                else "(unmasked pairs only, as flash kernels compute)"),
             "backward = 2 x forward: an input-gradient and a weight-gradient matmul per forward matmul "
             "(a first layer reading pixels or features needs no input gradient)"
             + ("; frozen weights skip their weight gradient" if net.freeze else ""), *seq_note(spec, seq_len),
             *_rules_of_thumb(net, p, active, fwd + bwd, palm)]
    return FlopsReport(
        model=spec.name or "model", seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=attention, notes=notes,
        flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=extra, hardware_step=fwd + bwd + extra,
                    forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                    prefill=forward_flops(net, Pass(p.batch, p.seq, "causal")),
                    decode_per_token=forward_flops(net, Pass(1, 1, "causal", context=p.seq + 1)),
                    non_matmul_forward=non_matmul_flops(spec, net, p), six_n=6 * active * p.tokens, palm=palm),
        breakdown=rows(net, lambda b: b.flops(p)))


def _layers_report(spec, net: Network, p: Pass, fwd: int, bwd: int, seq_len) -> FlopsReport:
    """A layers network: convolutions, recurrent gate matmuls and linears; no attention."""
    active = sum(net.params().values())
    notes = ["FLOPs: 2 per multiply-add; convolutions as FlopCounterMode counts them (2 x output elements x "
             "in_channels/groups x kernel volume), recurrent gate matmuls per time step",
             "backward = 2 x forward: an input-gradient and a weight-gradient matmul per forward matmul "
             "(a first layer reading pixels or features needs no input gradient)"
             + ("; frozen weights skip their weight gradient" if net.freeze else ""), *seq_note(spec, seq_len)]
    if not spec.sequential:
        notes.append("6N counts each weight once per sample; a conv reuses its weights at every position, so 6N errs low")
    return FlopsReport(
        model=spec.name or "model", seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=p.attention, notes=notes,
        flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=0, hardware_step=fwd + bwd,
                    forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                    non_matmul_forward=None, six_n=6 * active * p.tokens, palm=None),
        breakdown=rows(net, lambda b: b.flops(p)))


def _rules_of_thumb(net: Network, p: Pass, active: int, exact: int, palm: int) -> list[str]:
    """Why 6N and PaLM's formula miss: 6N treats every parameter as a matmul weight
    used once per token (Kaplan et al. 2020) and has no attention scores; PaLM adds
    the scores densely (12 L H Q T per token) but still counts the lookup tables."""
    tables = net.embedding_params()
    scores = 3 * sum(v for k, v in net.flops(p).items() if k.rsplit("/", 1)[-1] in ("scores", "values"))
    six_n = 6 * active * p.tokens
    return [f"6N: {(six_n / exact - 1) * 100:+.1f}% vs exact; N = {active:,} parameters per token; it counts the "
            f"{tables:,} embedding-table parameters that do no matmul (+{6 * tables * p.tokens / exact * 100:.1f}%) "
            f"and leaves out the attention score and value matmuls ({scores / exact * 100:.1f}% of the exact "
            f"count at seq {p.seq:,}, growing with it)",
            f"PaLM 6N + 12LHQT: {(palm / exact - 1) * 100:+.1f}% vs exact; it adds the scores as dense and still "
            "counts the embedding tables"]


def _score_dim(spec: TransformerSpec) -> int:
    return spec.mla.qk_nope_head_dim + spec.mla.qk_rope_head_dim if spec.mla else spec.attention_head_dim
