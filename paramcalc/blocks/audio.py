"""Whisper's speech front end (Radford et al. 2022, section 2.2; transformers'
modeling_whisper.WhisperEncoder): log-mel frames (num_mel_bins x 2 S) through
conv1 (mel -> h, kernel 3, padding 1) and GELU, conv2 (h -> h, kernel 3, stride 2,
padding 1) and GELU, plus a table of S positions (sinusoidal in the checkpoints,
an nn.Embedding that parameters() counts; transformers freezes it). Its input is
data: the first conv computes no input gradient in backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass
from paramcalc.blocks.conv import Conv
from paramcalc.blocks.embed import _Tables
from paramcalc.blocks.linear import Embedding


@dataclass(frozen=True)
class AudioFrontEnd(_Tables):
    mel: int  # num_mel_bins
    dim: int  # d_model
    positions: int  # S: max_source_positions, what the encoder runs on
    kind = "embedding"

    @property
    def frames(self) -> int:
        """Input frames: the strided conv halves them to the positions (3000 -> 1500)."""
        return 2 * self.positions

    def convs(self) -> dict[str, Conv]:
        h, F = self.dim, self.frames
        return {"conv1": Conv((self.mel, F), out_channels=h, kernel=(3,), stride=(1,), padding=(1,)),
                "conv2": Conv((h, F), out_channels=h, kernel=(3,), stride=(2,), padding=(1,))}

    def parts(self) -> dict[str, Block]:
        return {**self.convs(), "positions": Embedding(self.positions, self.dim)}

    def flops(self, p: Pass) -> Breakdown:
        # one input of (mel, 2 S) frames per sequence: Conv counts per sample (conv.py: 2 x out elements x in x k)
        sample = Pass(p.batch, 1)
        return {name: sum(conv.flops(sample).values()) for name, conv in self.convs().items()}

    def data_input_flops(self, p: Pass) -> int:
        """conv1 reads the mel frames, which need no gradient."""
        return sum(self.convs()["conv1"].flops(Pass(p.batch, 1)).values())

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The frames (conv1's input), each conv's output (GELU keeps its input) and the first
        GELU's output (conv2's input). The second GELU's output is added to the frozen
        positions, which keeps nothing; dropout on the sum keeps its noise."""
        x, b, h, F, S = a.x, p.batch, self.dim, self.frames, self.positions
        out = {"frames": x * b * self.mel * F, "conv1": 2 * x * b * h * F, "conv2": x * b * h * S}
        if a.embedding_dropout:
            out["dropout"] = a.mask_bytes * b * S * h
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self)


@cache
def _module_class():
    import torch.nn.functional as F
    from torch import nn

    class AudioFrontEndModule(nn.Module):
        """WhisperEncoder's embedding steps: frames (batch, mel, 2 S) -> (batch, S, h)."""

        conv1: nn.Conv1d  # registered from spec.convs() (add_module); declared for the type checker
        conv2: nn.Conv1d

        def __init__(self, spec: AudioFrontEnd):
            super().__init__()
            for name, conv in spec.convs().items():
                self.add_module(name, conv.module())
            self.positions = nn.Embedding(spec.positions, spec.dim)
            self.positions.requires_grad_(False)

        def forward(self, frames):
            x = F.gelu(self.conv2(F.gelu(self.conv1(frames))))
            return x.permute(0, 2, 1) + self.positions.weight

    return AudioFrontEndModule
