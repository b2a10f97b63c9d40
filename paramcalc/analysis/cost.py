"""GPU-hours, wall-clock, dollars and energy of one training run.

The convention is PaLM's (Chowdhery et al. 2022, appendix B) and Megatron's
(Narayanan et al. 2021): model FLOPs (forward + backward, dense attention,
no recomputation) divided by the GPU's dense peak times the model FLOPs
utilisation (MFU). The MFU absorbs communication, pipeline bubbles, stalls and
restarts, so nothing is added on top of it (docs/contract.md). Recomputation is
hardware work: it is reported as hardware FLOPs (HFU) and never raises the
GPU-hours of a given MFU.
"""

from __future__ import annotations

from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.settings import TRAIN_RECOMPUTE, choose, make_pass, with_lora_flags
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu, price, prices
from paramcalc.errors import UserError
from paramcalc.network import Model, Network, lower
from paramcalc.network.measured import MeasuredCount
from paramcalc.results.cost import Cost, CostReport
from paramcalc.units import human_flops, parse_positive, parse_positive_int

# Hoffmann et al. 2022 ("Chinchilla", table 3): compute-optimal training uses ~20 tokens per parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20


def parse_mfu(value) -> float:
    mfu = parse_positive(value, field="mfu")
    if mfu > 1:
        raise UserError(f"MFU must be in (0, 1], got {value!r}", field="mfu",
                        fix="give a fraction of peak such as 0.4 (40%), not a percentage")
    return float(mfu)


def training_flops(net: Network, p: Pass, tokens: int, recompute: str = "none") -> tuple[int, int | None, list[str]]:
    """(model FLOPs, hardware FLOPs or None, notes) of training on `tokens` tokens."""
    measured = count_flops(net, seq_len=p.seq, batch=p.batch, attention="eager") \
        if isinstance(net, MeasuredCount) else None  # transformers on the meta device (analysis/flops.py)
    if measured is not None and measured.flops.train_step is not None:
        step = measured.flops.train_step
        return step * tokens // p.tokens, None, [
            f"model FLOPs: forward measured by FlopCounterMode at seq {p.seq} plus backward (2 x forward; "
            "measured for a profiled module), x tokens / (batch x seq); recomputation unknown"]
    if not net.has_architecture:
        # Kaplan et al. 2020, eq. 2.1: C = 6 N D (2N forward + 4N backward per token; errs low, no attention)
        return 6 * net.total_params * tokens, None, ["a bare count: training FLOPs = 6 x N x tokens "
                                                     "(Kaplan et al. 2020); attention and recomputation unknown"]
    f = count_flops(net, seq_len=p.seq, batch=p.batch, attention="eager", recompute=recompute).flops
    assert f.train_step is not None and f.hardware_step is not None  # None for a bare count only (above)
    # one step covers batch x seq tokens; scale its forward + backward to the token budget (floor: exact int)
    model = f.train_step * tokens // p.tokens
    hardware = f.hardware_step * tokens // p.tokens if recompute != "none" else None
    notes = [f"model FLOPs: forward + backward at seq {p.seq}, dense attention (full s x s scores), "
             "2 per multiply-add, x tokens / (batch x seq): the PaLM/Megatron MFU convention"]
    return model, hardware, notes


def implied_mfu(flops: int, gpu_hours: float, peak_flops: int) -> float:
    """The MFU a published run implies: its model FLOPs over what its GPU-hours could do at peak."""
    return flops / (gpu_hours * 3600 * peak_flops)  # PaLM appendix B: MFU = achieved / peak throughput


def calibrated_mfu(path, gpu: str) -> tuple[float, str]:
    """The MFU `paramcalc bench --calibration-out FILE` measured, and a note saying where it came from."""
    from pathlib import Path

    from paramcalc.inputs.files import load_mapping

    data = load_mapping(Path(path))
    if data.get("kind") != "paramcalc.calibration":
        raise UserError("not a paramcalc calibration file", where=str(path),
                        fix="write one with `paramcalc bench TARGET --device cuda --calibration-out FILE`")
    try:
        mfu = parse_mfu(data.get("mfu"))
    except UserError as e:
        raise e.placed(str(path), "mfu") from None
    measured = data.get("measured") or {}
    note = (f"MFU {mfu:.3f} measured by paramcalc bench on {data.get('gpu')} ({measured.get('device_name')}, "
            f"{measured.get('model')}, seq {measured.get('seq_len')}, {measured.get('date')})")
    if data.get("gpu") != gpu:
        note += f"; measured on {data.get('gpu')}, applied to {gpu}"
    return mfu, note


