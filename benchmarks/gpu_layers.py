"""Bench real decoder layers on a GPU and record every figure in markdown.

    .venv/bin/python benchmarks/gpu_layers.py results/h100.md
    .venv/bin/python benchmarks/gpu_layers.py out.md --targets tiny.yaml --device cpu --dtype fp32   # a dry run

By default: one full-width layer of Llama 3.1 405B (hidden 16384), Llama 2 7B
(4096) and Qwen2.5 14B (5120), in bf16, eager and SDPA attention, batch 1 at
seq 2048 (the 7B and 14B layers also at batch 4). Each run is `paramcalc
bench` as a library call: predicted vs measured forward / backward FLOPs and
saved bytes, seconds per step, achieved TFLOP/s, MFU and peak allocated
memory. The markdown names the card, driver, CUDA and torch versions and the
date; a JSON file beside it (same name, .json) keeps every report whole.

A run that fails (out of memory, say) is recorded as failed and the others
go on. It prints, it does not pass or fail: benchmarks never gate CI.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (target, batch) pairs; every one runs with each --attention.
DEFAULT_RUNS = [("llama-3.1-405b", 1), ("llama-2-7b", 1), ("llama-2-7b", 4), ("qwen2.5-14b", 1), ("qwen2.5-14b", 4)]


def environment(device: str) -> dict:
    import torch

    env = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
           "python": platform.python_version(), "paramcalc_commit": _git("rev-parse", "--short", "HEAD"),
           "paramcalc_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(card=torch.cuda.get_device_name(0), memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), driver=_nvidia_smi("driver_version"),
                   clocks_sm_max_mhz=_nvidia_smi("clocks.max.sm"), power_limit_w=_nvidia_smi("power.limit"))
    else:
        env.update(card=f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)")
    return env


def _nvidia_smi(field: str) -> str:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def bench_one(target: str, batch: int, attention: str, args) -> dict:
    import torch

    from paramcalc.torchref.bench import run_bench

    started = time.perf_counter()
    try:
        report = run_bench(target, device=args.device, dtype=args.dtype, layers=args.layers, seq_len=args.seq_len,
                           batch=batch, attention=attention, warmup=args.warmup, steps=args.steps, gpu=args.gpu)
        result = {"ok": True, "report": report.model_dump(mode="json")}
    except Exception as e:  # out of memory (a RuntimeError), a missing package: record it, run the rest
        result = {"ok": False, "target": target, "batch": batch, "attention": attention,
                  "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _gib(n) -> str:
    return "-" if n is None else f"{n / 2**30:,.2f}"


def _check(report: dict, figure: str) -> str:
    c = next(c for c in report["bench"]["checks"] if c["figure"] == figure)
    if c["exact"]:
        return "exact"
    return f"{c['verdict']} ({(c['ratio'] - 1) * 100:+.1f}%)" if c["ratio"] is not None else c["verdict"]


def markdown(env: dict, results: list[dict], args) -> str:
    from paramcalc.units import human_bytes

    lines = ["# paramcalc bench: real layers on one accelerator", ""]
    lines += [f"- **{key}**: {value}" for key, value in env.items()]
    lines += [f"- **settings**: {args.dtype or 'bf16 (GPU) / fp32 (CPU)'}, {args.layers} layer(s), seq {args.seq_len}, "
              f"warmup {args.warmup}, steps {args.steps}", ""]
    lines += ["## Summary", "",
              "| model | attention | batch | s/step | TFLOP/s | MFU | peak GiB (predicted / measured) | fwd FLOPs | "
              "bwd FLOPs | activations | peak | kernel |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | --- |"]
    for r in results:
        if not r["ok"]:
            lines.append(f"| {r['target']} | {r['attention']} | {r['batch']} | failed: {r['error']} |||||||||")
            continue
        rep = r["report"]
        m = rep["bench"]["measured"]
        mfu = "-" if m["mfu"] is None else f"{m['mfu'] * 100:.1f}%"
        kernel = ", ".join(m["attention_kernels"]) or ("matmul + softmax" if rep["attention"] == "eager" else "math")
        lines.append(f"| {rep['model']} | {rep['attention']} | {rep['batch']} | {m['seconds_per_step'] * 1e3:,.2f} ms "
                     f"| {m['achieved_tflops']:,.1f} | {mfu} | "
                     f"{_gib(rep['bench']['predicted']['peak_memory'])} / {_gib(m['peak_memory'])} | "
                     f"{_check(rep, 'forward_flops')} | {_check(rep, 'backward_flops')} | "
                     f"{_check(rep, 'activations')} | {_check(rep, 'peak_memory')} | {kernel} |")
    lines += ["", "## Every figure", ""]
    for r in results:
        if not r["ok"]:
            continue
        rep = r["report"]
        p, m = rep["bench"]["predicted"], rep["bench"]["measured"]
        lines += [f"### {rep['model']}: {rep['layers']} x {rep['stage']}, {rep['attention']}, batch {rep['batch']} x "
                  f"seq {rep['seq_len']}, {rep['dtype']}", "",
                  "| figure | predicted | measured | verdict |", "| --- | ---: | ---: | --- |"]
        for c in rep["bench"]["checks"]:
            lines.append(f"| {c['figure']} | {c['predicted']:,} | {c['measured']:,} | {_check(rep, c['figure'])} |")
        mfu = "-" if m["mfu"] is None else f"{m['mfu']:.4f}"
        peak = "-" if m["peak_allocated"] is None else f"{m['peak_allocated']:,}"
        lines += ["", "| measurement | value |", "| --- | ---: |",
                  f"| seconds per step (mean / min / median of {rep['steps']}) | {m['seconds_per_step']:.6f} / "
                  f"{m['seconds_min']:.6f} / {m['seconds_median']:.6f} |",
                  f"| achieved TFLOP/s (3 x forward / s) | {m['achieved_tflops']:,.2f} |",
                  f"| MFU vs {rep['gpu'] or '-'} dense {rep['dtype']} | {mfu} |",
                  f"| peak allocated bytes (torch.cuda.max_memory_allocated) | {peak} |",
                  f"| peak live tensor bytes (tracked op by op, one untimed step) | {m['peak_live']:,} |",
                  f"| weights bytes (predicted / measured) | {p['weights']:,} / {m['weights']:,} |",
                  f"| attention kernels | {', '.join(m['attention_kernels']) or '-'} |",
                  f"| wall time of the run | {r['wall_seconds']} s |", ""]
        top = sorted(p["activations_breakdown"].items(), key=lambda kv: -kv[1])[:8]
        lines += ["Largest predicted saved tensors: " + ", ".join(f"`{k}` {human_bytes(v)}" for k, v in top), ""]
        lines += [f"- {note}" for note in rep["notes"]] + [""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="markdown file to write (a .json file beside it keeps the raw reports)")
    parser.add_argument("--targets", nargs="*", help="targets instead of the default 405B, 7B and 14B layers")
    parser.add_argument("--batches", default="1", help="batches for --targets, comma-separated")
    parser.add_argument("--attention", default="eager,sdpa", help="comma-separated: eager, sdpa")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--gpu", default=None, help="catalog GPU for MFU [default: guessed from the card]")
    parser.add_argument("--layers", default="1")
    parser.add_argument("--seq-len", default="2048")
    parser.add_argument("--warmup", default="3")
    parser.add_argument("--steps", default="10")
    args = parser.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runs = DEFAULT_RUNS if not args.targets else \
        [(t, int(b)) for t in args.targets for b in args.batches.split(",")]
    env = environment(device)
    print(f"bench on {env['card']}: {len(runs)} shapes x {args.attention}", file=sys.stderr)
    results = []
    out = Path(args.output)
    for target, batch in runs:
        for attention in args.attention.split(","):
            result = bench_one(target, batch, attention, args)
            results.append(result)
            status = "ok" if result["ok"] else result["error"]
            print(f"  {target} batch {batch} {attention}: {status} ({result['wall_seconds']} s)", file=sys.stderr)
            # write after every run, so a run cut short still leaves what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(markdown(env, results, args))
            out.with_suffix(".json").write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
