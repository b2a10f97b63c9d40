"""The collective benchmark under torchrun (2 gloo processes on CPU), and its
measured bus bandwidth feeding the communication diagnostic."""

from __future__ import annotations

import pytest

from cli import run
from paramcalc.analysis.estimate import estimate


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("comm") / "comm.json"
    r = run("bench-collectives", "--out", out, "--nproc", "2", "--backend", "gloo", "--max-bytes", "300K", "--json")
    assert r.code == 0, r.err
    return out, r.json


def test_every_collective_is_measured_at_every_size_with_nccl_tests_bus_bandwidth(measured):
    _, data = measured
    assert data["world_size"] == 2 and data["backend"] == "gloo"
    ops = {(r["op"], r["bytes"]) for r in data["results"]}
    assert {op for op, _ in ops} == {"all_reduce", "all_gather", "reduce_scatter"}
    assert len(ops) == 3 * 6  # 1 KiB .. 256 KiB in powers of 4, then the limit itself (300,000 bytes)
    assert max(size for _, size in ops) == 300_000
    for r in data["results"]:
        factor = 2 * (2 - 1) / 2 if r["op"] == "all_reduce" else (2 - 1) / 2
        assert r["busbw"] == pytest.approx(r["algbw"] * factor)
        assert r["algbw"] == pytest.approx(r["bytes"] / r["seconds"])
    assert data["busbw_max"] == max(r["busbw"] for r in data["results"])


def test_estimate_uses_the_measured_link_speed(measured):
    """The measured bus bandwidth replaces the scale-up link: a TP plan inside one node moves the
    same bytes, at that bandwidth plus the fixed collective latency."""
    from paramcalc.analysis.step import LATENCY_SCALE_UP

    path, data = measured
    pinned = dict(gpus=8, tp=8, global_batch=8, micro_batch=1, recompute="none", seq_len=2048)
    catalog = estimate("llama-3.1-8b", **pinned).communication
    slow = estimate("llama-3.1-8b", comm_file=path, **pinned).communication
    a, b = catalog.collectives[0], slow.collectives[0]
    assert a.name == b.name and a.name.startswith("tensor-parallel") and a.bytes_per_gpu == b.bytes_per_gpu
    collectives = 4 * 32 * 8  # 4 per layer, 32 layers, 8 micro-batches
    assert b.seconds == pytest.approx(b.bytes_per_gpu / data["busbw_max"] + collectives * LATENCY_SCALE_UP, rel=1e-6)
    assert b.seconds > a.seconds  # gloo on CPU is far slower than NVLink


def test_unknown_backend_exits_2(tmp_path):
    r = run("bench-collectives", "--out", tmp_path / "x.json", "--backend", "mpi")
    assert r.code == 2 and "--backend" in r.err
