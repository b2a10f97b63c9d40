"""`paramcalc serve` beyond static batches: continuous batching (--concurrency, --rate) and
speculative decoding (--draft). Closed forms rebuilt from the module's own pieces, so they hold
whatever the catalog's calibration; published figures carry their source and an honest
tolerance (docs/serve-validation.md has the whole table). No timings."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli import assert_user_error, run

from paramcalc.analysis.serve import (
    BLOCK_TOKENS,
    DRIVER_RESERVED,
    KERNEL_SECONDS,
    KERNELS_PER_LAYER,
    estimate_serving,
    expected_tokens,
)
from paramcalc.catalog import load_gpu

# Llama 3.2 1B (meta-llama/Llama-3.2-1B config.json): the draft, not in the catalog.
LLAMA_32_1B = Path(__file__).parent / "data" / "specs" / "llama-3.2-1b.yaml"
# NIM 1.8.0's Llama 3.3 70B setup: 2 x H100 80GB, fp8 (fp8 KV cache), TP2, 5000 in / 500 out
NIM_70B = dict(gpu="h100-sxm", tp=2, dtype="fp8", kv_dtype="fp8", prompt=5000, output=500)


@pytest.fixture
def draft():
    return str(LLAMA_32_1B)


# --- speculative decoding -------------------------------------------------------------------------


@pytest.mark.parametrize("accept,k", [(0.7, 4), (0.5, 2), (0.9, 10)])
def test_expected_tokens_per_verify_step_is_leviathans_eq_1(accept, k):
    assert expected_tokens(accept, k) == pytest.approx((1 - accept ** (k + 1)) / (1 - accept))
    assert expected_tokens(accept, k) == pytest.approx(sum(accept**i for i in range(k + 1)))  # the same series
    assert expected_tokens(0.0, k) == 1 and expected_tokens(1.0, k) == k + 1


def test_a_verify_step_is_k_draft_decodes_and_one_target_forward_over_k_plus_1_tokens(draft):
    """The draft's share is its own TPOT roofline (what `serve DRAFT` prints) k times; at batch 1 the
    target's verify step reads the weights once, so it costs about one plain decode step."""
    args = dict(gpu="h200", dtype="fp8", prompt=512, output=256)
    r = estimate_serving("llama-3.1-70b", batches=[1, 8], draft=draft, accept=0.8, lookahead=5, **args)
    alone = estimate_serving(draft, batches=[1, 8], **args)
    s = r.speculative
    assert s.expected_tokens_per_step == pytest.approx(expected_tokens(0.8, 5))
    for p, plain, d in zip(s.points, r.points, alone.points):
        assert p.draft_seconds == pytest.approx(5 * d.tpot_seconds)
        assert p.step_seconds == pytest.approx(p.draft_seconds + p.verify_seconds)
        assert p.tpot_seconds == pytest.approx(p.step_seconds / s.expected_tokens_per_step)
        assert p.speedup == pytest.approx(plain.tpot_seconds / p.tpot_seconds)
    one = s.points[0]
    assert one.bound == "memory"
    assert r.points[0].tpot_seconds <= one.verify_seconds < 1.05 * r.points[0].tpot_seconds


def test_the_speed_up_shrinks_as_the_batch_makes_the_verify_step_compute_bound(draft):
    r = estimate_serving("llama-3.1-70b", gpu="h200", dtype="fp8", prompt=128, output=512, batches=[1, 32, 256],
                         draft=draft)
    speedups = [p.speedup for p in r.speculative.points]
    assert speedups[0] > 2 and speedups == sorted(speedups, reverse=True)
    assert r.speculative.points[-1].bound == "compute" and speedups[-1] < 1  # verifying 5 tokens a sequence costs
    assert any("shrinks with the batch" in n for n in r.notes)


def test_the_drafts_weights_and_cache_come_out_of_the_kv_capacity(draft):
    """vLLM gives the draft a block per target block: a token of capacity costs both caches."""
    plain = estimate_serving("llama-3.1-70b", gpu="h200", dtype="fp8", batches=[1])
    spec = estimate_serving("llama-3.1-70b", gpu="h200", dtype="fp8", batches=[1], draft=draft)
    d = spec.speculative
    assert d.draft_kv_bytes_per_token == 2 * 16 * 8 * 64 * 2  # 16 layers, 8 KV heads x 64, K and V, bf16
    free = int(0.9 * (load_gpu("h200").memory_bytes - DRIVER_RESERVED)) - plain.weights_per_gpu \
        - plain.working_set_per_gpu - plain.overhead_per_gpu
    want = (free - d.draft_weights_per_gpu) // (plain.kv_cache_bytes_per_token + d.draft_kv_bytes_per_token)
    assert spec.kv_cache_tokens == want // BLOCK_TOKENS * BLOCK_TOKENS < plain.kv_cache_tokens
    assert spec.max_batch < plain.max_batch


