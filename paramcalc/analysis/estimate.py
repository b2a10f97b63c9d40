"""The main job: parameters, FLOPs, a training plan that fits, and its cost,
in one report.

The plan is the smallest GPU count that holds one training step: first plain
data parallelism with ZeRO-3 sharding (FSDP), then with full activation
recomputation, then with 8-way tensor parallelism inside a node and pipeline
stages; GPU counts are powers of two, as clusters are allocated.
"""

from __future__ import annotations

from paramcalc.analysis.comm import measured_link_bandwidth, step_communication
from paramcalc.analysis.cost import CHINCHILLA_TOKENS_PER_PARAM, estimate_cost, parse_mfu
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu
from paramcalc.errors import UserError
from paramcalc.network import Model, Network, lower
from paramcalc.results.memory import MemoryReport
from paramcalc.results.training import Communication, EstimateReport, TrainingPlan
from paramcalc.units import human_bytes, human_count, human_hours, human_usd, parse_positive_int

MAX_GPUS = 2**17

# Share of the dense peak a large bf16 training step reaches in its matmuls when
# nothing waits: Narayanan et al. 2021 (Megatron-LM, table 1) sustain ~50-57% of
# A100 peak per GPU on GPT models; it sets `--mfu auto`, which errs high for small
# models whose kernels do not fill the GPU.
KERNEL_EFFICIENCY = 0.55

# (recompute, tp, pp) in the order a practitioner reaches for them.
STRATEGIES = (("none", 1, 1), ("full", 1, 1), ("full", 8, 1), ("full", 8, 4), ("full", 8, 16))


def plan_training(net: Network, *, gpu: str, seq_len=None, batch=1, dtype: str = "bf16",
                  max_gpus: int = MAX_GPUS) -> tuple[TrainingPlan, MemoryReport | None]:
    """Fewest power-of-two GPUs (and how to shard) that fit one step per GPU;
    among equal counts, the simplest strategy (the earliest in STRATEGIES)."""
    card = load_gpu(gpu)
    best, memory = TrainingPlan(gpu=card.name), None
    for recompute, tp, pp in STRATEGIES:
        gpus = tp * pp
        limit = best.gpus // 2 if best.gpus else max_gpus  # only a strictly smaller count can win
        while gpus <= limit:
            dp = gpus // (tp * pp)
            m = estimate_memory(net, mode="train", seq_len=seq_len, batch=batch, dtype=dtype, zero=3 if dp > 1 else 0,
                                dp=dp, tp=tp, pp=pp, sequence_parallel=tp > 1, recompute=recompute,
                                attention="flash", gpu=card.name)
            if m.fits is not None and m.fits.fits:
                best = TrainingPlan(gpus=gpus, dp=dp, tp=tp, pp=pp, zero=3 if dp > 1 else 0, recompute=recompute,
                                    attention="flash", gpu=card.name)
                memory = m
                break
            gpus *= 2
    return best, memory


def auto_mfu(comm: Communication) -> float:
    """MFU from the step's shape: kernel efficiency, slowed by communication that
    cannot hide behind compute and by the pipeline bubble."""
    busy = comm.compute_seconds / (comm.compute_seconds + comm.exposed_seconds)
    return KERNEL_EFFICIENCY * busy * (1 - comm.bubble_fraction)


def estimate(model: Model, *, gpu: str = "h100-sxm", tokens=None, gpus=None, mfu=0.4, seq_len=None, batch=1,
             dtype: str = "bf16", usd_per_hour=None, comm_file=None) -> EstimateReport:
    """Everything at once: params, FLOPs per step, a plan that fits, GPU-hours and dollars.

    Tokens default to Chinchilla's 20 per parameter (Hoffmann et al. 2022). `comm_file` is a
    `paramcalc bench-collectives` file whose measured bus bandwidth replaces the catalog's link.
    """
    net = lower(model)
    params = count_params(net).params
    seq = net.seq_len(None if seq_len is None else parse_positive_int(seq_len, field="seq_len"))
    batch = parse_positive_int(batch, field="batch")
    f = count_flops(net, seq_len=seq, batch=batch).flops
    plan, memory = plan_training(net, gpu=gpu, seq_len=seq, batch=batch, dtype=dtype) if net.has_architecture \
        else (TrainingPlan(gpu=load_gpu(gpu).name), None)
    n_gpus = parse_positive_int(gpus, field="gpus") if gpus is not None else (plan.gpus or 1)
    budget = tokens if tokens is not None else CHINCHILLA_TOKENS_PER_PARAM * params.total
    comm, extra = None, []
    auto = str(mfu).lower() == "auto"
    if plan.gpus:
        link = None
        if comm_file is not None:
            link = measured_link_bandwidth(comm_file)
            extra.append(f"communication at the measured bus bandwidth {link / 1e9:,.1f} GB/s ({comm_file})")
        comm = step_communication(net, Pass(batch, seq), gpu=gpu, dp=plan.dp, tp=plan.tp, pp=plan.pp,
                                  zero=plan.zero, micro_batches=plan.pp, dtype=dtype,
                                  mfu=KERNEL_EFFICIENCY if auto else parse_mfu(mfu), link_bandwidth=link)
    if auto:
        if comm is None:
            raise UserError("an automatic MFU needs a plan that fits (its communication sets the MFU)", field="mfu",
                            fix="give {mfu} a number such as 0.4")
        mfu = auto_mfu(comm)
        extra.append(f"MFU {mfu:.3f} estimated: {KERNEL_EFFICIENCY} of peak in matmuls x compute / (compute + "
                     "exposed communication) x (1 - pipeline bubble); a measured MFU (bench --calibration-out) is "
                     "better")
    c = estimate_cost(net, tokens=budget, gpu=gpu, gpus=n_gpus, mfu=mfu, seq_len=seq, batch=batch, dtype=dtype,
                      usd_per_hour=usd_per_hour)
    gpu_name = c.gpu
    if plan.gpus and memory is not None:
        fit = (f"fits on {plan.gpus:,} x {gpu_name} with ZeRO-{plan.zero}"
               + (f", TP {plan.tp}" if plan.tp > 1 else "") + (f", PP {plan.pp}" if plan.pp > 1 else "")
               + (", full recomputation" if plan.recompute == "full" else "")
               + f" ({human_bytes(memory.memory.total_per_gpu)} per GPU)")
    elif memory is None and params.embedding is None:
        fit = f"{human_bytes(16 * params.total)} of model states; activations need the architecture"
    else:
        fit = f"does not fit on {MAX_GPUS:,} x {gpu_name}"
    cost = c.cost
    verdict = (f"{human_count(params.total)} params; {fit}; {human_hours(cost.gpu_hours)} GPU-hours for "
               f"{human_count(c.tokens)} tokens at MFU {cost.mfu:.2f}"
               + (f"; {human_usd(cost.usd)}" if cost.usd is not None else ""))
    notes = [f"tokens: {'given' if tokens is not None else 'Chinchilla-optimal 20 per parameter'}",
             "plan: the fewest power-of-two GPUs holding one step (flash attention, micro-batch "
             f"{batch}); cost: model FLOPs / (dense {dtype} peak x MFU)", *c.notes[:2] + extra]
    return EstimateReport(model=net.name, seq_len=seq, params=params, flops=f, plan=plan,
                          memory=memory.memory if memory else None, cost=cost, communication=comm,
                          verdict=verdict, notes=notes)
