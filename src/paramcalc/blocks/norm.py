"""Normalisation layers: LayerNorm (weight, optional bias) and RMSNorm (weight)."""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.base import Block, Breakdown


@dataclass(frozen=True)
class Norm(Block):
    """LayerNorm (Ba et al. 2016): gamma and beta of `dim`; RMSNorm (Zhang &
    Sennrich 2019): gamma only. Gemma's (1 + w) form has the same count.
    `affine=False` (OPT-350m's final norm option) has no parameters."""

    dim: int
    kind_: str = "rmsnorm"  # rmsnorm | layernorm
    bias: bool = True  # layernorm only
    affine: bool = True
    kind = "norm"

    def params(self) -> Breakdown:
        if not self.affine:
            return {}
        out = {"weight": self.dim}
        if self.kind_ == "layernorm" and self.bias:
            out["bias"] = self.dim
        return out

    def module(self):
        from torch import nn

        if self.kind_ == "layernorm":
            return nn.LayerNorm(self.dim, elementwise_affine=self.affine, bias=self.bias)
        return nn.RMSNorm(self.dim, elementwise_affine=self.affine)
