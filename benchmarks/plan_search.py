"""How long `paramcalc estimate --gpus N` takes to search every plan for N GPUs,
per preset and cluster size (median of a few runs, in this process, after one
warm-up): the goal is well under 2 s even at 16,384 GPUs.

    python benchmarks/plan_search.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paramcalc.analysis.plans import Knobs, search  # noqa: E402
from paramcalc.catalog import load_gpu  # noqa: E402
from paramcalc.network import lower  # noqa: E402

CASES = [("llama-3.1-8b", 8), ("llama-3.1-8b", 1024), ("llama-3.1-70b", 256), ("llama-3.1-405b", 16384),
         ("mixtral-8x7b", 64), ("deepseek-v3", 2048), ("deepseek-v3", 16384)]


def main(repeats: int = 3) -> None:
    card = load_gpu("h100-sxm")
    print(f"{'model':16s} {'GPUs':>6s} {'plans':>7s} {'median s':>9s}  chosen")
    for name, gpus in CASES:
        net = lower(name)
        seq = net.training_seq_len
        search(net, gpus, card, seq, Knobs())  # warm-up: imports and caches
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = search(net, gpus, card, seq, Knobs())
            times.append(time.perf_counter() - start)
        assert out is not None
        p = out.plan
        print(f"{name:16s} {gpus:6d} {out.considered:7d} {statistics.median(times):9.3f}  "
              f"tp{p.tp} pp{p.pp} v{p.vpp} cp{p.cp} ep{p.ep} dp{p.dp} mb{p.micro_batch} ZeRO-{p.zero} {p.recompute}")


if __name__ == "__main__":
    main()
