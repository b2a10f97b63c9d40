"""FLOPs of one training step, exact for matmuls, with the rules of thumb beside.

Forward: each block's matmuls (blocks/*). Backward: every matmul y = x W needs
dL/dx = dL/dy W^T and dL/dW = x^T dL/dy, two matmuls of the forward's size, so
backward = 2 x forward (exact for FlopCounterMode when every weight trains).
Recomputation (Korthikanti et al. 2022, "Reducing Activation Recomputation"):
`full` reruns every layer's forward, `selective` only the attention core
(QK^T, softmax, AV), and torchtitan's op-level `op` every second matmul of
each layer and the routed experts (analysis/op_checkpoint.py, bf16 GEMMs), and DeepSeek-V3's `deepseek` its
MLA up-projections (norms, rotary and SwiGLU rerun too: elementwise, no matmul);
that extra work counts in hardware FLOPs (HFU), never in model FLOPs (MFU), as
PaLM (Chowdhery et al. 2022, appendix B) defines them.
"""

from __future__ import annotations

from paramcalc.analysis.count import rows
from paramcalc.analysis.op_checkpoint import op_checkpoint
from paramcalc.analysis.settings import TRAIN_RECOMPUTE, choose, make_pass, parse_attention, recipe_layers
from paramcalc.blocks.base import Pass
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.ssm import Mamba, Mamba2
from paramcalc.network import Model, Network, TransformerNetwork, lower, transformer_layer
from paramcalc.network.measured import MeasuredCount
from paramcalc.results.flops import Flops, FlopsReport


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
    recompute = choose(recompute, TRAIN_RECOMPUTE, "recompute")
    if recompute == "none":
        return 0
    if recompute == "op":  # torchtitan's op-level SAC: the matmuls its policy does not keep, rerun once
        if not isinstance(net, TransformerNetwork):
            return 0  # a layers network has no transformer block to wrap (and reports no recompute)
        return sum(n * layer.recomputed_flops for n, layer in op_checkpoint(net, p.batch, p.seq))
    total = 0
    for stage in net.layers:
        parts = stage.block.flops(p)
        if recompute == "deepseek":  # DeepSeek-V3 report, section 3.2.3: MLA's up-projections, q_b and kv_b
            parts = {k: v for k, v in parts.items() if k.rsplit("/", 1)[-1] in MLA_UP_PROJECTIONS}
        elif recompute == "selective":  # only the attention core: QK^T and AV
            parts = {k: v for k, v in parts.items() if k.rsplit("/", 1)[-1] in ("scores", "values")}
        total += sum(parts.values()) * stage.count
    return total


# The matmuls `deepseek` recomputation reruns: MLA's up-projections from the query and key-value
# latents (blocks/mla.py); an attention without latents has none
MLA_UP_PROJECTIONS = ("q_b_proj", "kv_b_proj")


def non_matmul_flops(net: TransformerNetwork, p: Pass) -> int:
    """Elementwise work, roughly: ~5 FLOPs per element for a norm, softmax and
    GELU/SiLU; 1 per residual add and gate product. An estimate (it errs high
    for fused kernels), reported apart and never added to matmul FLOPs."""
    T, h = p.tokens, net.hidden
    total = 0
    for stage in net.layers:
        layer = transformer_layer(stage)
        pairs = p.attended_pairs(getattr(layer.attention, "window", None))
        per = 5 * T * h * len(layer.norm_names) + 2 * T * h  # norms + two residual adds
        if isinstance(layer.attention, (Mamba, Mamba2)):  # the scan's recurrence (blocks/ssm.py), not a matmul
            per += layer.attention.scan_elementwise_flops(p)
        else:
            per += 5 * p.batch * net.heads * pairs  # scale, mask, softmax
        if layer.mlp is not None:
            # MoE: the shape of a routed expert, top_k of them per token
            mlp, k = (layer.mlp.expert, layer.mlp.top_k) if isinstance(layer.mlp, MoE) else (layer.mlp, 1)
            per += k * T * mlp.ffn * (6 if mlp.gated else 5)  # activation (+ gate product)
        total += per * stage.count
    return total


