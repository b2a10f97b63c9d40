"""Multi-head latent attention (DeepSeek-V2 paper, section 2.1; DeepSeek-V3).

Queries go through an optional low-rank bottleneck (q_lora_rank); keys and
values are compressed into one latent of kv_lora_rank plus a shared rotary
key of qk_rope_head_dim, which is what the KV cache stores. Each head scores
with nope + rope dims and returns v_head_dim values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.attention import attention_core
from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.norm import Norm


@dataclass(frozen=True)
class LatentAttention(Block):
    hidden: int
    heads: int
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    bias: bool = False  # attention_bias: on q_a, kv_a and o projections
    kind = "attention"

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def parts(self) -> dict[str, Block]:
        h, n, r = self.hidden, self.heads, self.kv_lora_rank
        out: dict[str, Block] = {}
        if self.q_lora_rank:
            out["q_a_proj"] = Linear(h, self.q_lora_rank, self.bias)  # h -> q latent
            out["q_a_layernorm"] = Norm(self.q_lora_rank)
            out["q_b_proj"] = Linear(self.q_lora_rank, n * self.qk_head_dim)  # latent -> per-head q
        else:
            out["q_proj"] = Linear(h, n * self.qk_head_dim)
        out["kv_a_proj_with_mqa"] = Linear(h, r + self.qk_rope_head_dim, self.bias)  # latent + shared rope key
        out["kv_a_layernorm"] = Norm(r)
        out["kv_b_proj"] = Linear(r, n * (self.qk_nope_head_dim + self.v_head_dim))  # latent -> k_nope, v
        out["o_proj"] = Linear(n * self.v_head_dim, h, self.bias)
        return out

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        # Training / prefill form: the latent is expanded to full K and V (as
        # transformers computes it); absorbed-weight decoding does other work.
        out = {name: part.matmul_flops(p.tokens) for name, part in self.parts().items() if isinstance(part, Linear)}
        pairs = p.attended_pairs()
        out["scores"] = 2 * p.batch * self.heads * pairs * self.qk_head_dim
        out["values"] = 2 * p.batch * self.heads * pairs * self.v_head_dim
        return out

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """As transformers' eager DeepSeek-V3 attention keeps them: the shared
        input, the query latent and its norm, the K/V latent and its norm, the
        assembled q, k, v, the softmax (fp32 where it upcasts, as DeepSeek's does) and
        the model-dtype probabilities.

        DeepSeek-V3's recipe (Megatron profile; `a.recompute_modules`, `a.fp8_cache`):
        - mla_up_proj (report, section 3.2.3): the up-projections' outputs (q, k_nope, v) and
          the rotary are rerun in backward from the latents, so q, k, v are not kept; the
          pre-norm latents are (the latent norms rerun inside the same region) and the shared
          rotary key, qk_rope_head_dim a token, which the rerun rotates again;
        - fp8 caching (section 3.3.3): the down- and up-projections' inputs in fp8, the
          attention output (o_proj's input, which the attention backward reads too) in E5M6;
          q, k, v and the norms' inputs stay in the activation dtype (section 3.3.1: attention
          and normalization run in higher precision)."""
        x, b, s, T = a.x, p.batch, p.seq, p.tokens
        n, r, dq, dv = self.heads, self.kv_lora_rank, self.qk_head_dim, self.v_head_dim
        up = a.recomputes("mla_up_proj")
        out = {"input": a.linear_input(T * self.hidden)}  # q_a and kv_a's input
        if self.q_lora_rank:  # the latent (the norm's input) and the normed latent, q_b's input
            out["q_latent"] = Norm(self.q_lora_rank).saved_rows(T, a) \
                + (0 if up else a.linear_input(T * self.q_lora_rank))
        out["kv_latent"] = Norm(r).saved_rows(T, a) + (x * T * self.qk_rope_head_dim if up
                                                       else a.linear_input(T * r))
        if x == 4:  # in fp32 the norm's "copy" is the latent itself: a view of the (r + rope)-wide projection
            out["kv_latent"] += 4 * T * self.qk_rope_head_dim
        qkv = 0 if up else x * b * n * s * (2 * dq + dv)
        if a.eager:
            out["qkv"] = qkv
            out["softmax"] = (4 if a.softmax_fp32 else x) * b * n * s * s
            out["probs"] = x * b * n * s * s if a.softmax_fp32 and x != 4 else 0
        else:  # flash: q, k, v, the fp32 logsumexp; its output is the o_proj input
            out["qkv"] = qkv
            out["logsumexp"] = 4 * b * n * s
        out["o_proj_input"] = a.linear_input(T * n * dv, bits=12)
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self, a or Activations())


@cache
def _module_class():
    import torch
    from torch import nn

    class LatentAttentionModule(nn.Module):
        """MLA as transformers' DeepSeek-V3 computes it (rotary left out: no parameters),
        its core eager or SDPA as `a` says (blocks/attention.py's attention_core)."""

        # Registered by name from spec.parts() (add_module); declared for the type checker.
        q_a_proj: nn.Module  # with spec.q_lora_rank only
        q_a_layernorm: nn.Module  # with spec.q_lora_rank only
        q_b_proj: nn.Module  # with spec.q_lora_rank only
        q_proj: nn.Module  # without spec.q_lora_rank
        kv_a_proj_with_mqa: nn.Module
        kv_a_layernorm: nn.Module
        kv_b_proj: nn.Module
        o_proj: nn.Module

        def __init__(self, spec: LatentAttention, a: Activations):
            super().__init__()
            self.spec, self.a = spec, a
            for name, part in spec.parts().items():
                self.add_module(name, part.module(a))

        def qkv(self, x):
            """Per-head q, k, v (batch, heads, tokens, dims) from the latents."""
            s = self.spec
            b, t, _ = x.shape
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if s.q_lora_rank else self.q_proj(x)
            q = q.view(b, t, s.heads, s.qk_head_dim).transpose(1, 2)
            latent, k_rope = self.kv_a_proj_with_mqa(x).split([s.kv_lora_rank, s.qk_rope_head_dim], -1)
            kv = self.kv_b_proj(self.kv_a_layernorm(latent)).view(b, t, s.heads, -1).transpose(1, 2)
            k_nope, v = kv.split([s.qk_nope_head_dim, s.v_head_dim], -1)
            k_rope = k_rope.view(b, 1, t, s.qk_rope_head_dim).expand(b, s.heads, t, s.qk_rope_head_dim)
            return q, torch.cat([k_nope, k_rope], -1), v

        def forward(self, x):
            s = self.spec
            b, t, _ = x.shape
            q, k, v = self.qkv(x)
            out = attention_core(self, q, k, v, self.a, causal=True, window=None, scale=s.qk_head_dim**-0.5)
            return self.o_proj(out.transpose(1, 2).reshape(b, t, s.heads * s.v_head_dim))

    return LatentAttentionModule
