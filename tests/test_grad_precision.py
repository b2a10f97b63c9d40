"""Gradient precision agrees between the step time and the memory: Megatron-LM accumulates and
reduces bf16 training's gradients in fp32 by default (--accumulate-allreduce-grads-in-fp32, a 4-byte
main_grad buffer), torchtitan's FSDP2 reduces in fp32 (reduce_dtype float32); NeMo's performance
recipes reduce in bf16 (grad_reduce_in_fp32 = False)."""

from __future__ import annotations

from paramcalc.analysis.plans import evaluate
from paramcalc.analysis.step import Plan
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

H100 = load_gpu("h100-sxm")


def _dp(plan: Plan):
    net = lower("llama-3.1-8b")
    out = evaluate(net, plan, H100, 4096)
    moved = {name: b for name, b, _, _ in out.time.collectives}
    return net.total_params, out.memory, moved


def test_fp32_reduction_keeps_4_byte_gradients_and_sends_4_bytes_a_parameter():
    params, memory, moved = _dp(Plan(dp=8, global_batch=8, zero=1))
    assert memory.gradients == 4 * params  # Megatron's main_grad buffer: every local parameter, unsharded
    # ZeRO-1: gradients reduce-scattered (7/8 of 4 bytes), 16-bit weights all-gathered (7/8 of 2)
    assert moved["gradient reduce-scatter and weight all-gather"] == int(7 / 8 * 4 * params + 7 / 8 * 2 * params)


def test_bf16_reduction_halves_both_the_gradients_and_their_traffic():
    params, memory, moved = _dp(Plan(dp=8, global_batch=8, zero=1, grad_reduce="bf16"))
    assert memory.gradients == 2 * params
    assert moved["gradient reduce-scatter and weight all-gather"] == int(7 / 8 * 2 * params + 7 / 8 * 2 * params)


def test_fsdp_shards_fp32_state_at_16_bytes_a_parameter_whatever_the_split():
    """FSDP2 keeps fp32 sharded parameters (the master copy), fp32 sharded gradients and Adam's 8 bytes:
    (4 + 4 + 8) / d, the total of ZeRO's mixed (2 + 2 + 12) / d."""
    params, memory, _ = _dp(Plan(dp=8, global_batch=8, zero=3))
    assert memory.states == 16 * params // 8
