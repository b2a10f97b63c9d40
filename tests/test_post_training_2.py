"""Post-training, the rest of issue #20: GRPO and RLOO stages, generation on separate GPUs with
weight sync, memory savers (8-bit and paged optimizers, pure bf16, chunked loss, optimizer step in
backward, CPU offload of optimizer state, parameters and activations) and the data as it is
(packing or padding at a mean length)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cli import assert_user_error, run

from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.offload import host_rate
from paramcalc.analysis.plan import plan_pipeline
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

A100_HOST = host_rate(load_gpu("a100-80gb"))  # its PCIe Gen4 x16 host link's copies

# Llama-2-7B's shapes (config.json): h 4096, FFN 11008, 32 layers, vocabulary 32000
H, F, L, V = 4096, 11008, 32, 32000
N = 6_738_415_616  # its parameters
LAYER = 4 * H * H + 3 * H * F + 2 * H


def pipeline(tmp_path: Path, *stages: dict, **top):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", **top, "stages": list(stages)}))
    return plan_pipeline(path)


def rl(kind: str = "grpo", **extra) -> dict:
    return {"name": kind, "kind": kind, "iterations": 10, "rollout_batch": 64, "prompt_tokens": 256,
            "response_tokens": 1024, "parallel": {"dp": 8, "zero": 3}, **extra}


# ---------------------------------------------------------------- GRPO and RLOO


def test_grpo_generates_group_size_samples_per_prompt_with_no_critic(tmp_path):
    s = pipeline(tmp_path, rl()).stages[0]
    assert s.models == {"policy": "llama-2-7b", "reference": "llama-2-7b"}
    assert s.rollout is not None and s.rollout.samples_per_prompt == 8 and s.rollout.sequences == 512
    assert "critic/train" not in s.flops_breakdown and "reward_model/forward" not in s.flops_breakdown
    net = lower("llama-2-7b")
    from paramcalc.analysis.flops import forward_flops

    full = forward_flops(net, Pass(512, 1280))
    assert s.flops_breakdown["reference/forward"] == 10 * full
    assert s.flops_breakdown["policy/train"] == 10 * 3 * full
    assert s.generated_tokens == 10 * 512 * 1024
    assert set(s.memory.breakdown) == {"policy/model_states", "policy/activations", "policy/overhead",
                                       "reference/weights"}


def test_rloo_defaults_to_4_samples_and_kl_coef_0_drops_the_reference(tmp_path):
    s = pipeline(tmp_path, rl("rloo", kl_coef=0, reward="model")).stages[0]
    assert s.rollout is not None and s.rollout.samples_per_prompt == 4 and s.rollout.sequences == 256
    assert s.models == {"policy": "llama-2-7b", "reward_model": "llama-2-7b (scalar head)"}
    assert "reference/forward" not in s.flops_breakdown and "reward_model/forward" in s.flops_breakdown
    assert "reference/weights" not in s.memory.breakdown


def test_a_grpo_stage_costs_like_ppo_without_the_critic(tmp_path):
    """Same rollout (64 prompts x 1 sample), a reward model and a reference: GRPO's FLOPs are PPO's less
    the critic's forward and training passes."""
    grpo = pipeline(tmp_path, rl(group_size=1, reward="model")).stages[0]
    ppo = pipeline(tmp_path, rl("ppo")).stages[0]
    critic = ppo.flops_breakdown["critic/values"] + ppo.flops_breakdown["critic/train"]
    assert grpo.flops == ppo.flops - critic


def test_rl_stage_errors_exit_2(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "stages": [rl(reward_model="llama-2-7b")]}))
    assert_user_error(run("plan", path), "reward", "stages[0]")
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "stages": [rl(group_size=0)]}))
    assert_user_error(run("plan", path), "group_size")
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "stages": [rl(generation={"gpus": 6, "tp": 4})]}))
    assert_user_error(run("plan", path), "generation.tp", "generation's 6 GPUs")


# ---------------------------------------------------------------- generation on separate GPUs


