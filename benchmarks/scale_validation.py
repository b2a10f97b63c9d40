"""Predicted against published training runs: `paramcalc estimate` with each run's
plan pinned, step time and model TFLOP/s per GPU (and peak memory where the run
reports it). Prints the table docs/scale-validation.md holds.

    python benchmarks/scale_validation.py [--markdown]

Sources are cited per row; "measured" is what the source reports. Model FLOPs
count dense attention (the sources' convention: Megatron/NeMo, torchtitan,
Llama 3). torchtitan's H100s were 96 GB parts capped at 500 W, Megatron's and
NeMo's 80 GB SXM at 700 W: the catalog's h100-sxm is the latter.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paramcalc.analysis.estimate import estimate  # noqa: E402

LLAMA3 = "Dubey et al. 2024, The Llama 3 Herd of Models, table 4"
DGXC = "NVIDIA dgxc-benchmarking llama3.1 README (v25.04), NeMo on DGX H100"
TITAN = "torchtitan benchmarks/llama3_h100_202412_torchtitan.md (H100 96GB at 500 W)"
TITAN_ASYNC = "torchtitan benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md (H100 96GB at 500 W)"
KORTHIKANTI = "Korthikanti et al. 2022, table 5 (A100 80GB; MFU)"
# torchtitan's H100s: 96 GB HBM2e at 500 W (a GPU file of their own, benchmarks/gpus/)
TITAN_GPU = str(Path(__file__).resolve().parent / "gpus" / "h100-96gb-500w.yaml")

# NeMo's Llama 3.1 performance recipes reduce gradients in bf16 (grad_reduce_in_fp32 = False in their
# performance optimizations): those rows give grad_reduce="bf16"; Megatron-LM, torchtitan, Llama 3 and
# DeepSeek-V3 accumulate and reduce them in fp32, the default.
# (label, source, target, flags, measured TFLOP/s per GPU, measured step seconds, measured GiB)
RUNS = [
    ("Llama 3 405B, 8,192 GPUs", LLAMA3, "llama-3.1-405b",
     dict(gpus=8192, tp=8, pp=16, cp=1, global_batch=2048, seq_len=8192), 430, None, None),
    ("Llama 3 405B, 16,384 GPUs", LLAMA3, "llama-3.1-405b",
     dict(gpus=16384, tp=8, pp=16, cp=1, global_batch=2048, seq_len=8192), 400, None, None),
    ("Llama 3 405B, 16,384 GPUs, 131K context, CP16", LLAMA3, "llama-3.1-405b",
     dict(gpus=16384, tp=8, pp=16, cp=16, global_batch=128, seq_len=131072), 380, None, None),
    ("Llama 3.1 8B bf16, 8 GPUs, CP2", DGXC, "llama-3.1-8b",
     dict(gpus=8, tp=1, pp=1, cp=2, global_batch=128, micro_batch=1, seq_len=8192, recompute="none",
          grad_reduce="bf16"), 0.6247 * 989.4, 12.27, None),
    ("Llama 3.1 8B fp8, 8 GPUs, CP2", DGXC, "llama-3.1-8b",
     dict(gpus=8, tp=1, pp=1, cp=2, global_batch=128, micro_batch=1, seq_len=8192, recompute="none", dtype="fp8",
          grad_reduce="bf16"), 0.4107 * 1978.9, 9.33, None),
    ("Llama 3.1 70B bf16, 64 GPUs, TP4 PP4 CP2 v5", DGXC, "llama-3.1-70b",
     dict(gpus=64, tp=4, pp=4, cp=2, vpp=5, global_batch=128, micro_batch=1, seq_len=8192, recompute="none",
          grad_reduce="bf16"), 0.5432 * 989.4, 14.66, None),
    ("Llama 3.1 8B fp8, 8 GPUs, CP2 (memory: the README's example log)", DGXC, "llama-3.1-8b",
     dict(gpus=8, tp=1, pp=1, cp=2, global_batch=128, micro_batch=1, seq_len=8192, recompute="none", dtype="fp8",
          grad_reduce="bf16"), None, None, 70_833_405_952 / 2**30),
    ("Llama 3.1 70B fp8, 64 GPUs, TP4 PP8 v5", DGXC, "llama-3.1-70b",
     dict(gpus=64, tp=4, pp=8, cp=1, vpp=5, global_batch=128, micro_batch=1, seq_len=8192, recompute="none",
          dtype="fp8", grad_reduce="bf16"), 0.4038 * 1978.9, 9.86, None),
    ("Llama 3.1 405B bf16, 512 GPUs, TP8 PP8 CP2 v8", DGXC, "llama-3.1-405b",
     dict(gpus=512, tp=8, pp=8, cp=2, vpp=8, global_batch=256, micro_batch=1, seq_len=8192, grad_reduce="bf16"),
     0.5547 * 989.4, 19.78, None),
    ("Llama 3.1 405B fp8, 512 GPUs, TP8 PP8 CP2 v8", DGXC, "llama-3.1-405b",
     dict(gpus=512, tp=8, pp=8, cp=2, vpp=8, global_batch=256, micro_batch=1, seq_len=8192, dtype="fp8",
          grad_reduce="bf16"), 0.4435 * 1978.9, 12.37, None),
    ("Llama 3.1 70B bf16, 256 GPUs, FSDP32 TP8, full AC", TITAN_ASYNC, "llama-3.1-70b",
     dict(gpu=TITAN_GPU, gpus=256, tp=8, global_batch=512, micro_batch=16, zero=3, recompute="full", seq_len=8192),
     None, 512 * 8192 / (597.3 * 256), None),
    ("Llama 3.1 70B fp8, 256 GPUs, FSDP32 TP8, full AC", TITAN, "llama-3.1-70b",
     dict(gpu=TITAN_GPU, gpus=256, tp=8, global_batch=512, micro_batch=16, zero=3, recompute="full", seq_len=8192,
          dtype="fp8"),
     None, 512 * 8192 / (829 * 256), 71.9),
    # torchtitan's pipeline defaults at the benchmark's commit (9dec370): as many micro-batches as pipeline
    # ranks (pipeline_llama.py: pipeline_parallel_microbatches or the pp degree), so the local batch of 32 runs
    # as 8 micro-batches of 4, and two stages per rank for a multi-stage schedule (generate_split_points)
    ("Llama 3.1 405B fp8, 512 GPUs, FSDP8 TP8 PP8, interleaved 1F1B, full AC", TITAN, "llama-3.1-405b",
     dict(gpu=TITAN_GPU, gpus=512, tp=8, pp=8, cp=1, vpp=2, global_batch=256, micro_batch=4, zero=3, recompute="full",
          seq_len=8192, dtype="fp8"), None, 256 * 8192 / (128 * 512), 72.7),
    ("Llama 3.1 405B fp8, 512 GPUs, FSDP8 TP8 PP8, 1F1B, full AC", TITAN, "llama-3.1-405b",
     dict(gpu=TITAN_GPU, gpus=512, tp=8, pp=8, cp=1, vpp=1, global_batch=256, micro_batch=4, zero=3, recompute="full",
          seq_len=8192, dtype="fp8"), None, 256 * 8192 / (100 * 512), 82.5),
    ("Llama 3.1 8B, 8 GPUs, FSDP, op-level SAC, compile", TITAN, "llama-3.1-8b",
     dict(gpu=TITAN_GPU, gpus=8, global_batch=16, micro_batch=2, zero=3, recompute="op", seq_len=8192),
     None, 2 * 8192 / 6667, 77.0),
    ("Llama 3.1 8B fp8, 8 GPUs, FSDP8, 32K context, full AC", TITAN, "llama-3.1-8b",
     dict(gpu=TITAN_GPU, gpus=8, cp=1, global_batch=8, micro_batch=1, zero=3, recompute="full", seq_len=32768,
          dtype="fp8"),
     None, 32768 / 3890, 83.9),
    ("Llama 3.1 8B fp8, 8 GPUs, FSDP2 CP4, 131K context, full AC", TITAN, "llama-3.1-8b",
     dict(gpu=TITAN_GPU, gpus=8, cp=4, global_batch=2, micro_batch=1, zero=3, recompute="full", seq_len=131072,
          dtype="fp8"),
     None, 2 * 131072 / (1071 * 8), 84.0),
    # 180K H800 GPU-hours per trillion tokens (section 1) at 15,360 x 4,096-token batches; the report's memory
    # recipe: RMSNorm, MLA up-projections (section 3.2.3) and the MoE SwiGLU rerun (3.3.3), the Linears' inputs
    # cached in fp8 and AdamW's moments in bf16 (3.3.3), fp32 gradients (grad_reduce fp32) and master weights
    ("DeepSeek-V3 fp8, 2,048 H800, PP16 DualPipe EP64, ZeRO-1", "DeepSeek-AI 2024, DeepSeek-V3 technical report, "
     "sections 1, 3.2 and 3.3", "deepseek-v3", dict(gpu="h800", gpus=2048, tp=1, pp=16, cp=1, ep=64, zero=1,
                                                    global_batch=15360, seq_len=4096, dtype="fp8",
                                                    schedule="dualpipe", recompute="deepseek",
                                                    fp8_activations=True, optimizer="adamw-bf16"),
     None, 180_000 * 3600 / (10**12 / (15360 * 4096)) / 2048, None),
    ("GPT-3 175B, 64 A100, TP8 PP8, selective + SP", KORTHIKANTI, "tests/data/specs/gpt3-175b.yaml",
     dict(gpus=64, gpu="a100-80gb", tp=8, pp=8, vpp=3, global_batch=64, micro_batch=1, seq_len=2048,
          recompute="selective", sp=True, attention="eager"), 0.514 * 312, 13.75, None),
    ("GPT-3 175B, 64 A100, TP8 PP8, full recomputation", KORTHIKANTI, "tests/data/specs/gpt3-175b.yaml",
     dict(gpus=64, gpu="a100-80gb", tp=8, pp=8, vpp=3, global_batch=64, micro_batch=1, seq_len=2048,
          recompute="full", sp=False, attention="eager"), 0.514 * 312 * 13.75 / 18.13, 18.13, None),
]


def rows():
    for label, source, target, flags, tflops, seconds, gib in RUNS:
        flags = dict(flags)
        gpu = flags.pop("gpu", "h100-sxm")
        r = estimate(target, gpu=gpu, tokens=10**12, **flags)
        got_tf, got_s = r.step.tflops_per_gpu, r.step.seconds
        got_gib = (r.memory.total_per_gpu or 0) / 2**30 if r.memory else None
        yield dict(label=label, source=source, measured_tflops=tflops, predicted_tflops=got_tf,
                   measured_seconds=seconds, predicted_seconds=got_s, measured_gib=gib, predicted_gib=got_gib,
                   fits=r.memory.fits if r.memory else None)


def _err(pred, meas):
    return "" if meas is None or pred is None else f"{100 * (pred - meas) / meas:+.0f}%"


def _within(pred, meas, share) -> bool | None:
    return None if meas is None or pred is None else abs(pred - meas) <= share * meas


def main(markdown: bool = False) -> None:
    head = ("run", "TFLOP/s measured", "predicted", "err", "step s measured", "predicted", "err",
            "GiB measured", "predicted", "err", "source")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    hits: list[tuple[bool | None, bool | None]] = []
    for r in rows():
        cells = (r["label"], f"{r['measured_tflops']:.0f}" if r["measured_tflops"] else "",
                 f"{r['predicted_tflops']:.0f}", _err(r["predicted_tflops"], r["measured_tflops"]),
                 f"{r['measured_seconds']:.2f}" if r["measured_seconds"] else "", f"{r['predicted_seconds']:.2f}",
                 _err(r["predicted_seconds"], r["measured_seconds"]),
                 f"{r['measured_gib']:.1f}" if r["measured_gib"] else "",
                 f"{r['predicted_gib']:.1f}" + ("" if r["fits"] else " (no fit)"),
                 _err(r["predicted_gib"], r["measured_gib"]), r["source"])
        print("| " + " | ".join(cells) + " |")
        speed = _within(r["predicted_seconds"], r["measured_seconds"], 0.20)
        speed = _within(r["predicted_tflops"], r["measured_tflops"], 0.20) if speed is None else speed
        memory = _within(r["predicted_gib"], r["measured_gib"], 0.15)
        hits.append((speed, memory))
    speeds = [h[0] for h in hits if h[0] is not None]
    memories = [h[1] for h in hits if h[1] is not None]
    print(f"\nspeed (step time or TFLOP/s) within 20%: {sum(speeds)} of {len(speeds)} runs; "
          f"memory within 15%: {sum(memories)} of {len(memories)} runs")


if __name__ == "__main__":
    main("--markdown" in sys.argv)
