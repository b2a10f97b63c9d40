"""Blocks without parameters or matmuls: activations, dropout, flatten and
the classification loss. What each keeps for backward is what autograd's
derivative formulas read (PyTorch's derivatives.yaml): ReLU, tanh and sigmoid
their result, GELU, SiLU and the rest their input, dropout its mask."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.shaped import Shape, Shaped

KEEP_OUTPUT = ("relu", "tanh", "sigmoid")
KEEP_INPUT = ("gelu", "silu", "leaky_relu", "elu", "hardtanh", "relu6", "softplus", "mish")
ACTIVATIONS = KEEP_OUTPUT + KEEP_INPUT + ("identity",)
_MODULES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "gelu": "GELU", "silu": "SiLU",
            "leaky_relu": "LeakyReLU", "elu": "ELU", "hardtanh": "Hardtanh", "relu6": "ReLU6",
            "softplus": "Softplus", "mish": "Mish", "identity": "Identity"}


@dataclass(frozen=True)
class Activation(Shaped):
    fn: str = "relu"
    kind = "activation"

    @property
    def keeps_input(self) -> bool:  # type: ignore[override]
        return self.fn in KEEP_INPUT

    @property
    def keeps_output(self) -> bool:  # type: ignore[override]
        return self.fn in KEEP_OUTPUT

    def module(self, a: Activations | None = None):
        from torch import nn

        return getattr(nn, _MODULES[self.fn])()


@dataclass(frozen=True)
class Dropout(Shaped):
    rate: float = 0.5
    kind = "dropout"

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        # the scaled keep-mask, in the activation dtype on the reference path (a 1-byte mask with CUDA's kernel)
        return {"mask": a.mask_bytes * p.tokens * prod(self.in_shape)} if self.rate > 0 else {}

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.Dropout(self.rate)


@dataclass(frozen=True)
class Flatten(Shaped):
    """torch.flatten(x, 1): one feature vector per sample, a view (nothing saved)."""

    kind = "flatten"

    @property
    def out_shape(self) -> Shape:
        return (prod(self.in_shape),)

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.Flatten()


@dataclass(frozen=True)
class CrossEntropy(Shaped):
    """The training loss over the last axis (classes): log-softmax keeps its
    output, the targets are int64, and the mean keeps a scalar."""

    kind = "loss"

    @property
    def out_shape(self) -> Shape:
        return ()

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        rows = p.tokens * prod(self.in_shape[:-1])
        return {"log_softmax": a.x * rows * self.in_shape[-1], "targets": 8 * rows, "scalar": a.x}

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.CrossEntropyLoss()
