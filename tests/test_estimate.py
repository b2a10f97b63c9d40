"""Training at scale (`paramcalc estimate`): a pinned plan is evaluated as given, a
searched plan is the fastest that fits, the step time follows its closed forms
(bubble, collective bytes, links), and the predictions stay near published runs
(docs/scale-validation.md, benchmarks/scale_validation.py)."""

from __future__ import annotations

import math

import pytest
from cli import run

from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.plans import HEADROOM, Knobs, candidates, search
from paramcalc.analysis.step import LATENCY_SCALE_OUT, LATENCY_SCALE_UP, Plan, Work, link, ring, step_time
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

H100 = load_gpu("h100-sxm")
TORCHTITAN_70B = ["llama-3.1-70b", "--gpus", "256", "--tp", "8", "--seq-len", "8192", "--global-batch", "512",
                  "--micro-batch", "16", "--zero", "3", "--recompute", "full"]


def test_a_pinned_plan_is_evaluated_as_given_with_the_memory_commands_bytes():
    doc = run("estimate", *TORCHTITAN_70B, "--json").json
    plan = doc["plan"]
    assert (plan["tp"], plan["pp"], plan["cp"], plan["ep"], plan["dp"]) == (8, 1, 1, 1, 32)
    assert (plan["micro_batch"], plan["micro_batches"], plan["zero"], plan["recompute"]) == (16, 1, 3, "full")
    assert plan["sp"] is True and plan["searched"] is False  # SP goes with TP unless --no-sp
    same = estimate_memory("llama-3.1-70b", seq_len=8192, batch=16, zero=3, dp=32, tp=8, sequence_parallel=True,
                           recompute="full", profile="megatron")
    assert doc["memory"]["total_per_gpu"] == same.memory.total_per_gpu and doc["memory"]["fits"] is True
    s = doc["step"]
    assert s["mfu"] == pytest.approx(s["tflops_per_gpu"] * 1e12 / 989.4e12)
    assert s["tokens_per_second"] == pytest.approx(512 * 8192 / s["seconds"])


