"""Cold-start ratio: `paramcalc count llama-3.1-405b --json` as a fresh process
against instantiating the same model with transformers on the meta device.

    .venv/bin/python benchmarks/cold_start.py [--runs 9] [--config path/to/config.json]

Each command runs as a whole process (fresh interpreter, nothing cached in
memory but the OS's file cache), one warm-up then `--runs` alternating timed
runs; medians and the pairwise ratio are printed. `python -m paramcalc` takes
the program's fast path (cli/fast.py, no typer) as users run it: the preset's
stored network (paramcalc/presets_store.py, checked current before timing),
its count printed from plain data (no pydantic, no yaml). Beside it, so one
run shows what each step saves: the fast path with no stored network (the
YAML preset read into a pydantic spec and lowered, what a stale store falls
back to), and the same count through the typer app (`paramcalc.cli.app.run`).
paramcalc's modules are byte-compiled first, as pip does when it installs a
wheel (transformers, torch and typer in site-packages already are); an
editable install under PYTHONDONTWRITEBYTECODE would otherwise recompile them
on every run. It prints figures, it does not pass or
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
# the fast path as it ran before the stored presets: the preset lowered from its YAML file
NOT_STORED = ("import sys; import paramcalc.presets_store as s; s.load = lambda target: None; "
              "sys.argv[0] = 'paramcalc'; from paramcalc.cli.fast import main; main()")


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
    stale = subprocess.run([sys.executable, "-c", f"from paramcalc.presets_store import load; "
                            f"assert load({count[1]!r}) is not None"], cwd=ROOT).returncode
    if stale:
        sys.exit(f"the stored {count[1]} is stale or missing: run `python -m paramcalc.presets_store` first")
    commands = {
        "paramcalc count --json": [sys.executable, "-m", "paramcalc", *count],
        "fast path, no stored network": [sys.executable, "-c", NOT_STORED, *count],
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
