"""Normalisation layers: LayerNorm (weight, optional bias) and RMSNorm (weight)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step


@dataclass(frozen=True)
class Norm(Block):
    """LayerNorm (Ba et al. 2016): gamma and beta of `dim`; RMSNorm (Zhang &
    Sennrich 2019): gamma only. Gemma's (1 + w) form has the same count.
    `affine=False` (OPT-350m's final norm option) has no parameters."""

    dim: int
    kind_: str = "rmsnorm"  # rmsnorm | layernorm
    bias: bool = True  # layernorm only
    affine: bool = True
    # How it computes (saved bytes only): RMSNorm llama | t5 | gemma (scales by 1 + w)
    # | olmo2 (weight applied in fp32); LayerNorm native | fp32 (upcast first: OLMo)
    # | cohere (fp32 elementwise ops).
    style: str = "llama"
    kind = "norm"

    def params(self) -> Breakdown:
        if not self.affine:
            return {}
        out = {"weight": self.dim}
        if self.kind_ == "layernorm" and self.bias:
            out["bias"] = self.dim
        return out

    def saved_rows(self, rows: int, a: Activations) -> int:
        """Bytes saved normalising `rows` vectors (the output is its consumer's input).

        RMSNorm as transformers computes it: an fp32 copy of x (pow and mul save
        it), rsqrt per row (fp32) and the normalised x in the model dtype (saved
        by the weight multiply). T5 multiplies its model-dtype input by the fp32
        rsqrt, so it keeps that input too; Gemma keeps the fp32 normalised x and
        an fp32 (1 + w), OLMo 2 the fp32 normalised x for its fp32 weight
        multiply. LayerNorm (aten native_layer_norm): its input (an fp32 copy
        when upcast, as OLMo does) plus fp32 mean and rstd per row; Cohere's,
        composed of ops, keeps x - mean twice (pow and the product compute it
        apart), rstd, the normalised x and an fp32 copy of the weight, all fp32.
        """
        w = self.dim
        if a.megatron:  # Transformer Engine's fused norm keeps its input (and fp32 statistics, left out: errs low)
            return a.x * rows * w
        if self.kind_ == "layernorm" and self.style == "cohere":
            return 12 * rows * w + 4 * rows + (4 * w if self.affine and a.x != 4 else 0)  # no copy of fp32 weights
        if self.kind_ == "layernorm":
            return (4 if self.style == "fp32" else a.x) * rows * w + 8 * rows
        if self.style in ("gemma", "olmo2"):
            return 8 * rows * w + 4 * rows + (4 * w if self.style == "gemma" else 0)
        upcast = 4 * rows * w + 4 * rows + a.x * rows * w
        keeps_input = self.style == "t5" and a.x != 4  # in fp32 the "copy" is the input itself
        return upcast + a.x * rows * w if keeps_input else upcast

    def weight_input_rows(self, rows: int, a: Activations) -> int:
        """Of `saved_rows`, the bytes only the weight's gradient keeps (none when the weight is frozen):
        the normalised x the weight multiply saves (model dtype; fp32 for Gemma's and OLMo 2's, Cohere's
        composed LayerNorm). aten's native_layer_norm and Transformer Engine keep the same either way."""
        if not self.affine or a.megatron or (self.kind_ == "layernorm" and self.style != "cohere"):
            return 0
        return (4 if self.style in ("gemma", "olmo2", "cohere") else a.x) * rows * self.dim

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        return {"": self.saved_rows(p.tokens, a)}

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        # the input gradient is computed in fp32 from a few fp32 temporaries of the input's size
        return [Step(grads=a.x * sum(self.params().values()), transient=3 * 4 * p.tokens * self.dim,
                     freed=self.saved_rows(p.tokens, a))]

    def module(self, a: Activations | None = None):
        """nn.RMSNorm's or nn.LayerNorm's parameters, computed in the style's arithmetic
        (transformers' LlamaRMSNorm, T5LayerNorm, GemmaRMSNorm, Olmo2RMSNorm; OLMo's and
        Cohere's LayerNorms): what autograd keeps is what `saved_rows` counts."""
        rms, layer = _module_classes()
        return layer(self) if self.kind_ == "layernorm" else rms(self)


@cache
def _module_classes():
    import torch
    import torch.nn.functional as F
    from torch import nn

    def llama(self, x):
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps_)
        h = h.to(dtype)
        return self.weight * h if self.weight is not None else h

    def t5(self, x):  # the rsqrt multiplies the model-dtype input
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        h = x * torch.rsqrt(variance + self.eps_)
        if self.weight is not None and self.weight.dtype in (torch.float16, torch.bfloat16):
            h = h.to(self.weight.dtype)
        return self.weight * h if self.weight is not None else h

    def gemma(self, x):  # all in fp32, scaled by (1 + w)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps_)
        if self.weight is not None:
            h = h * (1.0 + self.weight.float())
        return h.type_as(x)

    def olmo2(self, x):  # the weight multiply in fp32
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps_)
        return (self.weight * h).to(x.dtype) if self.weight is not None else h.to(x.dtype)

    def native(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def fp32(self, x):  # OLMo: the native kernel on an fp32 copy
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)

    def cohere(self, x):  # composed of fp32 elementwise ops
        h = x.to(torch.float32)
        mean = h.mean(-1, keepdim=True)
        variance = (h - mean).pow(2).mean(-1, keepdim=True)
        h = (h - mean) * torch.rsqrt(variance + self.eps)
        return (self.weight.to(torch.float32) * h).to(x.dtype) if self.weight is not None else h.to(x.dtype)

    styles = {"llama": llama, "t5": t5, "gemma": gemma, "olmo2": olmo2, "native": native, "fp32": fp32,
              "cohere": cohere}

    class RMSNorm(nn.RMSNorm):
        def __init__(self, spec: Norm):
            super().__init__(spec.dim, elementwise_affine=spec.affine)
            self.eps_ = 1e-6
            self.compute = styles[spec.style]

        def forward(self, x):
            return self.compute(self, x)

    class LayerNorm(nn.LayerNorm):
        def __init__(self, spec: Norm):
            super().__init__(spec.dim, elementwise_affine=spec.affine, bias=spec.bias)
            self.compute = styles[spec.style if spec.style in ("fp32", "cohere") else "native"]

        def forward(self, x):
            return self.compute(self, x)

    return RMSNorm, LayerNorm