def count_flops(model: Model, *, seq_len=None, batch=1, attention: str = "eager",
                recompute: str = "none") -> FlopsReport:
    """Matmul FLOPs of one forward and backward over batch x seq_len tokens.

    `attention`: eager counts the full s x s score matmuls (dense, the MFU convention);
    flash the unmasked pairs only (causal).

    >>> count_flops("gpt2", seq_len=1024).flops.forward
    291648307200
    """
    net = lower(model)
    p = make_pass(net, seq_len, batch, attention)
    kernel = parse_attention(attention)
    if isinstance(net, MeasuredCount):
        return _measured_report(net, p, kernel, recompute, seq_len)
    if not net.has_architecture:
        return FlopsReport(model=net.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=kernel,
                           flops=Flops(forward=None, backward=None, train_step=None, recompute=None, hardware_step=None,
                                       forward_per_token=None, train_per_token=None, non_matmul_forward=None,
                                       six_n=6 * net.total_params * p.tokens, palm=None),
                           notes=["a bare count: only the 6N rule of thumb is known"])
    fwd = forward_flops(net, p)
    bwd = backward_flops(net, p)
    extra = recompute_flops(net, p, recompute)
    asked = None if seq_len is None else p.seq
    if not isinstance(net, TransformerNetwork):
        return _layers_report(net, p, fwd, bwd, kernel, asked)
    active = sum(net.active_params().values())
    L = sum(s.count for s in net.layers)
    palm = (6 * active + 12 * L * net.heads * net.score_dim * p.seq) * p.tokens
    notes = [f"FLOPs: 2 per multiply-add; {kernel} attention "
             + ("(full s x s scores, as eager kernels compute: the dense convention)" if kernel == "eager"
                else "(unmasked pairs only, as flash kernels compute: the causal convention)"),
             "backward = 2 x forward: an input-gradient and a weight-gradient matmul per forward matmul "
             "(a first layer reading pixels or features needs no input gradient)"
             + ("; frozen weights skip their weight gradient" if net.freeze else ""), *net.seq_notes(asked),
             *_rules_of_thumb(net, p, active, fwd + bwd, palm)]
    if recompute == "deepseek":
        mla, moe = recipe_layers(net)
        elementwise = "the norms" + (", rotary" if mla else "") + (" and MoE SwiGLU" if moe else "")
        notes.append("deepseek recomputation (DeepSeek-V3 report, section 3.2.3): "
                     + ("backward reruns MLA's up-projections (q_b_proj, kv_b_proj); " if mla else
                        "no MLA layers, so no matmul is rerun; ")
                     + f"{elementwise} it {'also ' if mla else ''}reruns are elementwise, no matmul FLOPs")
    if recompute == "op":
        notes.append("op recomputation (torchtitan's op-level selective checkpointing): backward reruns every "
                     "second matmul of each layer and the routed experts' GEMMs, as in bf16 training (under fp8 "
                     "every GEMM reruns)")
    # Prefill and decode are a generating model's: an encoder (BERT, ViT) reads its input in one pass.
    generates = net.kind in ("decoder", "encoder-decoder")
    if not generates:
        notes.append(f"an {'image ' if net.kind == 'vit' else ''}encoder: no prefill or decode (nothing is "
                     "generated token by token)")
    return FlopsReport(
        model=net.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=kernel, notes=notes,
        flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=extra, hardware_step=fwd + bwd + extra,
                    forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                    prefill=forward_flops(net, Pass(p.batch, p.seq, "causal")) if generates else None,
                    decode_per_token=forward_flops(net, Pass(1, 1, "causal", context=p.seq + 1)) if generates
                    else None,
                    non_matmul_forward=non_matmul_flops(net, p), six_n=6 * active * p.tokens, palm=palm),
        breakdown=rows(net, lambda b: b.flops(p)))


