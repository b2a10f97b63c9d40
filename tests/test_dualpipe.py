"""DualPipe (DeepSeek-AI 2024, DeepSeek-V3 technical report, section 3.2.1 and table 2): its bubble,
its two stages of parameters and p + 1 micro-batches in flight, the all-to-alls it hides, and the
`--schedule` flag."""

from __future__ import annotations

import pytest
from cli import run

from paramcalc.analysis.memory import estimate_memory, head_layers, pipeline_split
from paramcalc.analysis.step import DUALPIPE_COMM_SMS, Plan, Work, step_time
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

H100, H800 = load_gpu("h100-sxm"), load_gpu("h800")


def _pair(schedule: str, pp: int, **kw) -> tuple:
    net = lower("llama-3.1-8b")
    plan = Plan(pp=pp, dp=1, global_batch=8 * pp, micro_batch=1, zero=0, schedule=schedule, **kw)
    return plan, step_time(net, Work.of(net, 4096), plan, H100)


def test_two_ranks_have_no_dualpipe_bubble_where_1f1b_waits_a_micro_batch():
    """(p/2 - 1)(F&B + B - 3W) is 0 at p = 2; 1F1B's (p - 1)(F + B) is one micro-batch's time."""
    plan, dual = _pair("dualpipe", 2)
    _, one = _pair("1f1b", 2)
    assert dual.bubble == 0.0
    assert one.bubble == pytest.approx((one.seconds - one.bubble - one.optimizer) / plan.micro_batches)


def test_dualpipe_drains_in_fewer_chunk_times_than_1f1b():
    """At p = 8: (8/2 - 1)(F&B + B - 3W) <= 3 x 2 stage times, against 1F1B's 7 stage times."""
    plan, dual = _pair("dualpipe", 8)
    _, one = _pair("1f1b", 8)
    per_micro = (dual.seconds - dual.bubble - dual.optimizer) / plan.micro_batches
    assert 0 < dual.bubble <= 3 * 2 * per_micro
    assert dual.bubble < one.bubble


def _deepseek(schedule: str):
    net = lower("deepseek-v3")
    plan = Plan(pp=16, ep=64, dp=128, global_batch=15360, micro_batch=1, zero=1, dtype="fp8", schedule=schedule)
    return net, plan, step_time(net, Work.of(net, 4096), plan, H800)


def test_dualpipe_hides_the_expert_all_to_alls_that_1f1b_exposes():
    _, plan, dual = _deepseek("dualpipe")
    _, _, one = _deepseek("1f1b")
    a2a = {name: hidden for name, _, _, hidden in dual.collectives}
    assert a2a["expert-parallel all-to-all (4 per MoE layer)"] and a2a["pipeline sends (activations and gradients)"]
    assert not {name: hidden for name, _, _, hidden in one.collectives}["expert-parallel all-to-all (4 per MoE layer)"]
    assert dual.seconds < one.seconds
    # a pair takes the longer of its compute (on the SMs the all-to-all kernels leave) and its traffic:
    # here the traffic, so the step is no shorter than m micro-batches of it, and the compute alone is less
    m = plan.micro_batches
    per_micro = (dual.seconds - dual.bubble - dual.optimizer) / m
    assert per_micro >= dual.compute / m / (1 - DUALPIPE_COMM_SMS)
    assert dual.exposed_comm > 0


def test_dualpipe_holds_two_stages_of_parameters_and_p_plus_one_micro_batches():
    net = lower("llama-3.1-8b")
    L, pp, m = 32, 4, 16
    kw = dict(seq_len=4096, pp=pp, micro_batches=m, recompute="full", profile="megatron")
    dual = estimate_memory("llama-3.1-8b", schedule="dualpipe", **kw)
    one = estimate_memory("llama-3.1-8b", **kw)
    most, fewest = pipeline_split(L, pp, head_layers(net))
    params = net.params()
    layer = sum(v for k, v in params.items() if k.startswith("layers/")) // L
    ends = (most + fewest) * layer + sum(v for k, v in params.items() if not k.startswith("layers/"))
    assert dual.memory.weights == max(ends, 2 * most * layer) * 2  # bf16, rank 0 or a middle rank
    assert dual.memory.weights > one.memory.weights
    # full recomputation keeps each layer's input (2 s h bytes): p + 1 micro-batches of `most` layers
    assert dual.breakdown["layers/checkpointed_inputs"] == most * (pp + 1) * 2 * 4096 * 4096


def test_schedule_is_in_the_plan_and_1f1b_unless_asked():
    flags = ["llama-3.1-8b", "--gpus", "64", "--pp", "4", "--global-batch", "128", "--json"]
    assert run("estimate", *flags).json["plan"]["schedule"] == "1f1b"
    asked = run("estimate", *flags, "--schedule", "dualpipe")
    assert asked.code == 0 and asked.json["plan"]["schedule"] == "dualpipe"


