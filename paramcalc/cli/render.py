"""Human output: rich tables. Only the CLI imports this module (and rich)."""

from __future__ import annotations

import os
import re
import sys

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table

from paramcalc import units


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A reader that closed the pipe (`| head -1`) changes no exit code: stop writing,
        where rich would exit 1 (which reads as "budget exceeded" under pipefail)."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


    def print(self, *objects, **kwargs) -> None:
        """Tables keep their numbers whole; one that cannot fit the terminal even so runs
        past its edge (a wider line) instead of being cropped."""
        if len(objects) == 1 and isinstance(objects[0], Table):
            _keep_numbers_whole(objects[0])
            table = objects[0]
            edges = table._extra_width  # the rules rich adds around and between the columns
            need = self.width
            while True:  # widening lets label columns grow too: lay out again until the widths settle
                widths = table._calculate_column_widths(self, self.options.update_width(need - edges))
                if sum(widths) + edges <= need:
                    break
                need = sum(widths) + edges
            if need > self.width:
                saved, self._width = self._width, need  # rich's print(width=) only narrows
                try:
                    super().print(*objects, **kwargs)
                finally:
                    self._width = saved
                return
        super().print(*objects, **kwargs)


_NUMBER = re.compile(r"^[~$+-]?[\d,]+(\.\d+)?( ?[A-Za-z%/-]{0,8})?$")


def _keep_numbers_whole(table: Table) -> None:
    """Numbers are never cut: a column holding them keeps the width of its longest
    number, so rich narrows the label columns instead, which wrap."""
    for column in table.columns:
        numbers = [len(str(c)) for c in column._cells if _NUMBER.match(str(c))]
        if numbers:
            column.min_width = max(numbers)
        if column.overflow == "ellipsis":
            column.overflow = "fold"  # a label too long for a narrow terminal wraps, it is never cut


console = _Console()


def _notes(notes: list[str]) -> None:
    for note in notes:
        console.print(f"[dim]* {note}[/dim]")


def _breakdown(title: str, rows, total: int, fmt, each_header: str = "each") -> Table:
    table = Table(title=title, title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("stage", "left"), ("component", "left"), (each_header, "right"), ("x", "right"), ("total", "right"),
        ("share", "right"))
    for col, justify in columns:
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
    if p.frozen:
        summary.add_row("trainable", _exact(p.trainable), units.human_count(p.trainable))
        summary.add_row("frozen", _exact(p.frozen), units.human_count(p.frozen))
    if p.expected is not None:
        verdict = "[green]matches[/green]" if p.expected == p.total else \
            f"[red]differs by {p.total - p.expected:,}[/red]"
        summary.add_row("published", f"{p.expected:,}", verdict)
    console.print(summary)
    if report.checkpoint is not None:
        _checkpoint(report.checkpoint)
    _notes(report.notes)


def _checkpoint(c) -> None:
    table = Table(title=f"checkpoint: {len(c.files)} file(s), {c.tensors:,} tensors"
                        + (f", {c.shared:,} sharing storage" if c.shared else ""), title_justify="left")
    for col in ("dtype", "elements", "bytes", "share"):
        table.add_column(col, justify="left" if col == "dtype" else "right")
    for d in c.by_dtype:
        table.add_row(d.dtype, f"{d.params:,}", units.human_bytes(d.bytes), units.percent(d.params, c.total))
    table.add_row("[bold]total[/bold]", f"[bold]{c.total:,}[/bold]", units.human_bytes(c.bytes), "")
    console.print(table)
    if c.analytic_total is not None:
        diff = Table(show_header=False, box=None)
        diff.add_row("config.json count", f"{c.analytic_total:,}", units.human_count(c.analytic_total))
        diff.add_row("checkpoint - config", f"{c.difference:+,}", "")
        for part in c.explained:
            diff.add_row(f"  {part.reason}", f"{part.params:+,}", "")
        console.print(diff)