def test_a_pinned_plan_that_does_not_fit_still_reports_every_key():
    r = run("estimate", "llama-3.1-405b", "--gpus", "8", "--tp", "8", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["memory"]["fits"] is False and doc["memory"]["total_per_gpu"] > 80 * 2**30
    for key in ("seconds", "mfu", "tflops_per_gpu"):
        assert doc["step"][key] > 0
    assert doc["cost"]["gpu_hours"] > 0 and any("does not fit" in n or "fits" in n for n in doc["notes"])


def test_the_search_is_the_fastest_plan_that_fits():
    """Brute force over every candidate for 70B on 64 GPUs: no plan that fits the searched
    headroom is more than the search's equal-speed margin faster."""
    net = lower("llama-3.1-70b")
    best = search(net, 64, H100, 4096, Knobs(global_batch=256))
    assert best is not None and best.fits and best.plan.gpus == 64
    capacity = H100.memory_bytes * (1 - HEADROOM)
    work = Work.of(net, 4096)
    for plan in candidates(net, 64, H100, 4096, Knobs(global_batch=256), dtype="bf16", attention="flash"):
        t = step_time(net, work, plan, H100).seconds
        if t < best.time.seconds / 1.03:
            m = estimate_memory(net, seq_len=4096, batch=plan.micro_batch, zero=plan.zero, dp=plan.dp, tp=plan.tp,
                                pp=plan.pp, cp=plan.cp, vpp=plan.vpp, micro_batches=plan.micro_batches,
                                sequence_parallel=plan.sp, recompute=plan.recompute, profile="megatron",
                                reshard=plan.reshard).memory.total_per_gpu
            assert m > capacity, plan


def test_without_gpus_the_cluster_is_the_smallest_power_of_two_finishing_within_the_days():
    doc = run("estimate", "llama-3.1-8b", "--tokens", "1T", "--days", "30", "--json").json
    n = doc["plan"]["gpus"]
    assert n & (n - 1) == 0 and doc["memory"]["fits"]
    assert doc["cost"]["wall_clock_hours"] <= 30 * 24
    half = run("estimate", "llama-3.1-8b", "--tokens", "1T", "--gpus", str(n // 2), "--json").json
    assert half["cost"]["wall_clock_hours"] > 30 * 24 or not half["memory"]["fits"]


def test_gpu_hours_are_steps_times_step_time_times_gpus_and_equal_cost_at_that_mfu():
    doc = run("estimate", "llama-3.1-8b", "--gpus", "64", "--tokens", "1T", "--json").json
    steps = 10**12 / (doc["plan"]["global_batch"] * doc["seq_len"])
    assert doc["cost"]["gpu_hours"] == pytest.approx(steps * doc["step"]["seconds"] * 64 / 3600, rel=1e-6)
    cost = run("cost", "llama-3.1-8b", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "64", "--seq-len", "8192",
               "--mfu", str(doc["step"]["mfu"]), "--json").json
    assert cost["cost"]["gpu_hours"] == pytest.approx(doc["cost"]["gpu_hours"], rel=1e-6)


def test_a_given_mfu_fixes_the_step_time_as_cost_does():
    doc = run("estimate", "llama-3.1-8b", "--gpus", "64", "--tokens", "1T", "--mfu", "0.4", "--json").json
    assert doc["step"]["mfu"] == pytest.approx(0.4) and doc["step"]["mfu_source"] == "given"
    cost = run("cost", "llama-3.1-8b", "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "64", "--seq-len", "8192",
               "--mfu", "0.4", "--json").json
    assert doc["cost"]["gpu_hours"] == pytest.approx(cost["cost"]["gpu_hours"], rel=1e-9)


def test_pipeline_bubble_is_p_minus_1_over_v_micro_batch_times():
    """Narayanan et al. 2021, section 2.2: 1F1B idles (p - 1) micro-batch times of a stage;
    v virtual stages divide that by v."""
    net = lower("llama-3.1-70b")
    work = Work.of(net, 4096)
    for vpp in (1, 2, 5):
        plan = Plan(tp=8, pp=4, vpp=vpp, dp=1, global_batch=16, micro_batch=1, zero=0, sp=True)
        t = step_time(net, work, plan, H100)
        per_micro = (t.seconds - t.bubble - t.optimizer) / plan.micro_batches  # dp = 1: nothing else exposed
        assert t.bubble == pytest.approx((4 - 1) / vpp * per_micro, rel=1e-9)


def test_collective_bytes_follow_the_ring_formulas():
    net = lower("llama-3.1-8b")
    work = Work.of(net, 2048)
    plan = Plan(tp=4, dp=4, global_batch=8, micro_batch=1, zero=1, sp=True)
    t = step_time(net, work, plan, H100)
    by = {name.split(" ")[0]: b for name, b, _, _ in t.collectives}
    # TP: 4 all-reduces per layer of the micro-batch's s x h bf16 activations, 2 micro-batches per step
    assert by["tensor-parallel"] == pytest.approx(4 * 32 * 2 * ring("all-reduce", 4, 2048 * 4096 * 2), rel=1e-9)
    # ZeRO-1: fp32 gradients reduce-scattered and bf16 weights all-gathered over dp, of each TP rank's share
    local = 8_030_261_248 / 4
    assert by["gradient"] == pytest.approx(ring("reduce-scatter", 4, 4 * local) + ring("all-gather", 4, 2 * local),
                                           rel=1e-9)
    assert ring("all-reduce", 8, 1000) == 2 * 7 * 1000 / 8 and ring("all-gather", 8, 1000) == 7 * 1000 / 8


def test_groups_beyond_a_node_use_the_network_not_nvlink():
    inside, outside = link(H100, 8), link(H100, 16)
    assert inside == (450e9 * 0.8, LATENCY_SCALE_UP)  # NVLink 4 per direction x link efficiency
    assert outside == (50e9 * 0.8, LATENCY_SCALE_OUT)  # 400 Gb/s InfiniBand NDR per GPU


def test_recomputation_costs_time_and_counts_in_hfu_not_mfu():
    net = lower("llama-3.1-8b")
    work = Work.of(net, 8192)
    times = {r: step_time(net, work, Plan(dp=8, global_batch=8, zero=3, recompute=r), H100) for r in
             ("none", "selective", "full")}
    assert times["none"].seconds < times["selective"].seconds < times["full"].seconds
    full = times["full"]
    assert full.model_flops == times["none"].model_flops
    # one more forward of the layers: the LM head lies outside the checkpointed layers and is not rerun
    assert full.hardware_flops == pytest.approx(full.model_flops * 4 / 3 - 8 * work.head)
    assert full.hardware_flops < full.model_flops * 4 / 3


def test_fp8_trains_about_1_3_times_faster_not_twice():
    """torchtitan (Llama 3 8B, FSDP 8): 6,667 -> 8,532 tokens/s with Float8 (1.28x); NeMo on DGX H100
    (Llama 3.1 8B, 8 GPUs, CP2): 12.27 -> 9.33 s per step (1.32x)."""
    flags = ["--gpus", "8", "--cp", "2", "--global-batch", "128", "--micro-batch", "1", "--recompute", "none",
             "--seq-len", "8192", "--json"]
    bf16 = run("estimate", "llama-3.1-8b", *flags).json
    fp8 = run("estimate", "llama-3.1-8b", *flags, "--dtype", "fp8").json
    assert 1.15 < bf16["step"]["seconds"] / fp8["step"]["seconds"] < 1.5
    assert fp8["memory"]["weights"] == bf16["memory"]["weights"]  # bf16 weights beside the fp8 GEMMs


@pytest.mark.parametrize("flags,measured_seconds", [
    # NVIDIA dgxc-benchmarking llama3.1 README (v25.04), NeMo on DGX H100 80GB, synthetic data, bf16
    (["llama-3.1-8b", "--gpus", "8", "--cp", "2", "--global-batch", "128", "--micro-batch", "1"], 12.27),
    (["llama-3.1-70b", "--gpus", "64", "--tp", "4", "--pp", "4", "--cp", "2", "--vpp", "5", "--global-batch", "128",
      "--micro-batch", "1"], 14.66),
    (["llama-3.1-405b", "--gpus", "512", "--tp", "8", "--pp", "8", "--cp", "2", "--vpp", "8", "--global-batch", "256",
      "--micro-batch", "1"], 19.78),
])
def test_step_time_within_15_percent_of_nemo_on_h100(flags, measured_seconds):
    doc = run("estimate", *flags, "--seq-len", "8192", "--recompute", "none", "--json").json
    assert doc["step"]["seconds"] == pytest.approx(measured_seconds, rel=0.15)
    assert doc["memory"]["fits"]


@pytest.mark.parametrize("gpus,tflops", [(8192, 430), (16384, 400)])
def test_llama_3_405b_table_4_within_20_percent(gpus, tflops):
    """Dubey et al. 2024, table 4: TP8, CP1, PP16, DP64 / DP128, 8K sequences, 16M tokens per batch.
    The model errs low here (Meta's micro-batching and virtual stages are not published)."""
    doc = run("estimate", "llama-3.1-405b", "--gpus", str(gpus), "--tp", "8", "--pp", "16", "--cp", "1",
              "--global-batch", "2048", "--seq-len", "8192", "--json").json
    assert doc["step"]["tflops_per_gpu"] == pytest.approx(tflops, rel=0.20)
    assert doc["memory"]["fits"]


def test_the_plan_cannot_split_the_gpus_given():
    r = run("estimate", "llama-3.1-8b", "--gpus", "12", "--tp", "8")
    assert r.code == 2 and "--gpus" in r.err and "Traceback" not in r.err
    bad = run("estimate", "llama-3.1-8b", "--dtype", "int4")
    assert bad.code == 2 and "--dtype" in bad.err


def test_moe_plans_use_expert_parallelism():
    doc = run("estimate", "mixtral-8x7b", "--gpus", "64", "--seq-len", "4096", "--json").json
    assert doc["plan"]["ep"] > 1 and doc["memory"]["fits"]
    assert doc["plan"]["dp"] * doc["plan"]["cp"] % doc["plan"]["ep"] == 0


def test_estimate_cli_table_and_a_bare_count():
    r = run("estimate", "gpt2", "--tokens", "1B")
    assert r.code == 0 and "MFU" in r.out and "fits" in r.out
    bare = run("estimate", "7B", "--tokens", "1T", "--json").json
    assert bare["memory"] is None and bare["step"]["mfu"] == 0.4 and bare["step"]["mfu_source"] == "assumed"
    assert math.isclose(bare["cost"]["gpu_hours"], 6 * 7e9 * 1e12 / (989.4e12 * 0.4) / 3600, rel_tol=1e-9)


def test_measured_kernel_efficiencies_replace_the_catalogs(tmp_path):
    """A benchmarks/gpu_kernels.py file: its efficiencies drive the step time; keys it lacks keep the catalog's."""
    import json

    flags = ["llama-3.1-8b", "--gpus", "8", "--tp", "1", "--global-batch", "8", "--micro-batch", "1",
             "--recompute", "none", "--seq-len", "2048", "--zero", "1", "--json"]
    slow = tmp_path / "kernels.json"
    slow.write_text(json.dumps({"kind": "paramcalc.kernels", "efficiency": {"gemm_bf16": 0.35, "source": "test"}}))
    base = run("estimate", *flags).json["step"]
    measured = run("estimate", *flags, "--kernels", str(slow)).json
    assert measured["step"]["compute_seconds"] > 1.6 * base["compute_seconds"]  # GEMMs are most of the kernels
    assert any("measured: test" in n for n in measured["notes"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "paramcalc.kernels", "efficiency": {"gemm_bf16": 1.5}}))
    r = run("estimate", *flags, "--kernels", str(bad))
    assert r.code == 2 and "gemm_bf16" in r.err and "Traceback" not in r.err
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"kind": "other"}))
    assert run("estimate", *flags, "--kernels", str(wrong)).code == 2


