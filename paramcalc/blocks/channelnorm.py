"""Norms over feature maps: BatchNorm (Ioffe & Szegedy 2015) and GroupNorm
(Wu & He 2018). Both normalise (channels, *spatial) samples; the affine
weight and bias have one entry per channel (PyTorch docs of nn.BatchNorm2d,
nn.GroupNorm). Batch norm's running mean and variance (and its
num_batches_tracked counter) are buffers, not parameters: `buffers()`."""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.shaped import Shaped


@dataclass(frozen=True)
class BatchNorm(Shaped):
    """in_shape (C,) or (C, *spatial): nn.BatchNorm1d/2d/3d by the spatial rank."""

    affine: bool = True
    track_running_stats: bool = True
    kind = "norm"
    keeps_input = True  # native_batch_norm's backward reads x

    @property
    def channels(self) -> int:
        return self.in_shape[0]

    def params(self) -> Breakdown:
        return {"weight": self.channels, "bias": self.channels} if self.affine else {}

    def buffers(self) -> Breakdown:
        if not self.track_running_stats:
            return {}
        return {"running_mean": self.channels, "running_var": self.channels, "num_batches_tracked": 1}

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        return {"stats": 8 * self.channels}  # fp32 batch mean and inverse std per channel

    def component(self, key: str) -> str:
        return "norms"

    def module(self, a: Activations | None = None):
        from torch import nn

        dims = max(1, len(self.in_shape) - 1)
        return getattr(nn, f"BatchNorm{dims}d")(self.channels, affine=self.affine,
                                                  track_running_stats=self.track_running_stats)


@dataclass(frozen=True)
class GroupNorm(Shaped):
    groups: int = 1
    affine: bool = True
    kind = "norm"
    keeps_input = True

    @property
    def channels(self) -> int:
        return self.in_shape[0]

    def params(self) -> Breakdown:
        return {"weight": self.channels, "bias": self.channels} if self.affine else {}

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        return {"stats": 2 * a.x * p.tokens * self.groups}  # mean and rstd per sample and group

    def component(self, key: str) -> str:
        return "norms"

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.GroupNorm(self.groups, self.channels, affine=self.affine)
