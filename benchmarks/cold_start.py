"""Cold-start ratio: `paramcalc count llama-3.1-405b --json` as a fresh process
against instantiating the same model with transformers on the meta device.

    .venv/bin/python benchmarks/cold_start.py [--runs 9] [--config path/to/config.json]

Each command runs as a whole process (fresh interpreter, nothing cached in
memory but the OS's file cache), one warm-up then `--runs` alternating timed
runs; medians and the pairwise ratio are printed. `python -m paramcalc` takes
the program's fast path (cli/fast.py, no typer); the same count through the
typer app (`paramcalc.cli.app.run`) is timed beside it, so one run shows what
the fast path saves. paramcalc's modules are byte-compiled first, as pip does
when it installs a wheel (transformers, torch and typer in site-packages
already are); an editable install under PYTHONDONTWRITEBYTECODE would
otherwise recompile them on every run. It prints figures, it does not pass or
fail (issue #19 asks for at most 0.12 s for the count).
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
# the count as the command line ran it before the fast path: every invocation through typer
TYPER_APP = "import sys; from paramcalc.cli.app import run; sys.exit(run(sys.argv[1:]))"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--config", default=str(ROOT / "tests" / "data" / "hf-configs" / "llama-3.1-405b.json"))
    args = parser.parse_args()
    count = ["count", "llama-3.1-405b", "--json"]
    commands = {
        "paramcalc count --json": [sys.executable, "-m", "paramcalc", *count],
        "the same through the typer app": [sys.executable, "-c", TYPER_APP, *count],
        "transformers on meta + numel": [sys.executable, str(ROOT / "benchmarks" / "hf_meta_count.py"), args.config],
    }
    compileall.compile_dir(ROOT / "paramcalc", quiet=1)
    for cmd in commands.values():  # warm the file cache
        timed(cmd)
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            seconds[name].append(timed(cmd))
    for name, runs in seconds.items():
        print(f"{name + ':':32}median {statistics.median(runs):.3f} s (min {min(runs):.3f}, max {max(runs):.3f})")
    ours, theirs = seconds["paramcalc count --json"], seconds["transformers on meta + numel"]
    ratios = [b / a for a, b in zip(ours, theirs)]
    print(f"{'speed-up (pairwise median):':32}{statistics.median(ratios):.1f}x")


if __name__ == "__main__":
    main()
