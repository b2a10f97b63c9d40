"""The main job: parameters, FLOPs, a training plan for a cluster, its step time,
memory and cost, in one report (`paramcalc estimate`).

- With `gpus` and any of tp, pp, cp, ep given, that layout is evaluated; with
  none, every plan for exactly `gpus` GPUs is searched and the fastest that
  fits wins (analysis/plans.py). Knobs left out are chosen as the search
  would. A plan that does not fit is still reported, `memory.fits` false.
- Without `gpus`: the smallest power of two whose fastest plan fits and
  finishes the tokens within `days` (90 by default: what a team plans a
  pre-training run around).
- The step time comes from the plan (analysis/step.py) unless an MFU is given;
  GPU-hours are steps x step time x GPUs, which equals `cost` at the step's MFU.
"""

from __future__ import annotations

import math
from dataclasses import replace

from paramcalc.analysis.comm import measured_efficiency, measured_link_bandwidth
from paramcalc.analysis.cost import CHINCHILLA_TOKENS_PER_PARAM, estimate_cost, parse_mfu
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import SCHEDULES, dualpipe_error, dualpipe_problem
from paramcalc.analysis.plans import Knobs, Outcome, candidates, search
from paramcalc.analysis.settings import (
    OPTIMIZER_STATE,
    TRAIN_RECOMPUTE,
    check_fp8_activations,
    choose,
    parse_attention,
    with_lora_flags,
)
from paramcalc.analysis.step import GRAD_REDUCE, Plan
from paramcalc.catalog import load_gpu
from paramcalc.errors import UserError
from paramcalc.inputs.gpu_file import Gpu, Link
from paramcalc.network import Model, lower
from paramcalc.results.memory import Memory
from paramcalc.results.training import Collective, Communication, EstimateReport, Step, TrainingPlan
from paramcalc.units import human_bytes, human_count, human_hours, human_usd, parse_number, parse_positive_int

MAX_GPUS = 2**17
DEFAULT_DAYS = 90
TRAIN_DTYPES = ("bf16", "fp16", "fp8")


