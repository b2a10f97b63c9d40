"""A live torch.nn.Module as a network (`paramcalc.profile`, or a
`package.module:factory` TARGET): its parameters (trainable and frozen, by
top-level child), and, where its forward ran, the forward and backward FLOPs
and the bytes saved for backward that torch measured (torchref/profile.py).
No stages: like a BareCount, what needs the architecture (layer splits, the KV
cache) is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from paramcalc.network.measured import MeasuredCount


@dataclass(frozen=True)
class Part:
    """A top-level child module's parameters (a parameter shared by two children counts in the first)."""

    name: str
    kind: str  # its class name
    params: int
    trainable: int


@dataclass(frozen=True)
class Measurement:
    """One forward and backward of a module over its inputs, as torch measured them."""

    batch: int  # the inputs' leading dimension
    seq: int | None  # token ids' second dimension (None: not a token model's inputs)
    forward_flops: int
    backward_flops: int
    saved_bytes: int  # each storage once, parameters and buffers excluded
    saved_param_dtype_bytes: int  # of those, floating storages in the parameters' dtype
    param_dtype_bytes: int  # that dtype's element size
    inputs: str  # the inputs, in words


@dataclass(frozen=True)
class Profiled(MeasuredCount):
    """A live torch.nn.Module profiled by torch (torchref/profile.py).

    `measure(batch, seq)` returns a Measurement: at exactly batch x seq token ids
    where the inputs are built for the asked shape (`probe`), else of the fixed
    example inputs, scaled linearly from their batch. None: no inputs are
    known, and FLOPs and activations are unknown (`why`)."""

    measure: Callable[[int, int], Measurement] | None = field(default=None, compare=False, repr=False)
    probe: bool = False  # measure builds inputs of the asked batch x seq
    example_seq: int | None = None  # the fixed example inputs' sequence length
    why: str = ""  # why nothing was measured

    @property
    def fixed_seq_len(self) -> int | None:
        if self.measure is None or self.probe:
            return None
        return self.example_seq or 1

    def seq_notes(self, asked: int | None) -> list[str]:
        if self.fixed_seq_len is None:
            return []
        ignored = " (the sequence length asked is ignored)" if asked is not None else ""
        return [f"the example inputs fix the sequence: {self.fixed_seq_len} per sample{ignored}"]

    def _at(self, batch: int, seq: int) -> Measurement | None:
        return None if self.measure is None else self.measure(batch, seq)

    def _scale(self, m: Measurement, value: int, batch: int) -> int:
        return value if m.batch == batch else value * batch // m.batch

    def forward_flops(self, batch: int, seq: int) -> tuple[int | None, str]:
        m = self._at(batch, seq)
        if m is None:
            return None, self.why
        scaled = "" if m.batch == batch else f", scaled linearly from their batch of {m.batch} to {batch}"
        return self._scale(m, m.forward_flops, batch), (
            f"FLOPs measured by torch FlopCounterMode over one forward and one backward of {self.model_class} on "
            f"{m.inputs}{scaled} (2 per multiply-add; elementwise work not counted)")

    def backward_flops(self, batch: int, seq: int, forward: int) -> tuple[int, str]:
        m = self._at(batch, seq)
        assert m is not None, "forward_flops measured it first"
        return self._scale(m, m.backward_flops, batch), "backward measured (frozen weights get no weight gradient)"

    def saved_bytes(self, batch: int, seq: int, dtype_bytes: int) -> int | None:
        """Measured saved bytes; floating storages in the parameters' dtype rescaled to `dtype_bytes`
        (a module measured in fp32 trains in bf16 with half of them)."""
        m = self._at(batch, seq)
        if m is None:
            return None
        like = m.saved_param_dtype_bytes
        at = m.saved_bytes - like + like * dtype_bytes // m.param_dtype_bytes
        return self._scale(m, at, batch)


__all__ = ["Measurement", "Part", "Profiled"]
