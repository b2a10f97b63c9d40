"""The README walked as a new user would: every command it shows runs (exit 0), its
numbers in comments are what the command prints, and the commands that need the
user's own files or hardware say so clearly (exit 2, no traceback) when run as
written. The Quickstart's two commands are run from a fresh clone by .ci/run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cli import run

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = README.split("## What it answers", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
LINES = [line.split("#", 1)[0].strip() for line in BLOCK.strip().splitlines()]

# placeholders for the user's own files, a Hub id (the network) and a CUDA card: run as
# written they must stop with exit 2 and one message (tests elsewhere cover them with real inputs)
USERS_OWN = {"count path/to/config.json --json", "count meta-llama/Llama-3.1-8B", "count model.safetensors.index.json",
             "check budget.yaml --format junit", "bench llama-3.1-8b --device cuda"}


def commands() -> list[list[str]]:
    out = []
    for line in LINES:
        args = shlex.split(line)[1:]  # drop "paramcalc"
        if "|" in args:  # "presets | gpus | schema"
            out += [[name] for name in args if name != "|"]
        else:
            out.append(args)
    return out


@pytest.mark.parametrize("args", commands(), ids=" ".join)
def test_every_readme_command_runs(args, monkeypatch, tmp_path):
    if args[0] in ("verify", "bench", "bench-collectives"):
        pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    writes = args[0] == "bench-collectives"  # torchrun on CPU (gloo) writes comm.json where it runs
    r = run(*args, cwd=tmp_path if writes else ROOT)
    if " ".join(args) in USERS_OWN:
        assert r.code == 2 and "Traceback" not in r.err, (r.code, r.err)
    else:
        assert r.code == 0, r.err


def test_the_numbers_in_the_readme_comments_are_printed():
    assert "405,853,388,800" in run("count", "llama-3.1-405b", cwd=ROOT).out
    assert run("count", "llama-2-7b", "--lora-rank", "8", "--json", cwd=ROOT).json["params"]["trainable"] == 4_194_304
    library = re.findall(r"^paramcalc\.(count_params|flops)\((.*?)\)\.(.*?)\s+# (\d+)$", README, re.M)
    assert len(library) == 2
    import paramcalc

    for name, call_args, attrs, expected in library:
        value = eval(f"paramcalc.{name}({call_args}).{attrs}", {"paramcalc": paramcalc})  # the README's own lines
        assert value == int(expected)
