"""`estimate` at 32, 10,000 and 100,000 layers: the time must stay roughly flat.

    .venv/bin/python benchmarks/estimate_layers.py [--gpus 1024] [--runs 3]

Llama 3.1 8B with its layer count changed (and its published count dropped) is
written to a temporary spec; `paramcalc.analysis.estimate.estimate` is called as a
library, once to warm up, then `--runs` times; the median is printed. A stage is a
block times a count, so nothing should iterate per layer. Deep models fit no plan
on the GPUs asked for, so the search weighs every candidate's memory: that costs
more than a model that fits, the same at 10,000 layers as at 100,000.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from paramcalc.analysis.estimate import estimate

ROOT = Path(__file__).resolve().parent.parent


def deep(layers: int, folder: Path) -> Path:
    text = (ROOT / "presets" / "models" / "llama-3.1-8b.yaml").read_text()
    lines = [f"num_hidden_layers: {layers}" if line.startswith("num_hidden_layers: ") else
             "name: deep" if line.startswith("name: ") else line
             for line in text.splitlines() if not line.startswith("expected_params")]
    path = folder / f"deep-{layers}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for layers in (32, 10_000, 100_000):
            spec = deep(layers, Path(tmp))
            estimate(str(spec), gpus=args.gpus)  # warm-up
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                estimate(str(spec), gpus=args.gpus)
                times.append(time.perf_counter() - start)
            print(f"estimate, {layers:>7,} layers, {args.gpus} GPUs: median {statistics.median(times):.3f} s "
                  f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