@pytest.mark.parametrize("flags,named", [
    (["--cp", "2", "--attention", "eager"], "--attention"), (["--pp", "64", "--gpus", "64"], "--pp"),
    (["--cp", "3"], "--cp"), (["--global-batch", "8", "--micro-batch", "16"], "--micro-batch"),
    (["--ep", "2", "--tp", "1", "--cp", "1", "--pp", "1"], "--ep"), (["--vpp", "2", "--pp", "1"], "--vpp"),
    (["--pp", "4", "--vpp", "16", "--tp", "1", "--cp", "1"], "--vpp"),
])
def test_a_pinned_plan_that_cannot_split_names_its_flag(flags, named):
    args = ["estimate", "llama-3.1-8b", *flags] + ([] if "--gpus" in flags else ["--gpus", "8"])
    r = run(*args)
    assert r.code == 2 and named in r.err and "Traceback" not in r.err, r.err


def test_expert_parallelism_shards_expert_state_over_its_own_group():
    """Megatron-Core: routed experts' ZeRO shards span dp x cp / ep ranks, so EP moves expert state
    between GPUs but does not shrink the optimizer state per GPU below the ep = 1 plan's."""
    one = estimate_memory("mixtral-8x7b", dp=64, ep=1, zero=1, seq_len=4096).memory.optimizer
    eight = estimate_memory("mixtral-8x7b", dp=64, ep=8, zero=1, seq_len=4096).memory.optimizer
    assert eight == pytest.approx(one, rel=1e-3)
    weights_one = estimate_memory("mixtral-8x7b", dp=64, ep=1, zero=1, seq_len=4096).memory.weights
    weights_eight = estimate_memory("mixtral-8x7b", dp=64, ep=8, zero=1, seq_len=4096).memory.weights
    assert weights_eight < weights_one / 3  # ZeRO-1 keeps weights whole: EP is what divides them


def test_selective_recomputation_never_makes_a_step_faster():
    net = lower("llama-3.1-8b")
    work = Work.of(net, 4096)
    for attention in ("eager", "flash"):
        t = {r: step_time(net, work, Plan(dp=8, global_batch=8, zero=3, recompute=r, attention=attention),
                          H100).seconds for r in ("none", "selective", "full")}
        assert t["none"] <= t["selective"] < t["full"]


def test_the_last_pipeline_stage_runs_the_head():
    """Llama 3.1 8B: its 128K-vocabulary head is about two layers' work, so at pp 16 the last stage
    (2 layers + the head) is the busiest: far more than a sixteenth of the whole model."""
    net = lower("llama-3.1-8b")
    work = Work.of(net, 8192)
    one = step_time(net, work, Plan(global_batch=1, zero=0), H100)  # all 32 layers and the head
    sixteen = step_time(net, work, Plan(pp=16, global_batch=1, zero=0), H100)
    assert sixteen.compute > 1.5 * one.compute / 16
