"""A block that runs at a fixed length whatever the pass asks: Whisper's speech
encoder sees 30 s of audio, 3000 log-mel frames halved to 1500 positions by its
strided conv (Radford et al. 2022, section 2.2), however many tokens the decoder
reads. Training and prefill passes run it once per sequence at that length; a
decoding pass (keys beyond the pass's own tokens: a cache is read) runs none of
it, since the encoder's output was computed at prefill and is only read again.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step


@dataclass(frozen=True)
class FixedLength(Block):
    """`base` run on `seq` positions per sequence; otherwise the block itself."""

    base: Block
    seq: int

    def __getattr__(self, name: str):
        if name in ("base", "seq") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)  # attention, mlp, norm_names, table_params, ...: the wrapped block's

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.base.kind

    def at(self, p: Pass) -> Pass:
        """The pass the block runs: the batch's sequences at the fixed length, all positions seen."""
        return Pass(p.batch, self.seq, p.attention)

    @staticmethod
    def decoding(p: Pass) -> bool:
        return p.keys > p.seq

    def params(self) -> Breakdown:
        return self.base.params()

    def active_params(self) -> Breakdown:
        return self.base.active_params()

    def buffers(self) -> Breakdown:
        return self.base.buffers()

    def flops(self, p: Pass) -> Breakdown:
        return {} if self.decoding(p) else self.base.flops(self.at(p))

    def data_input_flops(self, p: Pass) -> int:
        return 0 if self.decoding(p) else self.base.data_input_flops(self.at(p))

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        return self.base.saved(self.at(p), a)

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        return self.base.backward_steps(self.at(p), a)

    def module(self, a: Activations | None = None):
        return self.base.module(a)
