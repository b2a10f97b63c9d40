"""Write tests/golden/outputs.json: the `--json` output of the commands in
`commands()`, one document per command line. Run it from the project root
with the installed `paramcalc`; tests/test_golden.py compares every number
against today's code, so a refactoring that moves a number fails loudly.

    python tests/golden/make.py            # rewrite the file (after an intended change)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("outputs.json")


def targets() -> list[str]:
    presets = sorted(p.stem for p in (ROOT / "presets" / "models").glob("*.yaml"))
    configs = sorted(f"tests/data/hf-configs/{p.name}" for p in (ROOT / "tests" / "data" / "hf-configs").glob("*.json")
                     if p.name != "expected.json")
    return presets + configs + ["examples/tiny-llama.yaml", "examples/small-cnn.yaml", "examples/lstm-lm.yaml", "7.5B"]


def commands() -> list[list[str]]:
    out: list[list[str]] = []
    for t in targets():
        transformer = not t.startswith(("examples/small-cnn", "examples/lstm", "7.5B", "resnet"))
        out += [
            ["count", t],
            ["flops", t],
            ["flops", t, "--seq-len", "256", "--batch", "2", "--attention", "causal", "--recompute", "selective"],
            ["memory", t, "--mode", "train", "--seq-len", "256", "--attention", "eager"],
            ["memory", t, "--mode", "train", "--seq-len", "512", "--batch", "2", "--attention", "flash",
             "--zero", "3", "--dp", "8", "--recompute", "full"],
            ["memory", t, "--mode", "infer", "--seq-len", "512", "--batch", "2", "--kv-dtype", "fp8"],
            ["cost", t, "--tokens", "1T", "--gpu", "h100-sxm", "--gpus", "64", "--seq-len", "256"],
            ["checkpoint", t, "--zero", "3", "--dp", "8", "--keep", "2"],
        ]
        if transformer:
            out += [
                ["memory", t, "--mode", "train", "--seq-len", "512", "--attention", "flash", "--tp", "2", "--sp",
                 "--pp", "2", "--recompute", "selective", "--gpu", "h100-sxm"],
                ["count", t, "--lora-rank", "8"],
            ]
    out += [
        ["check", "examples/budget.yaml", "--format", "json"],
        ["plan", "examples/pipeline.yaml"],
        ["diff", "llama-3.1-8b", "qwen3-8b"],
        ["diff", "gpt2", "t5-base", "--seq-len", "256"],
        ["size", "--target", "7B"],
        ["sweep", "llama-3.1-8b", "--over", "seq-len", "--values", "512,1024"],
        ["sweep", "llama-3.1-8b", "--figure", "time", "--over", "gpus", "--values", "8,64"],
        ["estimate", "llama-3.1-8b", "--mfu", "0.4"],
        ["estimate", "gpt2", "--mfu", "0.4", "--tokens", "10B"],
        ["estimate", "llama-3.1-70b", "--gpus", "256", "--tp", "8", "--global-batch", "512", "--micro-batch", "16",
         "--zero", "3", "--recompute", "full", "--tokens", "1T"],
        ["estimate", "llama-3.1-405b", "--gpus", "16384", "--tokens", "15T", "--dtype", "fp8"],
        ["estimate", "mixtral-8x7b", "--gpus", "64", "--seq-len", "4096"],
        ["serve", "llama-3.1-8b", "--batch", "1,8"],
        ["serve", "llama-3.1-70b", "--tp", "4", "--dtype", "fp8", "--batch", "1,16"],
    ]
    return out


def run(cmd: list[str]) -> dict:
    args = cmd + (["--json"] if cmd[0] != "check" else [])
    proc = subprocess.run([sys.executable, "-m", "paramcalc", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode == 2:  # bad input stays bad input: only the exit code is pinned
        return {"exit_code": 2}
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr}")
    return json.loads(proc.stdout)


def main() -> None:
    docs = {" ".join(cmd): run(cmd) for cmd in commands()}
    OUT.write_text(json.dumps(docs, indent=1, sort_keys=True) + "\n")
    print(f"{len(docs)} documents -> {OUT}")


if __name__ == "__main__":
    main()
