"""Vision transformer ends (Dosovitskiy et al. 2021, "An Image is Worth 16x16
Words", eq. 1): the image is cut into (H/p) x (W/p) patches, each linearly
projected to the model width (a conv with kernel = stride = p, with bias), a
learned class token is prepended and learned positions (patches + 1 rows)
are added; the classification head reads the class token after the final norm.
torchvision's VisionTransformer and transformers' ViTModel lay them out alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge
from paramcalc.blocks.conv import Conv
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.norm import Norm


@dataclass(frozen=True)
class PatchEmbeddings(Block):
    channels: int
    image: tuple[int, int]
    patch: int
    dim: int
    bias: bool = True  # CLIP's patch conv has none (modeling_clip.CLIPVisionEmbeddings)
    kind = "embedding"

    @property
    def conv(self) -> Conv:
        p = self.patch
        return Conv((self.channels, *self.image), self.dim, (p, p), (p, p), (0, 0), (1, 1), bias=self.bias)

    @property
    def patches(self) -> int:
        return self.image[0] // self.patch * (self.image[1] // self.patch)

    @property
    def seq(self) -> int:
        """Tokens per image: the patches and the class token."""
        return self.patches + 1

    def params(self) -> Breakdown:
        return {**merge(("patch", self.conv.params())), "class_token": self.dim, "positions": self.seq * self.dim}

    def table_params(self) -> int:
        """The `params.embedding` figure: patch projection, class token and positions."""
        return sum(self.params().values())

    def flops(self, p: Pass) -> Breakdown:
        return {"patch": sum(self.conv.flops(Pass(p.batch, 1)).values())}  # one image per sample

    def data_input_flops(self, p: Pass) -> int:
        return sum(self.flops(p).values())  # the pixels need no gradient

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        out = {"image": a.x * p.batch * self.channels * self.image[0] * self.image[1]}  # the conv's input
        if a.embedding_dropout:
            out["dropout"] = a.mask_bytes * p.tokens * self.dim
        return out

    def module(self, a: Activations | None = None):
        return _embeddings_class()(self)


@dataclass(frozen=True)
class ClassTokenHead(Block):
    """A linear classifier on the class token: 2 x batch x h x labels FLOPs."""

    hidden: int
    labels: int
    kind = "head"

    @property
    def linear(self) -> Linear:
        return Linear(self.hidden, self.labels, bias=True)

    def params(self) -> Breakdown:
        return self.linear.params()

    def flops(self, p: Pass) -> Breakdown:
        return {"": self.linear.matmul_flops(p.batch)}

    def output_elements(self, p: Pass) -> int:
        return p.batch * self.labels

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The class token is a view of the final norm's output, so the whole
        storage stays alive; the loss keeps its log-softmax, targets, scalar."""
        return {"input": a.x * p.tokens * self.hidden,
                "loss": a.x * p.batch * self.labels + 8 * p.batch + a.x}

    def module(self, a: Activations | None = None):
        return self.linear.module()


@cache
def _embeddings_class():
    import torch
    from torch import nn

    class PatchEmbeddingsModule(nn.Module):
        def __init__(self, spec: PatchEmbeddings):
            super().__init__()
            self.patch = spec.conv.module()
            self.class_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
            self.positions = nn.Parameter(torch.zeros(1, spec.seq, spec.dim))

        def forward(self, images):
            x = self.patch(images).flatten(2).transpose(1, 2)  # (b, patches, dim)
            x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
            return x + self.positions

    return PatchEmbeddingsModule


@dataclass(frozen=True)
class ClassTokenNorm(Block):
    """A norm of the class token alone (CLIP's post_layernorm, modeling_clip.CLIPVisionModel:
    post_layernorm(last_hidden_state[:, 0, :])): no matmul; LayerNorm keeps its input, a view
    that holds the whole last hidden state (`positions` rows a sample), and fp32 mean and rstd
    of one row a sample."""

    norm: Norm
    positions: int
    kind = "norm"

    def params(self) -> Breakdown:
        return self.norm.params()

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        held = a.x * p.batch * (self.positions - 1) * self.norm.dim  # the rest of the viewed storage
        return {"": self.norm.saved_rows(p.batch, a) + held}

    def module(self, a: Activations | None = None):
        return _class_token_norm_class()(self.norm.module(a))


@cache
def _class_token_norm_class():
    from torch import nn

    class ClassTokenNormModule(nn.Module):
        def __init__(self, norm: nn.Module):
            super().__init__()
            self.norm = norm

        def forward(self, x):
            return self.norm(x[:, 0, :])

    return ClassTokenNormModule
