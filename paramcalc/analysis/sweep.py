"""One figure across a range of one setting: memory per GPU against sequence
length, batch or GPU count; training time against GPU count. Each point is the
same library call the single-point commands make."""

from __future__ import annotations

from paramcalc.analysis.cost import CHINCHILLA_TOKENS_PER_PARAM, estimate_cost
from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.settings import choose
from paramcalc.errors import UserError
from paramcalc.network import Model, lower
from paramcalc.results.sweep import SweepReport
from paramcalc.units import parse_list, parse_positive_int

OVER = ("seq-len", "batch", "gpus")
FIGURES = ("memory", "time")


def sweep(model: Model, *, figure: str = "memory", over: str = "seq-len", values="512,1024,2048,4096,8192",
          gpu: str = "h100-sxm", tokens=None, mfu=0.4, zero=3, **memory_flags) -> SweepReport:
    """Memory per GPU (stacked by part) or training wall-clock across `values` of `over`.

    >>> sweep("llama-3.1-8b", over="seq-len", values="1024,2048").series["total"][0] > 0
    True
    """
    choose(figure, FIGURES, "figure")
    choose(over, OVER, "over")
    if figure == "time" and over != "gpus":
        raise UserError("training time is swept over GPU count", field="over", fix="use {over} gpus")
    points = parse_list(values, parse_positive_int, field="values")
    net = lower(model)
    if figure == "time":
        budget = tokens if tokens is not None else CHINCHILLA_TOKENS_PER_PARAM * net.total_params
        hours = [estimate_cost(net, tokens=budget, gpu=gpu, gpus=n, mfu=mfu).cost.wall_clock_hours for n in points]
        return SweepReport(model=net.name, figure=figure, over=over, values=points, unit="hours",
                           series={"wall-clock": hours},
                           notes=[f"GPU-hours / GPUs on {gpu} at MFU {mfu} (the MFU absorbs communication)"])
    series: dict[str, list] = {k: [] for k in ("weights", "gradients", "optimizer", "activations", "kv_cache",
                                                "overhead", "total")}
    for n in points:
        flags = dict(memory_flags)
        if over == "gpus":
            flags.update(dp=n, zero=zero if n > 1 else 0)
        elif over == "batch":
            flags["batch"] = n
        else:
            flags["seq_len"] = n
        m = estimate_memory(net, **flags).memory
        for key in series:
            series[key].append(getattr(m, key if key != "total" else "total_per_gpu"))
    notes = [f"bytes per GPU; {'ZeRO-' + str(zero) + ' across the GPUs' if over == 'gpus' else 'one GPU'}"]
    return SweepReport(model=net.name, figure=figure, over=over, values=points, unit="bytes", series=series,
                       notes=notes)
