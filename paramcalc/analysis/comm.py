"""Communication per training step, as a diagnostic (docs/contract.md: the MFU
already absorbs it, so it is never added to GPU-hours).

Ring collectives over N ranks move, per rank (Patarasuk & Yuan 2009):
all-reduce 2(N-1)/N x size, all-gather and reduce-scatter (N-1)/N x size.
- Data parallel (ZeRO-0/1): one gradient all-reduce per step; ZeRO-2
  reduce-scatters gradients and all-gathers updated weights; ZeRO-3 / FSDP
  all-gathers weights in forward and again in backward and reduce-scatters
  gradients: 1.5x ZeRO-0's volume (Rajbhandari et al. 2020, section 7).
  Gradient traffic overlaps the backward pass (it can hide); parameter
  all-gathers are prefetched (they can hide too, behind the previous layer).
- Tensor parallel (Megatron-LM, Shoeybi et al. 2019): 2 all-reduces of the
  b x s x h activations per layer in forward, 2 in backward; on the
  critical path.
- Pipeline (1F1B, Narayanan et al. 2021): activations of b x s x h sent to
  the next stage per micro-batch and their gradients back; the bubble idles
  (p - 1) / (m + p - 1) of the step.
- Expert parallel: a dispatch and a combine all-to-all of the routed tokens
  (k copies of b x s x h) per MoE layer, forward and backward.
Times use the GPU's scale-up link bandwidth per direction.
"""

from __future__ import annotations

from paramcalc.analysis.flops import forward_flops
from paramcalc.analysis.settings import DTYPE_BYTES, PRECISION
from paramcalc.blocks.base import Pass
from paramcalc.blocks.moe import MoE
from paramcalc.catalog import load_gpu
from paramcalc.network import Network, transformer_layer
from paramcalc.results.training import Collective, Communication


def _ring(kind: str, n: int, size: int) -> int:
    if n <= 1:
        return 0
    return 2 * (n - 1) * size // n if kind == "all-reduce" else (n - 1) * size // n


def step_communication(net: Network, p: Pass, *, gpu: str, dp: int = 1, tp: int = 1, pp: int = 1, ep: int = 1,
                       zero: int = 0, micro_batches: int = 1, dtype: str = "bf16", precision: str = "mixed",
                       mfu: float = 0.4, link_bandwidth: float | None = None) -> Communication:
    """`link_bandwidth` (bytes/s per rank) overrides the catalog's link, e.g. the bus
    bandwidth `paramcalc bench-collectives` measured."""
    card = load_gpu(gpu)
    link = link_bandwidth or card.interconnect_bandwidth or card.memory_bandwidth
    x = int(DTYPE_BYTES[dtype])
    params = sum(net.params().values()) // (tp * pp)
    grad_bytes = params * (PRECISION[precision][1] or x)
    weight_bytes = params * x
    out: list[tuple[str, int, bool]] = []
    if zero <= 1:
        out.append(("data-parallel gradient all-reduce", _ring("all-reduce", dp, grad_bytes), True))
    else:
        out.append(("ZeRO gradient reduce-scatter", _ring("reduce-scatter", dp, grad_bytes), True))
        gathers = 2 if zero >= 3 else 1  # ZeRO-3: forward and backward; ZeRO-2: the updated weights once
        out.append((f"ZeRO weight all-gather (x{gathers})", gathers * _ring("all-gather", dp, weight_bytes), True))
    layers = sum(s.count for s in net.layers) // pp
    width = net.width or 0  # a layers network (CNN, RNN) has no one width: no TP/PP traffic
    activation = p.tokens * width * x * micro_batches
    if tp > 1:
        out.append(("tensor-parallel all-reduces (4 per layer)", 4 * layers * _ring("all-reduce", tp, activation),
                    False))
    if pp > 1:
        out.append(("pipeline sends (activations and gradients)", 2 * activation, False))
    mlps = [(s.count, transformer_layer(s).mlp) for s in net.layers]
    moe = [(count, mlp) for count, mlp in mlps if isinstance(mlp, MoE)]
    moe_layers = sum(count for count, _ in moe) // pp
    if ep > 1 and moe_layers:
        k = moe[0][1].top_k
        out.append(("expert-parallel all-to-all (4 per MoE layer)",
                    4 * moe_layers * k * activation * (ep - 1) // ep, False))
    compute = 3 * forward_flops(net, p) * micro_batches / (tp * pp) / (card.peak(dtype) * mfu)
    collectives = [Collective(name=n, bytes_per_gpu=b, seconds=b / link, overlappable=o) for n, b, o in out]
    hidden = sum(c.seconds for c in collectives if c.overlappable)
    exposed = sum(c.seconds for c in collectives if not c.overlappable) + max(0.0, hidden - compute)
    bubble = (pp - 1) / (micro_batches + pp - 1) if pp > 1 else 0.0
    return Communication(collectives=collectives, compute_seconds=compute, exposed_seconds=exposed,
                         bubble_fraction=bubble)


def measured_link_bandwidth(path) -> float:
    """The largest measured bus bandwidth in a `bench-collectives` file (bytes/s per rank)."""
    from pathlib import Path

    from paramcalc.errors import UserError
    from paramcalc.inputs.files import load_mapping

    data = load_mapping(Path(path))
    if data.get("kind") != "paramcalc.collectives" or not isinstance(data.get("busbw_max"), (int, float)):
        raise UserError("not a paramcalc collectives file", where=str(path),
                        fix="write one with `paramcalc bench-collectives --out FILE`")
    return float(data["busbw_max"])
