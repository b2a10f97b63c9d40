"""Post-training, issue #20 continued: PPO-ptx, precomputed reference log-probs, frozen models offloaded
to CPU memory, and searches that check each trial fits its GPUs (and sweep models and stage keys)."""

from __future__ import annotations

from pathlib import Path

import yaml
from cli import assert_user_error, run

from paramcalc.analysis.flops import forward_flops
from paramcalc.analysis.offload import host_rate
from paramcalc.analysis.plan import plan_pipeline
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

A100_HOST = host_rate(load_gpu("a100-80gb"))  # its PCIe Gen4 x16 host link's copies

# Llama-2-7B (config.json): h 4096, FFN 11008, 32 layers; 6,738,415,616 parameters
H, F = 4096, 11008
N = 6_738_415_616
LAYER = 4 * H * H + 3 * H * F + 2 * H  # one decoder layer's weights, the largest block
SHARD = 2 * N // 8  # bf16 weights over 8 GPUs at ZeRO-3


def write(tmp_path: Path, *stages: dict, **top) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "mfu": 0.4, **top,
                                    "stages": list(stages)}))
    return path


def plan(tmp_path: Path, *stages: dict, **top):
    return plan_pipeline(write(tmp_path, *stages, **top))


def ppo(**extra) -> dict:
    return {"name": "ppo", "kind": "ppo", "iterations": 10, "rollout_batch": 64, "prompt_tokens": 256,
            "response_tokens": 256, "micro_batch": 2, "parallel": {"dp": 8, "zero": 3}, **extra}


def dpo(**extra) -> dict:
    return {"name": "dpo", "kind": "dpo", "samples": 1000, "epochs": 3, "seq_len": 512, "global_batch": 64,
            "micro_batch": 2, "parallel": {"dp": 8, "zero": 3}, **extra}


# ---------------------------------------------------------------- PPO-ptx


def test_ppo_ptx_trains_one_pretraining_sequence_per_rl_sequence_by_default(tmp_path):
    base = plan(tmp_path, ppo()).stages[0]
    s = plan(tmp_path, ppo(ptx_coef=27.8)).stages[0]
    # 64 sequences of 512 tokens per step, one step per iteration: the same work as the policy's update
    assert s.flops_breakdown["policy/ptx"] == s.flops_breakdown["policy/train"] == 10 * 3 * forward_flops(
        lower("llama-2-7b"), Pass(64, 512))
    assert s.flops == base.flops + s.flops_breakdown["policy/ptx"]
    assert s.memory.peak_per_gpu == base.memory.peak_per_gpu  # its backward runs after the RL loss's


def test_ppo_ptx_tokens_per_step_and_ratio(tmp_path):
    full = plan(tmp_path, ppo(ptx_coef=1)).stages[0].flops_breakdown["policy/ptx"]
    assert plan(tmp_path, ppo(ptx_coef=1, ptx_tokens=32 * 512)).stages[0].flops_breakdown["policy/ptx"] == full // 2
    assert plan(tmp_path, ppo(ptx_coef=1, ptx_ratio=8)).stages[0].flops_breakdown["policy/ptx"] == 8 * full


def test_ptx_and_precomputed_reference_errors_exit_2_at_their_keys(tmp_path):
    assert_user_error(run("plan", write(tmp_path, ppo(ptx_ratio=8))), "stages[0].ptx_ratio", "ptx_coef is 0")
    assert_user_error(run("plan", write(tmp_path, ppo(ptx_coef=1, ptx_tokens=512, ptx_ratio=1))),
                      "stages[0].ptx_ratio")
    assert_user_error(run("plan", write(tmp_path, ppo(reference="precomputed"))), "stages[0].reference",
                      "generated during training")
    assert_user_error(run("plan", write(tmp_path, ppo(reward_offload="gpu"))), "reward_offload")


# ---------------------------------------------------------------- precomputed reference log-probs