def test_separate_generation_gpus_sync_16_bit_weights_and_hold_both_pools(tmp_path):
    s = pipeline(tmp_path, rl(generation={"gpus": 8})).stages[0]
    r = s.rollout
    assert r is not None and r.placement == "separate" and s.generation_gpus == 8 and s.gpus == 8
    a100 = load_gpu("a100-80gb")
    link = a100.network  # 8 + 8 GPUs: more than a node, so the network
    assert link is not None
    assert r.weight_sync_seconds == pytest.approx(2 * N / (float(link.bandwidth) * a100.efficiency.link))
    assert r.iteration_seconds == pytest.approx(r.generation_seconds + r.training_seconds + r.weight_sync_seconds)
    assert s.gpu_hours == pytest.approx(16 * 10 * r.iteration_seconds / 3600)
    assert s.wall_clock_hours == pytest.approx(10 * r.iteration_seconds / 3600)
    fast = pipeline(tmp_path, rl(generation={"gpus": 8, "async": True})).stages[0].rollout
    assert fast is not None and fast.overlapped
    assert fast.iteration_seconds == pytest.approx(max(fast.generation_seconds, fast.training_seconds)
                                                   + fast.weight_sync_seconds)


def test_within_a_node_the_sync_runs_over_nvlink(tmp_path):
    s = pipeline(tmp_path, rl(parallel={"dp": 4, "zero": 3}, generation={"gpus": 4})).stages[0]
    a100 = load_gpu("a100-80gb")
    assert a100.interconnect is not None and s.rollout is not None
    assert s.rollout.weight_sync_seconds == pytest.approx(2 * N / (float(a100.interconnect.bandwidth)
                                                                   * a100.efficiency.link))


def test_colocated_rollout_reports_its_generation_share(tmp_path):
    s = pipeline(tmp_path, rl()).stages[0]
    r = s.rollout
    assert r is not None and r.placement == "colocated" and r.weight_sync_seconds == 0
    assert r.iteration_seconds == pytest.approx(s.time_per_step_seconds * s.steps / s.iterations)
    assert 0 < r.generation_share < 1
    assert r.generation_share == pytest.approx(r.generation_seconds / r.iteration_seconds)


# ---------------------------------------------------------------- memory savers


def _m(**kw):
    return estimate_memory("llama-2-7b", seq_len=1024, **kw)


def test_8_bit_and_paged_optimizers_hold_their_documented_state():
    assert _m(optimizer="adamw-8bit").memory.optimizer == 4 * N + 2 * N  # fp32 master + two 8-bit states
    assert _m(optimizer="paged-adamw-8bit").memory.optimizer == 6 * N
    assert _m(optimizer="paged-adamw").memory.optimizer == 12 * N


def test_pure_bf16_keeps_no_master_and_bf16_adam_states():
    m = _m(precision="bf16").memory
    assert (m.weights, m.gradients, m.optimizer) == (2 * N, 2 * N, 4 * N)
    assert _m(precision="bf16", optimizer="adam-8bit").memory.optimizer == 2 * N
    assert_user_error(run("memory", "llama-2-7b", "--dtype", "fp16", "--precision", "bf16"), "--precision")


