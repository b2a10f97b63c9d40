"""The `paramcalc` command. Each command parses its flags, makes one library
call and renders the result: a rich table, or one JSON document with --json.

Errors: the library raises UserError; `main` prints it on stderr and exits 2.
"""

from __future__ import annotations

import copy
import os
import sys
from itertools import takewhile
from typing import Optional

import typer
from typer.main import get_command_name

from paramcalc.cli.options import (AttentionFlopsOpt, BatchOpt, DtypeOpt, GpuOpt, JsonOpt, LoraRankOpt,
                                  LoraTargetsOpt, SeqLenOpt, TargetArg)
from paramcalc.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Exact parameter counts, FLOPs, memory and GPU cost of neural networks.")
_debug = False


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks for unexpected errors")) -> None:
    global _debug
    _debug = debug


def emit(report, as_json: bool, render) -> None:
    """One JSON document on stdout, or the rich rendering."""
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    else:
        render(report)


@app.command()
def count(target: TargetArg, lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
          json: JsonOpt = False) -> None:
    """Exact parameter count with a breakdown by component (trainable and frozen apart)."""
    from paramcalc.core.count import count_params

    emit(count_params(target, lora_rank=lora_rank, lora_targets=lora_targets), json, _render("count"))


@app.command()
def flops(target: TargetArg, seq_len: SeqLenOpt = None, batch: BatchOpt = "1",
          attention: AttentionFlopsOpt = "dense",
          recompute: str = typer.Option("none", help="none | selective | full: extra forward counted as hardware FLOPs"),
          json: JsonOpt = False) -> None:
    """Matmul FLOPs of one forward and backward pass (2 FLOPs per multiply-add)."""
    from paramcalc.core.flops import count_flops

    emit(count_flops(target, seq_len=seq_len, batch=batch, attention=attention, recompute=recompute),
         json, _render("flops"))


@app.command()
def memory(target: TargetArg,
           mode: str = typer.Option("train", help="train | infer"),
           seq_len: SeqLenOpt = None, batch: BatchOpt = "1", dtype: DtypeOpt = "bf16",
           kv_dtype: Optional[str] = typer.Option(None, help="KV cache dtype [default: --dtype]"),
           precision: Optional[str] = typer.Option(None, help="mixed (ZeRO: 16-bit weights and grads, fp32 master "
                                                                 "and Adam: 16 B/param) | fp32 | amp | megatron "
                                                                 "[default: fp32 for --dtype fp32, else mixed]"),
           optimizer: str = typer.Option("adamw", help="adamw | adam | adam-8bit | sgd | sgd-momentum | lion | adafactor"),
           zero: str = typer.Option("0", help="ZeRO stage 0-3 (3 = FSDP full sharding)"),
           dp: str = typer.Option("1", help="data-parallel GPUs"), tp: str = typer.Option("1", help="tensor-parallel GPUs"),
           pp: str = typer.Option("1", help="pipeline stages"),
           sp: bool = typer.Option(False, "--sp", help="sequence parallelism with TP (Korthikanti et al. 2022)"),
           recompute: str = typer.Option("none", help="none | selective | full"),
           attention: str = typer.Option("eager", help="eager (keeps s x s probabilities) | flash"),
           gpu: Optional[str] = typer.Option(None, help="say whether it fits on this GPU"),
           context_gib: str = typer.Option("0.5", "--context-gib",
                                           help="calibrate: CUDA context and library workspaces per GPU, GiB"),
           fragmentation: str = typer.Option("0.05", "--fragmentation",
                                             help="calibrate: allocator slack as a share of the tensors"),
           lora_rank: LoraRankOpt = None, lora_targets: LoraTargetsOpt = None,
           json: JsonOpt = False) -> None:
    """Bytes per GPU: weights, gradients, optimizer state, activations, KV cache, overheads."""
    from paramcalc.core.memory import estimate_memory

    emit(estimate_memory(target, mode=mode, seq_len=seq_len, batch=batch, dtype=dtype, kv_dtype=kv_dtype,
                         precision=precision, optimizer=optimizer, zero=zero, dp=dp, tp=tp, pp=pp,
                         sequence_parallel=sp, recompute=recompute, attention=attention, gpu=gpu,
                         context_bytes=_gib(context_gib, "--context-gib"), fragmentation=fragmentation,
                         lora_rank=lora_rank, lora_targets=lora_targets),
         json, _render("memory"))


