"""CLIP's contrastive head (Radford et al. 2021, figure 3's pseudocode; transformers'
modeling_clip.CLIPModel): the text tower's pooled token (its EOS position, a gather) and
the vision tower's pooled class token are projected without bias to projection_dim,
L2-normalised, and every text of the batch is scored against every image: a
(batch x d) @ (d x batch) matmul, scaled by exp(logit_scale), a learned scalar.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass
from paramcalc.blocks.linear import Linear


@dataclass(frozen=True)
class ContrastiveHead(Block):
    text: int  # the text tower's width
    vision: int  # the vision tower's width
    dim: int  # projection_dim
    kind = "head"

    def parts(self) -> dict[str, Linear]:
        return {"text_projection": Linear(self.text, self.dim), "visual_projection": Linear(self.vision, self.dim)}

    def params(self) -> Breakdown:
        return {**{f"{name}/weight": part.d_in * part.d_out for name, part in self.parts().items()},
                "logit_scale": 1}

    def flops(self, p: Pass) -> Breakdown:
        """One pooled vector per sample through each projection (2 b h d), and the b x b
        similarities (2 b^2 d): FlopCounterMode's mm over the normalised embeddings."""
        b = p.batch
        return {**{name: part.matmul_flops(b) for name, part in self.parts().items()},
                "similarity": 2 * b * b * self.dim}

    def output_elements(self, p: Pass) -> int:
        return p.batch * p.batch

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """With return_loss: each projection's input (the pooled text token, gathered into a
        new tensor with its int64 index; the class token after post_layernorm), each embedding
        and its norm (pow, sum, sqrt and the division keep them), the two normalised
        embeddings the similarity matmul reads, exp(logit_scale) and the logits its product
        keeps, and the two cross-entropies' log-softmaxes (fp32 targets: int64)."""
        x, b, d = a.x, p.batch, self.dim
        pooled = x * b * (self.text + self.vision) + 8 * b
        normalise = 2 * (2 * x * b * d + 2 * x * b)  # embeds, pow's input; the norm and its sqrt
        similarity = 2 * x * b * d + x + x * b * b
        loss = 2 * (x * b * b + 8 * b)
        return {"pooled": pooled, "normalise": normalise, "similarity": similarity, "loss": loss}

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    import torch
    from torch import nn

    class ContrastiveHeadModule(nn.Module):
        text_projection: nn.Linear  # registered from spec.parts() (add_module); declared for the type checker
        visual_projection: nn.Linear

        def __init__(self, spec: ContrastiveHead):
            super().__init__()
            for name, part in spec.parts().items():
                self.add_module(name, part.module())
            self.logit_scale = nn.Parameter(torch.tensor(2.6592))

        def forward(self, text, image):
            """The pooled text and class-token vectors (batch, width each) -> logits per text."""
            t, i = self.text_projection(text), self.visual_projection(image)
            t = t / t.pow(2).sum(-1, keepdim=True).pow(0.5)
            i = i / i.pow(2).sum(-1, keepdim=True).pow(0.5)
            return (t @ i.t()) * self.logit_scale.exp()

    return ContrastiveHeadModule
