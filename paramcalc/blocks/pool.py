"""Pooling over 1, 2 or 3 spatial axes: max and average with a window
(nn.MaxPool2d, nn.AvgPool2d: L_out = floor((L_in + 2 padding - kernel) / stride) + 1),
and adaptive average pooling to a fixed size (nn.AdaptiveAvgPool2d, ResNet's
global pool). No parameters; no matmul FLOPs (FlopCounterMode counts none)."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.shaped import Shape, Shaped
from paramcalc.errors import UserError


@dataclass(frozen=True)
class Pool(Shaped):
    mode: str = "max"  # max | avg
    kernel: Shape = (2,)
    stride: Shape = (2,)
    padding: Shape = (0,)
    kind = "pool"
    keeps_input = True  # max pooling's backward reads x and its argmax; average pooling reads x's shape via x

    @property
    def out_shape(self) -> Shape:
        sizes = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(self.in_shape[1:], self.kernel, self.stride,
                                                                    self.padding))
        if min(sizes, default=1) < 1:
            raise UserError(f"a pooling window of {self.kernel} does not fit an input of {self.in_shape[1:]}",
                            fix="use a smaller kernel_size or more padding")
        return (self.in_shape[0], *sizes)

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        return {"indices": 8 * p.tokens * prod(self.out_shape)} if self.mode == "max" else {}  # int64 argmax

    def module(self, a: Activations | None = None):
        from torch import nn

        dims = len(self.in_shape) - 1
        cls = getattr(nn, f"{'Max' if self.mode == 'max' else 'Avg'}Pool{dims}d")
        return cls(self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class AdaptiveAvgPool(Shaped):
    output_size: Shape = (1,)
    kind = "pool"

    @property
    def out_shape(self) -> Shape:
        return (self.in_shape[0], *self.output_size)

    def module(self, a: Activations | None = None):
        from torch import nn

        return getattr(nn, f"AdaptiveAvgPool{len(self.in_shape) - 1}d")(self.output_size)
