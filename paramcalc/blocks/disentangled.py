"""DeBERTa-v2/v3's disentangled attention and the encoder parts around it.

He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled Attention",
section 3.1 (eq. 4: content-to-content, content-to-position and position-to-content
scores) and 3.3 (v2's shared projections and log buckets); code: transformers
5.24.0 models/deberta_v2/modeling_deberta_v2.py (DisentangledSelfAttention,
DebertaV2Encoder.rel_embeddings, ConvLayer).

One table of 2k relative-position embeddings (k: the attention span,
position_buckets) is normalised once per forward and projected by every layer,
by its own q/k projections when share_att_key (v3) or by pos_key_proj /
pos_query_proj. c2p scores queries against projected position keys, p2c keys
against projected position queries, each a (s x d) @ (d x 2k) matmul per head;
the gathers that pick each pair's relative column are not matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge
from paramcalc.blocks.embed import _Tables
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.norm import Norm


@dataclass(frozen=True)
class DisentangledAttention(Attention):
    """BERT-style biased q/k/v/o projections plus DeBERTa's position terms.

    FLOPs beyond `Attention` (per layer, 2 per multiply-add, R = 2k table rows):
    - the table's projections, batch-independent: 2*R*h*(n*d) each; with shared keys
      both query_proj(table) and key_proj(table) run whatever pos_att_type says
      (modeling_deberta_v2 disentangled_attention_bias), else one per term;
    - c2p: bmm(q, pos_k^T): 2*b*n*s*d*R; p2c: bmm(k, pos_q^T): 2*b*n*s*d*R.
    """

    span: int = 0  # k: the relative table has 2k rows
    c2p: bool = True
    p2c: bool = True
    share_keys: bool = True

    @property
    def rows(self) -> int:
        return 2 * self.span

    def projections(self) -> dict[str, Linear]:
        out = super().projections()
        if not self.share_keys:  # both biased (pos_query_proj by nn.Linear's default)
            h, nd = self.hidden, self.heads * self.head_dim
            if self.c2p:
                out["pos_key_proj"] = Linear(h, nd, bias=True)
            if self.p2c:
                out["pos_query_proj"] = Linear(h, nd, bias=True)
        return out

    def flops(self, p: Pass) -> Breakdown:
        out = super().flops(p)
        n, d, R = self.heads, self.head_dim, self.rows
        parts = self.projections()
        if self.share_keys:  # query_proj and key_proj over the table, both always
            out["table_q_proj"] = parts["q_proj"].matmul_flops(R)
            out["table_k_proj"] = parts["k_proj"].matmul_flops(R)
        else:
            for name in ("pos_key_proj", "pos_query_proj"):
                if name in parts:
                    out[name] = parts[name].matmul_flops(R)
        relative = 2 * p.batch * n * p.seq * d * R  # (s x d) @ (d x R) per sequence and head
        if self.c2p:
            out["c2p"] = relative
        if self.p2c:
            out["p2c"] = relative
        return out

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """transformers' eager path in the model dtype (its softmax does not upcast):
        the projection input, q, the scaled k^T copy and v as the bmms read them,
        the unscaled k again for p2c, the table's projections repeated over the
        batch, each term's bmm output (its gather keeps it) with its int64 index,
        the boolean mask of masked_fill, the softmax output, dropout noise, the
        output projection's input, and the dropped table each layer projects."""
        if a.megatron or not a.eager:  # no flash path in transformers' DeBERTa: the plain layer's figure
            return super().saved(p, a)
        x, b, s, T = a.x, p.batch, p.seq, p.tokens
        n, d, R = self.heads, self.head_dim, self.rows
        pairs = b * n * s * s
        # q, the scaled k^T copy and v as the bmms read them; each division by the scale keeps a 0-dim copy
        out = {"input": x * T * self.hidden, "q": x * T * n * d, "kv": 2 * x * T * n * d + x}
        terms = int(self.c2p) + int(self.p2c)
        if terms:
            if a.hidden_dropout:  # pos_dropout: each layer projects its own dropped copy of the table
                out["table"] = (x + a.mask_bytes) * R * self.hidden
            out["positions"] = terms * (x * b * n * R * d + x * b * n * s * R + 8 * s * s + x)
            if self.p2c:
                out["p2c_keys"] = x * T * n * d
        out["mask"] = b * s * s
        out["softmax"] = x * pairs
        if a.attention_dropout:
            out["dropout"] = a.mask_bytes * pairs + x * pairs
        out["o_proj_input"] = x * T * n * d
        return out

    def module(self, a: Activations | None = None):
        return _attention_class()(self, a or Activations(softmax_fp32=False))


