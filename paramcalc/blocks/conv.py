"""Convolutions over 1, 2 or 3 spatial axes (nn.Conv1d / Conv2d / Conv3d).

Shapes, parameters and the output size follow the PyTorch docs of nn.Conv2d:
weight (out, in/groups, *kernel), bias (out); along each axis
L_out = floor((L_in + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.shaped import Shape, Shaped
from paramcalc.errors import UserError


@dataclass(frozen=True)
class Conv(Shaped):
    """in_shape is (in_channels, *spatial); kernel, stride, padding and dilation
    have one entry per spatial axis. padding "same" keeps the size (stride 1)."""

    out_channels: int = 1
    kernel: Shape = (1,)
    stride: Shape = (1,)
    padding: Shape | str = (0,)
    dilation: Shape = (1,)
    groups: int = 1
    bias: bool = True
    kind = "conv"
    keeps_input = True  # the weight gradient is input (x) output-gradient

    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def spatial(self) -> Shape:
        return self.in_shape[1:]

    @property
    def out_shape(self) -> Shape:
        if self.padding == "same":
            return (self.out_channels, *self.spatial)
        # "valid" is the other string padding: none
        pad = (0,) * len(self.spatial) if isinstance(self.padding, str) else self.padding
        sizes = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                      for n, k, s, p, d in zip(self.spatial, self.kernel, self.stride, pad, self.dilation))
        if min(sizes, default=1) < 1:
            raise UserError(f"a kernel of {self.kernel} (dilation {self.dilation}) does not fit an input of "
                            f"{self.spatial} with padding {self.padding}", fix="pad more or use a smaller kernel")
        return (self.out_channels, *sizes)

    def params(self) -> Breakdown:
        out = {"weight": self.out_channels * (self.in_channels // self.groups) * prod(self.kernel)}
        if self.bias:
            out["bias"] = self.out_channels
        return out

    def data_input_flops(self, p: Pass) -> int:
        return sum(self.flops(p).values())

    def flops(self, p: Pass) -> Breakdown:
        # each output element is a dot product over (in/groups) x kernel inputs: 2 FLOPs per multiply-add
        # (FlopCounterMode's conv_flop_count: prod(out spatial) x prod(kernel) x batch x out x in/groups x 2)
        out_elements = prod(self.out_shape)
        return {"": 2 * p.tokens * out_elements * (self.in_channels // self.groups) * prod(self.kernel)}

    def module(self, a: Activations | None = None):
        from torch import nn

        cls = getattr(nn, f"Conv{len(self.spatial)}d")
        return cls(self.in_channels, self.out_channels, self.kernel, self.stride, self.padding, self.dilation,
                   self.groups, self.bias)


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    """nn.Conv*d's own rule: groups divide both channel counts."""
    for what, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if n % groups:
            raise UserError(f"{what} ({n}) is not divisible by groups ({groups})",
                            fix="pick a group count that divides both channel counts")

