"""RL stages with `placement:` (issue #20): each model on a group of GPUs of its own, as OpenRLHF's
Ray placement groups hold them; each group's memory, the phases of an iteration, and the vLLM
requests of OpenRLHF before v0.5 (`generation.per_request`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli import assert_user_error, run

from paramcalc.analysis.memory import CUDA_CONTEXT, estimate_memory, inference_kv_dtype
from paramcalc.analysis.offload import host_rate
from paramcalc.analysis.plan import plan_pipeline
from paramcalc.analysis.serve import decode_time, kv_shards, prefill_time, serving_rates, serving_weight_bytes
from paramcalc.catalog import load_gpu
from paramcalc.network import lower
from paramcalc.units import human_bytes

A100_HOST = host_rate(load_gpu("a100-80gb"))  # its PCIe Gen4 x16 host link's copies

N = 6_738_415_616  # Llama-2-7B's parameters
PEAK = 312e12  # A100's dense bf16 peak
MFU = 0.5


def ppo(**extra) -> dict:
    return {"name": "ppo", "kind": "ppo", "iterations": 2, "rollout_batch": 64, "prompt_tokens": 256,
            "response_tokens": 256, "global_batch": 32, "parallel": {"zero": 3}, **extra}


def plan(tmp_path: Path, stage: dict, **top):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", **top, "stages": [stage]}))
    return plan_pipeline(path).stages[0]


SPLIT = {"actor": 4, "critic": 4, "reference": 2, "reward_model": 2}


def test_each_group_shards_its_own_models_zero_states_over_its_own_gpus(tmp_path):
    s = plan(tmp_path, ppo(placement=SPLIT, generation={"gpus": 4}))
    r = s.rollout
    assert r is not None and r.groups is not None
    assert [(g.roles, g.gpus, g.dp) for g in r.groups] == [(["policy"], 4, 4), (["reference"], 2, 2),
                                                          (["critic"], 4, 4), (["reward_model"], 2, 2)]
    actor = estimate_memory("llama-2-7b", seq_len=512, zero=3, dp=4).memory
    assert r.groups[0].breakdown["policy/model_states"] == actor.model_states_per_gpu
    assert r.groups[0].peak_per_gpu == actor.total_per_gpu
    # a frozen model alone: its bf16 weights sharded over its 2 GPUs (ZeRO-3), and the CUDA context
    assert r.groups[1].peak_per_gpu == -(-2 * N // 2) + CUDA_CONTEXT
    assert s.gpus == 12 and s.generation_gpus == 4 and s.dp == 4
    assert s.memory.peak_per_gpu == max(g.peak_per_gpu for g in r.groups if g.peak_per_gpu is not None)
    # the actor's 4 GPUs holding every model instead (one pool): the critic's states and both frozen models'
    # weights join the actor's peak, the policy's activations staying the busiest
    pooled = plan(tmp_path, ppo(parallel={"zero": 3, "dp": 4}, generation={"gpus": 4})).memory
    rm_params = r.groups[3].breakdown["reward_model/weights"]  # 2 bytes a parameter over 2 GPUs
    assert rm_params is not None
    assert pooled.peak_per_gpu == (r.groups[0].peak_per_gpu + r.groups[2].breakdown["critic/model_states"]
                                   + -(-2 * N // 4) + -(-2 * rm_params // 4))


def test_an_iteration_is_generation_then_the_slowest_groups_forwards_then_the_slowest_update(tmp_path):
    s = plan(tmp_path, ppo(placement=SPLIT, generation={"gpus": 4}), mfu=MFU)
    r = s.rollout
    assert r is not None and r.groups is not None and r.experience_seconds and r.update_seconds
    f = {k: v / s.iterations for k, v in s.flops_breakdown.items()}
    actor, ref, critic, rm = r.groups
    # each group's passes at its GPUs x peak x MFU (closed form with an explicit MFU)
    assert actor.experience_seconds == pytest.approx(f["policy/logprobs"] / (4 * PEAK * MFU))
    assert ref.experience_seconds == pytest.approx(f["reference/forward"] / (2 * PEAK * MFU))
    assert critic.update_seconds == pytest.approx(f["critic/train"] / (4 * PEAK * MFU))
    assert rm.update_seconds == 0
    assert r.experience_seconds == max(g.experience_seconds for g in r.groups) == ref.experience_seconds
    # the critic trains beside the actor; the weight sync follows the actor's update
    assert r.update_seconds == pytest.approx(max(actor.update_seconds + r.weight_sync_seconds,
                                                 critic.update_seconds))
    assert r.iteration_seconds == pytest.approx(r.generation_seconds + r.experience_seconds + r.update_seconds)
    # every group and the engines are held for the whole iteration
    assert s.gpu_hours == pytest.approx(16 * 2 * r.iteration_seconds / 3600)


def test_colocated_models_share_a_group_and_run_one_after_another(tmp_path):
    s = plan(tmp_path, ppo(placement={"actor": 4, "critic": 4, "colocate_actor_ref": True,
                                      "colocate_critic_reward": True}, generation={"gpus": 8}), mfu=MFU)
    r = s.rollout
    assert r is not None and r.groups is not None
    assert [(g.roles, g.gpus) for g in r.groups] == [(["policy", "reference"], 4), (["critic", "reward_model"], 4)]
    f = {k: v / s.iterations for k, v in s.flops_breakdown.items()}
    actor = r.groups[0]
    assert actor.experience_seconds == pytest.approx((f["policy/logprobs"] + f["reference/forward"])
                                                     / (4 * PEAK * MFU))
    assert actor.breakdown["reference/weights"] == -(-2 * N // 4)
    assert s.gpus == 8 and s.generation_gpus == 8


def test_generation_on_the_actors_group_without_engines_of_its_own(tmp_path):
    s = plan(tmp_path, ppo(placement=SPLIT), mfu=MFU)
    r = s.rollout
    assert r is not None and r.placement == "colocated" and r.generation_gpus == 4 and r.weight_sync_seconds == 0
    assert s.gpus == 12 and s.generation_gpus is None


def test_per_request_generation_decodes_each_ranks_prompts_as_openrlhf_sent_them(tmp_path):
    """OpenRLHF before v0.5: 2 trainer ranks, 2 engines (tp 1), 16 prompts a request: 32 rounds of 16 on
    each engine, each a prefill and R - 1 decode steps of serve.py's roofline at batch 16."""
    stage = ppo(rollout_batch=1024, global_batch=128, response_tokens=1024, prompt_tokens=1024,
                placement={"actor": 2, "critic": 2, "reference": 1, "reward_model": 1},
                generation={"gpus": 2, "per_request": 16})
    r = plan(tmp_path, stage).rollout
    assert r is not None
    net, gpu = lower("llama-2-7b"), load_gpu("a100-80gb")
    rates, w, kv = serving_rates(gpu, "bf16", 1, 1, None, None), serving_weight_bytes(net, "bf16"), \
        inference_kv_dtype("bf16")
    ttft = prefill_time(net, rates, 16, 1024, w, kv, kv_shards(net, 1))[0]
    tpot = decode_time(net, rates, 16, 1024, 1024, w, kv, kv_shards(net, 1))[0]
    assert r.generation_seconds == pytest.approx(32 * (ttft + 1023 * tpot))
    # with more engines than trainer ranks, rank r asks engine r mod engines: two of four sit idle
    idle = plan(tmp_path, {**stage, "generation": {"gpus": 4, "per_request": 16}}).rollout
    assert idle is not None and idle.generation_seconds == pytest.approx(r.generation_seconds)


