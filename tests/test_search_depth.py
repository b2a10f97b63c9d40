"""The plan search's shortcut for models that fit nothing (#19, "fast at every size"): with
gradient accumulation a plan shape's memory never shrinks as its micro-batch grows, so one
micro-batch-1 evaluation rules out every larger micro-batch, and the least-memory answer is the
brute force's."""

from __future__ import annotations

from collections import defaultdict

import pytest

from paramcalc.analysis.plans import HEADROOM, Knobs, _memory, _states, candidates, replace, search
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

H100 = load_gpu("h100-sxm")


@pytest.mark.parametrize("model, gpus, seq", [("llama-3.1-70b", 64, 4096), ("mixtral-8x7b", 32, 4096),
                                              ("llama-3.1-8b", 16, 8192)])
def test_memory_never_shrinks_as_the_micro_batch_grows(model, gpus, seq):
    net = lower(model)
    terms = _memory(net, seq)
    shapes: dict = defaultdict(list)
    for plan in candidates(net, gpus, H100, seq, Knobs(global_batch=256), dtype="bf16", attention="flash"):
        if plan.micro_batches > 1:  # one micro-batch drops FSDP's unsharded gradient accumulation
            shapes[replace(plan, micro_batch=1)].append(plan)
    assert len(shapes) > 10
    grown = 0
    for shape, plans in shapes.items():
        floor = terms(shape).total
        for plan in plans:
            total = terms(plan).total
            assert total >= floor, (plan, total, floor)
            grown += total > floor
    assert grown > 0  # the premise is exercised: larger micro-batches do need more


def test_a_model_that_fits_nothing_gets_the_brute_force_least_memory_plan():
    """405B on 8 GPUs fits no plan: the answer is the plan needing the least memory among those
    with the fewest model-state bytes, as weighing every candidate finds."""
    net = lower("llama-3.1-405b")
    knobs = Knobs(global_batch=64)
    out = search(net, 8, H100, 4096, knobs)
    assert out is not None and not out.fits
    terms, states = _memory(net, 4096), _states(net)
    every = list(candidates(net, 8, H100, 4096, knobs, dtype="bf16", attention="flash"))
    assert all(terms(p).total > H100.memory_bytes * (1 - HEADROOM) for p in every)
    least = min(states(p) for p in every)
    best = min(terms(p).total for p in every if states(p) == least)
    assert out.memory.total == best
