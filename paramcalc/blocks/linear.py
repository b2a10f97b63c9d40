"""Linear layers and embedding tables: the leaves most blocks are made of."""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass


@dataclass(frozen=True)
class Linear(Block):
    """y = x W^T + b, W: (d_out, d_in). Params d_in*d_out (+ d_out bias).

    FLOPs: 2 * tokens * d_in * d_out (one multiply-add per weight per token);
    the bias add is elementwise, not a matmul.
    """

    d_in: int
    d_out: int
    bias: bool = False
    kind = "linear"

    def params(self) -> Breakdown:
        out = {"weight": self.d_in * self.d_out}
        if self.bias:
            out["bias"] = self.d_out
        return out

    def matmul_flops(self, tokens: int) -> int:
        return 2 * tokens * self.d_in * self.d_out

    def flops(self, p: Pass) -> Breakdown:
        return {"": self.matmul_flops(p.tokens)}

    def output_elements(self, p: Pass) -> int:
        return p.tokens * self.d_out

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.Linear(self.d_in, self.d_out, bias=self.bias)


@dataclass(frozen=True)
class Embedding(Block):
    """A lookup table of `rows` vectors of `dim`: rows*dim params, no matmul FLOPs."""

    rows: int
    dim: int
    kind = "embedding"

    def params(self) -> Breakdown:
        return {"weight": self.rows * self.dim}

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.Embedding(self.rows, self.dim)