def estimate(model: Model, *, gpu: str = "h100-sxm", gpus=None, tokens=None, seq_len=None, global_batch=None,
             micro_batch=None, tp=None, pp=None, vpp=None, cp=None, ep=None, sp: bool | None = None, zero=None,
             recompute: str | None = None, attention: str = "flash", dtype: str = "bf16", mfu="auto",
             days=DEFAULT_DAYS, usd_per_hour=None, comm_file=None, kernels_file=None, schedule: str = "1f1b",
             grad_reduce: str = "fp32", optimizer: str = "adamw", fp8_activations: bool = False, lora_rank=None,
             lora_targets: str | None = None) -> EstimateReport:
    """Everything at once: params, FLOPs, a plan, its step time and memory, GPU-hours and dollars.

    Tokens default to Chinchilla's 20 per parameter (Hoffmann et al. 2022). `comm_file` is a
    `paramcalc bench-collectives` file whose measured bus bandwidth replaces the scale-up link's;
    `kernels_file` a `benchmarks/gpu_kernels.py` file whose efficiencies replace the catalog's.
    `schedule` dualpipe evaluates DeepSeek-V3's DualPipe (searched plans keep 1F1B otherwise);
    `grad_reduce` is the precision gradients accumulate and reduce in (fp32: Megatron-LM's and
    torchtitan's default; bf16: NeMo's performance recipes), in time and memory alike. `optimizer`
    adamw-bf16 keeps AdamW's moments in bf16 and `fp8_activations` caches the Linears' inputs in fp8
    (with dtype fp8): DeepSeek-V3's storage recipe (report, section 3.3.3), with `recompute` deepseek
    its recomputation (section 3.2.3). `lora_rank` trains LoRA adapters on a frozen base (Hu et al. 2021): the
    frozen weights keep no gradients or optimizer state and compute no weight gradient (analysis/step.py Work.of).

    >>> r = estimate("llama-3.1-8b", gpus=8, tokens="1T")
    >>> (r.plan.dp, r.plan.tp, r.memory.fits)
    (8, 1, True)
    """
    net = with_lora_flags(lower(model), lora_rank, lora_targets)
    params = count_params(net).params
    if dtype == "int4":
        raise UserError("estimate plans bf16, fp16 or fp8 training; an int4 base is QLoRA's", field="dtype",
                        fix="paramcalc memory, cost or a plan stage with --dtype int4 --lora-rank R")
    choose(dtype, TRAIN_DTYPES, "dtype")
    seq = net.seq_len(net.training_seq_len if seq_len is None else parse_positive_int(seq_len, field="seq_len"))
    n_tokens = parse_positive_int(tokens, field="tokens") if tokens is not None \
        else CHINCHILLA_TOKENS_PER_PARAM * params.total
    attention = parse_attention(attention)
    knobs = _knobs(tp=tp, pp=pp, vpp=vpp, cp=cp, ep=ep, micro_batch=micro_batch, global_batch=global_batch,
                   zero=zero, recompute=recompute, sp=sp, schedule=schedule, grad_reduce=grad_reduce,
                   optimizer=optimizer, fp8_activations=fp8_activations)
    check_fp8_activations(knobs.fp8_activations, dtype)
    card = load_gpu(gpu)
    notes: list[str] = []
    if kernels_file is not None:
        card = measured_efficiency(kernels_file, card)
        notes.append(f"kernel efficiencies measured: {card.efficiency.source} ({kernels_file})")
    if comm_file is not None:
        link = measured_link_bandwidth(comm_file)
        # the measured bus bandwidth is what the link sustains: stored so that times the link efficiency
        # gives it back, leaving the network's efficiency as the catalog has it
        card = card.model_copy(update={"interconnect": Link(name="measured", bandwidth=link / card.efficiency.link)})
        notes.append(f"scale-up link at the measured bus bandwidth {link / 1e9:,.1f} GB/s ({comm_file})")
    fixed = None if str(mfu).lower() == "auto" else parse_mfu(mfu)
    max_days = float(parse_number(days, field="days"))
    if max_days <= 0:
        raise UserError("days must be > 0", field="days")
    f = count_flops(net, seq_len=seq, batch=1).flops

    if not net.has_architecture:  # a bare count: no layout to search, cost at a stated MFU
        return _bare(net, params, f, card, gpu, gpus, n_tokens, seq, dtype, fixed, usd_per_hour, max_days)

    if gpus is None:
        n, outcome = _cluster(net, card, seq, knobs, dtype, attention, n_tokens, fixed, max_days)
        notes.append(f"GPUs: the smallest power of two whose fastest plan fits and trains {human_count(n_tokens)} "
                     f"tokens within {max_days:g} days (give --gpus to plan for your cluster)")
    else:
        n = parse_positive_int(gpus, field="gpus")
        found = search(net, n, card, seq, knobs, dtype=dtype, attention=attention)
        if found is None:
            raise _why_no_plan(net, n, card, seq, knobs, attention)
        outcome = found
    plan, t = outcome.plan, outcome.time
    peak = card.peak(dtype)
    seconds = t.seconds if fixed is None else t.model_flops / (plan.gpus * peak * fixed)
    step_mfu = t.model_flops / (plan.gpus * peak * seconds)
    c = estimate_cost(net, tokens=n_tokens, gpu=gpu, gpus=plan.gpus, mfu=min(step_mfu, 1.0), seq_len=seq,
                      dtype=dtype, usd_per_hour=usd_per_hour)
    cost = c.cost
    scale = seconds / t.seconds
    step = Step(seconds=seconds, mfu=step_mfu, hfu=t.hardware_flops / (plan.gpus * peak * seconds),
                tflops_per_gpu=t.model_flops / plan.gpus / seconds / 1e12,
                tokens_per_second=plan.global_batch * seq / seconds, mfu_source="given" if fixed else "predicted",
                compute_seconds=t.compute * scale, communication_seconds=t.exposed_comm * scale,
                bubble_seconds=t.bubble * scale, optimizer_seconds=t.optimizer * scale)
    m = outcome.memory
    memory = Memory(weights=m.weights, gradients=m.gradients, optimizer=m.optimizer, activations=m.activations,
                    kv_cache=m.kv_cache, model_states_per_gpu=m.states, overhead=m.overhead, total_per_gpu=m.total,
                    fits=outcome.fits)
    comm = Communication(collectives=[Collective(name=name, bytes_per_gpu=b, seconds=s, overlappable=o)
                                      for name, b, s, o in t.collectives],
                         compute_seconds=t.compute * scale, exposed_seconds=t.exposed_comm * scale,
                         bubble_fraction=t.bubble / t.seconds)
    layout = _describe(plan)
    paging = " by paging its optimizer state" if outcome.fits and (m.total or 0) > card.memory_bytes else ""
    fit = (f"fits{paging} ({human_bytes(m.total or 0)} of {human_bytes(card.memory_bytes)} per GPU)" if outcome.fits
           else f"DOES NOT FIT ({human_bytes(m.total or 0)} of {human_bytes(card.memory_bytes)} per GPU)")
    verdict = (f"{human_count(params.total)} params on {plan.gpus:,} x {card.name}: {layout}; {fit}; "
               f"{seconds:,.2f} s/step at MFU {step_mfu:.2f}; {human_hours(cost.gpu_hours)} GPU-hours, "
               f"{cost.wall_clock_hours / 24:,.1f} days for {human_count(n_tokens)} tokens"
               + (f"; {human_usd(cost.usd)}" if cost.usd is not None else ""))
    notes += [f"tokens: {'given' if tokens is not None else 'Chinchilla-optimal, 20 per parameter'}; "
              f"sequence {seq:,}" + (" (the pre-training context)" if seq_len is None else ""),
              ("plan: " + ("the layout given; " if knobs.pinned else f"the fastest of {outcome.considered:,} "
                           "plans that fits (plans within 3% count as equal: the simplest wins); ")
               + "other knobs chosen as the search would"),
              f"global batch {plan.global_batch:,} sequences"
              + ("" if knobs.global_batch else " (about 4M tokens, at least one per data-parallel rank)"),
              ("step time predicted from the plan: kernels at the card's efficiencies "
               f"({card.efficiency.source}), exposed communication, pipeline bubble, optimizer step"
               if fixed is None else f"step time from the MFU given ({fixed})"),
              "MFU and TFLOP/s: model FLOPs ("
              + ("forward + backward without the frozen weights' gradients" if lora_rank is not None else
                 "3 x forward") + f", dense attention) against the dense {dtype} peak "
              f"({peak / 1e12:,.0f} TFLOP/s); GPU-hours = steps x step time x GPUs",
              f"memory: the busiest GPU{_busiest(plan)}, Megatron-LM's saved tensors, "
              f"{plan.attention} attention, overheads included"]
    if lora_rank is not None:
        notes.append(f"LoRA: {params.trainable:,} trainable of {params.total:,} parameters; the frozen base keeps no "
                     "gradients or optimizer state and computes no weight gradient (2 x forward of GEMMs); only the "
                     "adapters' gradients are reduced and stepped, while ZeRO-3 still gathers every weight; "
                     "activations as if every layer trained (Megatron's profile: errs high; `paramcalc memory` counts "
                     "the frozen layers' savings)" + ("" if tokens is not None else "; tokens: give the fine-tuning "
                                                      "data's with --tokens (the default is pre-training's)"))
    if not net.layers:
        notes.append("a layers network (CNN, RNN): its step time is not validated against published runs and errs "
                     "fast (convolutions at the large-GEMM rate; ResNet-50 trains at ~15-25% MFU in practice): give "
                     "a measured --mfu for planning")
    if dtype == "fp8":
        notes.append("fp8: Transformer Engine's recipe: the layers' GEMMs at the fp8 peak x its efficiency, the "
                     "LM head and attention in bf16, bf16 weights and activations, fp32 master and Adam state")
    if not outcome.fits:
        notes.append("no plan of this layout fits: the one needing the least memory is shown; add GPUs, "
                     "recomputation, ZeRO-3 or pipeline stages")
    return EstimateReport(model=net.name, seq_len=seq, tokens=n_tokens, params=params, flops=f,
                          plan=_plan(plan, card.name, not knobs.pinned), step=step, memory=memory, cost=cost,
                          communication=comm, verdict=verdict, notes=notes)


