"""`paramcalc plan PIPELINE.yaml`: a training pipeline's batches, steps, FLOPs,
memory and cost, stage by stage, checked against hand computation from the
library's own counts (count_flops, estimate_memory, estimate_cost)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cli import assert_user_error, run
from paramcalc.analysis.cost import estimate_cost
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.plan import plan_pipeline
from paramcalc.analysis.search import rungs
from paramcalc.errors import UserError

EXAMPLES = Path(__file__).parent.parent / "examples"
H100_BF16 = 989_400_000_000_000  # dense BF16 FLOP/s, the catalog's h100-sxm entry (whitepaper, sparse / 2)
H100_BYTES = 85_899_345_920  # 80 GiB
LLAMA_H, LLAMA_V = 4096, 128_256  # llama-3.1-8b hidden size and vocabulary: its LM head is 2hV FLOPs per token

PRETRAIN = {"name": "pretrain", "kind": "pretrain", "tokens": "1e12", "seq_len": 8192, "global_batch": 512,
            "micro_batch": 1, "parallel": {"dp": 64, "zero": 3, "attention": "flash", "recompute": "full"}}


def write(tmp_path: Path, doc: dict | str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def plan(tmp_path: Path, *stages: dict, **top) -> object:
    return plan_pipeline(write(tmp_path, {"model": "llama-3.1-8b", "gpu": "h100-sxm", "mfu": 0.4, **top,
                                          "stages": list(stages)}))


def forward(target: str, seq: int, batch: int = 1) -> int:
    return count_flops(target, seq_len=seq, batch=batch).flops.forward


# ---------------------------------------------------------------- the training plan of one stage


def test_a_1t_token_pretrain_at_batch_512_on_64_gpus_accumulates_8_micro_batches(tmp_path):
    s = plan(tmp_path, PRETRAIN).stages[0]
    assert s.grad_accum == 8  # 512 / (1 x 64)
    assert s.tokens_per_step == 512 * 8192 == 4_194_304
    assert s.steps == 10**12 // (512 * 8192) == 238_418
    assert s.tokens == s.steps * s.tokens_per_step
    assert s.gpus == 64
    step = 3 * forward("llama-3.1-8b", 8192, 512)  # forward + backward of one global batch
    assert s.flops == s.steps * step
    assert s.time_per_step_seconds == pytest.approx(step / (64 * H100_BF16 * 0.4), rel=1e-12)
    assert s.wall_clock_hours == pytest.approx(s.steps * s.time_per_step_seconds / 3600, rel=1e-9)


def test_a_stages_flops_and_gpu_hours_equal_paramcalc_cost_for_the_same_tokens(tmp_path):
    s = plan(tmp_path, PRETRAIN).stages[0]
    c = estimate_cost("llama-3.1-8b", tokens=s.tokens, gpu="h100-sxm", gpus=64, mfu=0.4, seq_len=8192).cost
    assert s.flops == c.training_flops
    assert s.gpu_hours == pytest.approx(c.gpu_hours, rel=1e-12)
    assert s.wall_clock_hours == pytest.approx(c.wall_clock_hours, rel=1e-12)
    assert s.usd == pytest.approx(c.usd, rel=1e-12)


def test_dataset_tokens_times_epochs_or_samples_set_the_budget(tmp_path):
    by_tokens = {**PRETRAIN, "name": "a", "tokens": "6e9"}
    by_epochs = {**PRETRAIN, "name": "b", "dataset_tokens": "2e9", "epochs": 3}
    by_samples = {**PRETRAIN, "name": "c", "samples": 1000, "epochs": 2.5}
    for key in ("tokens",):
        by_epochs.pop(key), by_samples.pop(key)
    a, b, c = plan(tmp_path, by_tokens, by_epochs, by_samples).stages
    assert a.steps == b.steps == 6 * 10**9 // (512 * 8192)
    assert c.steps == 2500 // 512 == 4  # 1000 sequences x 2.5 epochs, 512 per step


def test_the_learning_rate_phases_split_the_steps(tmp_path):
    fraction = plan(tmp_path, {**PRETRAIN, "lr": {"warmup_fraction": 0.01, "decay": "linear"}}).stages[0]
    assert fraction.lr.warmup_steps == 2384  # floor(0.01 x 238,418)
    assert fraction.lr.decay_steps == 238_418 - 2384
    assert fraction.lr.decay == "linear"
    steps = plan(tmp_path, {**PRETRAIN, "lr": {"warmup_steps": 2000}}).stages[0]
    assert (steps.lr.warmup_steps, steps.lr.decay_steps) == (2000, 236_418)


def test_a_warmup_longer_than_the_stage_is_a_break(tmp_path):
    s = plan(tmp_path, {**PRETRAIN, "tokens": "1e9", "lr": {"warmup_steps": 1000}}).stages[0]
    assert s.steps == 238
    assert [b.field for b in s.breaks] == ["stages[0].lr.warmup_steps"]


def test_a_global_batch_that_does_not_divide_reports_the_numbers_and_the_nearest_valid_batch(tmp_path):
    s = plan(tmp_path, {**PRETRAIN, "global_batch": 500}).stages[0]
    assert s.grad_accum is None
    [b] = s.breaks
    assert b.field == "stages[0].global_batch"
    assert "global_batch 500" in b.message and "1 x 64 = 64" in b.message
    assert "nearest valid global batch: 512" in b.fix  # 448 and 512 are the neighbours; 512 is 12 away
    assert s.steps == 10**12 // (500 * 8192)  # steps and cost still follow the batch as given


def test_the_break_is_shown_by_the_command_which_still_exits_0(tmp_path):
    path = write(tmp_path, {"model": "llama-3.1-8b", "stages": [{**PRETRAIN, "global_batch": 500}]})
    r = run("plan", path, "--json")
    assert r.code == 0, r.err
    assert r.json["totals"]["breaks"] == 1
    table = run("plan", path)
    assert "nearest valid global batch: 512" in table.out


def test_a_micro_batch_that_does_not_fit_reports_the_largest_that_does(tmp_path):
    stage = {**PRETRAIN, "micro_batch": 8, "parallel": {"dp": 64, "zero": 3, "attention": "flash"}}
    s = plan(tmp_path, stage).stages[0]
    m = s.memory
    assert m.fits is False and m.peak_per_gpu > H100_BYTES
    assert any(b.field == "stages[0].micro_batch" for b in s.breaks)
    largest = m.max_micro_batch
    assert 1 <= largest < 8

    def total(micro):
        return estimate_memory("llama-3.1-8b", seq_len=8192, batch=micro, zero=3, dp=64,
                               attention="flash").memory.total_per_gpu

    assert total(largest) <= H100_BYTES < total(largest + 1)
    assert m.peak_per_gpu == total(8)


def test_memory_is_estimate_memory_with_the_stages_parallel_settings(tmp_path):
    s = plan(tmp_path, PRETRAIN).stages[0]
    m = estimate_memory("llama-3.1-8b", seq_len=8192, batch=1, zero=3, dp=64, attention="flash", recompute="full")
    assert s.memory.peak_per_gpu == m.memory.total_per_gpu
    assert s.memory.fits
    assert s.memory.max_micro_batch >= 1


# ---------------------------------------------------------------- reward, ppo, dpo


def test_a_reward_model_swaps_the_lm_head_for_a_scalar_one(tmp_path):
    s = plan(tmp_path, {"name": "rm", "kind": "reward", "samples": 1024, "seq_len": 2048, "global_batch": 64,
                        "micro_batch": 1, "parallel": {"dp": 64, "zero": 3}}).stages[0]
    assert s.sequences_per_sample == 2 and s.tokens_per_step == 64 * 2 * 2048
    assert s.steps == 16
    tokens = 2 * 64 * 2048  # one step: chosen and rejected of 64 pairs
    per_step = 3 * (forward("llama-3.1-8b", 2048, 128) - 2 * tokens * LLAMA_H * LLAMA_V + 2 * tokens * LLAMA_H)
    assert s.flops == 16 * per_step
    assert s.flops < 16 * 3 * forward("llama-3.1-8b", 2048, 128)  # the LM's FLOPs would err high


def test_dpo_is_three_policy_forwards_on_two_sequences_plus_two_reference_forwards(tmp_path):
    # convention: per pair, policy forward + backward (3 x forward) on chosen and rejected, frozen reference
    # forward on both; with the reference the policy itself: 8 forwards of one sequence per pair
    s = plan(tmp_path, {"name": "dpo", "kind": "dpo", "samples": 2560, "seq_len": 2048, "global_batch": 128,
                        "micro_batch": 1, "parallel": {"dp": 32, "zero": 3}}).stages[0]
    one = forward("llama-3.1-8b", 2048)
    assert s.steps == 20 and s.grad_accum == 4
    assert s.flops_breakdown == {"policy/train": 20 * 128 * 3 * one * 2, "reference/forward": 20 * 128 * one * 2}
    assert s.flops == 20 * 128 * 8 * one


def test_a_dpo_reference_can_be_another_target_relative_to_the_file(tmp_path):
    (tmp_path / "models").mkdir()
    ref = tmp_path / "models" / "ref.yaml"
    ref.write_text("vocab_size: 128256\nhidden_size: 1024\nnum_hidden_layers: 4\nnum_attention_heads: 8\n"
                   "intermediate_size: 4096\n")
    s = plan(tmp_path, {"name": "dpo", "kind": "dpo", "samples": 256, "seq_len": 2048, "global_batch": 128,
                        "micro_batch": 1, "reference": "models/ref.yaml", "parallel": {"dp": 32, "zero": 3}}).stages[0]
    assert s.flops_breakdown["reference/forward"] == 2 * 128 * 2 * forward(str(ref), 2048)
    assert s.memory.breakdown["reference/weights"] > 0


PPO = {"name": "ppo", "kind": "ppo", "iterations": 10, "rollout_batch": 64, "prompt_tokens": 512,
       "response_tokens": 256, "ppo_epochs": 2, "global_batch": 32, "micro_batch": 1, "generation_mfu": 0.1,
       "parallel": {"dp": 16, "zero": 3, "recompute": "full"}}


def test_a_ppo_iteration_decomposes_into_generation_scoring_and_updates(tmp_path):
    s = plan(tmp_path, PPO).stages[0]
    B, P, R = 64, 512, 256
    S = P + R
    head = 2 * LLAMA_H * LLAMA_V  # per token
    lm = forward("llama-3.1-8b", S, B)  # policy and reference over prompt + response
    scalar = lm - B * S * head + B * S * 2 * LLAMA_H  # reward model and critic: one score per token
    # generation = the causal forward of the P + R - 1 tokens fed in (the last token is never fed back),
    # with logits for only the last of the P prompt tokens
    generation = count_flops("llama-3.1-8b", seq_len=S - 1, batch=B, attention="causal").flops.forward \
        - B * (P - 1) * head
    parts = s.flops_breakdown
    assert parts["generation/prefill"] + parts["generation/decode"] == 10 * generation
    assert parts["policy/logprobs"] == parts["reference/forward"] == 10 * lm
    assert parts["reward_model/forward"] == parts["critic/values"] == 10 * scalar
    assert parts["policy/train"] == 10 * 2 * 3 * lm
    assert parts["critic/train"] == 10 * 2 * 3 * scalar
    assert s.flops == 10 * (generation + 2 * lm + 2 * scalar + 6 * lm + 6 * scalar)
    gen_seconds = generation / (16 * H100_BF16 * 0.1)
    rest = (2 * lm + 2 * scalar + 6 * lm + 6 * scalar) / (16 * H100_BF16 * 0.4)
    assert s.wall_clock_hours == pytest.approx(10 * (gen_seconds + rest) / 3600, rel=1e-9)
    assert s.steps == 10 * 2 * (64 // 32)  # iterations x ppo_epochs x mini-batches per rollout
    assert s.grad_accum == 2  # 32 / (1 x 16)
    assert s.generated_tokens == 10 * B * R


def test_ppo_memory_holds_two_trained_models_and_two_frozen_ones(tmp_path):
    m = plan(tmp_path, PPO).stages[0].memory
    policy = estimate_memory("llama-3.1-8b", seq_len=768, batch=1, zero=3, dp=16, attention="flash",
                             recompute="full").memory
    assert m.breakdown["policy/model_states"] == policy.model_states_per_gpu
    assert m.breakdown["reference/weights"] == -(-2 * 8_030_261_248 // 16)  # bf16 weights, ZeRO-3 sharded
    frozen = m.breakdown["reference/weights"] + m.breakdown["reward_model/weights"]
    critic_states = m.breakdown["critic/model_states"]
    assert m.peak_per_gpu >= policy.total_per_gpu + critic_states + frozen
    assert "critic/model_states" in m.breakdown and "reward_model/model_states" not in m.breakdown


def test_ppo_defaults_its_reward_model_and_critic_to_the_reward_stages_model(tmp_path):
    tiny = tmp_path / "rm.yaml"
    tiny.write_text("vocab_size: 128256\nhidden_size: 1024\nnum_hidden_layers: 2\nnum_attention_heads: 8\n"
                    "intermediate_size: 4096\nname: tiny-rm\n")
    report = plan(tmp_path, {"name": "rm", "kind": "reward", "model": "rm.yaml", "samples": 64, "seq_len": 512,
                             "global_batch": 64, "parallel": {"dp": 64}}, PPO)
    models = report.stages[1].models
    assert models["policy"] == "llama-3.1-8b"
    assert models["reward_model"] == models["critic"] == "tiny-rm (scalar head)"


def test_a_ppo_policy_must_generate(tmp_path):
    with pytest.raises(UserError, match="ppo generates text"):
        plan(tmp_path, {**PPO, "model": "bert-base-uncased"})


def test_an_encoder_pretrains_as_a_masked_lm(tmp_path):
    s = plan(tmp_path, {**PRETRAIN, "model": "bert-base-uncased", "seq_len": 512}).stages[0]
    assert s.objective.startswith("masked LM")
    assert s.flops == s.steps * 3 * forward("bert-base-uncased", 512, 512)


def test_a_bare_count_costs_6n_per_token_and_leaves_memory_unknown(tmp_path):
    s = plan(tmp_path, {**PRETRAIN, "model": "7B"}).stages[0]
    assert s.flops == 6 * 7 * 10**9 * s.tokens
    assert s.memory.peak_per_gpu is None and s.memory.fits is None


@pytest.mark.parametrize("model,seq", [("small-cnn.yaml", 1), ("lstm-lm.yaml", 64), ("resnet-50", 1)])
def test_a_layers_network_pretrains_through_the_same_plan(tmp_path, model, seq):
    """A CNN or RNN written as `architecture: layers` (or the resnet-50 preset) plans like any
    model: 3 x its forward per sample, its memory from estimate_memory, no break."""
    target = str(EXAMPLES / model) if model.endswith(".yaml") else model
    stage = {"name": "train", "kind": "pretrain", "samples": 50_000, "epochs": 2, "seq_len": seq, "global_batch": 256,
             "micro_batch": 32, "parallel": {"dp": 8}}
    report = plan(tmp_path, stage, model=target, gpu="a100-80gb")
    s = report.stages[0]
    assert s.steps == 2 * 50_000 * seq // (256 * seq) and s.breaks == []
    assert s.flops == s.steps * 3 * count_flops(target, seq_len=seq, batch=256).flops.forward
    assert s.memory.peak_per_gpu == estimate_memory(target, seq_len=seq, batch=32, dp=8, attention="flash").memory \
        .total_per_gpu and s.memory.fits
    assert run("plan", write(tmp_path, {"model": target, "stages": [stage]}), "--json").code == 0


# ---------------------------------------------------------------- hyperparameter search


def stage_search(tmp_path, **search):
    return plan(tmp_path, PRETRAIN, search={"gpus_per_trial": 8, "pool_gpus": 32, "trial_tokens": "1e9", **search})


def test_a_grid_of_3_by_4_values_runs_12_trials(tmp_path):
    report = stage_search(tmp_path, method="grid", space={"lr": [1e-4, 3e-4, 1e-3], "warmup": [0, 100, 200, 400]})
    s, stage = report.search, report.stages[0]
    assert s.trials == 12 and s.space == {"lr": 3, "warmup": 4}
    assert s.parallel_trials == 4  # 32 // 8
    trial_hours = stage.gpu_hours * 10**9 / stage.tokens
    [rung] = s.rungs
    assert rung.waves == 3  # ceil(12 / 4)
    assert s.gpu_hours == pytest.approx(12 * trial_hours, rel=1e-12)
    assert s.wall_clock_hours == pytest.approx(3 * trial_hours / 8, rel=1e-12)
    assert s.flops == 12 * (stage.flops * 10**9 // stage.tokens)


def test_random_search_runs_its_trials_in_waves_of_the_pool(tmp_path):
    s = stage_search(tmp_path, method="random", trials=10).search
    assert s.trials == 10 and s.rungs[0].waves == 3  # ceil(10 / 4)


def test_successive_halving_with_27_trials_and_eta_3_has_rungs_27_9_3_1():
    assert rungs("halving", trials=27, eta=3, space=None, tokens=100) == [(27, 100), (9, 300), (3, 900), (1, 2700)]
    assert sum(n * r for n, r in rungs("halving", trials=27, eta=3, space=None, tokens=100)) == 4 * 27 * 100


def test_successive_halving_costs_the_sum_over_rungs_of_trials_times_budget(tmp_path):
    report = stage_search(tmp_path, method="halving", trials=27, eta=3)
    s, stage = report.search, report.stages[0]
    assert [(r.trials, r.budget_tokens) for r in s.rungs] == [(27, 10**9), (9, 3 * 10**9), (3, 9 * 10**9),
                                                              (1, 27 * 10**9)]
    assert [r.waves for r in s.rungs] == [7, 3, 1, 1]  # ceil(n / 4)
    trial_hours = stage.gpu_hours * 10**9 / stage.tokens  # one trial on the first rung's 1e9 tokens
    assert s.gpu_hours == pytest.approx(108 * trial_hours, rel=1e-12)  # 27 + 27 + 27 + 27 budgets of 1e9
    assert s.wall_clock_hours == pytest.approx((7 + 3 * 3 + 9 + 27) * trial_hours / 8, rel=1e-12)
    resumed = stage_search(tmp_path, method="halving", trials=27, eta=3, resume=True).search
    assert resumed.gpu_hours == pytest.approx((27 + 9 * 2 + 3 * 6 + 18) * trial_hours, rel=1e-12)


def test_a_trial_can_be_a_fraction_of_a_named_stage(tmp_path):
    sft = {**PRETRAIN, "name": "sft", "kind": "sft", "tokens": "1e10"}
    report = plan(tmp_path, PRETRAIN, sft, search={"method": "random", "trials": 4, "stage": "sft",
                                                   "trial_fraction": 0.5, "gpus_per_trial": 64, "pool_gpus": 64})
    s, stage = report.search, report.stages[1]
    assert s.stage == "sft"
    assert s.rungs[0].budget_tokens == stage.tokens // 2
    assert s.gpu_hours == pytest.approx(4 * stage.gpu_hours / 2, rel=1e-12)


# ---------------------------------------------------------------- the whole pipeline and its file


def test_the_example_pipeline_plans_every_stage_without_a_break():
    report = plan_pipeline(EXAMPLES / "pipeline.yaml")
    assert [s.kind for s in report.stages] == ["pretrain", "sft", "reward", "ppo", "dpo"]
    assert report.totals.breaks == 0
    assert all(s.memory.fits for s in report.stages)
    parts = report.stages + [report.search]
    assert report.totals.flops == sum(p.flops for p in parts)
    assert report.totals.gpu_hours == pytest.approx(sum(p.gpu_hours for p in parts))
    assert report.totals.usd == pytest.approx(sum(p.usd for p in parts))


def test_json_is_one_document_with_exact_integers():
    r = run("plan", EXAMPLES / "pipeline.yaml", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["schema_version"] == 1 and doc["command"] == "plan"
    assert isinstance(doc["totals"]["flops"], int) and isinstance(doc["totals"]["gpu_hours"], float)
    pretrain = doc["stages"][0]
    assert isinstance(pretrain["flops"], int) and isinstance(pretrain["memory"]["peak_per_gpu"], int)
    assert doc["search"]["method"] == "halving"


@pytest.mark.parametrize("text,fragments", [
    ("stages:\n  - kind: pretrain\n    tokens: [1, 2\n", ["pipeline.yaml:4:1", "invalid YAML"]),
    ("model: llama-3.1-8b\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 2048\n    global_batch: 8\n"
     "    micro_batchs: 1\n", ["pipeline.yaml:7:5", "stages[0].micro_batchs", "did you mean micro_batch"]),
    ("model: llama-3.1-8b\nstages:\n  - kind: pretrain\n    tokens: lots\n    seq_len: 2048\n    global_batch: 8\n",
     ["pipeline.yaml:4:5", "stages[0].tokens", "'lots' is not a number"]),
    ("model: llama-3.1-8b\nstages:\n  - kind: rlhf\n", ["pipeline.yaml:3:5", "stages[0]: unknown kind 'rlhf'"]),
    ("model: llama-3.1-8b\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 2048\n",
     ["pipeline.yaml:3:5", "stages[0].global_batch", "required key missing"]),
    ("model: llama-3.1-8b\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 2048\n    global_batch: 8\n"
     "    gpu: h1000\n", ["pipeline.yaml:7:5", "stages[0].gpu", "unknown GPU 'h1000'"]),
    ("model: llama-9b\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 2048\n    global_batch: 8\n",
     ["pipeline.yaml:1:1", "model", "not a file, a preset or a parameter count"]),
    ("model: gpt2\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 4096\n    global_batch: 8\n",
     ["pipeline.yaml:5:5", "stages[0].seq_len", "1024 learned positions"]),
    ("model: gpt2\nstages:\n  - kind: pretrain\n    tokens: 1T\n    dataset_tokens: 1T\n    seq_len: 512\n"
     "    global_batch: 8\n", ["pipeline.yaml:3:5", "exactly one of tokens, dataset_tokens and samples"]),
    ("model: gpt2\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 512\n    global_batch: 8\n"
     "search:\n  method: grid\n  trial_tokens: 1e9\n  gpus_per_trial: 8\n  pool_gpus: 64\n",
     ["pipeline.yaml:7:1", "search: a grid search needs `space:`"]),
    ("model: gpt2\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 512\n    global_batch: 8\n"
     "search:\n  method: random\n  trials: 4\n  stage: sft\n  trial_tokens: 1e9\n  gpus_per_trial: 8\n"
     "  pool_gpus: 64\n",
     ["pipeline.yaml:10:3", "search.stage: no stage named 'sft'"]),
    ("model: gpt2\nstages:\n  - kind: pretrain\n    tokens: 1T\n    seq_len: 512\n    global_batch: 8\n"
     "    parallel: {dp: 8, optimizer: adamm}\n", ["pipeline.yaml:7:23", "stages[0].parallel.optimizer", "'adamw'"]),
])
def test_a_bad_pipeline_file_exits_2_naming_line_column_and_field(tmp_path, text, fragments):
    # line:column of the offending key (its value's key for a bad value), then the field's dotted path
    assert_user_error(run("plan", write(tmp_path, text)), *fragments)


def test_a_tag_in_the_pipeline_file_is_refused_not_executed(tmp_path):
    path = write(tmp_path, "model: !!python/object/apply:os.system ['echo pwned']\nstages: []\n")
    r = run("plan", path)
    assert_user_error(r, "refused YAML tag")
    assert "pwned" not in r.out


# ---------------------------------------------------------------- Bayesian optimisation (issue #19)


@pytest.mark.parametrize("trials,parallel,batches", [(20, 1, 20), (20, 4, 5), (10, 4, 3), (1, 4, 1)])
def test_bayesian_costs_trials_gpu_hours_in_sequential_batches_of_parallel(tmp_path, trials, parallel, batches):
    report = stage_search(tmp_path, method="bayesian", trials=trials, parallel=parallel)
    s, stage = report.search, report.stages[0]
    trial_hours = stage.gpu_hours * 10**9 / stage.tokens
    assert s.method == "bayesian" and s.trials == trials and s.parallel_trials == parallel
    [rung] = s.rungs
    assert rung.waves == batches == -(-trials // parallel)
    assert s.gpu_hours == pytest.approx(trials * trial_hours, rel=1e-12)  # trials x the trial's cost
    assert s.wall_clock_hours == pytest.approx(batches * trial_hours / 8, rel=1e-12)  # ceil(N / parallel) x time
    assert s.flops == trials * (stage.flops * 10**9 // stage.tokens)
    random = stage_search(tmp_path, method="random", trials=trials).search
    assert s.gpu_hours == pytest.approx(random.gpu_hours, rel=1e-12)  # same GPU-hours, a different clock
    assert any("Snoek" in n for n in s.notes)


@pytest.mark.parametrize("search,fragments", [
    ({"method": "bayesian", "trials": 20}, ["search.parallel", "needs `parallel`"]),
    ({"method": "bayesian", "trials": 20, "parallel": 0}, ["search.parallel"]),
    ({"method": "bayesian", "trials": 20, "parallel": "many"}, ["search.parallel", "'many'"]),
    ({"method": "bayesian", "trials": 20, "parallel": 5}, ["search.parallel", "exceeds pool_gpus (32)"]),
    ({"method": "random", "trials": 20, "parallel": 2}, ["search.parallel", "is for a bayesian search"]),
    ({"method": "bayesian", "parallel": 2}, ["search", "needs `trials`"]),
])
def test_bad_bayesian_values_exit_2_at_the_key(tmp_path, search, fragments):
    path = write(tmp_path, {"model": "llama-3.1-8b", "stages": [PRETRAIN],
                            "search": {"gpus_per_trial": 8, "pool_gpus": 32, "trial_tokens": "1e9", **search}})
    r = run("plan", path)
    assert r.code == 2
    for fragment in fragments:
        assert fragment in r.err, r.err


def test_the_pipeline_files_choices_are_the_settings_tables():
    """A pipeline file accepts exactly the values the library accepts (inputs/pipeline_file.py
    spells them as Literals for its JSON Schema): a table that grows must grow both."""
    from typing import get_args

    from paramcalc.analysis.settings import DTYPE_BYTES, OFFLOAD, OPTIMIZER_STATE, PRECISION, TRAIN_RECOMPUTE
    from paramcalc.inputs import pipeline_file as pf

    parallel = pf.Parallel.model_fields
    assert set(get_args(pf.Dtype)) == set(DTYPE_BYTES)
    assert set(get_args(pf.Precision)) == set(PRECISION)
    assert set(get_args(pf.Optimizer)) == set(OPTIMIZER_STATE)
    assert set(get_args(parallel["recompute"].annotation)) == set(TRAIN_RECOMPUTE)
    assert set(get_args(parallel["offload"].annotation)) == set(OFFLOAD)
