"""Collective bandwidth, measured: all-reduce, all-gather and reduce-scatter
over message sizes, one process per GPU (NCCL) or per CPU core (gloo).

Launched by torchrun, so the same command scales from 2 CPU processes to
many nodes:

    torchrun --nproc-per-node 8 -m paramcalc.torchref.collectives --out comm.json
    paramcalc bench-collectives --nproc 2 --backend gloo --out comm.json   # wraps torchrun

Bus bandwidth follows nccl-tests' convention (PERFORMANCE.md there): the
bytes each rank must move over its link per second, so figures compare across
rank counts: all-reduce moves 2(n-1)/n x size, all-gather and reduce-scatter
(n-1)/n x size (size = the full tensor). `paramcalc estimate --comm FILE`
uses the largest measured bus bandwidth as the link speed of its
communication diagnostic.
"""

from __future__ import annotations

import argparse
import os
import time

SIZES = [2**p for p in range(10, 27, 2)]  # 1 KiB .. 64 MiB, the default sweep


def message_sizes(max_bytes: int) -> list[int]:
    """The sweep up to `max_bytes`: powers of 4 from 1 KiB below it, then the limit itself,
    so a decimal limit ends where it says (64M: ..., 16 MiB, 64,000,000 bytes), not at the
    power of 4 below it.

    >>> message_sizes(2**26)[-2:]
    [16777216, 67108864]
    >>> message_sizes(64_000_000)[-2:]
    [16777216, 64000000]
    >>> message_sizes(300_000)
    [1024, 4096, 16384, 65536, 262144, 300000]
    """
    sizes = []
    size = SIZES[0]
    while size < max_bytes:
        sizes.append(size)
        size *= 4
    return [*sizes, max_bytes]


def tensor_elements(sizes: list[int], n: int) -> list[int]:
    """The fp32 elements of each message, divisible by the world size `n` (rounded down, at least
    n), each length once: a limit just above a size (1025 bytes on 2 ranks) rounds onto it, and
    the sweep measures 1024 bytes once, not twice.

    >>> tensor_elements([1024, 1025], 2)
    [256]
    >>> tensor_elements([1024, 4096, 64_000_000], 3)
    [255, 1023, 15999999]
    """
    return list(dict.fromkeys(max(n, size // 4 // n * n) for size in sizes))


def _bus_factor(op: str, n: int) -> float:
    return 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n


def measure(sizes: list[int], iters: int, warmup: int) -> str | None:
    """Rank 0's results as a JSON document (None on the other ranks)."""
    import torch
    import torch.distributed as dist

    from paramcalc.results.catalog import CollectiveRow, CollectivesReport

    backend = "nccl" if torch.cuda.is_available() and os.environ.get("PARAMCALC_BACKEND", "nccl") == "nccl" else "gloo"
    dist.init_process_group(backend)
    rank, n = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results: list[CollectiveRow] = []
    for elements in tensor_elements(sizes, n):
        full = torch.ones(elements, device=device)
        shard = torch.ones(elements // n, device=device)
        ops = {
            "all_reduce": lambda: dist.all_reduce(full),
            "all_gather": lambda: dist.all_gather_into_tensor(full, shard),
            "reduce_scatter": lambda: dist.reduce_scatter_tensor(shard, full),
        }
        for op, run in ops.items():
            for _ in range(warmup):
                run()
            sync()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(iters):
                run()
            sync()
            seconds = (time.perf_counter() - start) / iters
            nbytes = elements * 4
            results.append(CollectiveRow(op=op, bytes=nbytes, seconds=seconds,
                                         algbw=nbytes / seconds, busbw=nbytes * _bus_factor(op, n) / seconds))
    report = CollectivesReport(backend=backend, world_size=n, torch_version=torch.__version__, results=results,
                               device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                               busbw_max=max(r.busbw for r in results))
    dist.destroy_process_group()
    return report.json_text() if rank == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description="collective bandwidth over message sizes (run under torchrun)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-bytes", type=int, default=SIZES[-1])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    text = measure(message_sizes(args.max_bytes), args.iters, args.warmup)
    if text:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()


def launch(out: str, *, nproc=2, backend: str = "gloo", max_bytes=SIZES[-1], iters: int = 10):
    """Run the measurement under torchrun on this machine and return rank 0's results."""
    import subprocess
    import sys
    from pathlib import Path

    from paramcalc.errors import UserError
    from paramcalc.inputs.files import load_mapping
    from paramcalc.results.catalog import CollectivesReport
    from paramcalc.units import parse_bytes, parse_positive_int

    nproc = parse_positive_int(nproc, field="nproc")
    max_bytes = parse_bytes(max_bytes, field="max_bytes")
    if backend not in ("gloo", "nccl"):
        raise UserError(f"unknown backend {backend!r}", field="backend", fix="use gloo (CPU) or nccl (GPUs)")
    env = {**os.environ, "PARAMCALC_BACKEND": backend, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "paramcalc.torchref.collectives", "--out", str(out), "--max-bytes", str(max_bytes),
           "--iters", str(iters)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise UserError(f"torchrun exited {proc.returncode}: {' / '.join(last)}",
                        fix="is torch installed? for nccl, are there GPUs?")
    return CollectivesReport.model_validate(load_mapping(Path(out)))