def test_chunked_loss_keeps_one_chunk_of_logits_instead_of_fp32_logits():
    plain, fused = _m(), _m(chunked_loss=True)
    T = 1024
    chunk = 1 << (-(-T // -(-V // H)) - 1).bit_length()  # next power of 2 of ceil(T / ceil(V / h)) = 128
    assert chunk == 128
    assert "head/loss" not in fused.breakdown and "overhead/logits_gradient" not in fused.breakdown
    assert fused.breakdown["head/fused_loss_chunk"] == 2 * chunk * V
    assert fused.breakdown["head/fused_loss_input_grad"] == 2 * T * H + 4 * T
    dropped = plain.breakdown["head/loss"] + plain.breakdown["overhead/logits_gradient"]
    assert plain.memory.activations - fused.memory.activations == (
        plain.breakdown["head/loss"] - 2 * chunk * V - (2 * T * H + 4 * T))
    # the saved fp32 log-probabilities (and labels), and transformers' upcast loss's two fp32 gradients at its
    # backward peak (12 bytes a logit in all)
    assert dropped == (4 * T * V + 8 * (T + 1) + 4) + 8 * T * V


def test_optimizer_in_backward_holds_one_tensor_s_gradient():
    m = _m(optimizer_in_backward=True).memory
    assert m.gradients == 2 * V * H  # the largest trainable tensor: the embedding (or lm_head), bf16
    assert_user_error(run("memory", "llama-2-7b", "--optimizer-in-backward", "--micro-batches", "4"),
                      "--optimizer-in-backward")


def test_cpu_offload_moves_states_to_cpu_and_reports_pcie_bytes():
    m = _m(offload="optimizer").memory
    assert (m.weights, m.gradients, m.optimizer) == (2 * N, 0, 0)
    assert m.cpu_bytes == 2 * N + 12 * N  # ZeRO-Offload: 16-bit gradients, fp32 master and Adam on the CPU
    assert (m.pcie_bytes_per_step, m.pcie_bytes_per_micro_batch, m.cpu_optimizer_params) == (2 * N, 4 * N, N)
    both = estimate_memory("llama-2-7b", seq_len=1024, offload="both", zero=3, dp=4).memory
    shard = -(-N // 4)
    assert (both.weights, both.gradients, both.optimizer) == (0, 0, 0)
    assert both.cpu_bytes == 2 * shard + 2 * shard + 12 * shard
    assert both.pcie_bytes_per_micro_batch == 2 * 2 * shard
    assert_user_error(run("memory", "llama-2-7b", "--offload", "params"), "--offload", "ZeRO-3")
    assert_user_error(run("memory", "llama-2-7b", "--offload", "disk"), "--offload")


def test_activation_offload_keeps_two_layers_of_checkpointed_inputs():
    full = _m(recompute="full")
    off = _m(recompute="full", offload_activations=True)
    inputs = 2 * 1024 * H  # one layer's bf16 input at 1 x 1024 tokens
    assert full.breakdown["layers/checkpointed_inputs"] == L * inputs
    assert off.breakdown["layers/checkpointed_inputs"] == 2 * inputs
    assert off.memory.cpu_bytes == (L - 2) * inputs
    assert off.memory.pcie_bytes_per_micro_batch == 2 * (L - 2) * inputs
    assert_user_error(run("memory", "llama-2-7b", "--offload-activations"), "--offload-activations", "--recompute")


def test_offload_adds_pcie_time_and_the_cpu_adam_step_to_a_plan_step(tmp_path):
    stage = {"kind": "sft", "tokens": "100M", "seq_len": 1024, "global_batch": 8, "micro_batch": 1,
             "parallel": {"dp": 1}}
    plain = pipeline(tmp_path, stage).stages[0]
    off = pipeline(tmp_path, {**stage, "parallel": {"dp": 1, "offload": "optimizer"}}).stages[0]
    # DeepSpeed's ZeRO-2 offload over 8 micro-batches: 4 x 8 + 2 bytes a parameter over PCIe, then CPUAdam's
    # 30 bytes a parameter at an eighth of a DGX A100 host's 2 x 204.8 GB/s (8 GPUs a node)
    cpu_adam = 30 * N / (2 * 204.8e9 / 8)
    assert off.time_per_step_seconds - plain.time_per_step_seconds == pytest.approx((4 * 8 + 2) * N
                                                                                    / A100_HOST + cpu_adam)
    assert any("CPUAdam" in n and f"{cpu_adam:.2f} s" in n for n in off.notes)
    assert off.memory.breakdown["model/cpu_offloaded"] == 14 * N
    assert off.memory.peak_per_gpu < plain.memory.peak_per_gpu


def test_optimizer_in_backward_with_accumulation_is_a_break(tmp_path):
    stage = {"kind": "sft", "tokens": "10M", "seq_len": 1024, "global_batch": 8, "micro_batch": 1,
             "parallel": {"dp": 1, "optimizer_in_backward": True, "precision": "bf16"}}
    s = pipeline(tmp_path, stage).stages[0]
    assert [b.field for b in s.breaks] == ["stages[0].parallel.optimizer_in_backward"]


# ---------------------------------------------------------------- the data as it is


def test_padding_computes_at_seq_len_and_packing_at_the_mean(tmp_path):
    base = {"kind": "sft", "samples": 10_000, "seq_len": 2048, "global_batch": 100, "mfu": 0.4}
    full = pipeline(tmp_path, base).stages[0]
    padded = pipeline(tmp_path, {**base, "mean_seq_len": 512, "packing": False}).stages[0]
    packed = pipeline(tmp_path, {**base, "mean_seq_len": 512}).stages[0]
    assert full.steps == padded.steps == packed.steps == 100
    assert padded.flops == full.flops  # padding computes every position of seq_len
    assert padded.tokens == packed.tokens == 10_000 * 512 and full.tokens == 10_000 * 2048
    from paramcalc.analysis.flops import forward_flops

    assert packed.flops == 100 * 3 * forward_flops(lower("llama-2-7b"), Pass(100, 512))
    assert packed.tokens_per_step == 100 * 512 and packed.mean_seq_len == 512
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "stages": [{**base, "mean_seq_len": 4096}]}))
    assert_user_error(run("plan", path), "mean_seq_len")


