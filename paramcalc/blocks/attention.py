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
    k_bias: bool | None = None  # the key projection's bias; None: qkv_bias (Whisper's k_proj has none)
    # cross-attention over an encoder output of fixed length (Whisper's 1500 audio positions),
    # whatever the decoder's sequence; None: as long as the pass's keys (T5, BART)
    memory: int | None = None
    kind = "attention"

    def _keys(self, p: Pass) -> Pass:
        """The pass with the keys this attention sees: a fixed memory's length for cross-attention."""
        return Pass(p.batch, p.seq, p.attention, self.memory) if self.memory else p

    def projections(self) -> dict[str, Linear]:
        """The four linear projections, the parts with matmul FLOPs."""
        h, n, g, d = self.hidden, self.heads, self.kv_heads, self.head_dim
        return {
            "q_proj": Linear(h, n * d, self.qkv_bias),  # (1) queries: h -> n*d
            "k_proj": Linear(h, g * d, self.qkv_bias if self.k_bias is None else self.k_bias),  # (2) keys: h -> g*d
            "v_proj": Linear(h, g * d, self.qkv_bias),  # (3) values: same shape as keys
            "o_proj": Linear(n * d, h, self.o_bias),  # (4) output: n*d -> h
        }

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = dict(self.projections())
        if self.q_norm:
            out["q_norm"] = self.q_norm
        if self.k_norm:
            out["k_norm"] = self.k_norm
        if self.relative_buckets:
            out["relative_attention_bias"] = Embedding(self.relative_buckets, self.heads)
        return out

    def params(self) -> Breakdown:
        out = merge(*((name, part.params()) for name, part in self.parts().items()))
        if self.sinks:
            out["sinks"] = self.heads
        return out

    def flops(self, p: Pass) -> Breakdown:
        decoding = p.keys > p.seq
        p = self._keys(p)
        parts = self.projections()
        # Keys and values are projected from the encoder's tokens in cross-attention; a fixed
        # memory's once, at prefill (decoding reads them from the cache, as Whisper's generate does).
        kv_tokens = (0 if self.memory and decoding else p.batch * p.keys) if self.cross else p.tokens
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
        p = self._keys(p)
        x, b, s, k = a.x, p.batch, p.seq, p.keys
        n, g, d = self.heads, self.kv_heads, self.head_dim
        T = p.tokens
        if a.megatron:
            return self._saved_megatron(p, a)
        out = {"input": x * T * self.hidden}
        if self.q_norm:  # rows: one per head and token, or one per token for a whole-projection norm
            out["q_norm"] = self.q_norm.saved_rows(T * n * d // self.q_norm.dim, a)
        if self.k_norm:
            out["k_norm"] = self.k_norm.saved_rows(b * k * g * d // self.k_norm.dim, a)
        if not a.eager:  # the kernel's (b, s, n, d) output is already the o_proj input: one storage
            out["qkv"] = x * (T * n * d + 2 * b * k * g * d)
            out["logsumexp"] = 4 * b * n * s
            if a.litgpt and not self.cross:  # LitGPT (blocks/base.py): rope's new q and k beside the fused qkv,
                # which v keeps where it stays a view (MHA; MQA, whose expand is a stride-0 view); GQA copies k and
                # v to n heads. Flash only: under eager attention MHA and MQA keep the fused qkv too (errs low)
                out["qkv"] += x * T * (2 * n * d if g in (1, n) else 2 * (n - g) * d)
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

    def linear_inputs(self, p: Pass, a: Activations) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Saved bytes that only weights' gradients keep: {key: (bytes, the linears or norms reading them)}.
        The projections' shared input; q and k norms' normalised copies; eager attention's o_proj input
        (the attention output made contiguous: a copy only o_proj keeps, where flash's output is that
        storage, kept by the kernel). Cross-attention's k/v input is the encoder's output, kept for
        every layer: left alone."""
        x, T, d = a.x, p.tokens, self.head_dim
        reads: tuple[str, ...] = ("q_proj",) if self.memory else ("q_proj", "k_proj", "v_proj")
        out = {"input": (x * T * self.hidden, reads)}
        if a.eager:
            out["o_proj_input"] = (x * T * self.heads * d, ("o_proj",))
        keys = self._keys(p)  # q and k norms (Qwen3, OLMo 2): the normalised copy their weights keep
        if self.q_norm:
            out["q_norm"] = (self.q_norm.weight_input_rows(T * self.heads * d // self.q_norm.dim, a), ("q_norm",))
        if self.k_norm:
            rows = keys.batch * keys.keys * self.kv_heads * d // self.k_norm.dim
            out["k_norm"] = (self.k_norm.weight_input_rows(rows, a), ("k_norm",))
        return out

    def _saved_megatron(self, p: Pass, a: Activations) -> Breakdown:
        """Megatron-LM's attention (Korthikanti et al. 2022, section 4.1: 11 sbh + 5 as^2 b for
        GPT-3): the QKV GEMM's input, q, k and v (its unfused core expands K/V to every
        query head; flash keeps them as they are, with the logsumexp), the softmax
        output (16-bit), the attention dropout's 1-byte mask and output, the output
        projection's input.

        Under fp8 caching (`a.fp8_cache`; DeepSeek-V3 report, section 3.3.3, as blocks/mla.py):
        q, k and v's shared input in fp8, the attention output (o_proj's input) in E5M6. The
        report's attention backward reads that E5M6 copy too (3.3.3 (1): "also used in the
        backward pass of the attention operator"), so flash keeps no 16-bit O beside it; q, k, v
        and the norms' inputs stay 16-bit (section 3.3.1)."""
        x, b, s, k, T = a.x, p.batch, p.seq, p.keys, p.tokens
        n, g, d = self.heads, self.kv_heads, self.head_dim
        out = {"input": a.linear_input(T * self.hidden)}
        if self.q_norm:
            out["q_norm"] = x * T * n * d
        if self.k_norm:
            out["k_norm"] = x * b * k * g * d
        if a.eager:
            pairs = b * n * s * k
            out["qkv"] = x * (T * n * d + 2 * b * k * n * d)
            out["softmax"] = x * pairs
            if a.attention_dropout:
                out["dropout"] = pairs + x * pairs  # the mask and the dropped probabilities
        else:
            out["qkv"] = x * (T * n * d + 2 * b * k * g * d)  # the kernel's output is o_proj_input
            out["logsumexp"] = 4 * b * n * s
        out["o_proj_input"] = a.linear_input(T * n * d, bits=12)
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
        p = self._keys(p)
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

    def module(self, a: Activations | None = None):
        return _module_class()(self, a or Activations())