@app.command()
def estimate(target: TargetArg, gpu: str = typer.Option("h100-sxm", "--gpu", help="accelerator to plan for"),
             tokens: Optional[str] = typer.Option(None, "--tokens", "-t", help="training tokens [default: 20 x params]"),
             gpus: Optional[str] = typer.Option(None, "--gpus", help="GPUs for wall-clock [default: the plan's]"),
             mfu: str = typer.Option("0.4", "--mfu", help="model FLOPs utilisation, or `auto`: estimated from "
                                                           "the plan's communication"),
             seq_len: SeqLenOpt = None, batch: BatchOpt = "1", dtype: DtypeOpt = "bf16",
             usd_per_hour: Optional[str] = typer.Option(None, "--usd-per-hour", help="price per GPU-hour"),
             comm: Optional[str] = typer.Option(None, "--comm", help="a `bench-collectives` file: measured link speed"),
             json: JsonOpt = False) -> None:
    """Params, FLOPs, a training plan that fits, GPU-hours and dollars in one report."""
    from paramcalc.core.estimate import estimate as run

    emit(run(target, gpu=gpu, tokens=tokens, gpus=gpus, mfu=mfu, seq_len=seq_len, batch=batch, dtype=dtype,
             usd_per_hour=usd_per_hour, comm_file=comm), json, _render("estimate"))


@app.command()
def gpus(json: JsonOpt = False) -> None:
    """The hardware catalog: dense peaks per dtype, memory, bandwidth, sources."""
    from paramcalc.catalog import gpu_names, load_gpu

    cards = [load_gpu(name) for name in gpu_names()]
    if json:
        import json as _json
        from dataclasses import asdict

        sys.stdout.write(_json.dumps({"schema_version": 1, "gpus": [asdict(c) for c in cards]}, indent=2) + "\n")
    else:
        _render("gpus")(cards)


@app.command()
def schema() -> None:
    """The JSON Schema of paramcalc's YAML spec format (for editors and validators)."""
    import json as _json

    from paramcalc.validation import spec_schema

    sys.stdout.write(_json.dumps(spec_schema(), indent=2) + "\n")


@app.command()
def presets(json: JsonOpt = False) -> None:
    """The embedded model presets, with family, size and source."""
    from paramcalc.catalog import list_presets

    items = list_presets()
    if json:
        import json as _json

        sys.stdout.write(_json.dumps({"schema_version": 1, "presets": items}, indent=2) + "\n")
    else:
        _render("presets")(items)


@app.command()
def cost(target: TargetArg, gpu: GpuOpt,
         tokens: str = typer.Option(..., "--tokens", "-t", help="training tokens (15e12, 15T)"),
         gpus: str = typer.Option("1", "--gpus", help="GPUs in the run (wall-clock = GPU-hours / N)"),
         mfu: str = typer.Option("0.4", "--mfu", help="model FLOPs utilisation in (0, 1]; absorbs communication"),
         seq_len: SeqLenOpt = None, batch: BatchOpt = "1", dtype: DtypeOpt = "bf16",
         usd_per_hour: str | None = typer.Option(None, "--usd-per-hour", help="USD per GPU-hour [default: built-in table]"),
         recompute: str = typer.Option("none", help="none | selective | full: reported as hardware FLOPs (HFU) only"),
         calibration: Optional[str] = typer.Option(None, "--calibration",
                                                   help="use the MFU measured by `paramcalc bench --calibration-out`"),
         json: JsonOpt = False) -> None:
    """GPU-hours, wall-clock, dollars and energy of one training run (model FLOPs / (dense peak x MFU))."""
    from paramcalc.core.cost import estimate_cost

    emit(estimate_cost(target, tokens=tokens, gpu=gpu, gpus=gpus, mfu=mfu, seq_len=seq_len, batch=batch, dtype=dtype,
                       usd_per_hour=usd_per_hour, recompute=recompute, calibration=calibration), json, _render("cost"))


