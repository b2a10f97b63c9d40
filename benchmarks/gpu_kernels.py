"""Measure the kernel efficiencies the step-time and serving models use (the
GPU catalog's `efficiency:` block, analysis/step.py and analysis/serve.py):

- gemm_bf16 / gemm_fp8: matmul TFLOP/s over the GEMM shapes of the 405B, 14B
  and 7B presets' decoder layers (tokens x hidden -> q/k/v/o and MLP widths,
  whole and split 8 ways as tensor parallelism splits them), as a share of
  the catalog's dense peak; fp8 through torch._scaled_mm where the card has it;
- attention: causal flash attention (SDPA's flash backend), forward and
  backward, head dim 128, against the bf16 peak (backward counted as 2.5 x the
  forward's FLOPs, FlashAttention-2's 5 matmuls against 2);
- memory: the HBM bandwidth of a large device-to-device copy (read + write).

    python benchmarks/gpu_kernels.py OUT.json [--gpu h100-sxm]
    python benchmarks/gpu_kernels.py out.json --device cpu --quick     # a dry run of the code path

It prints a table and writes OUT.json with every measurement and the
`efficiency:` block to paste into presets/gpus/<card>.yaml (the medians),
labelled with the card, torch version and date. It never passes or fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paramcalc.catalog import load_gpu  # noqa: E402
from paramcalc.network import lower  # noqa: E402

PRESETS = ("llama-3.1-405b", "qwen2.5-14b", "llama-2-7b")


def gemm_shapes(tokens: int, tp_degrees=(1, 8)) -> list[tuple[str, int, int, int]]:
    """(label, M, K, N) of each layer's linears: M tokens, K inputs, N outputs, per TP split."""
    out = []
    for name in PRESETS:
        net = lower(name)
        h, f = net.width, net.ffn  # type: ignore[attr-defined]
        kv = 2 * h * net.kv_heads // net.heads  # type: ignore[attr-defined]
        for tp in tp_degrees:
            out += [(f"{name} qkv /{tp}", tokens, h, (h + kv) // tp), (f"{name} o /{tp}", tokens, h // tp, h),
                    (f"{name} gate+up /{tp}", tokens, h, 2 * f // tp), (f"{name} down /{tp}", tokens, f // tp, h)]
    return out


def timed(fn, warmup: int, steps: int, sync) -> float:
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--gpu", default=None, help="catalog card for the peaks [default: guessed from the device]")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one step: checks the code path only")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = args.gpu or (_guess(torch.cuda.get_device_name(0)) if cuda else "h100-sxm")
    card = load_gpu(name)
    warmup, steps = (0, 1) if args.quick else (5, 20)
    tokens = (64,) if args.quick else (2048, 8192)
    results: dict[str, list] = {"gemm_bf16": [], "gemm_fp8": [], "attention": [], "memory": []}

    dtype = torch.bfloat16 if cuda else torch.float32
    for t in tokens:
        for label, m, k, n in gemm_shapes(t):
            if args.quick:
                k, n = min(k, 256), min(n, 256)
            a, b = torch.randn(m, k, device=dev, dtype=dtype), torch.randn(n, k, device=dev, dtype=dtype).t()
            s = timed(lambda a=a, b=b: a @ b, warmup, steps, sync)
            results["gemm_bf16"].append(dict(shape=label, m=m, k=k, n=n, tflops=2 * m * k * n / s / 1e12,
                                             share=2 * m * k * n / s / card.peak("bf16")))
            if cuda and hasattr(torch, "_scaled_mm") and "fp8" in card.peak_flops_dense:
                try:
                    a8 = a.to(torch.float8_e4m3fn)
                    b8 = b.t().contiguous().to(torch.float8_e4m3fn).t()
                    one = torch.tensor(1.0, device=dev)
                    s8 = timed(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                               warmup, steps, sync)
                    results["gemm_fp8"].append(dict(shape=label, m=m, k=k, n=n, tflops=2 * m * k * n / s8 / 1e12,
                                                    share=2 * m * k * n / s8 / card.peak("fp8")))
                except (RuntimeError, TypeError) as e:  # no fp8 GEMM on this card or build
                    results["gemm_fp8"].append(dict(shape=label, error=str(e).splitlines()[0]))
    for s_len in (256,) if args.quick else (2048, 8192):
        heads, d = (4, 64) if args.quick else (32, 128)
        q, k, v = (torch.randn(1, heads, s_len, d, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
        fwd_flops = 2 * 2 * heads * s_len * s_len * d / 2  # QK^T and PV, the causal half
        ctx = torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.FLASH_ATTENTION]) if cuda else _null()
        with ctx:
            fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), warmup, steps, sync)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            grad = torch.ones_like(out)
            both = timed(lambda: torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                                     (q, k, v), grad), warmup, steps, sync)
        flops = fwd_flops * (1 + 2.5)
        results["attention"].append(dict(seq=s_len, heads=heads, head_dim=d, forward_tflops=fwd_flops / fwd / 1e12,
                                         step_tflops=flops / both / 1e12, share=flops / both / card.peak("bf16")))
    size = 2**20 if args.quick else 2**30
    src = torch.empty(size, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    s = timed(lambda: dst.copy_(src), warmup, steps, sync)
    results["memory"].append(dict(bytes=size, gbps=2 * size / s / 1e9, share=2 * size / s / card.memory_bandwidth))

    suggested = {key: round(statistics.median(r["share"] for r in rows if "share" in r), 3)
                 for key, rows in results.items() if any("share" in r for r in rows)}
    env = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__,
               cuda=torch.version.cuda, device=torch.cuda.get_device_name(0) if cuda else str(dev), gpu=card.name)
    doc = dict(kind="paramcalc.kernels", environment=env, results=results,
               efficiency={**suggested, "source": f"benchmarks/gpu_kernels.py on {env['device']}, torch "
                                                  f"{env['torch']}, {env['date'][:10]} (medians over shapes)"})
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    for key, value in suggested.items():
        print(f"{key:10s} median share of peak {value:.3f}")
    print(f"-> {args.out}")


def _guess(device_name: str) -> str:
    lowered = device_name.lower()
    for key, card in (("h200", "h200"), ("h100 pcie", "h100-pcie"), ("h100", "h100-sxm"), ("h800", "h800"),
                      ("a100", "a100-80gb"), ("b200", "b200"), ("mi300", "mi300x")):
        if key in lowered:
            return card
    return "h100-sxm"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    main()
