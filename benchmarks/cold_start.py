"""Cold-start ratio: `paramcalc count llama-3.1-405b --json` as a fresh process
against instantiating the same model with transformers on the meta device.

    .venv/bin/python benchmarks/cold_start.py [--runs 7] [--config path/to/config.json]

Each command runs as a whole process (fresh interpreter, nothing cached in
memory but the OS's file cache), one warm-up then `--runs` alternating timed
runs; medians and the pairwise ratio are printed. paramcalc's modules are
byte-compiled first, as pip does when it installs a wheel (transformers,
torch and typer in site-packages already are); an editable install under
PYTHONDONTWRITEBYTECODE would otherwise recompile them on every run. It prints ratios, it does
not pass or fail (the target in issue #2 is 20x or more).
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--config", default=str(ROOT / "tests" / "data" / "hf-configs" / "llama-3.1-405b.json"))
    args = parser.parse_args()
    ours = [sys.executable, "-m", "paramcalc", "count", "llama-3.1-405b", "--json"]
    theirs = [sys.executable, str(ROOT / "benchmarks" / "hf_meta_count.py"), args.config]
    compileall.compile_dir(ROOT / "paramcalc", quiet=1)
    timed(ours), timed(theirs)  # warm the file cache
    a, b = [], []
    for _ in range(args.runs):
        a.append(timed(ours))
        b.append(timed(theirs))
    ratios = [y / x for x, y in zip(a, b)]
    print(f"paramcalc count --json:        median {statistics.median(a):.3f} s (min {min(a):.3f}, max {max(a):.3f})")
    print(f"transformers on meta + numel:  median {statistics.median(b):.3f} s (min {min(b):.3f}, max {max(b):.3f})")
    print(f"speed-up (pairwise median):    {statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
