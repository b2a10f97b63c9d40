"""Blocks on feature tensors of a known shape (CNNs, RNNs, plain MLPs).

A shaped block knows its per-sample input shape (`in_shape`: no batch axis,
no time axis) and derives its output shape. In a forward over `Pass(batch,
seq)` it runs on batch x seq such samples: seq is the number of time steps of
a recurrent network and 1 for an image network, so `p.tokens` is the number
of samples a per-step layer sees.

Saved bytes compose along a chain without double counting (docs/contract.md counts
each storage once): a block says whether autograd keeps its input
(`keeps_input`: conv, linear, batch norm, pooling) or its output
(`keeps_output`: ReLU, tanh, sigmoid keep their result); where a producer keeps
its output and the next block keeps its input, that tensor is one storage and
counts once. `saved()` of a block alone includes its input when it keeps it;
`saved_inner()` leaves the input out, for chains to decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import ClassVar

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge, nest, scale

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Shaped(Block):
    in_shape: Shape
    keeps_input: ClassVar[bool] = False
    keeps_output: ClassVar[bool] = False

    @property
    def out_shape(self) -> Shape:
        return self.in_shape

    def in_bytes(self, p: Pass, a: Activations) -> int:
        return a.x * p.tokens * prod(self.in_shape)

    def out_bytes(self, p: Pass, a: Activations) -> int:
        return a.x * p.tokens * prod(self.out_shape)

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        """Bytes kept for backward, the input excluded (a chain decides on it)."""
        return {"output": self.out_bytes(p, a)} if self.keeps_output else {}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        out = dict(self.saved_inner(p, a))
        if self.keeps_input:
            out["input"] = out.get("input", 0) + self.in_bytes(p, a)
        return out

    def component(self, key: str) -> str:
        """The breakdown row a parameter or FLOPs key belongs to (count tables)."""
        return self.kind


def chain_saved(parts: Sequence[tuple[str, Shaped, int]], p: Pass, a: Activations, *, first_input: bool) -> Breakdown:
    """Saved bytes of blocks run one after another (`count` copies each), each
    storage once: a block's input counts unless its producer keeps its output
    (the same tensor). `first_input`: count the chain's own input when its
    first block keeps it."""
    out: Breakdown = {}
    previous_keeps_output = not first_input
    for name, block, count in parts:
        for key, value in nest(name, scale(block.saved_inner(p, a), count)).items():
            out[key] = out.get(key, 0) + value
        inputs = 0
        if block.keeps_input:
            inputs += 0 if previous_keeps_output else 1  # the first copy's input
            inputs += 0 if block.keeps_output else count - 1  # each further copy reads the previous copy's output
        if inputs:
            key = f"{name}/input"
            out[key] = out.get(key, 0) + inputs * block.in_bytes(p, a)
        previous_keeps_output = block.keeps_output
    return out


@dataclass(frozen=True)
class Sequential(Shaped):
    """Named shaped blocks run in order (nn.Sequential; torchvision's naming)."""

    parts: tuple[tuple[str, Shaped], ...] = ()
    kind = "sequential"

    @property
    def out_shape(self) -> Shape:
        return self.parts[-1][1].out_shape if self.parts else self.in_shape

    @property
    def keeps_input(self) -> bool:  # type: ignore[override]
        return bool(self.parts) and self.parts[0][1].keeps_input

    @property
    def keeps_output(self) -> bool:  # type: ignore[override]
        return bool(self.parts) and self.parts[-1][1].keeps_output

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts))

    def buffers(self) -> Breakdown:
        return merge(*((name, part.buffers()) for name, part in self.parts))

    def flops(self, p: Pass) -> Breakdown:
        return merge(*((name, part.flops(p)) for name, part in self.parts))

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        return chain_saved([(n, b, 1) for n, b in self.parts], p, a, first_input=False)

    def component(self, key: str) -> str:
        head, _, rest = key.partition("/")
        part = dict(self.parts).get(head)
        return part.component(rest) if part is not None else self.kind

    def module(self, a: Activations | None = None):
        from torch import nn

        seq = nn.Sequential()
        for name, part in self.parts:
            seq.add_module(name, part.module())
        return seq