def _plan_row(out: str) -> str:
    """The third cell of the estimate table's plan row, unwrapped."""
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith("plan"))
    last = next(i for i, line in enumerate(lines) if line.lstrip("│ ").startswith("batch"))
    return " ".join(line.split("│")[3].strip() for line in lines[first:last])


def test_the_estimate_table_names_dualpipe_and_a_bf16_gradient_reduce_only_when_asked():
    flags = ["llama-3.1-8b", "--gpus", "64", "--pp", "4", "--global-batch", "128"]
    plain = run("estimate", *flags)
    asked = run("estimate", *flags, "--schedule", "dualpipe", "--grad-reduce", "bf16")
    assert plain.code == asked.code == 0, asked.err
    assert _plan_row(plain.out).endswith(", recompute none")
    assert _plan_row(asked.out).endswith(", recompute none, DualPipe, bf16 gradient reduce")


@pytest.mark.parametrize(("flags", "named"), [(["--pp", "3"], "--schedule"), (["--pp", "4", "--vpp", "2"], "--vpp"),
                                              (["--pp", "4", "--schedule", "zigzag"], "--schedule")])
def test_a_schedule_dualpipe_cannot_run_exits_2_naming_the_flag(flags, named):
    args = ["llama-3.1-8b", "--gpus", "48", "--global-batch", "96", *flags]
    if "--schedule" not in flags:
        args += ["--schedule", "dualpipe"]
    r = run("estimate", *args)
    assert r.code == 2 and named in r.err


def test_memory_refuses_dualpipe_on_an_odd_pipeline():
    r = run("memory", "llama-3.1-8b", "--pp", "3", "--schedule", "dualpipe")
    assert r.code == 2 and "--schedule" in r.err


@pytest.mark.parametrize(("flags", "named"), [
    (["llama-3.1-8b", "--gpus", "16", "--pp", "4", "--cp", "2", "--attention", "eager"], "--attention"),
    (["deepseek-v3", "--gpus", "2048", "--pp", "16", "--ep", "3"], "--ep")])
def test_dualpipe_is_not_blamed_for_what_rules_out_1f1b_too(flags, named):
    plain, dual = run("estimate", *flags), run("estimate", *flags, "--schedule", "dualpipe")
    assert plain.code == dual.code == 2
    assert named in dual.err and "DualPipe" not in dual.err
    assert dual.err == plain.err


@pytest.mark.parametrize(("flags", "named", "says"), [
    (["--gpus", "12", "--pp", "3"], "--pp", "even number of stages, got 3"),
    (["--gpus", "16", "--pp", "4", "--global-batch", "12", "--micro-batch", "2"], "--global-batch",
     "at least 2 x pp = 8, on each pipeline; pp 4 gets 6")])
def test_dualpipe_alone_ruling_a_plan_out_names_its_rule(flags, named, says):
    r = run("estimate", "llama-3.1-8b", *flags, "--schedule", "dualpipe")
    assert r.code == 2 and named in r.err and says in r.err
    assert run("estimate", "llama-3.1-8b", *flags, "--json").code == 0  # 1F1B runs it


def test_the_search_memory_check_and_the_dualpipe_rule_agree():
    from paramcalc.analysis.memory import check_dualpipe, dualpipe_problem
    from paramcalc.analysis.plans import Knobs, candidates
    from paramcalc.errors import UserError

    net = lower("llama-3.1-8b")
    plans = list(candidates(net, 64, H100, 4096, Knobs(schedule="dualpipe", global_batch=64), dtype="bf16",
                            attention="flash"))
    assert plans and {p.pp for p in plans} == {2, 4, 8, 16, 32}
    for p in plans:
        assert dualpipe_problem(p.pp, p.vpp, p.micro_batches) is None
        check_dualpipe(p.pp, p.vpp, p.micro_batches)
    for pp, vpp, m in ((3, 1, 12), (4, 2, 8), (4, 1, 6), (4, 1, 9)):
        with pytest.raises(UserError):
            check_dualpipe(pp, vpp, m)


@pytest.mark.parametrize("pp", [1, 2, 3])
def test_inference_memory_ignores_the_training_schedule_and_says_so(pp):
    dual = estimate_memory("llama-3.1-8b", mode="infer", pp=pp, schedule="dualpipe")
    plain = estimate_memory("llama-3.1-8b", mode="infer", pp=pp)
    assert dual.memory == plain.memory
    assert any("dualpipe ignored" in n for n in dual.notes)


def test_the_estimate_memory_note_places_dualpipes_busiest_rank():
    flags = ["llama-3.1-8b", "--gpus", "64", "--pp", "4", "--global-batch", "128", "--json"]
    dual = run("estimate", *flags, "--schedule", "dualpipe").json["notes"]
    plain = run("estimate", *flags).json["notes"]
    assert any(n.startswith("memory:") and "rank 0, which holds both ends" in n for n in dual)
    assert not any("first or last pipeline stage" in n for n in dual)
    assert any("first or last pipeline stage" in n for n in plain)
