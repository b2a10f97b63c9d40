"""Multi-head attention with grouped K/V heads: MHA, GQA and MQA in one block.

Vaswani et al. 2017 (MHA); Ainslie et al. 2023 (GQA); Shazeer 2019 (MQA).
Heads n, K/V heads g (g = n: MHA, g = 1: MQA), head_dim d (may differ from
hidden/n, as in Gemma). Self-attention or cross-attention (T5's decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step, merge
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.norm import Norm


@dataclass(frozen=True)
class Attention(Block):
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    # Norms on queries and keys: over head_dim, shared by the heads (Qwen3, Gemma 3,
    # Phi's qk_layernorm), or over the whole projection (OLMo 2: n*d and g*d wide).
    q_norm: Norm | None = None
    k_norm: Norm | None = None
    causal: bool = True  # decoder self-attention; encoders and cross-attention see every key
    cross: bool = False  # keys and values come from the encoder's output
    window: int | None = None  # sliding-window layers (Mistral, Gemma 2's local layers)
    relative_buckets: int = 0  # T5: a (buckets x heads) bias table in each stack's first layer
    softcap: bool = False  # Gemma 2: tanh soft-capping of the scores
    fused_views: bool = False  # q, k, v are views of one fused output (GPT-2, BLOOM)
    sinks: bool = False  # gpt-oss: a learned logit per head joins every softmax (n parameters)
    kind = "attention"

    def parts(self) -> dict[str, Block]:
        h, n, g, d = self.hidden, self.heads, self.kv_heads, self.head_dim
        out: dict[str, Block] = {
            "q_proj": Linear(h, n * d, self.qkv_bias),  # (1) queries: h -> n*d
            "k_proj": Linear(h, g * d, self.qkv_bias),  # (2) keys: h -> g*d, shared by n/g query heads
            "v_proj": Linear(h, g * d, self.qkv_bias),  # (3) values: same shape as keys
            "o_proj": Linear(n * d, h, self.o_bias),  # (4) output: n*d -> h
        }
        if self.q_norm:
            out["q_norm"] = self.q_norm
        if self.k_norm:
            out["k_norm"] = self.k_norm
        if self.relative_buckets:
            out["relative_attention_bias"] = Embedding(self.relative_buckets, n)
        return out

    def params(self) -> Breakdown:
        out = merge(*((name, part.params()) for name, part in self.parts().items()))
        if self.sinks:
            out["sinks"] = self.heads
        return out

    def flops(self, p: Pass) -> Breakdown:
        parts = self.parts()
        # Keys and values are projected from the encoder's tokens in cross-attention.
        kv_tokens = p.batch * p.keys if self.cross else p.tokens
        pairs = p.attended_pairs(self.window, causal_mask=self.causal and not self.cross)
        # QK^T and (probs)V: 2 FLOPs x d per scored pair, for every query head
        # (GQA shares K/V projections, not the score matmuls).
        score = 2 * p.batch * self.heads * pairs * self.head_dim
        return {
            "q_proj": parts["q_proj"].matmul_flops(p.tokens),
            "k_proj": parts["k_proj"].matmul_flops(kv_tokens),
            "v_proj": parts["v_proj"].matmul_flops(kv_tokens),
            "scores": score,
            "values": score,
            "o_proj": parts["o_proj"].matmul_flops(p.tokens),
        }

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """Bytes autograd keeps, as transformers' eager attention computes:
        the projection input (one storage for q, k and v; cross-attention's k/v
        input is the encoder output, counted once for the whole network), q, K
        and V as the score and value matmuls see them (K/V repeated to n heads
        by repeat_kv's copy, except MQA at batch 1 where broadcasting keeps one
        head), the softmax output (fp32 when the eager softmax upcasts) and the
        probabilities in the model dtype, dropout noise, the o_proj input.
        Flash kernels keep q, k, v, the output and an fp32 logsumexp instead
        of anything s x s (Dao et al. 2022)."""
        x, b, s, k = a.x, p.batch, p.seq, p.keys
        n, g, d = self.heads, self.kv_heads, self.head_dim
        T = p.tokens
        out = {"input": x * T * self.hidden}
        if self.q_norm:  # rows: one per head and token, or one per token for a whole-projection norm
            out["q_norm"] = self.q_norm.saved_rows(T * n * d // self.q_norm.dim, a)
        if self.k_norm:
            out["k_norm"] = self.k_norm.saved_rows(b * k * g * d // self.k_norm.dim, a)
        if not a.eager:  # the kernel's (b, s, n, d) output is already the o_proj input: one storage
            out["qkv"] = x * (T * n * d + 2 * b * k * g * d)
            out["logsumexp"] = 4 * b * n * s
        else:
            kv_heads = g if (g == 1 and b == 1 and n > 1) else n
            qk = 4 if a.scores_fp32 else x  # the score matmul keeps what it reads: fp32 copies when upcast
            out["q"] = qk * T * n * d
            out["kv"] = (qk + x) * b * k * kv_heads * d
            if self.fused_views and b == 1:  # the views keep the whole fused storage; k^T and v are copied
                out["q"] += 2 * x * b * k * kv_heads * d
            pairs = b * n * s * k  # eager computes (and masks) the full rectangle
            if self.relative_buckets:
                out["position_buckets"] = 8 * s * k  # int64 bucket ids of the relative bias lookup
            if self.softcap:
                out["softcap"] = x * pairs  # tanh result
            out["softmax"] = (4 if a.softmax_fp32 else x) * pairs
            if self.sinks:  # the sink column joins the softmax; its max's int64 indices are kept too
                out["softmax"] += (4 if a.softmax_fp32 else x) * b * n * s
                out["sinks"] = 8 * b * n * s
            if a.softmax_fp32 and x != 4:
                out["probs"] = x * pairs  # the model-dtype copy the value matmul reads (none in fp32)
            if a.attention_dropout:
                out["dropout"] = a.mask_bytes * pairs + (0 if a.softmax_fp32 else x * pairs)
        out["o_proj_input"] = x * T * n * d
        return out

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        """Two steps. First o_proj's weight gradient and eager attention's
        s x s gradients: the probabilities' gradient in the model dtype beside
        the softmax's input gradient (fp32 when the softmax upcasts: x + 4 bytes
        a pair, else 2x), after which the score-side tensors are freed. Then
        the q, k, v weight gradients and the q, k, v gradients; with grouped
        K/V heads the gradients of K and V expanded to n heads exist before they
        are summed back to g (repeat_kv's backward, except eager MQA at batch 1,
        which broadcasts; FlashAttention-2's dk/dv_expanded), and a q norm's
        fp32 input gradient. Fitted to the live tensors of the reference layers
        (tests/test_bench.py)."""
        n, g, d, T, x = self.heads, self.kv_heads, self.head_dim, p.tokens, a.x
        kv = p.batch * p.keys * d
        expanded = g < n and not (a.eager and g == 1 and p.batch == 1)
        pairs = p.batch * n * p.seq * p.keys
        scores = ((x + 4) if a.softmax_fp32 else 2 * x) * pairs if a.eager else 0
        saved = self.saved(p, a)
        score_side = sum(v for k, v in saved.items() if k not in ("input", "q", "kv", "qkv", "q_norm", "k_norm"))
        out = x * sum(self.parts()["o_proj"].params().values())
        rest = x * sum(self.params().values()) - out
        qkv = x * (T * n * d + 2 * kv * g + (2 * kv * n if expanded else 0)) + (4 * T * n * d if self.q_norm else 0)
        return [Step(grads=out, transient=scores + x * T * n * d, freed=score_side),
                Step(grads=rest, transient=qkv, freed=sum(saved.values()) - score_side)]

    def module(self):
        return _module_class()(self)


def _normed(norm, x, head_dim: int):
    """Apply a q/k norm of width head_dim per head, or of full width as is."""
    if norm.normalized_shape[0] == head_dim and x.shape[-1] != head_dim:
        return norm(x.unflatten(-1, (-1, head_dim))).flatten(-2)
    return norm(x)


@cache
def _module_class():
    import torch
    from torch import nn

    class AttentionModule(nn.Module):
        """Reference attention with explicit matmuls, so every FLOP counter sees
        them (FlopCounterMode misses the fused SDPA kernel on CPU). Rotary and
        ALiBi carry no parameters and no matmul FLOPs and are left out."""

        def __init__(self, spec: Attention):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                self.add_module(name, part.module())
            if spec.sinks:  # no matmul: a column appended to the scores, dropped after the softmax
                self.sinks = nn.Parameter(torch.zeros(spec.heads))

        def forward(self, x, memory=None):
            s = self.spec
            src = x if memory is None else memory
            b, t, _ = x.shape
            q, k, v = self.q_proj(x), self.k_proj(src), self.v_proj(src)
            if s.q_norm:  # a norm's width says where it applies: the whole projection or each head
                q, k = _normed(self.q_norm, q, s.head_dim), _normed(self.k_norm, k, s.head_dim)
            q = q.view(b, t, s.heads, s.head_dim).transpose(1, 2)
            k = k.view(b, -1, s.kv_heads, s.head_dim).transpose(1, 2)
            v = v.view(b, -1, s.kv_heads, s.head_dim).transpose(1, 2)
            groups = s.heads // s.kv_heads
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
            scores = (q @ k.transpose(-2, -1)) * s.head_dim**-0.5
            if s.causal and memory is None:
                keep = torch.ones(t, k.shape[-2], dtype=torch.bool, device=x.device).tril()
                if s.window:
                    keep &= ~torch.ones_like(keep).tril(-s.window)
                scores = scores.masked_fill(~keep, float("-inf"))
            out = scores.softmax(-1) @ v
            return self.o_proj(out.transpose(1, 2).reshape(b, t, s.heads * s.head_dim))

    return AttentionModule