def flops(report) -> None:
    """The rows that mean something for the model's kind: a layers network (CNN, RNN, MLP;
    attention "none") has no attention, recomputation, prefill or decode, and its 6N is a
    note; an encoder has no prefill or decode; a CNN counts per sample, not per token."""
    f = report.flops
    layers = report.attention == "none"
    per_sample = layers and report.seq_len == 1
    shape = f"batch {report.batch}" + ("" if per_sample else f" x seq {report.seq_len}") \
        + ("" if layers else f", {report.attention} attention")
    if report.breakdown:
        console.print(_breakdown(f"{report.model}: forward matmul FLOPs, {shape}", report.breakdown, f.forward,
                                 units.human_flops))
    summary = Table(show_header=False, box=None)
    per = "sample" if per_sample else "token"
    rows: list[tuple[str, int | None]] = [("forward", f.forward), ("backward", f.backward),
                                          ("train step (model FLOPs)", f.train_step)]
    if not layers:
        rows += [("recompute", f.recompute), ("hardware FLOPs (HFU)", f.hardware_step)]
    rows += [(f"forward per {per}", f.forward_per_token), (f"train per {per}", f.train_per_token)]
    rows += [(label, value) for label, value in (
        ("non-matmul forward (estimate)", f.non_matmul_forward), ("inference prefill (causal)", f.prefill),
        (f"decode, per token at context {report.seq_len + 1:,}", f.decode_per_token)) if value is not None]
    for label, value in rows:
        summary.add_row(label, _exact(value), units.human_flops(value))
    if f.train_step and not layers:
        for label, value in (("rule of thumb 6N", f.six_n), ("PaLM 6N + 12LHQT", f.palm)):
            if value is not None:
                off = (value / f.train_step - 1) * 100
                summary.add_row(label, _exact(value), f"{units.human_flops(value)} ({off:+.1f}%)")
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
    for key, value in report.breakdown.items():
        if key.startswith("overhead/") and value:
            table.add_row(f"  [dim]{key.split('/', 1)[1].replace('_', ' ')}[/dim]", f"[dim]{value:,}[/dim]",
                          f"[dim]{units.human_bytes(value)}[/dim]", "")
    table.add_row("[bold]model states[/bold]", f"{m.model_states_per_gpu:,}", units.human_bytes(m.model_states_per_gpu),
                  units.percent(m.model_states_per_gpu, total))
    table.add_row("[bold]total per GPU[/bold]", _exact(m.total_per_gpu), units.human_bytes(m.total_per_gpu), "")
    if m.cpu_bytes:
        table.add_row("CPU memory (offloaded)", f"{m.cpu_bytes:,}", units.human_bytes(m.cpu_bytes), "")
    console.print(table)
    _bar([(label, v) for label, v in rows if v], total)
    if m.pcie_bytes_per_step or m.pcie_bytes_per_micro_batch:
        console.print(f"PCIe per GPU: {units.human_bytes(m.pcie_bytes_per_step)} per optimizer step, "
                      f"{units.human_bytes(m.pcie_bytes_per_micro_batch)} per micro-batch")
    if report.fits:
        f = report.fits
        verdict = "[green]fits[/green]" if f.fits else "[red]does not fit[/red]"
        where = f"{f.gpus:,} x {f.gpu}" if f.gpus > 1 else f"one {f.gpu}"
        unit = "concurrent sequences" if report.mode == "infer" else "micro-batch"
        console.print(f"{verdict} on {where} ({units.human_bytes(f.gpu_bytes)} each); headroom "
                      f"{units.human_bytes(f.headroom)}; largest {unit} that fits: {f.max_batch:,}")
    _notes(report.notes)


def _colour_off() -> bool:
    """No colour reaches the reader: not a terminal (`| cat`), NO_COLOR, or a terminal without colours."""
    return (not console.is_terminal or console.no_color or console.color_system is None
            or os.environ.get("NO_COLOR", "") != "")


_GLYPHS = ("█", "▓", "▒", "░", "▚", "#")  # one per part where colour cannot tell them apart


def _bar(parts: list[tuple[str, int]], total: int, width: int = 60) -> None:
    """A one-line stacked bar of where the bytes go: a colour per part, or without
    colour a glyph per part; the legend shows each part as the bar draws it."""
    colours = ("cyan", "magenta", "yellow", "green", "blue", "red")
    glyphs = _GLYPHS if _colour_off() else ("█",) * len(colours)
    line, legend = "", []
    for (label, value), colour, glyph in zip(parts, colours, glyphs):
        cells = round(width * value / total) if total else 0
        line += f"[{colour}]{glyph * cells}[/{colour}]"
        legend.append(f"[{colour}]{glyph}[/{colour}] {label}")
    console.print(line)
    console.print("  ".join(legend))