def test_zero_2_offload_sends_each_micro_batch_s_gradient_shard_to_the_cpu_and_back():
    # DeepSpeed v0.13.2 stage_1_and_2.py async_accumulate_grad_in_cpu_via_gpu: 16-bit shard in (every
    # micro-batch but the first) and out (every one but the last), the fp32 shard out at the boundary, the
    # 16-bit weights back: 2(A - 1) + 2(A - 1) + 4 + 2 = 4A + 2 bytes a parameter of the shard
    m = estimate_memory("llama-2-7b", seq_len=1024, offload="optimizer", zero=2, dp=4).memory
    shard = -(-N // 4)
    assert (m.pcie_bytes_per_step, m.pcie_bytes_per_micro_batch, m.cpu_optimizer_params) == (2 * shard, 4 * shard,
                                                                                              shard)
    for A in (1, 8):
        out, back = 2 * (A - 1) + 4 + 0, 2 * (A - 1) + 2
        assert m.pcie_bytes_per_step + A * m.pcie_bytes_per_micro_batch == (out + back) * shard


def test_zero_3_offload_copies_the_fp32_accumulation_buffer_to_the_gpu_and_back_every_micro_batch():
    # DeepSpeed v0.13.2 stage3.py partition_grads with OpenRLHF's grad_accum_dtype fp32: the pinned CPU buffer
    # out and back each micro-batch (8 B), the fp32 shard to the optimizer at the boundary (4 B), weights back (2 B)
    m = estimate_memory("llama-2-7b", seq_len=1024, offload="optimizer", zero=3, dp=8).memory
    shard = -(-N // 8)
    assert (m.pcie_bytes_per_step, m.pcie_bytes_per_micro_batch) == ((4 + 2) * shard, 2 * 4 * shard)
    # FSDP's CPUOffload (offload: both) keeps ZeRO-Offload's minimum: 16-bit gradients out, weights in
    both = estimate_memory("llama-2-7b", seq_len=1024, offload="both", zero=3, dp=8).memory
    assert both.pcie_bytes_per_step == 4 * shard


def test_deepspeed_chat_s_lora_actor_leaves_room_for_16_prompts_beside_the_hybrid_engine_s_tp_copy(tmp_path):
    # DeepSpeed-Chat step 3 (run_13b.sh at e468799f): OPT-13B actor with --actor_lora_dim 128 on every
    # decoder-layer linear, whose LinearLayer_LoRA freezes the base weight (utils/module/lora.py), ZeRO-3 over
    # 8 x A100-40G, a reference of its own, the hybrid engine's tp-2 copy of the layers during generate
    specs = Path(__file__).parent / "data" / "specs"
    stage = {"kind": "ppo", "iterations": 1, "rollout_batch": 128, "global_batch": 128, "micro_batch": 16,
             "prompt_tokens": 256, "response_tokens": 256, "reward_model": str(specs / "opt-350m.yaml"),
             "reference": str(specs / "opt-13b.yaml"), "generation": {"tp": 2},
             "parallel": {"dp": 8, "zero": 3, "recompute": "full"}}
    lora = {"rank": 128, "targets": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]}
    top = {"model": str(specs / "opt-13b.yaml"), "gpu": "a100-40gb"}
    full = pipeline(tmp_path, stage, **top).stages[0]
    adapted = pipeline(tmp_path, {**stage, "lora": lora}, **top).stages[0]
    assert any(b.field.endswith(".generation") for b in full.breaks)  # every weight trained: no KV room
    assert adapted.memory.fits and not any(b.field.endswith(".generation") for b in adapted.breaks)
    # each tp-2 replica generates its two GPUs' 32 prompts at once (generate all-gathers the inputs over the
    # tp group), as the run did; with every weight trained it had room for one sequence at a time
    assert any("32 prompts each in 1 round(s) of 32" in n for n in adapted.notes)
