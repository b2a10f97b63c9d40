"""Ring collectives across nodes (analysis/step.py `_moved`): NCCL's rings go through every rank of
the group inside a node over NVLink before crossing to the next node, one ring per NIC, so the g
ranks a node holds cross together over g NICs. All-to-alls get no such sharing."""

from __future__ import annotations

import pytest

from paramcalc.analysis.step import LATENCY_SCALE_OUT, LATENCY_SCALE_UP, _moved, ring
from paramcalc.catalog import load_gpu

H100 = load_gpu("h100-sxm")  # 8 per node, NVLink 450 GB/s, NDR 50 GB/s per GPU
NVLINK = H100.interconnect.bandwidth * H100.efficiency.link
NIC = H100.network.bandwidth * H100.efficiency.link
SIZE = 2**30


def test_one_rank_per_node_runs_at_one_nic():
    """DP ranks 8 GPUs apart (TP8 fills each node): every ring hop crosses nodes on one NIC."""
    sent, seconds = _moved(H100, 8 * 16, "all-gather", 16, SIZE)
    assert sent == ring("all-gather", 16, SIZE)
    assert seconds == pytest.approx(sent / NIC + LATENCY_SCALE_OUT)


@pytest.mark.parametrize("stride, per_node", [(1, 8), (2, 4), (4, 2)])
def test_ranks_sharing_a_node_cross_over_as_many_nics(stride, per_node):
    n = 32
    sent, seconds = _moved(H100, stride * n, "reduce-scatter", n, SIZE)
    assert seconds == pytest.approx(sent / min(per_node * NIC, NVLINK) + LATENCY_SCALE_OUT)


def test_a_full_node_crosses_on_its_eight_nics_and_all_to_alls_share_nothing():
    sent, seconds = _moved(H100, 64, "all-reduce", 64, SIZE)
    assert seconds == pytest.approx(sent / (8 * NIC) + LATENCY_SCALE_OUT)  # 400 GB/s of NICs, under NVLink's 450
    a2a, a2a_seconds = _moved(H100, 64, "all-to-all", 64, SIZE)
    assert a2a_seconds == pytest.approx(a2a / NIC + LATENCY_SCALE_OUT)
    inside = _moved(H100, 8, "all-gather", 8, SIZE)[1]
    assert inside == pytest.approx(ring("all-gather", 8, SIZE) / NVLINK + LATENCY_SCALE_UP)