_CHECK_RENDER = {"table": "check", "markdown": "check_markdown", "junit": "check_junit", "json": None}


@app.command()
def check(budget: str = typer.Argument(..., metavar="BUDGET.yaml", help="a budget file (docs/ci.md)"),
          format: str = typer.Option("table", "--format", "-f", help="table | json | markdown | junit")) -> None:
    """CI budgets: exit 0 when every budget holds, 1 when one is exceeded, 2 on bad input."""
    from paramcalc.core.budget import check_budgets

    if format not in _CHECK_RENDER:
        raise UserError(f"unknown format {format!r}", where="--format", fix="use table, json, markdown or junit")
    report = check_budgets(budget)
    emit(report, format == "json", _render(_CHECK_RENDER[format] or "check"))
    if not report.passed:
        raise typer.Exit(1)


@app.command()
def diff(a: str = typer.Argument(..., metavar="A", help="a TARGET: preset, config.json, .yaml spec or count"),
         b: str = typer.Argument(..., metavar="B", help="a TARGET to compare with A (deltas are B - A)"),
         seq_len: SeqLenOpt = None, json: JsonOpt = False) -> None:
    """Two models side by side: params, FLOPs per token, training memory, KV cache, with deltas."""
    from paramcalc.core.diff import diff as compare

    emit(compare(a, b, seq_len=seq_len), json, _render("diff"))


@app.command()
def size(target: Optional[str] = typer.Option(None, "--target", help="parameter count to aim at (7B, 7e9, 405B)"),
         flops: Optional[str] = typer.Option(None, "--flops", help="instead of --target: a FLOP budget; aims at the "
                                                                 "compute-optimal N = sqrt(C / 120) (Chinchilla)"),
         tolerance: str = typer.Option("0.02", "--tolerance", help="largest relative deviation from the target"),
         vocab: str = typer.Option("128256", "--vocab", help="vocabulary size (Llama 3: 128256)"),
         max_: str = typer.Option("10", "--max", help="candidates shown, closest first (0: all)"),
         tied: bool = typer.Option(False, "--tied", help="tie the LM head to the token embedding"),
         kv_heads: str = typer.Option("8,4,2,mha", "--kv-heads", help="K/V head counts allowed, preferred first"),
         json: JsonOpt = False) -> None:
    """Llama-style architectures whose exact parameter count is within the tolerance of a target."""
    from paramcalc.core.sizing import propose_architectures

    emit(propose_architectures(target, flops=flops, tolerance=tolerance, vocab_size=vocab, tied=tied,
                               max_candidates=max_, kv_heads=kv_heads), json, _render("size"))


@app.command()
def checkpoint(target: TargetArg, dtype: DtypeOpt = "bf16",
               optimizer: str = typer.Option("adamw", help="adamw | adam | adam-8bit | sgd | sgd-momentum | lion | "
                                                           "adafactor"),
               precision: Optional[str] = typer.Option(None, help="mixed (16-bit weights + fp32 master) | fp32 | amp | "
                                                                  "megatron [default: fp32 for fp32, else mixed]"),
               train_dtype: Optional[str] = typer.Option(None, "--train-dtype",
                                                         help="weights as trained [default: --dtype]"),
               zero: str = typer.Option("0", help="ZeRO stage 0-3 (3 = FSDP full sharding): what each rank writes"),
               dp: str = typer.Option("1", help="data-parallel ranks"),
               keep: str = typer.Option("1", help="checkpoints kept on disk"),
               json: JsonOpt = False) -> None:
    """Checkpoint bytes on disk: weights only, resumable, per-rank shard, K kept."""
    from paramcalc.core.checkpoint import checkpoint_sizes

    emit(checkpoint_sizes(target, dtype=dtype, precision=precision, optimizer=optimizer, zero=zero, dp=dp, keep=keep,
                          train_dtype=train_dtype), json, _render("checkpoint"))