def test_speculative_bad_input_exits_2(draft):
    assert_user_error(run("serve", "llama-3.1-8b", "--draft", draft, "--accept", "1.5"), "--accept", "[0, 1]")
    assert_user_error(run("serve", "llama-3.1-8b", "--draft", "no-such-model"), "--draft")
    assert_user_error(run("serve", "llama-3.1-8b", "--draft", "llama-2-7b"), "--draft", "vocabulary")
    assert_user_error(run("serve", "llama-3.1-8b", "--draft", draft, "--lookahead", "0"), "--lookahead")
    assert_user_error(run("serve", "llama-3.1-70b", "--tp", "2", "--pp", "2", "--draft", draft), "--draft")


# --- continuous batching --------------------------------------------------------------------------


def test_one_client_sees_a_lone_prefill_then_plain_decode_steps():
    """Concurrency 1: nothing interleaves. TPOT is the static batch-1 TPOT; TTFT the static batch-1
    prefill plus the decode kernels a step runs beside it (a mixed step keeps both)."""
    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=1024, output=256, batches=[1], concurrency=1)
    p, c = r.points[0], r.continuous.points[0]
    assert c.tpot_seconds == pytest.approx(p.tpot_seconds)
    assert c.ttft_seconds == pytest.approx(p.ttft_seconds + 32 * KERNELS_PER_LAYER * KERNEL_SECONDS)
    assert c.requests_per_second == pytest.approx(1 / (c.ttft_seconds + 255 * c.tpot_seconds))
    assert c.tokens_per_second == pytest.approx(256 * c.requests_per_second)


@pytest.mark.parametrize("batch", [8, 32, 128])
def test_concurrency_equal_to_a_static_batch_agrees_with_it_when_prompts_are_short(batch):
    """128-token prompts among 2,048-token outputs: the interleaved prefill is ~6% of the tokens, so
    continuous batching at C = batch decodes like the static batch (TPOT within 3%: a step in 16 carries a
    prompt chunk and its fixed prefill cost; tokens/s within 3%)."""
    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=128, output=2048, batches=[batch],
                         concurrency=batch)
    p, c = r.points[0], r.continuous.points[0]
    assert p.tpot_seconds <= c.tpot_seconds == pytest.approx(p.tpot_seconds, rel=0.03)
    assert c.tokens_per_second == pytest.approx(p.tokens_per_second, rel=0.03)
    assert c.ttft_seconds < p.ttft_seconds  # a prompt alone in its chunk, not behind the whole batch's


def test_a_rate_finds_the_concurrency_of_littles_law():
    r = estimate_serving("llama-3.1-70b", batches=[1], rate="0.25,1,1.5", **NIM_70B)
    for p, rate in zip(r.continuous.points, (0.25, 1, 1.5)):
        assert not p.saturated and p.offered_rate == rate
        assert p.requests_per_second == pytest.approx(rate, rel=1e-6)
        assert p.concurrency == pytest.approx(rate * p.request_seconds, rel=1e-9)  # C = R x latency
        assert p.request_seconds == pytest.approx(p.ttft_seconds + 499 * p.tpot_seconds)
    latencies = [p.request_seconds for p in r.continuous.points]
    assert latencies == sorted(latencies)  # more load, longer requests


def test_concurrency_is_capped_by_the_kv_capacity_and_the_rest_queue():
    r = estimate_serving("llama-3.1-70b", batches=[1], concurrency="50,84,200", **NIM_70B)
    c = r.continuous
    assert c.max_running == min(r.max_batch, c.max_num_seqs) == r.kv_cache_tokens // 5504 == 84
    below, at, over = c.points
    assert below.running == 50 and below.limited_by is None
    assert at.running == over.running == 84 and over.limited_by == "kv_cache"
    assert over.requests_per_second == pytest.approx(at.requests_per_second)  # the engine runs the same batch
    assert over.ttft_seconds == pytest.approx(200 / over.requests_per_second - 499 * over.tpot_seconds)
    assert over.ttft_seconds > 40 * at.ttft_seconds
    assert any("exceeds the 84 sequences the KV cache holds" in n for n in r.notes)