SOFTCAP = 50.0  # Gemma 2's attention cap; the value changes no saved shape, only the tanh's scale


@cache
def _module_class():
    import torch
    from torch import nn

    class AttentionModule(nn.Module):
        """Attention as transformers computes it (modeling_llama's eager_attention_forward,
        or its SDPA call when `a.attention` is flash), with explicit matmuls in eager so
        every FLOP counter sees them. Rotary and ALiBi carry no parameters and no matmul
        FLOPs and are left out."""

        # Registered by name from spec.parts() (add_module); declared for the type checker.
        q_proj: nn.Module
        k_proj: nn.Module
        v_proj: nn.Module
        o_proj: nn.Module
        q_norm: nn.Module  # with spec.q_norm only
        k_norm: nn.Module  # with spec.k_norm only

        def __init__(self, spec: Attention, a: Activations):
            super().__init__()
            self.spec, self.a = spec, a
            for name, part in spec.parts().items():
                self.add_module(name, part.module(a))
            if spec.sinks:  # no matmul: a column appended to the scores, dropped after the softmax
                self.sinks = nn.Parameter(torch.zeros(spec.heads))

        def forward(self, x, memory=None):
            s = self.spec
            src = x if memory is None else memory
            b, t, _ = x.shape
            q, k, v = self.q_proj(x), self.k_proj(src), self.v_proj(src)
            if s.q_norm and s.q_norm.dim != s.head_dim:  # OLMo 2 normalises the whole projection
                q, k = self.q_norm(q), self.k_norm(k)
            q = q.view(b, t, s.heads, s.head_dim)
            k = k.view(b, src.shape[1], s.kv_heads, s.head_dim)
            v = v.view(b, src.shape[1], s.kv_heads, s.head_dim)
            if s.q_norm and s.q_norm.dim == s.head_dim:  # Qwen3 normalises each head before the transpose
                q, k = self.q_norm(q), self.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            out = attention_core(self, q, k, v, self.a, causal=s.causal and memory is None, window=s.window,
                                 softcap=SOFTCAP if s.softcap else None, scale=s.head_dim**-0.5,
                                 sinks=self.sinks if s.sinks else None)
            return self.o_proj(out.transpose(1, 2).reshape(b, t, s.heads * s.head_dim))

    return AttentionModule


