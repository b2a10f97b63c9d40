"""Human output: rich tables. Only the CLI imports this module (and rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from paramcalc import units

console = Console()


def _notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[dim]* {note}[/dim]")


def _breakdown(title: str, rows, total: int, fmt, each_header: str = "each") -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("stage", "left"), ("component", "left"), (each_header, "right"), ("x", "right"),
                         ("total", "right"), ("share", "right")):
        table.add_column(col, justify=justify)
    for row in rows:
        table.add_row(row.stage, row.component, fmt(row.each), str(row.count), fmt(row.total),
                      units.percent(row.total, total))
    return table


def _exact(n: int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def count(report) -> None:
    p = report.params
    if report.breakdown:
        console.print(_breakdown(f"{report.model}: parameters", report.breakdown, p.total, _exact))
    summary = Table(show_header=False, box=None)
    summary.add_row("total", f"[bold]{p.total:,}[/bold]", units.human_count(p.total))
    summary.add_row("embedding", _exact(p.embedding), units.human_count(p.embedding))
    summary.add_row("non-embedding", _exact(p.non_embedding), units.human_count(p.non_embedding))
    summary.add_row("active per token", _exact(p.active), units.human_count(p.active))
    if p.expected is not None:
        verdict = "[green]matches[/green]" if p.expected == p.total else f"[red]differs by {p.total - p.expected:,}[/red]"
        summary.add_row("published", f"{p.expected:,}", verdict)
    console.print(summary)
    _notes(report.notes)


def flops(report) -> None:
    f = report.flops
    if report.breakdown:
        console.print(_breakdown(f"{report.model}: forward matmul FLOPs, batch {report.batch} x seq {report.seq_len}, "
                                 f"{report.attention} attention", report.breakdown, f.forward, units.human_flops))
    summary = Table(show_header=False, box=None)
    for label, value in (("forward", f.forward), ("backward", f.backward), ("train step (model FLOPs)", f.train_step),
                         ("recompute", f.recompute), ("hardware FLOPs (HFU)", f.hardware_step),
                         ("forward per token", f.forward_per_token), ("train per token", f.train_per_token),
                         ("non-matmul forward (estimate)", f.non_matmul_forward)):
        summary.add_row(label, _exact(value), units.human_flops(value))
    if f.train_step:
        for label, value in (("rule of thumb 6N", f.six_n), ("PaLM 6N + 12LHQT", f.palm)):
            if value is not None:
                summary.add_row(label, _exact(value), f"{units.human_flops(value)} ({(value / f.train_step - 1) * 100:+.1f}%)")
    console.print(summary)
    _notes(report.notes)


def memory(report) -> None:
    m = report.memory
    table = Table(title=f"{report.model}: memory per GPU ({report.mode}, batch {report.batch} x seq {report.seq_len})",
                  title_justify="left")
    for col in ("part", "bytes", "GiB", "share"):
        table.add_column(col, justify="left" if col == "part" else "right")
    total = m.total_per_gpu or m.model_states_per_gpu
    rows = [("weights", m.weights), ("gradients", m.gradients), ("optimizer state", m.optimizer),
            ("activations", m.activations), ("KV cache", m.kv_cache), ("overheads", m.overhead)]
    for label, value in rows:
        if value is None:
            table.add_row(label, "unknown", "unknown", "-")
        elif value or label in ("weights", "activations"):
            table.add_row(label, f"{value:,}", units.human_bytes(value), units.percent(value, total))
    table.add_row("[bold]model states[/bold]", f"{m.model_states_per_gpu:,}", units.human_bytes(m.model_states_per_gpu),
                  units.percent(m.model_states_per_gpu, total))
    table.add_row("[bold]total per GPU[/bold]", _exact(m.total_per_gpu), units.human_bytes(m.total_per_gpu), "")
    console.print(table)
    _bar([(label, v) for label, v in rows if v], total)
    if report.fits:
        f = report.fits
        verdict = "[green]fits[/green]" if f["fits"] else "[red]does not fit[/red]"
        console.print(f"{verdict} on one {f['gpu']} ({units.human_bytes(f['gpu_bytes'])}); "
                      f"headroom {units.human_bytes(f['headroom'])}")
    _notes(report.notes)


def _bar(parts: list[tuple[str, int]], total: int, width: int = 60) -> None:
    """A one-line stacked bar of where the bytes go."""
    colours = ("cyan", "magenta", "yellow", "green", "blue", "red")
    line, legend = "", []
    for (label, value), colour in zip(parts, colours):
        cells = round(width * value / total) if total else 0
        line += f"[{colour}]{'█' * cells}[/{colour}]"
        legend.append(f"[{colour}]█[/{colour}] {label}")
    console.print(line)
    console.print("  ".join(legend))


def estimate(report) -> None:
    p, f, c = report.params, report.flops, report.cost
    table = Table(title=f"{report.model}: estimate", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    table.add_row("parameters", _exact(p.total), units.human_count(p.total))
    table.add_row("active per token", _exact(p.active), units.human_count(p.active))
    table.add_row(f"train step FLOPs (batch 1 x {report.seq_len})", _exact(f.train_step), units.human_flops(f.train_step))
    plan = report.plan
    if plan.get("gpus"):
        table.add_row("plan", f"{plan['gpus']:,} x {plan['gpu']}",
                      f"dp {plan['dp']}, tp {plan['tp']}, pp {plan['pp']}, ZeRO-{plan['zero']}, recompute {plan['recompute']}")
    if report.memory:
        table.add_row("memory per GPU", _exact(report.memory.total_per_gpu), units.human_bytes(report.memory.total_per_gpu))
    table.add_row("training FLOPs", _exact(c.training_flops), units.human_flops(c.training_flops))
    table.add_row("GPU-hours", f"{c.gpu_hours:,.0f}", units.human_hours(c.gpu_hours))
    table.add_row("wall-clock", f"{c.wall_clock_hours:,.1f} h", f"{c.wall_clock_hours / 24:,.1f} days")
    table.add_row("cost", units.human_usd(c.usd), f"${c.usd_per_gpu_hour:,.2f}/GPU-h" if c.usd_per_gpu_hour else "")
    console.print(table)
    console.print(f"[bold]{report.verdict}[/bold]")
    _notes(report.notes)


def gpus(cards) -> None:
    table = Table(title="accelerators (dense peaks, no sparsity)", title_justify="left")
    for col in ("name", "memory", "bandwidth", "bf16", "fp8", "TDP"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for c in cards:
        fp8 = c.peak_flops.get("fp8")
        table.add_row(c.name, units.human_bytes(c.memory_bytes), f"{c.memory_bandwidth / 1e12:.2f} TB/s",
                      f"{c.peak_flops.get('bf16', 0) / 1e12:,.0f} TFLOP/s",
                      f"{fp8 / 1e12:,.0f} TFLOP/s" if fp8 else "-", f"{c.tdp_watts} W" if c.tdp_watts else "-")
    console.print(table)


def presets(items: list[dict]) -> None:
    table = Table(title="presets", title_justify="left")
    for col in ("name", "family", "params", "source"):
        table.add_column(col, justify="right" if col == "params" else "left", overflow="fold")
    for item in items:
        table.add_row(item["name"], item.get("family") or "", units.human_count(item.get("params")),
                      item.get("source") or "")
    console.print(table)


def _duration(hours: float) -> str:
    return f"{hours / 24:,.0f} days" if hours >= 48 else f"{hours:,.1f} hours"


def cost(report) -> None:
    c = report.cost
    table = Table(title=f"{report.model}: training on {units.human_count(report.tokens)} tokens, seq {report.seq_len}",
                  title_justify="left", show_header=False)
    table.add_row("training FLOPs (model)", f"{c.training_flops:.3e}", units.human_flops(c.training_flops))
    table.add_row("GPU peak", f"{report.gpu} dense {report.dtype}", f"{units.human_flops(c.peak_flops_per_gpu)}/s")
    table.add_row("MFU", f"{c.mfu:.2f}", "")
    table.add_row("GPU-hours", f"{c.gpu_hours:,.0f}", units.human_hours(c.gpu_hours))
    gpus = f"{report.gpus:,} GPU{'s' if report.gpus > 1 else ''}"
    table.add_row("wall-clock", f"{c.wall_clock_hours:,.1f} h on {gpus}", _duration(c.wall_clock_hours))
    price = "" if c.usd_per_gpu_hour is None else f"at ${c.usd_per_gpu_hour:,.2f}/GPU-hour"
    table.add_row("cost", units.human_usd(c.usd), price)
    table.add_row("energy (GPUs)", "unknown" if c.energy_kwh is None else f"{c.energy_kwh / 1000:,.0f} MWh", "")
    if report.chinchilla_tokens is not None:
        table.add_row("Chinchilla-optimal tokens", units.human_count(report.chinchilla_tokens),
                      f"{report.tokens / report.chinchilla_tokens:.1f}x of it trained")
    console.print(table)
    verdict = (f"{units.human_count(c.gpu_hours)} GPU-hours on {report.gpu} at MFU {c.mfu:.2f}; "
               f"{_duration(c.wall_clock_hours)} on {gpus}")
    if c.usd is not None:
        verdict += f"; {units.human_usd(c.usd)}"
    console.print(f"[bold]{verdict}[/bold]")
    _notes(report.notes)