def _layers_report(net: Network, p: Pass, fwd: int, bwd: int, kernel: str, asked: int | None) -> FlopsReport:
    """A layers network: convolutions, recurrent gate matmuls and linears; no attention
    (reported as attention "none": the attention setting does not apply)."""
    active = sum(net.params().values())
    six_n = 6 * active * p.tokens
    notes = ["FLOPs: 2 per multiply-add; convolutions as FlopCounterMode counts them (2 x output elements x "
             "in_channels/groups x kernel volume), recurrent gate matmuls per time step; no attention",
             "backward = 2 x forward: an input-gradient and a weight-gradient matmul per forward matmul "
             "(a first layer reading pixels or features needs no input gradient)"
             + ("; frozen weights skip their weight gradient" if net.freeze else ""), *net.seq_notes(asked)]
    off = f"{(six_n / (fwd + bwd) - 1) * 100:+.1f}% vs exact" if fwd + bwd else "no exact count to compare"
    if any(holds(s.block, "conv") for s in net.stages):
        notes.append(f"6N (a transformer's rule of thumb) does not apply: it counts each weight once per "
                     f"{'sample' if net.fixed_seq_len == 1 else 'position'}, but a convolution reuses its weights "
                     f"at every output position (6 x {active:,} params x {p.tokens:,} = {six_n:,}, {off})")
    else:
        tables = net.embedding_params()
        notes.append(f"6N (a transformer's rule of thumb): 6 x {active:,} params x {p.tokens:,} = {six_n:,}, {off}"
                     + (f"; it counts the {tables:,} embedding-table parameters, which do no matmul" if tables
                        else ""))
    return FlopsReport(
        model=net.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention="none", notes=notes,
        flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=0, hardware_step=fwd + bwd,
                    forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                    non_matmul_forward=None, six_n=6 * active * p.tokens, palm=None),
        breakdown=rows(net, lambda b: b.flops(p)))


def holds(block, kind: str) -> bool:
    """Whether a layers network's block is or holds a block of `kind` ("conv", "recurrent"),
    inside residual and sequential blocks too."""
    import dataclasses

    if getattr(block, "kind", None) == kind:
        return True
    if not dataclasses.is_dataclass(block):
        return False
    for field in dataclasses.fields(block):
        value = getattr(block, field.name)
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            inner = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            if dataclasses.is_dataclass(inner) and not isinstance(inner, type) and holds(inner, kind):
                return True
    return False


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


def _measured_report(net: MeasuredCount, p: Pass, kernel: str, recompute: str, asked=None) -> FlopsReport:
    """A transformers model counted on the meta device, or a profiled torch module: measured by FlopCounterMode."""
    fwd, how = net.forward_flops(p.batch, p.seq)
    notes = [net.note, how, *net.seq_notes(None if asked is None else p.seq)]
    six_n = 6 * net.total_params * p.tokens
    if fwd is None:
        notes.append("only the 6N rule of thumb is known")
        return FlopsReport(model=net.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=kernel,
                           notes=notes, flops=Flops(forward=None, backward=None, train_step=None, recompute=None,
                                                    hardware_step=None, forward_per_token=None, train_per_token=None,
                                                    non_matmul_forward=None, six_n=six_n, palm=None))
    notes.append(f"attention as {net.model_class}'s code computes it (its default kernel, "
                 "FlopCounterMode counts full s x s scores); the attention setting does not change a measured count")
    bwd, bwd_how = net.backward_flops(p.batch, p.seq, fwd)  # 2 x forward, or measured (network/profiled.py)
    notes.append(bwd_how)
    extra = 0 if choose(recompute, TRAIN_RECOMPUTE, "recompute") == "none" else None
    if extra is None:
        notes.append("recomputation unknown: the measured forward has no layers paramcalc can rerun")
    return FlopsReport(model=net.name, seq_len=p.seq, batch=p.batch, tokens=p.tokens, attention=kernel, notes=notes,
                       flops=Flops(forward=fwd, backward=bwd, train_step=fwd + bwd, recompute=extra,
                                   hardware_step=None if extra is None else fwd + bwd,
                                   forward_per_token=fwd // p.tokens, train_per_token=(fwd + bwd) // p.tokens,
                                   non_matmul_forward=None, six_n=six_n, palm=None))