def attention_core(module, q, k, v, a: Activations, *, causal: bool, window: int | None, scale: float,
                   softcap: float | None = None, sinks=None):
    """softmax(q k^T * scale + mask) v over (batch, heads, tokens, dims) tensors, k and v
    with fewer heads under GQA, as transformers 5.24.0 computes it:

    - flash (`F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)`, transformers'
      SDPA call without a padding mask; a sliding layer passes an additive mask);
    - eager: repeat_kv (expand, then reshape: a copy), q k^T (on fp32 copies where the model
      upcasts them: GPT-J), tanh soft-capping, an additive float mask (it saves nothing where
      masked_fill would keep an s x s boolean), gpt-oss's sink column (whose max keeps int64
      indices), the softmax (in fp32, then back to the model dtype, where the model upcasts).
    """
    import torch
    import torch.nn.functional as F

    n, g = q.shape[1], k.shape[1]
    if not a.eager:
        mask = None
        if causal and window and window < k.shape[-2]:
            mask = _additive_mask(module, q.shape[-2], k.shape[-2], window, q)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                              scale=scale, enable_gqa=n != g)
    if n != g:
        b, _, s, d = k.shape
        k = k[:, :, None].expand(b, g, n // g, s, d).reshape(b, n, s, d)
        v = v[:, :, None].expand(b, g, n // g, s, v.shape[-1]).reshape(b, n, s, v.shape[-1])
    if a.scores_fp32 and q.dtype != torch.float32:
        q, k = q.float(), k.float()
    scores = torch.matmul(q, k.transpose(2, 3)) * scale
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    if causal:
        scores = scores + _additive_mask(module, q.shape[-2], k.shape[-2], window, scores)
    upcast = a.softmax_fp32 and scores.dtype != torch.float32
    if sinks is not None:
        column = sinks.reshape(1, -1, 1, 1).expand(scores.shape[0], -1, scores.shape[2], 1).to(scores.dtype)
        joined = torch.cat([scores, column], dim=-1)
        joined = joined - joined.max(dim=-1, keepdim=True).values
        probs = F.softmax(joined, dim=-1, dtype=torch.float32 if upcast else joined.dtype)[..., :-1]
    else:
        probs = scores.softmax(-1, dtype=torch.float32) if upcast else scores.softmax(-1)
    return torch.matmul(probs.to(v.dtype), v)


def _additive_mask(module, t: int, k: int, window: int | None, like):
    """A (t, k) float mask, 0 where a query sees a key and -inf elsewhere (the last t of
    k positions are queries), cached on the module (built once, outside timed steps)."""
    import torch

    key = (t, k, window, like.dtype, like.device)
    masks = module.__dict__.setdefault("_masks", {})
    if key not in masks:
        with torch.no_grad():
            keep = torch.ones(t, k, dtype=torch.bool, device=like.device).tril(k - t)
            if window:
                keep &= ~torch.ones_like(keep).tril(k - t - window)
            masks[key] = torch.zeros(t, k, dtype=like.dtype, device=like.device).masked_fill(~keep, float("-inf"))
    return masks[key]