def _cluster(net, card: Gpu, seq: int, knobs: Knobs, dtype: str, attention: str, tokens: int, fixed: float | None,
             days: float) -> tuple[int, Outcome]:
    """The smallest power of two of GPUs whose fastest fitting plan trains `tokens` within `days`:
    start from the count that would at the full dense peak (a lower bound) and double."""
    step = count_flops(net, seq_len=seq, batch=1).flops.train_step  # forward + backward (LoRA: no frozen grads)
    assert step is not None  # a network with an architecture (bare counts plan elsewhere)
    work = step * tokens / seq
    guess = work / (days * 86400 * card.peak(dtype))
    n = 2 ** max(0, math.ceil(math.log2(max(guess, 1))))
    last: Outcome | None = None
    while n <= MAX_GPUS:
        found = search(net, n, card, seq, knobs, dtype=dtype, attention=attention)
        if found is not None:
            last = found
            seconds = found.time.seconds if fixed is None else \
                found.time.model_flops / (n * card.peak(dtype) * fixed)
            wall = tokens / (found.plan.global_batch * seq) * seconds / 86400
            if found.fits and wall <= days:
                return n, found
        n *= 2
    if n > MAX_GPUS and (last is None or last.fits):
        raise UserError(f"training {tokens:,} tokens within {days:g} days needs more than {MAX_GPUS:,} GPUs",
                        field="days", fix="allow more days, or give --gpus to plan for the cluster you have")
    if last is None:
        raise _why_no_plan(net, MAX_GPUS, card, seq, knobs, attention)
    return last.plan.gpus, last


