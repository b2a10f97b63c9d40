"""A transformers model counted on the meta device (inputs/hf/meta_fallback.py):
its exact parameter count, no paramcalc blocks. Like a BareCount, analyses that
need the architecture (activations, the KV cache) find it unknown; forward
FLOPs are measured on demand by running the transformers model on meta."""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.network.network import BareCount


@dataclass(frozen=True)
class MeasuredCount(BareCount):
    embedding: int = 0
    buffer_count: int = 0
    model_class: str = ""
    config_text: str = ""
    source: str = ""
    note: str = ""

    def forward_flops(self, batch: int, seq: int) -> tuple[int | None, str]:
        """Forward FLOPs of batch x seq tokens, measured by FlopCounterMode (None where the forward does not run)."""
        from paramcalc.inputs.hf.meta_fallback import measure_forward_flops

        return measure_forward_flops(self.config_text, self.source, batch, seq)