def estimate(report) -> None:
    p, f, c, plan, step = report.params, report.flops, report.cost, report.plan, report.step
    table = Table(title=f"{report.model}: estimate", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", justify="left")
    table.add_row("parameters", _exact(p.total), units.human_count(p.total))
    table.add_row("active per token", _exact(p.active), units.human_count(p.active))
    table.add_row(f"train FLOPs per sequence of {report.seq_len:,}", _exact(f.train_step),
                  units.human_flops(f.train_step))
    table.add_row("plan", f"{plan.gpus:,} x {plan.gpu}",
                  f"TP {plan.tp}, PP {plan.pp}" + (f" (v {plan.vpp})" if plan.vpp > 1 else "")
                  + f", CP {plan.cp}" + (f", EP {plan.ep}" if plan.ep > 1 else "") + f", DP {plan.dp}"
                  + (", SP" if plan.sp else "") + f", ZeRO-{plan.zero}, recompute {plan.recompute}"
                  + (", DualPipe" if plan.schedule == "dualpipe" else "")
                  + (f", {plan.grad_reduce} gradient reduce" if plan.grad_reduce != "fp32" else ""))
    table.add_row("batch", f"{plan.global_batch:,} seqs",
                  f"micro-batch {plan.micro_batch} x {plan.micro_batches} per pipeline")
    if report.memory:
        total = report.memory.total_per_gpu
        fits = "" if report.memory.fits is None else ("fits" if report.memory.fits else "[red]does not fit[/red]")
        table.add_row("memory per GPU", _exact(total), f"{units.human_bytes(total)} {fits}")
    table.add_row("step", f"{step.seconds:,.3f} s", f"{step.tokens_per_second:,.0f} tokens/s")
    table.add_row("MFU", f"{step.mfu:.3f}", f"{step.tflops_per_gpu:,.0f} TFLOP/s per GPU ({step.mfu_source})")
    if step.communication_seconds is not None and step.compute_seconds is not None:
        table.add_row("step parts", f"{step.compute_seconds:,.3f} s",
                      f"compute; exposed communication {step.communication_seconds:,.3f} s, bubble "
                      f"{step.bubble_seconds or 0:,.3f} s, optimizer {step.optimizer_seconds or 0:,.3f} s")
    table.add_row("training FLOPs", _exact(c.training_flops), units.human_flops(c.training_flops))
    table.add_row("GPU-hours", f"{c.gpu_hours:,.0f}", units.human_hours(c.gpu_hours))
    table.add_row("wall-clock", f"{c.wall_clock_hours:,.1f} h", f"{c.wall_clock_hours / 24:,.1f} days")
    table.add_row("cost", units.human_usd(c.usd), f"${c.usd_per_gpu_hour:,.2f}/GPU-h" if c.usd_per_gpu_hour else "")
    console.print(table)
    if report.communication and report.communication.collectives:
        comm = Table(title="communication per step, per GPU", title_justify="left")
        for col in ("collective", "bytes", "seconds", "hidden"):
            comm.add_column(col, justify="left" if col == "collective" else "right")
        for x in report.communication.collectives:
            comm.add_row(x.name, units.human_bytes(x.bytes_per_gpu), f"{x.seconds:,.3f}",
                         "can" if x.overlappable else "no")
        console.print(comm)
    console.print(f"[bold]{report.verdict}[/bold]")
    _notes(report.notes)


def gpus(report) -> None:
    table = Table(title="accelerators (dense peaks, no sparsity)", title_justify="left")
    for col in ("name", "memory", "bandwidth", "bf16", "fp8", "link", "TDP"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for c in report.gpus:
        peaks = c.peak_flops_dense
        table.add_row(c.name, units.human_bytes(c.memory_bytes), units.human_bandwidth(c.memory_bandwidth),
                      units.human_rate(peaks.get("bf16")), units.human_rate(peaks.get("fp8")),
                      units.human_bandwidth(c.interconnect_bandwidth), f"{c.tdp_watts} W" if c.tdp_watts else "-")
    console.print(table)


def serve(report) -> None:
    gpus = f"{report.tp} x {report.gpu}" if report.pp == 1 else f"{report.tp * report.pp} x {report.gpu} " \
        f"(TP {report.tp}, PP {report.pp})"
    table = Table(title=f"{report.model} on {gpus}: prompt {report.prompt_tokens:,}, "
                        f"output {report.output_tokens:,} tokens ({report.dtype} weights, {report.kv_dtype} cache)",
                  title_justify="left")
    for col in ("batch", "memory/GPU", "fits", "TTFT", "TPOT", "bound", "tokens/s", "request"):
        table.add_column(col, justify="right")
    for p in report.points:
        table.add_row(str(p.batch), units.human_bytes(p.memory_per_gpu), "yes" if p.fits else "[red]no[/red]",
                      units.human_seconds(p.ttft_seconds), units.human_seconds(p.tpot_seconds),
                      f"{p.prefill_bound}/{p.decode_bound}", f"{p.tokens_per_second:,.0f}",
                      f"{p.request_seconds:,.2f} s")
    console.print(table)
    console.print(f"weights {units.human_bytes(report.weights_per_gpu)} per GPU; KV cache for "
                  f"{report.kv_cache_tokens:,} tokens at {report.gpu_memory_utilization:.0%} of memory: up to "
                  f"{report.max_batch:,} concurrent sequences of {report.prompt_tokens + report.output_tokens:,} "
                  "tokens; bound: what limits the prefill / a decode step")
    if report.speculative:
        _serve_speculative(report.speculative)
    if report.continuous:
        _serve_continuous(report.continuous)
    _notes(report.notes)


def _serve_speculative(s) -> None:
    table = Table(title=f"speculative decoding: draft {s.draft}, {s.lookahead} tokens a step accepted at {s.accept:g} "
                        f"({s.expected_tokens_per_step:.2f} tokens per verify step)", title_justify="left")
    for col in ("batch", "draft", "verify", "step", "TPOT", "speed-up", "bound", "tokens/s"):
        table.add_column(col, justify="right")
    for p in s.points:
        table.add_row(str(p.batch), units.human_seconds(p.draft_seconds), units.human_seconds(p.verify_seconds),
                      units.human_seconds(p.step_seconds), units.human_seconds(p.tpot_seconds), f"{p.speedup:.2f}x",
                      p.bound, f"{p.tokens_per_second:,.0f}")
    console.print(table)


def _serve_continuous(c) -> None:
    table = Table(title=f"continuous batching: chunked prefill of {c.max_batched_tokens:,} tokens a step, at most "
                        f"{c.max_running:,} sequences running; sustains {c.max_requests_per_second:,.2f} req/s "
                        f"({c.max_tokens_per_second:,.0f} tokens/s)", title_justify="left")
    for col in ("in flight", "rate", "running", "step", "TTFT", "TPOT", "req/s", "tokens/s", "limit"):
        table.add_column(col, justify="right")
    for p in c.points:
        rate = "-" if p.offered_rate is None else f"{p.offered_rate:g}/s"
        ttft = "[red]∞[/red]" if p.ttft_seconds is None else units.human_seconds(p.ttft_seconds)
        limit = "[red]saturated[/red]" if p.saturated else (p.limited_by or "")
        table.add_row(f"{p.concurrency:,.1f}", rate, f"{p.running:,.1f}", units.human_seconds(p.step_seconds), ttft,
                      units.human_seconds(p.tpot_seconds), f"{p.requests_per_second:,.2f}",
                      f"{p.tokens_per_second:,.0f}", limit)
    console.print(table)


def presets(report) -> None:
    table = Table(title="presets", title_justify="left")
    for col in ("name", "family", "params", "source"):
        table.add_column(col, justify="right" if col == "params" else "left", overflow="fold")
    for item in report.presets:
        table.add_row(item.name, item.family or "", units.human_count(item.params), item.source or "")
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


def _amount(value: int | float, unit: str) -> str:
    """A budget figure in its unit, short: 8.03B params, 75.20 GiB, 609.7K GPU-hours, $1.82M."""
    if unit == "params":
        return units.human_count(value)
    if unit == "bytes":
        return units.human_bytes(value)
    if unit == "FLOPs":
        return units.human_flops(value)
    if unit == "USD":
        return units.human_usd(value)
    return f"{units.human_hours(value)} {unit}"


def _exact_amount(value: int | float, unit: str) -> str:
    """Exact where the figure is an integer: '8,030,261,248 params (8.03B)'."""
    if isinstance(value, int) and unit in ("params", "bytes", "FLOPs"):
        return f"{value:,} {unit} ({_amount(value, unit)})"
    if unit == "USD":
        return f"${value:,.0f}"
    return f"{value:,.1f} {unit}" if unit in ("GPU-hours", "hours") else _amount(value, unit)


def _exceeded(limit) -> str:
    return f"{limit.limit}: {_exact_amount(limit.actual, limit.unit)} exceeds {_exact_amount(limit.max, limit.unit)}"


def check(report) -> None:
    # CI logs are no terminal: rich would squeeze the table into 80 columns (or $COLUMNS) and crop it
    out = console if console.is_terminal else _Console(width=132)
    table = Table(title=f"budgets: {report.file}", title_justify="left")
    for col in ("budget", "model", "limit", "actual", "max", "used", "result"):
        table.add_column(col, justify="right" if col in ("actual", "max", "used") else "left",
                         no_wrap=col in ("limit", "result"), overflow="fold")
    for r in report.results:
        for i, limit in enumerate(r.limits):
            table.add_row(r.name if i == 0 else "", r.model if i == 0 else "", limit.limit,
                          _amount(limit.actual, limit.unit), _amount(limit.max, limit.unit),
                          units.percent(limit.actual, limit.max),
                          "[green]PASS[/green]" if limit.passed else "[bold red]FAIL[/bold red]")
        table.add_section()
    out.print(table)
    failed = [r for r in report.results if not r.passed]
    if failed:
        out.print(f"[bold red]{len(failed)} of {len(report.results)} budget{'s' if len(report.results) > 1 else ''} "
                  "exceeded[/bold red]")
        for r in failed:
            for limit in r.limits:
                if not limit.passed:
                    out.print(f"[red]* {r.name}: {_exceeded(limit)}[/red]")
    else:
        out.print(f"[bold green]{'all ' if len(report.results) > 1 else ''}{len(report.results)} "
                  f"budget{'s hold' if len(report.results) > 1 else ' holds'}[/bold green]")
    for r in report.results:
        for note in r.notes:
            out.print(f"[dim]* {r.name}: {note}[/dim]")


def check_markdown(report) -> None:
    """A GitHub-flavoured table for a PR comment or $GITHUB_STEP_SUMMARY."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    failed = sum(not r.passed for r in report.results)
    total = len(report.results)
    head = (f"❌ {failed} of {total} budget{'s' if total > 1 else ''} exceeded" if failed
            else f"✅ all {total} budgets hold" if total > 1 else "✅ the budget holds")
    lines = [f"### paramcalc check: {head}", "",
             "| budget | model | limit | actual | max | used | result |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for r in report.results:
        for limit in r.limits:
            lines.append(f"| {cell(r.name)} | `{cell(r.model)}` | `{limit.limit}` "
                         f"| {_amount(limit.actual, limit.unit)} | {_amount(limit.max, limit.unit)} "
                         f"| {units.percent(limit.actual, limit.max)} "
                         f"| {'✅ pass' if limit.passed else '❌ **FAIL**'} |")
    lines += ["", f"<details><summary>settings ({cell(report.file)})</summary>", ""]
    lines += [f"- **{cell(r.name)}**: {cell(note)}" for r in report.results for note in r.notes]
    lines += ["- a limit holds when actual <= max; bytes in GiB (2^30), counts decimal", "", "</details>"]
    sys.stdout.write("\n".join(lines) + "\n")


def check_junit(report) -> None:
    """JUnit XML: one testcase per budget, one <failure> per failed budget naming every exceeded limit."""
    import xml.etree.ElementTree as ET

    failed = sum(not r.passed for r in report.results)
    suite = ET.Element("testsuite", name="paramcalc check", tests=str(len(report.results)), failures=str(failed),
                       errors="0", skipped="0", time="0")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="file", value=report.file)
    for r in report.results:
        case = ET.SubElement(suite, "testcase", name=r.name, classname="paramcalc.check", time="0")
        exceeded = [limit for limit in r.limits if not limit.passed]
        if exceeded:
            failure = ET.SubElement(case, "failure", type="BudgetExceeded",
                                    message=f"{r.name} ({r.model}): " + "; ".join(_exceeded(x) for x in exceeded))
            failure.text = "\n".join(_exceeded(x) for x in exceeded)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join([f"model: {r.model}"]
                             + [f"{x.limit}: {_exact_amount(x.actual, x.unit)} (max {_exact_amount(x.max, x.unit)}): "
                                f"{'pass' if x.passed else 'FAIL'}" for x in r.limits] + r.notes)
    ET.indent(suite)
    sys.stdout.write('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n")


def diff(report) -> None:
    table = Table(title=f"{report.a} vs {report.b} (seq {report.seq_len})", title_justify="left")
    for col in ("", report.a, report.b, "B - A", "change"):
        table.add_column(col, justify="left" if not col else "right")
    for row in report.rows:
        def show(value):
            return "unknown" if value is None else _amount(value, row.unit)

        delta = "unknown" if row.delta is None else ("+" if row.delta > 0 else "") + _amount(row.delta, row.unit)
        change = "-" if row.percent is None else f"{row.percent:+.1f}%"
        table.add_row(row.label, show(row.a), show(row.b), delta, change)
    console.print(table)
    _notes(report.notes)


def size(report) -> None:
    aim = f"{units.human_count(report.target)} ({report.target:,})"
    if report.flops is not None:
        console.print(f"compute-optimal for {units.human_flops(report.flops)}: N = {aim} parameters, "
                      f"D = {units.human_count(report.tokens)} tokens (Hoffmann et al. 2022)")
    head = "tied head" if report.tie_word_embeddings else "untied head"
    where = f"within ±{report.tolerance:.2%} of {aim}, vocab {report.vocab_size:,}, {head}"
    if not report.candidates:
        console.print(f"[yellow]no Llama-style architecture {where}[/yellow]")
        _notes(report.notes)
        return
    shown = len(report.candidates)
    table = Table(title=f"Llama-style architectures {where}: {report.matches:,} match"
                        f"{'es' if report.matches != 1 else ''}, the {shown} most conventional shown (by score)",
                  title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("params", "deviation", "hidden", "layers", "heads", "kv", "dim", "ffn", "ffn/h", "h/L", "score"):
        table.add_column(col, justify="right")
    for c in report.candidates:
        table.add_row(f"{c.params_total:,}", f"{c.deviation:+.4%}", str(c.hidden_size), str(c.num_hidden_layers),
                      str(c.num_attention_heads), str(c.num_key_value_heads), str(c.head_dim),
                      str(c.intermediate_size), f"{c.intermediate_size / c.hidden_size:.2f}",
                      f"{c.hidden_size / c.num_hidden_layers:.0f}", f"{c.score:.2f}")
    console.print(table)
    _notes(report.notes)


def checkpoint(report) -> None:
    c = report.checkpoint
    table = Table(title=f"{report.model}: checkpoint on disk ({units.human_count(report.params)} params, "
                        f"{report.precision} precision, {report.optimizer}, ZeRO-{report.zero}, dp {report.dp})",
                  title_justify="left")
    for col in ("what", "bytes", "GiB", "bytes/param"):
        table.add_column(col, justify="left" if col == "what" else "right")

    def row(label, value):
        table.add_row(label, f"{value:,}", units.human_bytes(value), f"{value / report.params:.4g}")

    row(f"weights only ({report.dtype})", c.weights)
    row(f"  training weights ({report.train_dtype})", c.training_weights)
    if c.master_weights:
        row("  fp32 master weights", c.master_weights)
    row(f"  {report.optimizer} state", c.optimizer_state)
    row("[bold]resumable checkpoint[/bold]", c.resumable)
    if report.dp > 1:
        row("per rank: rank 0", c.per_rank)
        row(f"per rank: each of the other {report.dp - 1:,}", c.per_other_rank)
    row(f"[bold]keeping {report.keep}[/bold]", c.kept)
    row(f"peak while rotating ({report.keep} + 1)", c.rotation_peak)
    console.print(table)
    _notes(report.notes)


def _ratio_verdict(check) -> str:
    if check.exact:
        return "[green]ok (exact)[/green]"
    if check.verdict == "ok":
        return f"[green]ok ({(check.ratio - 1) * 100:+.1f}%)[/green]"
    if check.verdict == "differs":
        return f"[red]differs ({(check.ratio - 1) * 100:+.1f}%)[/red]"
    return "[yellow]unknown[/yellow]"


def bench(report) -> None:
    m = report.bench.measured
    table = Table(title=f"{report.model}: {report.layers} x {report.stage}, batch {report.batch} x seq "
                        f"{report.seq_len}, {report.dtype}, {report.attention} attention on {report.device_name}",
                  title_justify="left")
    for col in ("figure", "predicted", "measured", "verdict"):
        table.add_column(col, justify="left" if col in ("figure", "verdict") else "right")
    for c in report.bench.checks:
        fmt = units.human_bytes if c.figure in ("activations", "peak_memory") else units.human_flops
        table.add_row(c.figure.replace("_", " "), f"{_exact(c.predicted)}\n{fmt(c.predicted)}",
                      f"{_exact(c.measured)}\n{fmt(c.measured)}", _ratio_verdict(c))
    console.print(table)
    summary = Table(show_header=False, box=None)
    summary.add_row("seconds per step", units.human_seconds(m.seconds_per_step),
                    f"min {units.human_seconds(m.seconds_min)}, median {units.human_seconds(m.seconds_median)} "
                    f"over {report.steps}")
    summary.add_row("achieved", units.human_rate(m.achieved_tflops * 1e12), "3 x forward FLOPs / seconds per step")
    mfu = "unknown" if m.mfu is None else f"{m.mfu * 100:.1f}%"
    summary.add_row("MFU", mfu, f"of {report.gpu} dense {report.dtype}" if report.gpu else "")
    allocated = "torch.cuda.max_memory_allocated" if m.peak_allocated is not None else "live tensors, op by op (CPU)"
    summary.add_row("peak memory", units.human_bytes(m.peak_memory),
                    f"{allocated}; weights {units.human_bytes(m.weights)}")
    console.print(summary)
    _notes(report.notes)


def verify(report) -> None:
    def verdict(ok: bool | None) -> str:
        return "[dim]not counted[/dim]" if ok is None else "[green]exact[/green]" if ok else "[red]differs[/red]"

    def flops(n: int | None) -> str:
        return "n/a" if n is None else units.human_flops(n)

    table = Table(title=f"{report.model}: analytic vs counted matmul FLOPs, batch {report.batch} x seq "
                        f"{report.seq_len} (JSON has the exact integers)", title_justify="left")
    for col in ("component", "built", "analytic fwd", "FlopCounter fwd", "fvcore fwd x2", "FlopCounter bwd",
                "verdict"):
        table.add_column(col, justify="left" if col in ("component", "verdict") else "right")
    for c in report.components:
        table.add_row(c.stage, f"{c.instantiated} of {c.count}", units.human_flops(c.analytic_forward),
                      flops(c.flop_counter_forward), flops(c.fvcore_forward), flops(c.flop_counter_backward),
                      verdict(c.exact))
    t = report.totals
    table.add_row("[bold]network fwd[/bold]", "", units.human_flops(t.analytic_forward), flops(t.counted_forward),
                  "", "", verdict(t.exact))
    console.print(table)
    params = Table(title=f"{report.model}: parameters", title_justify="left")
    for col in ("stage", "x", "analytic", "sum(p.numel())", "verdict"):
        params.add_column(col, justify="left" if col in ("stage", "verdict") else "right")
    for row in report.params.by_stage:
        params.add_row(row.stage, str(row.count), f"{row.analytic:,}", f"{row.counted:,}",
                       verdict(row.analytic == row.counted))
    p = report.params
    params.add_row("[bold]total[/bold]", "", f"{p.analytic:,}", f"{p.counted:,}", verdict(p.exact))
    console.print(params)
    if report.optimizer:
        states = Table(title="optimizer state after one torch.optim step (one layer, fp32)", title_justify="left")
        for col in ("optimizer", "params", "predicted", "measured", ""):
            states.add_column(col, justify="left" if col == "optimizer" else "right")
        for o in report.optimizer:
            states.add_row(o.optimizer, f"{o.params:,}", f"{o.predicted:,}", f"{o.measured:,}",
                           "exact" if o.exact else "[red]differs[/red]")
        console.print(states)
    console.print("[bold green]verified: every count matches[/bold green]" if report.passed
                  else "[bold red]some counts differ[/bold red]")
    _notes(report.notes)


def plan(report) -> None:
    """A pipeline: one row per stage (an RL stage's iteration and groups of GPUs under it), the
    search, the totals, then where it breaks."""

    out = console if console.is_terminal or "COLUMNS" in os.environ else _Console(width=140)
    table = Table(title=f"{report.model}: training pipeline ({report.file})", title_justify="left")
    for col in ("stage", "GPUs", "steps", "accum", "s/step", "warm-up", "FLOPs", "memory/GPU", "GPU-hours",
                "wall-clock", "cost"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for s in report.stages:
        table.add_row(f"{s.name} ({s.kind})" if s.name != s.kind else s.name, f"{s.gpus:,} x {s.gpu}",
                      f"{s.steps:,}", "[red]-[/red]" if s.grad_accum is None else str(s.grad_accum),
                      f"{s.time_per_step_seconds:,.2f}", f"{s.lr.warmup_steps:,}", units.human_flops(s.flops),
                      _plan_memory(s.memory.peak_per_gpu, s.memory.fits),
                      units.human_hours(s.gpu_hours), _duration(s.wall_clock_hours), units.human_usd(s.usd))
        if s.rollout is not None:
            _plan_rollout(table, s)
    search = report.search
    if search:
        table.add_row(f"search ({search.method})", f"{search.pool_gpus:,} pool", f"{search.trials} trials", "", "",
                      "", units.human_flops(search.flops), "", units.human_hours(search.gpu_hours),
                      _duration(search.wall_clock_hours), units.human_usd(search.usd))
    t = report.totals
    table.add_section()
    table.add_row("[bold]total[/bold]", "", "", "", "", "", units.human_flops(t.flops), "",
                  f"[bold]{units.human_hours(t.gpu_hours)}[/bold]", f"[bold]{_duration(t.wall_clock_hours)}[/bold]",
                  f"[bold]{units.human_usd(t.usd)}[/bold]")
    out.print(table)
    for s in report.stages:
        shares = ", ".join(f"{k} {units.percent(v, s.flops)}" for k, v in s.flops_breakdown.items() if v)
        fit = "unknown" if s.memory.max_micro_batch is None else s.memory.max_micro_batch
        out.print(f"[dim]* {s.name}: {s.objective}; {', '.join(f'{k} {v}' for k, v in s.models.items())}; "
                  f"{units.human_count(s.tokens)} tokens, {s.tokens_per_step:,} per step; lr {s.lr.warmup_steps:,} "
                  f"warm-up + {s.lr.decay_steps:,} {s.lr.decay} steps; micro-batch {s.micro_batch} (largest that "
                  f"fits: {fit}); FLOPs: {shares}[/dim]")
    if search:
        rungs = "; ".join(f"{r.trials} x {units.human_count(r.trained_tokens)} tokens in {r.waves} wave"
                          f"{'s' if r.waves != 1 else ''}" for r in search.rungs)
        out.print(f"[dim]* search on stage {search.stage}: {search.parallel_trials} trials at once "
                  f"({search.pool_gpus} GPUs / {search.gpus_per_trial} per trial); {rungs}[/dim]")
    for warning in search.warnings if search else []:
        out.print(f"[yellow]* search: {warning}[/yellow]", soft_wrap=True)
    breaks = [b for s in report.stages for b in s.breaks] + (list(search.breaks) if search else [])
    if breaks:
        out.print(f"[bold red]the plan breaks in {len(breaks)} place{'s' if len(breaks) > 1 else ''}[/bold red]")
        for b in breaks:
            out.print(f"[red]* {b.field}: {b.message}" + (f"; {b.fix}" if b.fix else "") + "[/red]", soft_wrap=True)
    else:
        out.print("[bold green]every stage's batches divide and its micro-batch fits"
                  + (", and so do the search's trials" if search else "") + "[/bold green]")
    for note in report.notes:
        out.print(f"[dim]* {note}[/dim]")


def _plan_memory(peak: int | None, fits: bool | None) -> str:
    mem = "unknown" if peak is None else units.human_bytes(peak)
    return f"[red]{mem} (no fit)[/red]" if fits is False else mem


def _plan_rollout(table: Table, s) -> None:
    """Under an RL stage's row: its iteration's phases (seconds, one to a line, the engines' GPUs
    beside generation), then, with `placement:`, one row per group of GPUs: its models, its GPUs,
    and its peak memory (red where it does not fit)."""
    r = s.rollout
    lines = [f"  └ iteration {r.iteration_seconds:,.1f} s" + (", async" if r.overlapped else ""),
             f"    generation {r.generation_seconds:,.1f} s"]
    if r.experience_seconds is not None and r.update_seconds is not None:  # placement: the sync ends the update
        lines += [f"    experience {r.experience_seconds:,.1f} s", f"    update {r.update_seconds:,.1f} s",
                  f"    (weight sync {r.weight_sync_seconds:,.2f} s)"]
    else:
        lines += [f"    score + train {r.training_seconds:,.1f} s", f"    weight sync {r.weight_sync_seconds:,.2f} s"]
    engines = f"\n{r.generation_gpus:,} x {s.gpu}" if r.placement == "separate" else ""
    table.add_row("[dim]" + "\n".join(lines) + "[/dim]", f"[dim]{engines}[/dim]", *[""] * (len(table.columns) - 2))
    for g in r.groups or []:
        table.add_row(f"[dim]  └ {', '.join(g.roles)}[/dim]", f"{g.gpus:,} x {s.gpu}", "", "", "", "", "",
                      _plan_memory(g.peak_per_gpu, g.fits), "", "", "")


def collectives(report) -> None:
    table = Table(title=f"collectives: {report.world_size} x {report.device} ({report.backend}, torch "
                        f"{report.torch_version})", title_justify="left")
    for col in ("op", "message", "time", "algbw", "busbw"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for r in report.results:
        table.add_row(r.op, units.human_bytes(r.bytes), units.human_seconds(r.seconds),
                      units.human_bandwidth(r.algbw), units.human_bandwidth(r.busbw))
    console.print(table)
    console.print(f"largest bus bandwidth {units.human_bandwidth(report.busbw_max)}: "
                  "`paramcalc estimate TARGET --comm FILE` uses it as the link speed")


def sweep(report) -> None:
    table = Table(title=f"{report.model}: {report.figure} against {report.over}", title_justify="left")
    table.add_column(report.over, justify="right")
    for name in report.series:
        table.add_column(name, justify="right")
    fmt = units.human_bytes if report.unit == "bytes" else (lambda h: f"{h:,.1f} h")
    for i, x in enumerate(report.values):
        table.add_row(f"{x:,}", *(fmt(values[i]) if values[i] is not None else "-"
                                  for values in report.series.values()))
    console.print(table)
    _notes(report.notes)
