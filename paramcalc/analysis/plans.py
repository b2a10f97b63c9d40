"""Every plan for exactly N GPUs, and the fastest that fits (`paramcalc estimate`).

A plan sets Megatron-LM's degrees: tensor (tp, inside a node), context (cp),
pipeline (pp, with v virtual stages) and data parallel (dp = N / (tp cp pp));
expert parallelism (ep) lives inside dp x cp, as in Megatron-Core; ZeRO /
FSDP shard over dp x cp. What the user pins is kept; every other knob is
searched: the micro-batch, the virtual stages, the ZeRO stage and
recomputation. Sequence parallelism goes with tensor parallelism (Korthikanti
et al. 2022: it costs no extra communication and splits the activations), unless
pinned off.

Candidates are ordered by predicted step time (analysis/step.py); the first
whose busiest GPU fits the card's memory less a 5% headroom (analysis/memory.py)
wins, so memory
is computed for few of them. A cheap lower bound, the model states alone,
skips most that cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cache

from paramcalc.analysis.memory import Terms, dualpipe_problem, memory_terms, model_states
from paramcalc.analysis.step import Plan, StepTime, Work, step_time
from paramcalc.blocks.base import Pass
from paramcalc.blocks.moe import MoE
from paramcalc.errors import UserError
from paramcalc.inputs.gpu_file import Gpu
from paramcalc.network import Network, stage_of, transformer_layer
from paramcalc.results.memory import Setup

# Sequences per step when none is given: about 4M tokens, as Llama 2 (4M) and GPT-3 175B
# (3.2M, Brown et al. 2020, table 2.1) trained; at least one sequence per data-parallel rank.
DEFAULT_BATCH_TOKENS = 2**22
# A model without a token axis (a CNN: one sample per "sequence") defaults to 1,024 samples per
# step: Goyal et al. 2017 train ResNet-50 at 256-8K, ViT (Dosovitskiy et al. 2021) at 4,096.
DEFAULT_BATCH_SAMPLES = 1024
MICRO_BATCHES = (1, 2, 4, 8)
# Selective recomputation drops the attention core's s x s tensors; flash attention keeps none, so
# there it saves no memory and costs time: the search leaves it out (it can still be pinned).
RECOMPUTES = {"flash": ("none", "full"), "eager": ("none", "selective", "full")}
VIRTUAL_STAGES = (1, 2, 3, 4, 6, 8)
MAX_CP = 32
# Plans within this share of the fastest are equally fast for a model that errs by 10% or so;
# the simplest of them is chosen (_simplicity).
EQUAL = 0.03
# The search keeps this share of the card free: the allocator's peaks vary from step to step
# and a plan at 99% of memory fails in practice (torchtitan's published runs stay below ~90%
# of max_memory_reserved). `memory.fits` itself compares with the whole card.
HEADROOM = 0.05


@dataclass(frozen=True)
class Knobs:
    """What the user fixed (None: searched)."""

    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    ep: int | None = None
    vpp: int | None = None
    micro_batch: int | None = None
    zero: int | None = None
    recompute: str | None = None
    sp: bool | None = None
    global_batch: int | None = None
    # DualPipe is evaluated only when asked for: it pays off where expert all-to-alls are exposed, and
    # its doubled parameters and 2 x pp micro-batches rule it out elsewhere (DeepSeek-V3 report, 3.2.1)
    schedule: str = "1f1b"
    grad_reduce: str = "fp32"  # fp32 (Megatron-LM's default for bf16, torchtitan's FSDP2) | bf16 (NeMo's recipes)
    optimizer: str = "adamw"  # adamw | adamw-bf16 (DeepSeek-V3's bf16 moments) | any fixed-state optimizer
    fp8_activations: bool = False  # DeepSeek-V3's fp8 caching of the Linears' inputs (with dtype fp8)

    @property
    def pinned(self) -> bool:
        """A plan is pinned when its layout is (contract: any of tp, pp, cp, ep)."""
        return any(v is not None for v in (self.tp, self.pp, self.cp, self.ep))


@dataclass(frozen=True)
class Outcome:
    plan: Plan
    time: StepTime
    memory: Terms
    fits: bool
    considered: int


def divisors(n: int) -> list[int]:
    """n's divisors in increasing order, found in O(sqrt n)."""
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            if d != n // d:
                large.append(n // d)
    return small + large[::-1]


def experts(net: Network) -> int:
    """Routed experts per MoE layer (0 for a dense network)."""
    for stage in net.layers:
        mlp = transformer_layer(stage).mlp
        if isinstance(mlp, MoE):
            return mlp.experts
    return 0


def global_batch(asked: int | None, dp: int, seq: int) -> int | None:
    """Sequences per step: as asked (it must split over the data-parallel ranks), else
    DEFAULT_BATCH_TOKENS' worth rounded up to a multiple of dp."""
    if asked is not None:
        return asked if asked % dp == 0 else None
    default = max(1, DEFAULT_BATCH_TOKENS // seq) if seq > 1 else DEFAULT_BATCH_SAMPLES
    return math.ceil(default / dp) * dp


def layouts(net: Network, gpus: int, card: Gpu, seq: int, k: Knobs, attention: str) -> Iterator[tuple[int, ...]]:
    """(tp, cp, pp, dp, ep) that multiply to `gpus` and the architecture can split."""
    L = sum(s.count for s in net.layers)
    shaped = bool(net.layers) and bool(net.width)
    n_experts = experts(net)
    for tp in divisors(gpus) if k.tp is None else [k.tp]:
        if not shaped and tp > 1 or k.tp is None and tp > card.gpus_per_node:
            continue
        if tp > 1:
            try:
                net.check_tensor_parallel(tp)
            except UserError:
                if k.tp is not None:
                    raise
                continue
        rest = gpus // tp if gpus % tp == 0 else 0
        for cp in divisors(rest) if k.cp is None else [k.cp]:
            if cp > 1 and (not shaped or attention != "flash" or seq % (2 * cp) or k.cp is None and cp > MAX_CP):
                continue
            for pp in divisors(rest // cp) if k.pp is None and rest % cp == 0 else [k.pp or 1]:
                if pp > 1 and (not shaped or pp > L) or rest % (cp * pp):
                    continue
                dp = rest // (cp * pp)
                if not dp:
                    continue
                # expert parallelism divides the experts and lives inside dp x cp (Megatron-Core)
                fitting = divisors(math.gcd(n_experts, dp * cp)) if n_experts else [1]
                for ep in [k.ep] if k.ep is not None else fitting:
                    if ep in fitting:
                        yield tp, cp, pp, dp, ep


def candidates(net: Network, gpus: int, card: Gpu, seq: int, k: Knobs, *, dtype: str,
               attention: str) -> Iterator[Plan]:
    L = sum(s.count for s in net.layers) or 1
    for tp, cp, pp, dp, ep in layouts(net, gpus, card, seq, k, attention):
        batch = global_batch(k.global_batch, dp, seq)
        if batch is None:
            continue
        per_rank = batch // dp
        shards = dp * cp
        for mb in [k.micro_batch] if k.micro_batch is not None else MICRO_BATCHES:
            if per_rank % mb:
                continue
            m = per_rank // mb
            # interleaving needs whole layers per virtual stage and micro-batches in multiples of pp (Megatron)
            allowed = [v for v in VIRTUAL_STAGES if pp > 1 and pp * v <= L and m % pp == 0]
            vpps = ([k.vpp] if k.vpp == 1 or k.vpp in allowed or pp > 1 and pp * k.vpp <= L and m % pp == 0
                    else []) if k.vpp is not None else allowed or [1]
            if k.schedule == "dualpipe":  # DualPipe interleaves its two stages per rank itself: no virtual stages
                if dualpipe_problem(pp, k.vpp or 1, m) is not None:
                    continue
                vpps = [1]
            for vpp in vpps if pp > 1 else [v for v in vpps if v == 1]:
                # ZeRO-2 moves the bytes ZeRO-1 does: it is tried only when ZeRO-1 does not fit (search)
                for zero in [k.zero] if k.zero is not None else ((1, 3) if shards > 1 else (0,)):
                    for recompute in [k.recompute] if k.recompute is not None else RECOMPUTES[attention]:
                        sp = (tp > 1) if k.sp is None else k.sp
                        # FSDP with pipelining keeps the stage's weights gathered across micro-batches
                        # (Llama 3, section 3.3.2; torchtitan): re-gathering them per micro-batch would not hide
                        yield Plan(tp=tp, pp=pp, cp=cp, ep=ep, dp=dp, vpp=vpp, micro_batch=mb, global_batch=batch,
                                   zero=zero, recompute=recompute, sp=sp and tp > 1, attention=attention, dtype=dtype,
                                   reshard=not (zero == 3 and pp > 1), schedule=k.schedule,
                                   grad_reduce=k.grad_reduce, optimizer=k.optimizer,
                                   fp8_activations=k.fp8_activations)


def search(net: Network, gpus: int, card: Gpu, seq: int, knobs: Knobs = Knobs(), *, dtype: str = "bf16",
           attention: str = "flash") -> Outcome | None:
    """The fastest plan for exactly `gpus` GPUs that fits; if none fits, the one that needs
    the least memory (reported as not fitting). None: no plan splits this way at all."""
    work = Work.of(net, seq)
    timed = sorted(((step_time(net, work, plan, card), plan) for plan in
                    candidates(net, gpus, card, seq, knobs, dtype=dtype, attention=attention)),
                   key=lambda tp: (tp[0].seconds, tp[1].zero, tp[1].tp * tp[1].pp * tp[1].cp))
    if not timed:
        return None
    terms = _memory(net, seq)
    capacity = int(card.memory_bytes * (1 - HEADROOM))
    states = _states(net)
    fitting: list[tuple[StepTime, Plan, Terms]] = []
    for time, plan in timed:
        if fitting and time.seconds > fitting[0][0].seconds * (1 + EQUAL):
            break
        for variant in [plan, replace(plan, zero=2)] if plan.zero == 1 and knobs.zero is None else [plan]:
            if states(variant) > capacity or _outgrows(terms, variant, capacity):
                continue
            m = terms(variant)
            if fits(m, variant, capacity):
                fitting.append((time, variant, m))
                break
    if fitting:
        time, plan, m = min(fitting, key=lambda x: _simplicity(x[1]))
        return Outcome(plan, time, m, True, len(timed))
    # nothing fits: the least memory, fastest among equals
    least = min(timed, key=lambda tp: (states(tp[1]), tp[0].seconds))
    smallest = [(t, p) for t, p in timed if states(p) == states(least[1])]
    # a plan shape's least memory is at its smallest micro-batch (_outgrows) or, where one micro-batch
    # takes the whole per-rank batch, there (no gradient accumulation): only those are weighed
    shapes = [(replace(p, micro_batch=1), p.micro_batches == 1) for _, p in smallest]
    fewest: dict[tuple[Plan, bool], int] = {}
    for shape, (_, p) in zip(shapes, smallest):
        fewest[shape] = min(fewest.get(shape, p.micro_batch), p.micro_batch)
    smallest = [(t, p) for shape, (t, p) in zip(shapes, smallest) if p.micro_batch == fewest[shape]]
    best = min(smallest, key=lambda tp: ((terms(tp[1]).total or 0), tp[0].seconds))
    m = terms(best[1])
    return Outcome(best[1], best[0], m, fits(m, best[1], card.memory_bytes), len(timed))


def _outgrows(terms, plan: Plan, capacity: int) -> bool:
    """Whether the plan's micro-batch-1 twin already needs more than `capacity`. With gradient
    accumulation (more than one micro-batch) a stage's memory never shrinks as the micro-batch grows:
    it holds mb x min(m, p) samples' activations in flight (m = per-rank batch / mb; Narayanan et al.
    2021, section 2.2), the recomputed layer and the logits scale with mb, and the states do not
    change. So one evaluation per plan shape rules out every micro-batch size of a model that fits
    nothing (deep models), keeping the search's cost flat."""
    if plan.micro_batch == 1 or plan.micro_batches == 1:  # one micro-batch: no unsharded gradient accumulation
        return False
    floor = terms(replace(plan, micro_batch=1))
    return floor.total is not None and not fits(floor, plan, capacity)


def fits(m: Terms, plan: Plan, capacity: int) -> bool:
    """Whether one GPU's bytes fit `capacity`; a paged optimizer's state may page out to CPU memory
    (bitsandbytes' paged optimizers on CUDA unified memory, as analysis/memory.py's verdict)."""
    return m.total is not None and m.total - m.paged <= capacity


def _simplicity(p: Plan) -> tuple:
    """Among plans equally fast within the model's accuracy, the one a practitioner would run:
    fewest context, pipeline and tensor ranks, no virtual stages, least sharding and recomputation."""
    return (p.cp, p.pp, p.tp, p.ep, p.vpp, p.zero,
            ("none", "deepseek", "selective", "op", "full").index(p.recompute),
            -p.micro_batch)


def evaluate(net: Network, plan: Plan, card: Gpu, seq: int) -> Outcome:
    """One given plan, fitting or not."""
    work = Work.of(net, seq)
    m = _memory(net, seq)(plan)
    return Outcome(plan, step_time(net, work, plan, card), m, fits(m, plan, card.memory_bytes), 1)


def _memory(net: Network, seq: int):
    @cache
    def terms(plan: Plan) -> Terms:
        return memory_terms(net, Pass(plan.micro_batch, seq), plan.setup())
    return terms


def _states(net: Network):
    """A lower bound of a plan's memory: its model states on the busiest stage's share."""
    layers = {s.name for s in net.layers}

    def split(parts: dict[str, int]) -> tuple[int, int]:  # (the layers' dense parameters, their routed experts')
        expert = sum(v for key, v in parts.items() if "/moe/experts/" in key)
        return sum(v for key, v in parts.items() if stage_of(key, layers)) - expert, expert

    (dense_all, expert_all), (dense_trained, expert_trained) = split(net.params()), split(net.trainable_params())

    @cache
    def bound(tp: int, pp: int, ep: int, dp: int, cp: int, zero: int, dtype: str, optimizer: str) -> int:
        # gradients and optimizer state for the trained parameters only (a LoRA base keeps none)
        w, g, o = model_states(int(dense_all / (tp * pp)), Setup(dp=dp, cp=cp, zero=zero, dtype=dtype,
                                                                  optimizer=optimizer),
                               trainable=int(dense_trained / (tp * pp)))
        # experts: 1/ep on each GPU, sharded over the dp x cp / ep ranks of their group
        ew, eg, eo = model_states(int(expert_all / (ep * tp * pp)), Setup(dp=max(1, dp * cp // ep), zero=zero,
                                                                          dtype=dtype, optimizer=optimizer),
                                  trainable=int(expert_trained / (ep * tp * pp)))
        return w + g + ew + eg + (0 if optimizer.startswith("paged") else o + eo)  # paged state may page out
    return lambda p: bound(p.tp, p.pp, p.ep, p.dp, p.cp, p.zero, p.dtype, p.optimizer)


__all__ = ["Knobs", "Outcome", "Plan", "search", "evaluate", "candidates", "global_batch", "replace"]