def _why_no_plan(net, gpus: int, card: Gpu, seq: int, k: Knobs, attention: str) -> UserError:
    """The setting that rules every plan out, named as its flag. DualPipe is blamed only when the
    same knobs under 1F1B would give a plan; otherwise what rules out 1F1B is named."""
    L = sum(st.count for st in net.layers)
    shaped = bool(net.layers) and bool(net.width)
    if k.schedule == "dualpipe":
        plain = replace(k, schedule="1f1b")
        shapes = {(p.pp, p.micro_batches) for p in candidates(net, gpus, card, seq, plain, dtype="bf16",
                                                              attention=attention)}
        if not shapes:
            return _why_no_plan(net, gpus, card, seq, plain, attention)
        short = sorted(((pp, m) for pp, m in shapes if dualpipe_problem(pp, 1, m) == "micro_batches"),
                       key=lambda s: (s[0], -s[1]))
        if not short:  # every pipeline 1F1B could run is odd (or absent)
            got = f"got {k.pp}" if k.pp is not None else f"no even pp splits {gpus:,} GPUs and {L} layers"
            return UserError(f"DualPipe feeds the pipeline from both ends: it needs an even number of stages, {got} "
                             "(deepseek-ai/DualPipe)", field="pp", fix="give an even {pp}, or {schedule} 1f1b")
        pp, m = short[0]
        batch = "micro_batch" if k.micro_batch is not None and k.global_batch is None else "global_batch"
        return UserError(f"DualPipe needs an even number of micro-batches, at least 2 x pp = {2 * pp}, on each "
                         f"pipeline; pp {pp} gets {m} (deepseek-ai/DualPipe)", field=batch,
                         fix="raise {global_batch} or lower {micro_batch} (2 x pp x dp x micro-batch sequences at "
                             "least), or {schedule} 1f1b")
    for name, value in (("tp", k.tp), ("pp", k.pp), ("cp", k.cp)):
        if value is not None and value > 1 and not shaped:
            return UserError(f"{name} {value}: a network without transformer layers (a CNN, an RNN) is planned "
                             "with data parallelism only", field=name, fix=f"drop {{{name}}}")
    if k.pp is not None and k.pp > max(L, 1):
        return UserError(f"{k.pp} pipeline stages for {L} layers", field="pp", fix=f"use at most {L}")
    if k.cp is not None and k.cp > 1 and attention != "flash":
        return UserError("context parallelism runs flash attention on each chunk", field="attention",
                         fix="use flash attention with {cp}")
    if k.cp is not None and k.cp > 1 and seq % (2 * k.cp):
        return UserError(f"context parallel {k.cp} needs the sequence ({seq}) in 2 x cp equal chunks "
                         "(load-balanced causal attention)", field="cp", fix="pick a cp that divides seq / 2")
    if k.ep is not None and k.ep > 1:
        from paramcalc.analysis.plans import experts

        n = experts(net)
        if not n or n % k.ep:
            return UserError(f"expert parallel {k.ep} must divide the routed experts ({n or 'none'})", field="ep")
        return UserError(f"expert parallel {k.ep} must divide dp x cp of a plan for {gpus:,} GPUs", field="ep",
                         fix="pick an ep that divides the data- and context-parallel ranks")
    if k.vpp is not None and k.vpp > 1:
        return UserError(f"{k.vpp} virtual stages need pipeline stages (pp > 1), pp x vpp <= {L} layers and "
                         "micro-batches in multiples of pp", field="vpp", fix="give {pp}, fewer virtual stages, "
                         "or a global batch with more micro-batches")
    if k.micro_batch is not None or k.global_batch is not None:
        return UserError("the global batch does not split into whole micro-batches on every data-parallel rank",
                         field="micro_batch" if k.micro_batch is not None else "global_batch",
                         fix="make the global batch a multiple of dp x micro-batch")
    return UserError(f"no plan splits {gpus:,} GPUs with the degrees given", field="gpus",
                     fix="make --gpus a multiple of tp x pp x cp")


