"""Serving roofline: decode reads every weight and the whole KV cache once per
step; prefill is compute-bound; tensor parallelism splits both."""

from __future__ import annotations

import pytest

from cli import run
from paramcalc.analysis.serve import estimate_serving

H100_BW, H100_BF16 = 3.35e12, 989.4e12
LLAMA8B = 8_030_261_248


def test_batch_one_decode_is_bandwidth_bound_by_weights_plus_cache():
    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=1024, output=256, batches=[1])
    p = r.points[0]
    cache = 2 * 32 * 8 * 128 * (1024 + 256) * 2  # K and V, 32 layers, 8 KV heads x 128, bf16
    assert r.kv_cache_per_sequence == cache
    assert r.weights_per_gpu == 2 * LLAMA8B
    assert p.decode_bound == "memory"
    assert p.tpot_seconds == pytest.approx((2 * LLAMA8B + cache) / (H100_BW * 0.8))
    assert p.tokens_per_second == pytest.approx(1 / p.tpot_seconds)


def test_prefill_time_is_the_causal_forward_at_compute_efficiency():
    from paramcalc.analysis.flops import count_flops

    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=2048, output=1, batches=[4])
    flops = count_flops("llama-3.1-8b", seq_len=2048, batch=4, attention="causal").flops.forward
    assert r.points[0].ttft_seconds == pytest.approx(flops / (H100_BF16 * 0.6))


def test_tensor_parallelism_splits_weights_and_cache():
    one = estimate_serving("llama-3.1-70b", gpu="h100-sxm", tp=1, batches=[8])
    eight = estimate_serving("llama-3.1-70b", gpu="h100-sxm", tp=8, batches=[8])
    assert not one.points[0].fits and eight.points[0].fits  # 141 GB of bf16 weights need more than one 80 GB card
    assert eight.weights_per_gpu == -(-2 * 70_553_706_496 // 8)
    assert eight.points[0].tpot_seconds < one.points[0].tpot_seconds / 6


def test_capacity_counts_whole_sequences_after_weights():
    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=1024, output=256, batches=[1])
    assert r.max_batch == (85_899_345_920 - 2 * LLAMA8B) // r.kv_cache_per_sequence


def test_serve_cli_json_and_bad_dtype():
    r = run("serve", "mistral-7b", "--batch", "1,16", "--json")
    assert r.code == 0 and [p["batch"] for p in r.json["points"]] == [1, 16]
    bad = run("serve", "mistral-7b", "--kv-dtype", "fp3")
    assert bad.code == 2 and "--kv-dtype" in bad.err


def test_decode_flops_per_token_grow_with_the_context():
    """One new token: every linear once (2 x params, the embedding lookup excluded) plus the
    attention over the cache: 2 x 2 x layers x heads x head_dim x context."""
    from paramcalc.analysis.flops import count_flops

    for seq in (1023, 8191):
        f = count_flops("llama-3.1-8b", seq_len=seq).flops
        linear = 2 * (8_030_261_248 - 128256 * 4096 - 32 * 2 * 4096 - 4096)  # no embedding table, no norms
        assert f.decode_per_token == linear + 4 * 32 * 32 * 128 * (seq + 1)
        assert f.prefill < f.forward  # causal counts about half the score matmuls
