"""A transformers model counted on the meta device (inputs/hf/meta_fallback.py):
its exact parameter count, no paramcalc blocks. Like a BareCount, analyses that
need the architecture (the layer splits, the KV cache) find it unknown; forward
FLOPs are measured on demand by running the transformers model on meta.
network/profiled.py's `Profiled`, a live torch module, is one too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from paramcalc.blocks.base import Breakdown
from paramcalc.network.network import BareCount

if TYPE_CHECKING:
    from paramcalc.network.profiled import Part


@dataclass(frozen=True)
class MeasuredCount(BareCount):
    embedding: int = 0
    buffer_count: int = 0
    model_class: str = ""
    config_text: str = ""
    source: str = ""
    note: str = ""
    parts: tuple[Part, ...] = ()  # the model's top-level children, in module order

    def params(self) -> Breakdown:
        return {p.name: p.params for p in self.parts} if self.parts else super().params()

    def trainable_params(self) -> Breakdown:
        return {p.name: p.trainable for p in self.parts} if self.parts else super().trainable_params()

    def forward_flops(self, batch: int, seq: int) -> tuple[int | None, str]:
        """Forward FLOPs of batch x seq tokens, measured by FlopCounterMode (None where the forward does not run)."""
        from paramcalc.inputs.hf.meta_fallback import measure_forward_flops

        return measure_forward_flops(self.config_text, self.source, batch, seq)

    def backward_flops(self, batch: int, seq: int, forward: int) -> tuple[int, str]:
        """Backward FLOPs: 2 x forward (an input-gradient and a weight-gradient matmul per forward matmul)."""
        return 2 * forward, "backward = 2 x forward"

    def saved_bytes(self, batch: int, seq: int, dtype_bytes: int) -> int | None:
        """Bytes autograd saves for backward in a training forward (None: not measured)."""
        return None


__all__ = ["MeasuredCount"]