def _bare(net, params, f, card: Gpu, gpu: str, gpus, tokens: int, seq: int, dtype: str, fixed: float | None,
          usd_per_hour, days: float) -> EstimateReport:
    mfu = fixed if fixed is not None else 0.4
    if gpus is not None:
        n = parse_positive_int(gpus, field="gpus")
    else:  # the smallest power of two finishing within the days (6N FLOPs per token at this MFU)
        seconds = 6 * net.total_params * tokens / (card.peak(dtype) * mfu)
        n = 2 ** max(0, math.ceil(math.log2(max(seconds / (days * 86400), 1))))
    c = estimate_cost(net, tokens=tokens, gpu=gpu, gpus=n, mfu=mfu, seq_len=seq, dtype=dtype,
                      usd_per_hour=usd_per_hour)
    flops_per_seq = 6 * net.total_params * seq
    seconds = flops_per_seq / (n * card.peak(dtype) * mfu)
    step = Step(seconds=seconds, mfu=mfu, hfu=mfu, tflops_per_gpu=card.peak(dtype) * mfu / 1e12,
                tokens_per_second=seq / seconds, mfu_source="given" if fixed is not None else "assumed")
    verdict = (f"{human_count(params.total)} params; {human_hours(c.cost.gpu_hours)} GPU-hours for "
               f"{human_count(tokens)} tokens at MFU {mfu:.2f}")
    notes = ["a bare count: no layout or activations to plan; step time of one sequence at "
             f"MFU {mfu} (6N FLOPs per token)", *c.notes[:2]]
    return EstimateReport(model=net.name, seq_len=seq, tokens=tokens, params=params, flops=f,
                          plan=TrainingPlan(gpus=n, gpu=card.name, dp=n, dtype=dtype, searched=False), step=step,
                          memory=None, cost=c.cost, verdict=verdict, notes=notes)


def _knobs(**given) -> Knobs:
    out: dict = {}
    for name in ("tp", "pp", "vpp", "cp", "ep", "micro_batch", "global_batch"):
        if given[name] is not None:
            out[name] = parse_positive_int(given[name], field=name)
    if given["zero"] is not None:
        stage = parse_number(given["zero"], field="zero")
        if stage not in (0, 1, 2, 3):
            raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {given['zero']!r}", field="zero")
        out["zero"] = int(stage)
    if given["recompute"] is not None:
        out["recompute"] = choose(given["recompute"], TRAIN_RECOMPUTE, "recompute")
    if given["sp"] is not None:
        out["sp"] = bool(given["sp"])
    out["schedule"] = choose(given["schedule"], SCHEDULES, "schedule")
    out["grad_reduce"] = choose(given["grad_reduce"], GRAD_REDUCE, "grad_reduce")
    # the step prices a fixed state per parameter; adafactor's is factored by shape
    out["optimizer"] = choose(given["optimizer"], [k for k, v in OPTIMIZER_STATE.items() if v is not None],
                              "optimizer")
    out["fp8_activations"] = bool(given["fp8_activations"])
    if out["schedule"] == "dualpipe" and out.get("vpp", 1) > 1:
        raise dualpipe_error("vpp", 0, 0)
    return Knobs(**out)


def _plan(p: Plan, gpu: str, searched: bool) -> TrainingPlan:
    return TrainingPlan(gpus=p.gpus, gpu=gpu, searched=searched, tp=p.tp, pp=p.pp, vpp=p.vpp, cp=p.cp, ep=p.ep,
                        dp=p.dp, sp=p.sp, micro_batch=p.micro_batch, micro_batches=p.micro_batches,
                        global_batch=p.global_batch, zero=p.zero, recompute=p.recompute, attention=p.attention,
                        schedule=p.schedule, grad_reduce=p.grad_reduce, optimizer=p.optimizer,
                        fp8_activations=p.fp8_activations, dtype=p.dtype)


def _busiest(p: Plan) -> str:
    """Where the busiest GPU sits in the pipeline, as the memory note says it."""
    if p.schedule == "dualpipe" and p.pp > 1:  # rank i holds stages i and p - 1 - i (analysis/memory.py)
        return " (DualPipe: rank 0, which holds both ends of the pipeline, or a middle rank's two stages)"
    return " (first or last pipeline stage)"


def _describe(p: Plan) -> str:
    parts = [f"{k} {v}" for k, v in (("TP", p.tp), ("PP", p.pp), ("CP", p.cp), ("EP", p.ep)) if v > 1]
    if p.vpp > 1:
        parts.append(f"{p.vpp} virtual stages")
    if p.schedule == "dualpipe":
        parts.append("DualPipe")
    parts.append(f"DP {p.dp}")
    if p.sp:
        parts.append("SP")
    parts.append(f"ZeRO-{p.zero}")
    parts.append(f"micro-batch {p.micro_batch} x {p.micro_batches}")
    if p.recompute != "none":
        parts.append(f"{p.recompute} recomputation")
    if p.fp8_activations:
        parts.append("fp8 activations")
    if p.optimizer != "adamw":
        parts.append(p.optimizer)
    return ", ".join(parts)