def test_pipelines_without_placement_plan_as_before(tmp_path):
    s = plan(tmp_path, ppo(parallel={"zero": 3, "dp": 8}, generation={"gpus": 8}))
    assert s.rollout is not None and s.rollout.groups is None and s.rollout.experience_seconds is None
    assert s.rollout.iteration_seconds == pytest.approx(s.rollout.generation_seconds + s.rollout.training_seconds
                                                        + s.rollout.weight_sync_seconds)


def test_placement_errors_exit_2_naming_the_key(tmp_path):
    path = tmp_path / "p.yaml"

    def write(stage: dict) -> Path:
        path.write_text(yaml.safe_dump({"model": "llama-2-7b", "stages": [stage]}))
        return path

    assert_user_error(run("plan", write(ppo(placement={"actor": 4, "critic": 4, "reward_model": 2}))),
                      "reference", "colocate_actor_ref")
    assert_user_error(run("plan", write(ppo(placement={**SPLIT, "actor": 3}, parallel={"tp": 2}))),
                      "placement.actor", "multiple of 2")
    assert_user_error(run("plan", write(ppo(placement=SPLIT, parallel={"dp": 8}))), "parallel.dp", "dp 4")
    grpo = {**ppo(placement=SPLIT), "kind": "grpo", "name": "grpo", "reward": "model"}
    assert_user_error(run("plan", write(grpo)), "placement.critic", "no critic")
    assert_user_error(run("plan", write(ppo(placement={**SPLIT, "colocate_actor_ref": True}))),
                      "colocate_actor_ref", "reference")


