"""Token-wise blocks (Linear, Embedding, LayerNorm) inside a shaped network.

They act on the last axis of each sample, as nn.Linear does: the leading
axes multiply the rows, so a linear on (channels, d) features runs channels
rows per sample. The block's own formulas (blocks/linear.py, blocks/norm.py)
do the counting; this wrapper only supplies shapes and what autograd keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.norm import Norm
from paramcalc.blocks.shaped import Shape, Shaped


@dataclass(frozen=True)
class LastAxis(Shaped):
    inner: Block = Linear(1, 1)
    keeps_input = True  # linear: weight gradient; embedding: the ids; layer norm: x for its backward

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.inner.kind

    @property
    def out_shape(self) -> Shape:
        if isinstance(self.inner, Embedding):
            return (*self.in_shape, self.inner.dim)
        if isinstance(self.inner, Linear):
            return (*self.in_shape[:-1], self.inner.d_out)
        return self.in_shape

    def rows(self, p: Pass) -> Pass:
        """The same pass with every leading axis folded into the rows."""
        lead = prod(self.in_shape) if isinstance(self.inner, Embedding) else prod(self.in_shape[:-1])
        return Pass(p.batch, p.seq * lead, p.attention)

    def in_bytes(self, p: Pass, a: Activations) -> int:
        if isinstance(self.inner, Embedding):
            return 8 * p.tokens * prod(self.in_shape)  # int64 ids
        return super().in_bytes(p, a)

    def params(self) -> Breakdown:
        return self.inner.params()

    def flops(self, p: Pass) -> Breakdown:
        return self.inner.flops(self.rows(p))

    def data_input_flops(self, p: Pass) -> int:
        return sum(self.flops(p).values()) if isinstance(self.inner, Linear) else 0

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        if isinstance(self.inner, Norm) and self.inner.kind_ == "layernorm":
            return {"stats": 8 * self.rows(p).tokens}  # fp32 mean and rstd per row (see Norm.saved_rows)
        return {}

    def component(self, key: str) -> str:
        return "norms" if isinstance(self.inner, Norm) else self.inner.kind

    def module(self, a: Activations | None = None):
        return self.inner.module()
