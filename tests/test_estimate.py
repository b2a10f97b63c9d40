"""The main job: a plan that really fits (and is the smallest that does), its
cost, and the communication diagnostic of that plan."""

from __future__ import annotations

import pytest

from cli import run
from paramcalc.blocks.base import Pass
from paramcalc.analysis.comm import step_communication
from paramcalc.inputs.target import load_spec as resolve
from paramcalc.analysis.estimate import STRATEGIES, estimate
from paramcalc.analysis.memory import estimate_memory
from paramcalc.network import lower as build


@pytest.mark.parametrize("name", ["llama-3.1-8b", "llama-3.1-70b"])
def test_the_plan_fits_and_half_as_many_gpus_would_not(name):
    report = estimate(name)
    plan = report.plan
    assert report.memory.total_per_gpu <= 85_899_345_920  # H100 SXM: 80 GiB
    half = plan.gpus // 2
    for recompute, tp, pp in STRATEGIES:
        if half < tp * pp or half == 0:
            continue
        dp = half // (tp * pp)
        m = estimate_memory(name, zero=3 if dp > 1 else 0, dp=dp, tp=tp, pp=pp, sequence_parallel=tp > 1,
                            recompute=recompute, attention="flash", gpu="h100-sxm")
        assert not m.fits.fits


def test_default_tokens_are_chinchilla_optimal_and_cost_follows_the_contract():
    report = estimate("llama-3.1-8b")
    c = report.cost
    assert c.training_flops == report.flops.train_step * 20 * 8_030_261_248 // 2048
    assert c.gpu_hours == pytest.approx(c.training_flops / (989.4e12 * 0.4) / 3600)
    assert c.wall_clock_hours == pytest.approx(c.gpu_hours / report.plan.gpus)


def test_zero3_moves_one_and_a_half_times_the_data_parallel_volume():
    """ZeRO paper, section 7: stage 3 costs 3 x model size per rank vs 2 x for plain DP."""
    net, p = build(resolve("llama-3.1-8b")), Pass(1, 2048)
    plain = step_communication(net, p, gpu="h100-sxm", dp=64, zero=0)
    zero3 = step_communication(net, p, gpu="h100-sxm", dp=64, zero=3)
    total = lambda c: sum(x.bytes_per_gpu for x in c.collectives)  # noqa: E731
    assert total(zero3) == pytest.approx(1.5 * total(plain), rel=1e-9)


def test_tensor_parallel_all_reduces_are_four_per_layer_on_the_critical_path():
    net, p = build(resolve("llama-3.1-8b")), Pass(1, 2048)
    c = step_communication(net, p, gpu="h100-sxm", tp=8)
    tp = next(x for x in c.collectives if x.name.startswith("tensor"))
    assert tp.bytes_per_gpu == 4 * 32 * (2 * 7 * (2048 * 4096 * 2) // 8)
    assert not tp.overlappable and c.exposed_seconds >= tp.seconds


def test_estimate_cli_prints_the_verdict_and_json():
    r = run("estimate", "gpt2")
    assert r.code == 0 and "fits on 1 x h100-sxm" in r.out
    doc = run("estimate", "mixtral-8x7b", "--tokens", "1T", "--json").json
    assert doc["params"]["total"] == 46_702_792_704 and doc["cost"]["training_flops"] > 0
    assert doc["plan"]["gpus"] >= 8


def test_mfu_auto_is_kernel_efficiency_slowed_by_exposed_communication_and_the_bubble():
    from paramcalc.analysis.comm import step_communication
    from paramcalc.analysis.estimate import KERNEL_EFFICIENCY, auto_mfu

    net, p = build(resolve("llama-3.1-70b")), Pass(1, 4096)
    hidden = step_communication(net, p, gpu="h100-sxm", dp=64, zero=3, mfu=KERNEL_EFFICIENCY)
    assert auto_mfu(hidden) == pytest.approx(KERNEL_EFFICIENCY)  # ZeRO traffic hides behind the step
    tp = step_communication(net, p, gpu="h100-sxm", tp=8, pp=4, micro_batches=4, mfu=KERNEL_EFFICIENCY)
    expected = KERNEL_EFFICIENCY * tp.compute_seconds / (tp.compute_seconds + tp.exposed_seconds) * (1 - 3 / 7)
    assert auto_mfu(tp) == pytest.approx(expected) and auto_mfu(tp) < KERNEL_EFFICIENCY / 2
    doc = run("estimate", "llama-3.1-8b", "--mfu", "auto", "--json").json
    assert doc["cost"]["mfu"] <= KERNEL_EFFICIENCY and any("estimated" in n for n in doc["notes"])