def test_a_precomputed_dpo_reference_runs_once_over_the_dataset_and_is_not_resident(tmp_path):
    base = plan(tmp_path, dpo()).stages[0]
    s = plan(tmp_path, dpo(reference="precomputed")).stages[0]
    step = forward_flops(lower("llama-2-7b"), Pass(128, 512))  # 64 pairs, chosen and rejected
    assert base.flops_breakdown["reference/forward"] == 46 * step  # 3,000 pairs / 64 = 46 steps
    # 1,000 pairs x 2 x 512 tokens = 1,024,000 tokens, 15.625 steps' worth, once
    assert s.flops_breakdown == {"policy/train": base.flops_breakdown["policy/train"],
                                 "reference/precompute": step * 1_024_000 // 65_536}
    assert "reference/weights" not in s.memory.breakdown
    assert base.memory.peak_per_gpu - s.memory.peak_per_gpu == SHARD == 1_684_603_904
    assert s.time_per_step_seconds < base.time_per_step_seconds
    assert plan(tmp_path, dpo(precompute_reference=True)).stages[0].flops == s.flops


# ---------------------------------------------------------------- frozen models in CPU memory


def test_an_offloaded_reference_keeps_one_layer_on_the_gpu_and_streams_its_shard_per_micro_batch(tmp_path):
    base = plan(tmp_path, ppo()).stages[0]
    s = plan(tmp_path, ppo(reference_offload="cpu")).stages[0]
    assert s.memory.breakdown["reference/weights"] == 2 * LAYER == 404_766_720
    assert s.memory.breakdown["reference/cpu_offloaded"] == SHARD
    assert base.memory.peak_per_gpu - s.memory.peak_per_gpu == SHARD - 2 * LAYER
    assert s.flops == base.flops
    # 64 sequences / (micro-batch 2 x dp 8) = 4 forwards, each streaming the GPU's shard over PCIe
    assert s.rollout is not None and base.rollout is not None
    assert abs(s.rollout.training_seconds - base.rollout.training_seconds - 4 * SHARD / A100_HOST) < 1e-9


def test_offload_frozen_offloads_the_reference_and_the_reward_model(tmp_path):
    s = plan(tmp_path, ppo(offload_frozen=True)).stages[0]
    assert {k: v for k, v in s.memory.breakdown.items() if k.endswith("cpu_offloaded")} == {
        "reference/cpu_offloaded": SHARD, "reward_model/cpu_offloaded": 1_651_836_928}  # scalar head: N - hV + h
    assert s.memory.breakdown["reward_model/weights"] == 2 * LAYER
    d = plan(tmp_path, dpo(reference_offload="cpu")).stages[0]
    base = plan(tmp_path, dpo()).stages[0]
    # 64 pairs / (2 x 8) = 4 micro-batches a step, each streaming the shard
    assert abs(d.time_per_step_seconds - base.time_per_step_seconds - 4 * SHARD / A100_HOST) < 1e-9


# ---------------------------------------------------------------- searches that check fit


def sft(**extra) -> dict:
    return {"name": "sft", "kind": "sft", "tokens": "1B", "seq_len": 2048, "global_batch": 64, "micro_batch": 1,
            "parallel": {"dp": 8, "zero": 3}, **extra}


def search(**extra) -> dict:
    return {"method": "grid", "trial_tokens": "100M", "gpus_per_trial": 8, "pool_gpus": 8, **extra}


def test_a_full_fine_tune_on_one_gpu_does_not_fit_and_is_not_priced(tmp_path):
    r = plan(tmp_path, sft(), search=search(gpus_per_trial=1, space={"learning_rate": [1e-5, 2e-5]}))
    assert r.search is not None
    [c] = r.search.configurations
    assert (c.trials, c.gpus, c.fits) == (2, 1, False)
    # 16 B/param of states alone is 100 GiB; 127,185,119,244 bytes before transformers' loss counted 12 bytes a
    # logit at its backward peak (4 more over 2,048 tokens x 32,000 entries)
    assert c.peak_per_gpu == 127_185_119_244 + 4 * 2048 * 32000
    assert r.search.unfit_trials == 2 and r.search.trials == 0 and r.search.gpu_hours == 0
    assert r.totals.breaks == 1 and r.search.breaks[0].field == "search.gpus_per_trial"


def test_a_grid_over_model_sizes_prices_each_model_and_drops_the_one_that_does_not_fit(tmp_path):
    r = plan(tmp_path, sft(), search=search(space={"learning_rate": [1, 2],
                                                   "model": ["llama-2-7b", "llama-2-13b", "llama-2-70b"]}))
    assert r.search is not None
    assert [(c.settings["model"], c.trials, c.fits) for c in r.search.configurations] == [
        ("llama-2-7b", 2, True), ("llama-2-13b", 2, True), ("llama-2-70b", 2, False)]
    assert r.search.trials == 4 and r.search.unfit_trials == 2
    # each model's trial costs what its stage costs per token, at MFU 0.4
    seven, thirteen = (plan(tmp_path, sft(model=m)).stages[0] for m in ("llama-2-7b", "llama-2-13b"))
    want = 2 * seven.gpu_hours * 100_000_000 / seven.tokens + 2 * thirteen.gpu_hours * 100_000_000 / thirteen.tokens
    assert abs(r.search.gpu_hours - want) < 1e-9
    assert r.search.breaks[0].field == "search.space" and "llama-2-70b" in r.search.breaks[0].message


def test_stage_keys_are_swept_and_a_rung_beyond_the_stage_budget_warns(tmp_path):
    r = plan(tmp_path, sft(), search={"method": "halving", "trials": 27, "trial_tokens": "100M",
                                      "gpus_per_trial": 1, "pool_gpus": 8,
                                      "space": {"lora.rank": [8, 64], "micro_batch": [1, 4]}})
    assert r.search is not None
    assert [c.settings for c in r.search.configurations] == [
        {"lora.rank": 8, "micro_batch": 1}, {"lora.rank": 8, "micro_batch": 4},
        {"lora.rank": 64, "micro_batch": 1}, {"lora.rank": 64, "micro_batch": 4}]
    assert all(c.fits for c in r.search.configurations) and r.search.unfit_trials == 0
    # rungs of 100M, 300M, 900M and 2.7B tokens: the last exceeds the stage's 999,948,288
    assert len(r.search.warnings) == 1 and r.search.warnings[0].startswith("rung 3: 1 trial(s) on 2,700,000,000")


def test_a_bare_learning_rate_named_like_a_block_stays_a_hyperparameter(tmp_path):
    r = plan(tmp_path, sft(), search=search(space={"lr": [1e-4, 3e-4]}))
    assert r.search is not None and r.search.configurations[0].settings == {} and r.search.trials == 2


def test_bad_swept_values_exit_2_at_the_search_key(tmp_path):
    path = write(tmp_path, sft(), search=search(space={"model": ["llama-2-7b", "no-such-model"]}))
    assert_user_error(run("plan", path), "search.space.model")
    path = write(tmp_path, sft(), search=search(space={"lora.rank": [8, 0]}))
    assert_user_error(run("plan", path), "search.space.lora.rank")