def test_the_plan_table_shows_each_rl_stage_s_phases_and_each_group_under_its_row(tmp_path):
    # the critic alone on 1 GPU: its full Adam states do not fit 80 GB, the other groups do
    stage = ppo(placement={**SPLIT, "critic": 1}, generation={"gpus": 4})
    pooled = {**ppo(parallel={"zero": 3, "dp": 8}, generation={"gpus": 4}), "name": "pooled"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [stage, pooled]}))
    placed, plain = plan_pipeline(path).stages
    r, p = placed.rollout, plain.rollout
    assert r is not None and r.groups is not None and p is not None
    assert r.experience_seconds is not None and r.update_seconds is not None
    out = run("plan", path)
    assert out.code == 0, out.err
    rows = [line.split("│")[1:-1] for line in out.out.splitlines() if line.startswith("│")]
    cells = [(c[0].strip(), c[1].strip(), c[7].strip()) for c in rows]
    i = next(k for k, c in enumerate(cells) if c[0] == "ppo")
    assert cells[i][1:] == (f"{placed.gpus} x a100-80gb", human_bytes(placed.memory.peak_per_gpu) + " (no fit)")
    assert cells[i + 1:i + 5] == [(f"└ iteration {r.iteration_seconds:,.1f} s", "", ""),
                                  (f"generation {r.generation_seconds:,.1f} s", "4 x a100-80gb", ""),
                                  (f"experience {r.experience_seconds:,.1f} s", "", ""),
                                  (f"update {r.update_seconds:,.1f} s", "", "")]
    assert cells[i + 5][0] == f"(weight sync {r.weight_sync_seconds:,.2f} s)"
    groups = cells[i + 6:i + 10]
    assert [g[:2] for g in groups] == [("└ policy", "4 x a100-80gb"), ("└ reference", "2 x a100-80gb"),
                                       ("└ critic", "1 x a100-80gb"), ("└ reward_model", "2 x a100-80gb")]
    assert [g.fits for g in r.groups] == [True, True, False, True]
    assert [g[2] for g in groups] == [human_bytes(g.peak_per_gpu) + ("" if g.fits else " (no fit)")
                                      for g in r.groups]
    # without placement: generation, then scoring and training, then the weight sync; no groups
    j = next(k for k, c in enumerate(cells) if c[0] == "pooled (ppo)")
    assert [c[0] for c in cells[j + 1:j + 5]] == [f"└ iteration {p.iteration_seconds:,.1f} s",
                                                  f"generation {p.generation_seconds:,.1f} s",
                                                  f"score + train {p.training_seconds:,.1f} s",
                                                  f"weight sync {p.weight_sync_seconds:,.2f} s"]
    assert not cells[j + 5][0].startswith("└")


def test_each_group_s_update_waits_for_its_offloaded_optimizer_step_on_the_cpu(tmp_path):
    stage = ppo(placement=SPLIT, generation={"gpus": 4}, parallel={"zero": 3, "offload": "optimizer"})
    s = plan(tmp_path, stage, mfu=MFU)
    r = s.rollout
    assert r is not None and r.groups is not None
    f = {k: v / s.iterations for k, v in s.flops_breakdown.items()}
    shard = -(-N // 4)  # the policy's parameters over the actor's 4 GPUs (ZeRO-3)
    # per optimizer step (2 an iteration) of 32 / 4 = 8 micro-batches: DeepSpeed's ZeRO-3 offload moves 8 x 8 + 6
    # bytes a parameter over PCIe, then CPUAdam's 30 bytes a parameter at an eighth of the host's 2 x 204.8 GB/s
    offload = 2 * ((8 * 8 + 6) * shard / A100_HOST + 30 * shard / (2 * 204.8e9 / 8))
    assert r.groups[0].update_seconds == pytest.approx(f["policy/train"] / (4 * PEAK * MFU) + offload)


def test_a_colocated_reference_may_repeat_the_actors_gpus_as_the_error_suggests(tmp_path):
    """`colocate_actor_ref` with another reference count says "drop reference, or set it to 4": set
    to 4, the plan is the colocated one."""
    path = tmp_path / "p.yaml"
    bad = {"actor": 4, "critic": 4, "reward_model": 2, "reference": 2, "colocate_actor_ref": True}
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [ppo(placement=bad)]}))
    assert_user_error(run("plan", path), "colocate_actor_ref", "set it to 4")
    given = plan(tmp_path, ppo(placement={**bad, "reference": 4}), mfu=MFU).rollout
    dropped = plan(tmp_path, ppo(placement={k: v for k, v in bad.items() if k != "reference"}), mfu=MFU).rollout
    assert given is not None and given.groups is not None and dropped is not None
    assert [(g.roles, g.gpus) for g in given.groups] == [(["policy", "reference"], 4), (["critic"], 4),
                                                         (["reward_model"], 2)]
    assert given == dropped


def test_the_memory_note_describes_the_placed_groups(tmp_path):
    s = plan(tmp_path, ppo(placement=SPLIT), mfu=MFU)
    memory = [n for n in s.notes if n.startswith("memory:")]
    assert memory == [n for n in memory if "updated in turn" not in n] and len(memory) == 1
    assert "policy on 4 GPUs; reference on 2 GPUs; critic on 4 GPUs; reward model on 2 GPUs" in memory[0]
    plain = plan(tmp_path, ppo(), mfu=MFU)
    assert any("updated in turn" in n for n in plain.notes)
