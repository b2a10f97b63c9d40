"""Feed-forward blocks: the plain two-matrix MLP and the gated one (GLU family).

Plain (Vaswani et al. 2017): down(act(up(x))), 2*h*f weights.
Gated (Shazeer 2020, "GLU Variants Improve Transformer"): down(act(gate(x)) * up(x)),
3*h*f weights; SwiGLU with SiLU (Llama), GeGLU with GELU (Gemma, T5 v1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step, merge
from paramcalc.blocks.linear import Linear


@dataclass(frozen=True)
class MLP(Block):
    hidden: int
    ffn: int
    gated: bool = True
    bias: bool = False
    act: str = "silu"
    inner_dropout: bool = False  # T5: dropout between the activation and the down projection
    kind = "mlp"

    def parts(self) -> dict[str, Linear]:
        h, f, b = self.hidden, self.ffn, self.bias
        if self.gated:
            return {"gate_proj": Linear(h, f, b), "up_proj": Linear(h, f, b), "down_proj": Linear(f, h, b)}
        return {"up_proj": Linear(h, f, b), "down_proj": Linear(f, h, b)}

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        return {name: part.matmul_flops(p.tokens) for name, part in self.parts().items()}

    def act_saved_elements(self) -> int:
        """Elements per activation input the activation itself saves: ReLU keeps
        its output, which is the next matmul's input anyway (0 extra); native
        SiLU/GELU keep their input (1); GPT-2's `gelu_new` is composed of pow,
        tanh and muls that keep four tensors of that size."""
        if self.act == "relu":
            return 0
        if self.act in ("gelu_new", "gelu_fast"):
            return 4
        if self.act == "quick_gelu":  # x * sigmoid(1.702 x): the product keeps x and the sigmoid's output
            return 2
        return 1

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        x, T, f = a.x, p.tokens, self.ffn
        if a.megatron:  # Korthikanti et al. 2022, section 4.1: fc1's input, its output, the activation's output
            # under fp8 caching (DeepSeek-V3 report, section 3.3.3) the two Linears' inputs in fp8; fc1's
            # output is the activation's input, not a Linear's: 16-bit
            return {"input": a.linear_input(T * self.hidden), "fc1_output": x * T * f * (2 if self.gated else 1),
                    "down_input": a.linear_input(T * f)}
        out = {"input": x * T * self.hidden, "activation": x * T * f * self.act_saved_elements()}
        if self.gated:
            out["gate_product"] = 2 * x * T * f  # act(gate) and up, both saved by the product
        out["down_input"] = x * T * f
        if self.inner_dropout and a.hidden_dropout:
            out["dropout"] = a.mask_bytes * T * f
            if not self.gated and self.act == "relu":
                out["down_input"] += x * T * f  # the relu output is saved apart from the dropped copy
        return out

    def linear_inputs(self, p: Pass, a: Activations) -> dict[str, tuple[int, tuple[str, ...]]]:
        """Saved bytes that only linears' weight gradients keep: {key: (bytes, the linears reading them)}.
        The MLP's input (gate and up, or fc1); the down projection's input, the product or the activation's
        output, except a ReLU's output without dropout, which the ReLU's backward keeps itself."""
        x, T, f = a.x, p.tokens, self.ffn
        first: tuple[str, ...] = ("gate_proj", "up_proj") if self.gated else ("up_proj",)
        out = {"input": (x * T * self.hidden, first)}
        if self.gated or self.act != "relu" or (self.inner_dropout and a.hidden_dropout):
            out["down_input"] = (x * T * f, ("down_proj",))
        return out

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        """down_proj first (its weight gradient and a T x f input gradient),
        then the activation and the up/gate projections once down_proj's input
        and the gate product are freed: two T x f gradients (one for a plain MLP)."""
        x, T, f = a.x, p.tokens, self.ffn
        params = self.parts()
        down = x * sum(params["down_proj"].params().values())
        rest = x * sum(self.params().values()) - down
        saved = self.saved(p, a)
        early = saved["down_input"] + saved.get("gate_product", 0)
        return [Step(grads=down, transient=2 * x * T * f, freed=early),
                Step(grads=rest, transient=x * T * f * (2 if self.gated else 1),
                     freed=sum(saved.values()) - early)]

    def module(self, a: Activations | None = None):
        return _module_class()(self)


def activation(name: str):
    """The activation module transformers runs for `hidden_act`: GPT-2's gelu_new (and
    gelu_fast) composed of elementwise ops, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
    which keeps four tensors; CLIP's quick_gelu, x sigmoid(1.702 x) (transformers'
    QuickGELUActivation); native ReLU, GELU and SiLU kernels otherwise (swiglu_clamp,
    gpt-oss's, runs as SiLU in a dense MLP: the clamp and the +1 change no shape)."""
    import math

    import torch
    from torch import nn

    class TanhGelu(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))

    class QuickGelu(nn.Module):  # CLIP (Radford et al. 2021; transformers' activations.QuickGELUActivation)
        def forward(self, x):
            return x * torch.sigmoid(1.702 * x)

    if name in ("gelu_new", "gelu_fast"):
        return TanhGelu()
    if name == "quick_gelu":
        return QuickGelu()
    kinds = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "swiglu": nn.SiLU}
    return kinds.get(name.split("_")[0], nn.GELU)()


@cache
def _module_class():
    from torch import nn

    class MLPModule(nn.Module):
        # Registered by name from spec.parts() (add_module); declared for the type checker.
        gate_proj: nn.Module  # with spec.gated only
        up_proj: nn.Module
        down_proj: nn.Module

        def __init__(self, spec: MLP):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                self.add_module(name, part.module())
            self.act = activation(spec.act)

        def forward(self, x):
            if self.spec.gated:
                return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
            return self.down_proj(self.act(self.up_proj(x)))

    return MLPModule