@dataclass(frozen=True)
class RelativeTable(_Tables):
    """DebertaV2Encoder.rel_embeddings: 2k x h, LayerNorm-ed once per forward when
    norm_rel_ebd has layer_norm (get_rel_embedding); its rows are lookup-table parameters."""

    rows: int
    dim: int
    norm: Norm | None = None
    kind = "embedding"

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {"rel_embeddings": Embedding(self.rows, self.dim)}
        if self.norm:
            out["norm"] = self.norm
        return out

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The norm's fp32 statistics (its input is the parameter itself) and, without
        dropout, its output: the one storage every layer's projections read."""
        if not self.norm:
            return {}  # the layers project the parameter itself (or its dropped copies)
        out = {"norm": 8 * self.rows}
        if not a.hidden_dropout:
            out["table"] = a.x * self.rows * self.dim
        return out

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.ModuleDict({name: part.module(a) for name, part in self.parts().items()})


@dataclass(frozen=True)
class ConvLayer(Block):
    """DeBERTa-v2's ConvLayer beside the first layer: Conv1d(h, h, kernel, groups,
    padding (kernel-1)//2) over the embeddings, tanh, added to the first layer's
    output and LayerNorm-ed. FLOPs (FlopCounterMode's convolution count):
    2 * b * s_out * h * (h / groups) * kernel, s_out = s + 2*pad - kernel + 1."""

    hidden: int
    kernel: int
    groups: int = 1
    norm: Norm | None = None
    kind = "conv"

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {}
        if self.norm:
            out["norm"] = self.norm
        return out

    def params(self) -> Breakdown:
        h = self.hidden
        out = {"conv/weight": h * (h // self.groups) * self.kernel, "conv/bias": h}
        return {**out, **merge(*((name, part.params()) for name, part in self.parts().items()))}

    def out_len(self, s: int) -> int:
        pad = (self.kernel - 1) // 2
        return s + 2 * pad - self.kernel + 1

    def flops(self, p: Pass) -> Breakdown:
        h = self.hidden
        return {"conv": 2 * p.batch * self.out_len(p.seq) * h * (h // self.groups) * self.kernel}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The conv keeps its input (a transposed contiguous copy of the embeddings), the
        in-place padding fill a (b, s) boolean, tanh its output, the norm its input, the
        final multiply the (b, s, 1) input mask."""
        x, T, h = a.x, p.tokens, self.hidden
        out = {"input": x * T * h, "mask": T, "tanh": x * T * h, "output_mask": x * T}
        if self.norm:
            out["norm"] = self.norm.saved_rows(T, a)
        if a.hidden_dropout:
            out["dropout"] = a.mask_bytes * T * h
        return out

    def module(self, a: Activations | None = None):
        return _conv_class()(self)


@cache
def _attention_class():
    import torch
    from torch import nn

    class DisentangledAttentionModule(nn.Module):
        """DisentangledSelfAttention as transformers computes it, with every gather and bmm;
        the relative table (the encoder's, shared by every layer) is a buffer here."""

        # Registered by name from spec.parts() (add_module); declared for the type checker.
        q_proj: nn.Module
        k_proj: nn.Module
        v_proj: nn.Module
        o_proj: nn.Module
        pos_key_proj: nn.Module  # without share_keys, with c2p
        pos_query_proj: nn.Module  # without share_keys, with p2c
        table: torch.Tensor

        def __init__(self, spec: DisentangledAttention, a: Activations):
            super().__init__()
            self.spec, self.a = spec, a
            for name, part in spec.parts().items():
                self.add_module(name, part.module(a))
            self.register_buffer("table", torch.zeros(spec.rows, spec.hidden), persistent=False)

        def heads(self, x):  # transpose_for_scores: (b, t, n*d) -> (b*n, t, d), contiguous
            b, t, _ = x.shape
            return x.view(b, t, self.spec.heads, -1).permute(0, 2, 1, 3).contiguous().view(-1, t, self.spec.head_dim)

        def forward(self, x, memory=None):
            s, (b, t, _) = self.spec, x.shape
            q, k, v = self.heads(self.q_proj(x)), self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
            factor = 1 + s.c2p + s.p2c

            def scale():  # scaled_size_sqrt, computed (and cast) anew at each use as transformers does
                return torch.sqrt(torch.tensor(s.head_dim, dtype=torch.float) * factor).to(q.dtype)

            scores = torch.bmm(q, k.transpose(-1, -2) / scale())
            if s.span:
                table = self.table
                if self.a.hidden_dropout:  # pos_dropout of the trained (normalised) table: a leaf stands for it
                    table = nn.functional.dropout(table.detach().requires_grad_(), 0.1, self.training)
                table = table.unsqueeze(0)
                span = s.span
                ids = torch.arange(t, device=x.device)
                rel = (ids[:, None] - ids[None, :]).unsqueeze(0)
                if s.share_keys:  # both projections run, whatever the terms
                    pos_q = self.heads(self.q_proj(table)).repeat(b, 1, 1)
                    pos_k = self.heads(self.k_proj(table)).repeat(b, 1, 1)
                if s.c2p:
                    if not s.share_keys:
                        pos_k = self.heads(self.pos_key_proj(table)).repeat(b, 1, 1)
                    c2p = torch.gather(torch.bmm(q, pos_k.transpose(-1, -2)), -1,
                                       torch.clamp(rel + span, 0, 2 * span - 1).expand(b * s.heads, t, t))
                    scores = scores + c2p / scale()
                if s.p2c:
                    if not s.share_keys:
                        pos_q = self.heads(self.pos_query_proj(table)).repeat(b, 1, 1)
                    p2c = torch.gather(torch.bmm(k, pos_q.transpose(-1, -2)), -1,
                                       torch.clamp(-rel + span, 0, 2 * span - 1).expand(b * s.heads, t, t))
                    scores = scores + p2c.transpose(-1, -2) / scale()
            keep = torch.ones(b, 1, t, t, dtype=torch.bool, device=x.device)
            scores = scores.view(b, s.heads, t, t).masked_fill(~keep, torch.finfo(q.dtype).min)
            probs = scores.softmax(-1)
            if self.a.attention_dropout:
                probs = nn.functional.dropout(probs, 0.1, self.training)
            out = torch.bmm(probs.view(-1, t, t), v).view(b, s.heads, t, -1).permute(0, 2, 1, 3).contiguous()
            return self.o_proj(out.view(b, t, -1))

    return DisentangledAttentionModule


@cache
def _conv_class():
    from torch import nn

    class ConvLayerModule(nn.Module):
        def __init__(self, spec: ConvLayer):
            super().__init__()
            self.spec = spec
            k = spec.kernel
            self.conv = nn.Conv1d(spec.hidden, spec.hidden, k, padding=(k - 1) // 2, groups=spec.groups)
            if spec.norm:
                self.norm = spec.norm.module()

        def forward(self, x):
            return self.conv(x.permute(0, 2, 1).contiguous()).permute(0, 2, 1).contiguous()

    return ConvLayerModule
