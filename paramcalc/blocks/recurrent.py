"""Recurrent layers: LSTM (Hochreiter & Schmidhuber 1997) and GRU (Cho et al. 2014)
as torch.nn.LSTM and torch.nn.GRU lay them out (PyTorch docs, "Variables"):
per layer k and direction, weight_ih_l{k} (G*H x in_k), weight_hh_l{k}
(G*H x P), bias_ih_l{k} and bias_hh_l{k} (G*H each, two bias vectors as cuDNN
has them), and for an LSTM with proj_size P < H, weight_hr_l{k} (P x H).
G = 4 gates (i, f, g, o) for LSTM, 3 (r, z, n) for GRU; P = proj_size or H;
in_0 = input_size, in_k = directions x P; the reverse direction repeats every
tensor with a `_reverse` suffix.

FLOPs per time step, layer and direction: 2 x (in_k x G H + P x G H) for the
gate matmuls, + 2 x H x P for the projection; gate nonlinearities and the
cell update are elementwise and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.shaped import Shape, Shaped

GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class Recurrent(Shaped):
    """in_shape (input_size,) per time step; the pass's seq is the number of steps."""

    cell: str = "lstm"
    hidden: int = 1
    layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj: int = 0  # LSTM proj_size; 0: none
    dropout: float = 0.0  # between stacked layers (not after the last)
    kind = "recurrent"
    keeps_input = True  # the input-to-hidden matmul's weight gradient

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def width(self) -> int:
        """P: the hidden state each step emits (proj_size or hidden_size)."""
        return self.proj or self.hidden

    @property
    def out_shape(self) -> Shape:
        return (self.directions * self.width,)

    def layer_input(self, k: int) -> int:
        return self.in_shape[0] if k == 0 else self.directions * self.width

    def params(self) -> Breakdown:
        G, H, P = GATES[self.cell], self.hidden, self.width
        out: Breakdown = {}
        for k in range(self.layers):
            for suffix in ("", "_reverse")[: self.directions]:
                out[f"weight_ih_l{k}{suffix}"] = G * H * self.layer_input(k)
                out[f"weight_hh_l{k}{suffix}"] = G * H * P
                if self.bias:
                    out[f"bias_ih_l{k}{suffix}"] = G * H
                    out[f"bias_hh_l{k}{suffix}"] = G * H
                if self.proj:
                    out[f"weight_hr_l{k}{suffix}"] = P * H
        return out

    def flops(self, p: Pass) -> Breakdown:
        G, H, P = GATES[self.cell], self.hidden, self.width
        out: Breakdown = {}
        for k in range(self.layers):
            step = self.layer_input(k) * G * H + P * G * H + (H * P if self.proj else 0)
            out[f"l{k}"] = 2 * p.tokens * self.directions * step
        return out

    def saved_inner(self, p: Pass, a: Activations) -> Breakdown:
        """As autograd keeps it on PyTorch's reference (decomposed) path, per
        step, layer and direction: LSTM h_{t-1} (P), the 4H gate activations,
        c_{t-1} and tanh(c_t) (H each), and the projection's input (H);
        GRU seven H-sized tensors. Each later layer keeps its input, the previous
        layer's outputs (both directions once), and with dropout between
        layers its mask. cuDNN and oneDNN keep one fused workspace of similar
        size instead."""
        H, P, D, L = self.hidden, self.width, self.directions, self.layers
        per_step = P + 6 * H + (H if self.proj else 0) if self.cell == "lstm" else 7 * H
        out = {"steps": a.x * p.tokens * L * D * per_step, "layer_inputs": a.x * p.tokens * (L - 1) * D * P}
        if self.dropout and L > 1:
            out["dropout"] = a.mask_bytes * p.tokens * (L - 1) * D * P
        return out

    def module(self, a: Activations | None = None):
        kwargs = {"proj_size": self.proj} if self.proj else {}
        return _outputs_only(self.cell)(self.in_shape[0], self.hidden, self.layers, bias=self.bias, batch_first=True,
                   bidirectional=self.bidirectional, dropout=self.dropout, **kwargs)


@cache
def _outputs_only(cell: str):
    """nn.LSTM / nn.GRU (batch_first) returning only the per-step outputs, so it chains like any layer."""
    from torch import nn

    class LSTMOutputsOnly(nn.LSTM):
        def forward(self, x, hx=None):
            return super().forward(x, hx)[0]

    class GRUOutputsOnly(nn.GRU):
        def forward(self, x, hx=None):
            return super().forward(x, hx)[0]

    return LSTMOutputsOnly if cell == "lstm" else GRUOutputsOnly