def estimate_cost(model: Model, *, tokens, gpu, gpus=1, mfu=0.4, seq_len=None, batch=1, dtype: str = "bf16",
                  usd_per_hour=None, recompute: str = "none", calibration=None, lora_rank=None,
                  lora_targets: str | None = None) -> CostReport:
    """GPU-hours, wall-clock hours, dollars and energy of training TARGET on `tokens` tokens.

    >>> round(estimate_cost("7.5B", tokens="1e12", gpu="h100-sxm", mfu=0.5).cost.gpu_hours)
    25268
    """
    recompute = choose(recompute, TRAIN_RECOMPUTE, "recompute")
    net = with_lora_flags(lower(model), lora_rank, lora_targets)
    n_tokens = parse_positive_int(tokens, field="tokens")
    n_gpus = parse_positive_int(gpus, field="gpus")
    util = parse_mfu(mfu)
    p = make_pass(net, seq_len, batch)
    card = load_gpu(gpu)
    # QLoRA stores the base in 4 bits but computes in bf16 (bitsandbytes dequantizes before each GEMM)
    qlora = dtype == "int4" and lora_rank is not None
    if dtype == "int4" and not qlora:
        raise UserError("int4 training is QLoRA's: a 4-bit frozen base under LoRA adapters", field="dtype",
                        fix="give --lora-rank too (QLoRA computes at the bf16 peak)")
    peak = card.peak("bf16" if qlora else dtype)

    flops, hardware, notes = training_flops(net, p, n_tokens, recompute)
    if lora_rank is not None:
        trainable = sum(net.trainable_params().values())
        notes.append(f"LoRA: {trainable:,} trainable parameters; the frozen weights compute no weight gradient, so "
                     "a step is forward + about 1 x forward of input gradients (Hu et al. 2021), not 3 x forward"
                     + ("; QLoRA computes at the bf16 peak (its 4-bit base is dequantized for each GEMM, which costs "
                        "time the MFU absorbs)" if qlora else ""))
    if calibration is not None:
        util, note = calibrated_mfu(calibration, card.name)
        notes.append(note)
    gpu_hours = flops / (peak * util) / 3600  # docs/contract.md: FLOPs / (dense peak x MFU), in hours
    wall = gpu_hours / n_gpus  # perfect data parallelism: the MFU already holds its losses
    notes.append(f"peak: {card.name} dense {'bf16' if qlora else dtype}, {human_flops(peak)}/s per GPU (no 2:4 "
                 "sparsity)")
    notes.append(f"MFU {util:.2f}: model FLOPs / (GPUs x peak x time); it absorbs communication, bubbles and "
                 "restarts, so nothing is added on top")
    if hardware is not None:
        # Korthikanti et al. 2022: HFU counts recomputed forwards too, so HFU = MFU x hardware / model FLOPs
        notes.append(f"{recompute} recomputation: hardware FLOPs {hardware:,} ({human_flops(hardware)}), "
                     f"HFU {util * hardware / flops:.2f} at this MFU; GPU-hours stay model FLOPs / (peak x MFU)")

    listed = price(card.name)
    if usd_per_hour is not None:
        rate: float | None = float(parse_positive(usd_per_hour, field="usd_per_hour"))
        notes.append(f"price: ${rate:,.2f} per GPU-hour, as given")
    elif listed is not None:
        rate = listed
        notes.append(f"price: ${rate:,.2f} per GPU-hour, indicative on-demand list price as of {prices().as_of} "
                     "(override it with a price per GPU-hour)")
    else:
        rate = None
        notes.append(f"price: none known for {card.name}; give a price per GPU-hour")
    usd = gpu_hours * rate if rate is not None else None

    # GPU board power only: no host, network or cooling (PUE) on top, so it errs low
    energy = gpu_hours * card.tdp_watts / 1000 if card.tdp_watts else None
    if energy is not None:
        notes.append(f"energy: GPU-hours x {card.tdp_watts} W TDP (GPUs only, no host or cooling)")

    params = net.total_params
    notes.append(f"Chinchilla-optimal: {CHINCHILLA_TOKENS_PER_PARAM} tokens per (total) parameter "
                 "(Hoffmann et al. 2022)")
    return CostReport(
        model=net.name, gpu=card.name, gpus=n_gpus, tokens=n_tokens, seq_len=p.seq, dtype=dtype,
        notes=notes, chinchilla_tokens=CHINCHILLA_TOKENS_PER_PARAM * params,
        cost=Cost(training_flops=flops, gpu_hours=gpu_hours, wall_clock_hours=wall, usd=usd, usd_per_gpu_hour=rate,
                  energy_kwh=energy, peak_flops_per_gpu=peak, mfu=util))