def test_a_rate_past_the_most_the_replica_sustains_saturates():
    r = run("serve", "llama-3.1-70b", "--tp", "2", "--dtype", "fp8", "--kv-dtype", "fp8", "--prompt", "5000",
            "--output", "500", "--rate", "0.5,50", "--json")
    assert r.code == 0
    c = r.json["continuous"]
    ok, over = c["points"]
    assert not ok["saturated"] and ok["ttft_seconds"] > 0
    assert over["saturated"] and over["ttft_seconds"] is None and over["request_seconds"] is None
    assert over["requests_per_second"] == pytest.approx(c["max_requests_per_second"])
    assert c["max_requests_per_second"] < 50
    assert any("saturates" in n and "without bound" in n for n in r.json["notes"])
    assert r.json["points"][0]["batch"] == 1  # the static batches stay


def test_prompts_past_the_step_budget_queue_for_it():
    """8,192-token prompts into a 2,048-token step budget with 16-token outputs: prefill demand exceeds
    the budget, so every step runs it full (D + prompt x D / (output - 1) = budget) and TTFT queues."""
    r = estimate_serving("llama-3.1-8b", gpu="h100-sxm", prompt=8192, output=16, batches=[1], concurrency=40,
                         max_batched_tokens=2048)
    p = r.continuous.points[0]
    assert p.limited_by == "token_budget"
    d = 2048 * 15 / (8192 + 15)
    assert p.decode_batch == pytest.approx(d) and p.prefill_tokens_per_step == pytest.approx(2048 - d)
    assert p.requests_per_second == pytest.approx(d / (15 * p.tpot_seconds))


def test_continuous_bad_input_exits_2():
    assert_user_error(run("serve", "llama-3.1-8b", "--rate", "-1"), "--rate")
    assert_user_error(run("serve", "llama-3.1-8b", "--concurrency", "0"), "--concurrency")
    assert_user_error(run("serve", "llama-3.1-8b", "--concurrency", "4", "--output", "1"), "--output")
    assert_user_error(run("serve", "llama-3.1-70b", "--concurrency", "4"), "--concurrency", "holds no sequence")


# --- published figures ----------------------------------------------------------------------------

NIM = "NVIDIA NIM LLM benchmarking, Performance, NIM 1.8.0: Llama 3.3 70B, 2 x H100 80G, fp8 TP2, 5000/500"


@pytest.mark.parametrize("concurrency,ttft,itl,tokens", [(1, 406.77e-3, 18.58e-3, 51.67),
                                                          (25, 688.69e-3, 38.75e-3, 623.4),
                                                          (50, 834.51e-3, 59.73e-3, 814.37),
                                                          (250, 88.60532, 93.2e-3, 920.12)])
def test_continuous_batching_matches_nims_concurrency_sweep(concurrency, ttft, itl, tokens):
    """NIM: output tokens/s within 15% (the model errs high, ~+9%), TPOT (NIM's ITL) within 15%
    (errs low, 7-12%), TTFT within 35% (errs low below the KV limit, -11% to -31%; within 5% at 250,
    where the queue dominates)."""
    p = estimate_serving("llama-3.1-70b", batches=[1], concurrency=concurrency, **NIM_70B).continuous.points[0]
    assert p.tokens_per_second == pytest.approx(tokens, rel=0.15)
    assert p.tpot_seconds == pytest.approx(itl, rel=0.15)
    assert p.ttft_seconds == pytest.approx(ttft, rel=0.35)


TRT_SPEC = "NVIDIA blog, 'Boost Llama 3.3 70B inference throughput 3x with TensorRT-LLM speculative decoding' (2024)"


def test_plain_and_speculative_decoding_of_llama_70b_on_one_h200_match_tensorrt_llm(draft):
    """TRT_SPEC, batch 1, fp8: 51.14 tok/s without a draft (within 15%, errs low ~7%) and 3.55x with
    its best draft. The blog gives no acceptance rate or draft length: the model's 2.4x at the
    defaults (0.7, 4) errs low, and 3.55x sits inside what it gives for acceptances of 0.8-0.95 with
    4 draft tokens; a check of the step costs given an acceptance, not of the acceptance."""
    args = dict(gpu="h200", dtype="fp8", kv_dtype="fp8", prompt=128, output=512, batches=[1])
    plain = estimate_serving("llama-3.1-70b", **args)
    assert 1 / plain.points[0].tpot_seconds == pytest.approx(51.14, rel=0.15)
    default = estimate_serving("llama-3.1-70b", draft=draft, **args).speculative.points[0].speedup
    low, high = (estimate_serving("llama-3.1-70b", draft=draft, accept=a, **args).speculative.points[0].speedup
                 for a in (0.8, 0.95))
    assert default < 3.55 and low < 3.55 < high
