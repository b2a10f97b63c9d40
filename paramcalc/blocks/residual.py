"""Residual blocks: y = act(main(x) + shortcut(x)), the shortcut the identity
or a projection (He et al. 2016, "Deep Residual Learning", eq. 1 and 2).

`bottleneck` and `basic` build torchvision's ResNet blocks, named as its
state dict names them (conv1, bn1, ..., downsample.0, downsample.1):
Bottleneck is 1x1 (reduce), 3x3, 1x1 (expand x4) with the stride on the 3x3
conv (ResNet v1.5, torchvision's choice; He et al. put it on the first 1x1),
BasicBlock two 3x3 convs; a projection shortcut (1x1 conv + batch norm) wherever
the stride or the channel count changes (He et al. option B).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Breakdown, Pass, nest
from paramcalc.blocks.channelnorm import BatchNorm
from paramcalc.blocks.conv import Conv
from paramcalc.blocks.pointwise import Activation
from paramcalc.blocks.shaped import Sequential, Shape, Shaped
from paramcalc.errors import UserError

Maker = Callable[[Shape], Shaped]


def chain(in_shape: Shape, makers: list[tuple[str, Maker]]) -> Sequential:
    """A Sequential whose every block takes the previous block's output shape."""
    parts, shape = [], in_shape
    for name, make in makers:
        block = make(shape)
        parts.append((name, block))
        shape = block.out_shape
    return Sequential(in_shape, tuple(parts))


@dataclass(frozen=True)
class Residual(Shaped):
    main: Sequential = Sequential(())
    shortcut: Sequential | None = None  # None: the identity
    act: str = "relu"  # applied after the addition; "identity": none
    kind = "residual"

    def __post_init__(self):
        other = self.shortcut.out_shape if self.shortcut else self.in_shape
        if self.main.out_shape != other:
            raise UserError(f"the residual branch ends in shape {list(self.main.out_shape)} but the shortcut in "
                            f"{list(other)}", fix="add a shortcut (1x1 conv) that maps the input to the branch's shape")

    @property
    def out_shape(self) -> Shape:
        return self.main.out_shape

    @property
    def activation(self) -> Activation:
        return Activation(self.out_shape, self.act)

    @property
    def keeps_input(self) -> bool:  # type: ignore[override]
        return self.main.keeps_input or bool(self.shortcut and self.shortcut.keeps_input)

    @property
    def keeps_output(self) -> bool:  # type: ignore[override]
        return self.activation.keeps_output

    def params(self) -> Breakdown:
        return {**self.main.params(), **(nest("downsample", self.shortcut.params()) if self.shortcut else {})}

    def buffers(self) -> Breakdown:
        return {**self.main.buffers(), **(nest("downsample", self.shortcut.buffers()) if self.shortcut else {})}

    def flops(self, p: Pass) -> Breakdown:
        # the addition is elementwise, not a matmul
        return {**self.main.flops(p), **(nest("downsample", self.shortcut.flops(p)) if self.shortcut else {})}

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        """Both branches read x (one storage, the block's input); the sum is
        saved by nothing but the activation after it (ReLU keeps its output)."""
        out = dict(self.main.saved_inner(p, a))
        if self.shortcut:
            out.update(nest("downsample", self.shortcut.saved_inner(p, a)))
        act = self.activation
        out.update(nest("activation", act.saved(p, a)))
        return out

    def component(self, key: str) -> str:
        head, _, rest = key.partition("/")
        if head == "downsample" and self.shortcut:
            return self.shortcut.component(rest)
        return self.main.component(key)

    def module(self, a: Activations | None = None):
        return _module_class()(self)


def _conv(out: int, k: int, stride: int = 1, groups: int = 1) -> Maker:
    return lambda s: Conv(s, out, (k, k), (stride, stride), (k // 2, k // 2), (1, 1), groups, bias=False)


def _bn(s: Shape) -> BatchNorm:
    return BatchNorm(s)


def _relu(s: Shape) -> Activation:
    return Activation(s, "relu")


def _downsample(in_shape: Shape, out: int, stride: int) -> Sequential | None:
    if stride == 1 and in_shape[0] == out:
        return None
    return chain(in_shape, [("0", _conv(out, 1, stride)), ("1", _bn)])


def bottleneck(in_shape: Shape, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
               expansion: int = 4) -> Residual:
    """torchvision.models.resnet.Bottleneck: width = planes x base_width / 64 x groups."""
    width = int(planes * (base_width / 64.0)) * groups
    main = chain(in_shape, [("conv1", _conv(width, 1)), ("bn1", _bn), ("relu1", _relu),
                            ("conv2", _conv(width, 3, stride, groups)), ("bn2", _bn), ("relu2", _relu),
                            ("conv3", _conv(planes * expansion, 1)), ("bn3", _bn)])
    return Residual(in_shape, main, _downsample(in_shape, planes * expansion, stride))


def basic(in_shape: Shape, planes: int, stride: int = 1) -> Residual:
    """torchvision.models.resnet.BasicBlock (ResNet-18/34)."""
    main = chain(in_shape, [("conv1", _conv(planes, 3, stride)), ("bn1", _bn), ("relu1", _relu),
                            ("conv2", _conv(planes, 3)), ("bn2", _bn)])
    return Residual(in_shape, main, _downsample(in_shape, planes, stride))


@cache
def _module_class():
    from torch import nn

    class ResidualModule(nn.Module):
        def __init__(self, spec: Residual):
            super().__init__()
            self.names = [name for name, _ in spec.main.parts]
            for name, part in spec.main.parts:
                self.add_module(name, part.module())
            self.downsample = spec.shortcut.module() if spec.shortcut else None
            self.activation = spec.activation.module()

        def forward(self, x):
            y = x
            for name in self.names:
                y = getattr(self, name)(y)
            return self.activation(y + (self.downsample(x) if self.downsample is not None else x))

    return ResidualModule
