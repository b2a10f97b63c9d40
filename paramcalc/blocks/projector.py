"""LLaVA's multi-modal projector (Liu et al. 2023, "Improved Baselines with Visual
Instruction Tuning", section 3.2: a two-layer MLP in place of LLaVA's linear projection;
transformers' modeling_llava.LlavaMultiModalProjector): the vision tower's selected hidden
states (feature_layers of them concatenated, vision_width each) -> linear_1 -> act ->
linear_2, both into the language model's width, one output per image token.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.mlp import MLP


@dataclass(frozen=True)
class Projector(Block):
    d_in: int  # vision width x feature layers
    dim: int  # the language model's hidden_size
    act: str = "gelu"
    bias: bool = True
    kind = "projector"

    def parts(self) -> dict[str, Linear]:
        return {"linear_1": Linear(self.d_in, self.dim, self.bias), "linear_2": Linear(self.dim, self.dim, self.bias)}

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        return {name: part.matmul_flops(p.tokens) for name, part in self.parts().items()}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """linear_1's input (the image features: a copy when the class token is dropped or
        layers are concatenated), the activation's own (MLP.act_saved_elements) and
        linear_2's input."""
        x, T, h = a.x, p.tokens, self.dim
        act = MLP(h, h, gated=False, act=self.act).act_saved_elements()
        return {"input": x * T * self.d_in, "activation": x * T * h * act, "linear_2_input": x * T * h}

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    from torch import nn

    from paramcalc.blocks.mlp import activation

    class ProjectorModule(nn.Module):
        linear_1: nn.Linear  # registered from spec.parts() (add_module); declared for the type checker
        linear_2: nn.Linear

        def __init__(self, spec: Projector):
            super().__init__()
            for name, part in spec.parts().items():
                self.add_module(name, part.module())
            self.act = activation(spec.act)

        def forward(self, x):
            return self.linear_2(self.act(self.linear_1(x)))

    return ProjectorModule