@app.command()
def serve(target: TargetArg, gpu: GpuOpt = "h100-sxm", tp: str = typer.Option("1", help="tensor-parallel GPUs per replica"),
          prompt: str = typer.Option("1024", help="prompt tokens"), output: str = typer.Option("256", help="output tokens"),
          batch: str = typer.Option("1,8,32,128", "--batch", "-b", help="concurrent sequences, comma-separated"),
          dtype: DtypeOpt = "bf16", kv_dtype: Optional[str] = typer.Option(None, help="KV cache dtype"),
          json: JsonOpt = False) -> None:
    """Inference on a roofline: time to first token, time per output token, tokens/s."""
    from paramcalc.core.inference import estimate_serving

    emit(estimate_serving(target, gpu=gpu, tp=tp, prompt=prompt, output=output, batches=batch.split(","),
                          dtype=dtype, kv_dtype=kv_dtype), json, _render("serve"))


@app.command()
def bench(target: TargetArg,
          device: Optional[str] = typer.Option(None, help="cuda | cpu (default: cuda when available)"),
          dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32 | bf16 | fp16 (default: bf16 on CUDA, fp32 on CPU)"),
          layers: str = typer.Option("1", "--layers", help="copies of the first layer stage to run"),
          seq_len: SeqLenOpt = None, batch: BatchOpt = "1",
          attention: str = typer.Option("eager", help="eager (explicit matmuls) | sdpa (F.scaled_dot_product_attention)"),
          warmup: str = typer.Option("3", help="untimed steps first"), steps: str = typer.Option("10", help="timed steps"),
          with_head: bool = typer.Option(False, "--with-head", help="add the embedding, final norm, LM head and loss"),
          gpu: Optional[str] = typer.Option(None, "--gpu", help="catalog GPU for MFU (default: guessed from the CUDA device)"),
          calibration_out: Optional[str] = typer.Option(None, "--calibration-out", help="write the measured MFU "
                                                        "for `paramcalc cost --calibration` (docs/bench.md)"),
          json: JsonOpt = False) -> None:
    """Time real layers on a device and compare FLOPs and saved bytes with paramcalc's predictions."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from paramcalc.torchref.bench import run_bench, write_calibration

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("bench", total=None)

        def tick(phase: str, done: int, total: int) -> None:
            bar.update(task, description=f"bench: {phase}", completed=done, total=total)

        report = run_bench(target, device=device, dtype=dtype, layers=layers, seq_len=seq_len, batch=batch,
                           attention=attention, warmup=warmup, steps=steps, with_head=with_head, gpu=gpu,
                           require_mfu=calibration_out is not None, progress=tick)
    if calibration_out:
        write_calibration(report, calibration_out)
    emit(report, json, _render("bench"))


@app.command()
def verify(target: TargetArg,
           layers: str = typer.Option("1", "--layers", help="layers instantiated per layer stage"),
           seq_len: str = typer.Option("128", "--seq-len", "-s", help="tokens per sequence (small: counting runs on meta)"),
           batch: BatchOpt = "1", json: JsonOpt = False) -> None:
    """Check the analytic counts against real modules: parameters, FlopCounterMode and fvcore, per component."""
    from paramcalc.torchref.verify import run_verify

    emit(run_verify(target, layers=layers, seq_len=seq_len, batch=batch), json, _render("verify"))


@app.command()
def plan(pipeline: str = typer.Argument(..., metavar="PIPELINE.yaml", help="a pipeline file (docs/plan.md)"),
         json: JsonOpt = False) -> None:
    """Cost a training pipeline: pretrain, SFT, reward, PPO and DPO stages and a hyperparameter search."""
    from paramcalc.core.plan import plan_pipeline

    emit(plan_pipeline(pipeline), json, _render("plan"))


@app.command("bench-collectives")
def bench_collectives(out: str = typer.Option(..., "--out", help="where to write the measurements (JSON)"),
                      nproc: str = typer.Option("2", "--nproc", help="processes on this machine (one per GPU)"),
                      backend: str = typer.Option("gloo", help="gloo (CPU) | nccl (GPUs)"),
                      max_bytes: str = typer.Option("64M", "--max-bytes", help="largest message"),
                      json: JsonOpt = False) -> None:
    """All-reduce, all-gather and reduce-scatter bandwidth over message sizes, under torchrun."""
    from paramcalc.torchref.collectives import launch
    from paramcalc.units import parse_positive_int

    data = launch(out, nproc=parse_positive_int(nproc, what="--nproc"), backend=backend,
                  max_bytes=parse_positive_int(max_bytes, what="--max-bytes"))
    if json:
        import json as _json

        sys.stdout.write(_json.dumps(data, indent=2) + "\n")
    else:
        _render("collectives")(data)


@app.command()
def sweep(target: TargetArg, figure: str = typer.Option("memory", help="memory (per GPU, by part) | time (wall-clock)"),
          over: str = typer.Option("seq-len", help="seq-len | batch | gpus"),
          values: str = typer.Option("512,1024,2048,4096,8192", help="comma-separated values of --over"),
          mode: str = typer.Option("train", help="memory: train | infer"),
          attention: str = typer.Option("eager", help="memory: eager | flash"),
          recompute: str = typer.Option("none", help="memory: none | selective | full"),
          seq_len: SeqLenOpt = None, batch: BatchOpt = "1", gpu: GpuOpt = "h100-sxm",
          tokens: Optional[str] = typer.Option(None, "--tokens", help="time: training tokens [default: 20 x params]"),
          mfu: str = typer.Option("0.4", "--mfu", help="time: model FLOPs utilisation"),
          plot: Optional[str] = typer.Option(None, "--plot", help="draw the sweep to FILE.svg (or .png with matplotlib)"),
          json: JsonOpt = False) -> None:
    """One figure across a range: memory against sequence length, batch or GPUs; time against GPUs."""
    from paramcalc.core.sweep import sweep as run

    flags = {"mode": mode, "attention": attention, "recompute": recompute, "batch": batch}
    if seq_len is not None:
        flags["seq_len"] = seq_len
    report = run(target, figure=figure, over=over, values=values, gpu=gpu, tokens=tokens, mfu=mfu, **flags)
    if plot:
        from paramcalc.cli.plot import write

        write(report, plot)
    emit(report, json, _render("sweep"))


def _gib(text: str, flag: str) -> int:
    from paramcalc.units import GIB, parse_number

    value = parse_number(text, what=flag)
    if value < 0:
        raise UserError(f"{flag} must be >= 0, got {text!r}")
    return int(value * GIB)


def _render(name: str):
    def call(report):
        from paramcalc.cli import render

        getattr(render, name)(report)

    return call


def _only_invoked(args: list[str]) -> typer.Typer:
    """The app with just the command being run. Typer inspects the signature of
    every registered command before it parses anything, about 10 ms of a cold
    `paramcalc count`; one command's help and errors read the same without its
    siblings. Anything else (no command, an unknown one, a root option other
    than --debug, which takes no value) gets the whole app: it lists and suggests."""
    options = list(takewhile(lambda arg: arg.startswith("-"), args))
    name = args[len(options)] if len(options) < len(args) else None
    chosen = [c for c in app.registered_commands if (c.name or get_command_name(c.callback.__name__)) == name]
    if not chosen or set(options) - {"--debug"}:
        return app
    only = copy.copy(app)
    only.registered_commands = chosen
    return only


def main() -> None:
    # Pydantic plugins observe validation in users' own models, not in this
    # program's; looking for them scans every installed distribution's
    # metadata (4 ms of a cold `paramcalc count`). Only the command line opts
    # out, `import paramcalc` leaves them be, and a value the user set wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        _only_invoked(sys.argv[1:])()
    except UserError as e:
        print(f"paramcalc: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    except Exception as e:  # an input we failed to anticipate: still no traceback unless --debug
        if _debug:
            raise
        print(f"paramcalc: error: could not process this input ({type(e).__name__}: {e}); "
              "rerun with --debug for details", file=sys.stderr)
        sys.exit(2)
