"""The command line as people expect it (issue #19): torch-only commands name their extra,
the memory bar reads without colour, `flops` shows each model kind its own rows, an
incomplete config.json says what it defaulted, `verify` checks a CNN's FLOPs, and
`bench-collectives` takes binary sizes."""

from __future__ import annotations

import json
import re
import sys

import pytest
from cli import assert_user_error, run

EXTRA = "pip install 'paramcalc[torch]'"


# ---------------------------------------------------------------- torch-only commands without torch

@pytest.mark.parametrize("args", [("verify", "examples/small-cnn.yaml"), ("bench", "examples/small-cnn.yaml"),
                                  ("bench-collectives", "--out", "never-written.json")])
def test_a_torch_command_without_torch_names_the_extra_to_install(monkeypatch, tmp_path, args):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    r = run(*args, cwd=None)
    assert_user_error(r, EXTRA, "torch")
    assert "ModuleNotFoundError" not in r.err and "could not process" not in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.out == ""


def test_verify_without_fvcore_names_the_extra_too(monkeypatch):
    monkeypatch.setitem(sys.modules, "fvcore", None)
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)
    r = run("verify", "examples/small-cnn.yaml")
    assert_user_error(r, EXTRA, "fvcore")


# ---------------------------------------------------------------- the memory bar without colour

def _bar_lines(out: str) -> tuple[str, str]:
    lines = out.splitlines()
    legend = next(i for i, line in enumerate(lines) if "weights" in line and "gradients" in line
                  and "│" not in line)
    return lines[legend - 1], lines[legend]


def _legend_glyphs(legend: str) -> dict[str, str]:
    parts = [p for p in legend.split("  ") if p.strip()]
    return {p.strip()[2:]: p.strip()[0] for p in parts}


def test_without_colour_each_part_of_the_memory_bar_has_its_own_glyph_and_the_legend_shows_it():
    r = run("memory", "llama-3.1-8b")  # stdout is not a terminal: no colour
    assert r.code == 0, r.err
    bar, legend = _bar_lines(r.out)
    glyphs = _legend_glyphs(legend)
    assert list(glyphs) == ["weights", "gradients", "optimizer state", "activations", "overheads"]
    assert len(set(glyphs.values())) == len(glyphs)  # distinct
    assert set(bar) == set(glyphs.values())  # the bar draws with the legend's glyphs, each part visible
    order = [g for i, g in enumerate(bar) if i == 0 or bar[i - 1] != g]
    assert order == list(glyphs.values())  # in the legend's order


def test_no_color_on_a_terminal_uses_glyphs_and_a_colour_terminal_keeps_solid_coloured_blocks(monkeypatch):
    from paramcalc.cli import render

    def terminal():  # as the command line builds it, reading NO_COLOR then
        return render._Console(force_terminal=True, color_system="truecolor", width=100)

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(render, "console", terminal())
    plain = run("memory", "llama-3.1-8b")
    assert not re.search("\x1b\\[3[0-7]m", plain.out)  # no colour codes (bold and italic stay)
    bar, legend = _bar_lines(plain.out)
    assert len(set(_legend_glyphs(legend).values())) == 5
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(render, "console", terminal())
    coloured = run("memory", "llama-3.1-8b")
    assert re.search("\x1b\\[3[0-7]m█", coloured.out) and "▓" not in coloured.out  # colour tells them apart


# ---------------------------------------------------------------- flops: each model kind its own rows

LLM_ROWS = ("inference prefill", "decode, per token", "rule of thumb 6N", "PaLM", "attention")


@pytest.mark.parametrize("target", ["examples/small-cnn.yaml", "resnet-50"])
def test_flops_of_a_cnn_shows_per_sample_rows_and_says_6n_does_not_apply(target):
    r = run("flops", target)
    assert r.code == 0, r.err
    table = r.out.split("\n* ")[0]  # the tables, before the notes
    for row in (*LLM_ROWS, "recompute", "HFU", "per token", "seq 1", "non-matmul"):
        assert row not in table, row
    assert "forward per sample" in table and "train per sample" in table
    notes = run("flops", target, "--json").json
    assert notes["attention"] == "none" and notes["flops"]["prefill"] is None
    assert notes["flops"]["decode_per_token"] is None and notes["flops"]["six_n"] > 0  # keys kept
    assert any("6N" in n and "does not apply" in n and "reuses its weights" in n for n in notes["notes"])


def test_flops_of_an_rnn_keeps_per_token_rows_and_gives_6n_as_a_note():
    r = run("flops", "examples/lstm-lm.yaml")
    table = r.out.split("\n* ")[0]
    assert "x seq 35" in table and "forward per token" in table
    for row in (*LLM_ROWS, "recompute"):
        assert row not in table, row
    assert "6N (a transformer's rule of thumb)" in r.out and "+49.2% vs exact" in r.out


def test_flops_of_an_encoder_has_no_prefill_or_decode_and_a_decoder_keeps_every_row():
    vit = run("flops", "vit-b-16")
    table = vit.out.split("\n* ")[0]
    assert "prefill" not in table and "decode" not in table
    assert "rule of thumb 6N" in vit.out and "eager attention" in vit.out
    assert run("flops", "vit-b-16", "--json").json["flops"]["prefill"] is None
    llama = run("flops", "llama-3.1-8b").out
    for row in ("inference prefill (causal)", "decode, per token at context 2,049", "rule of thumb 6N",
                "PaLM 6N + 12LHQT", "recompute", "non-matmul forward"):
        assert row in llama, row


# ---------------------------------------------------------------- an incomplete config.json

def test_an_incomplete_config_keeps_transformers_defaults_and_says_which_it_took(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    r = run("count", path, "--json")
    assert r.code == 0, r.err
    assert r.json["params"]["total"] == 6_738_415_616  # transformers' LlamaConfig() with hidden 4096
    line = (f"paramcalc: warning: {path}: defaulted vocab_size=32000, num_hidden_layers=32, "
            "num_attention_heads=32, intermediate_size=11008, max_position_embeddings=2048 "
            "(transformers' LlamaConfig defaults)")
    assert r.err.strip() == line  # one line
    assert r.json["notes"][0] == line.removeprefix("paramcalc: warning: ")
    table = run("count", path)
    assert table.err.strip() == line


def test_a_complete_config_says_nothing_and_a_library_caller_gets_a_python_warning(tmp_path):
    for name in ("llama-3.1-8b", "qwen2.5-14b", "gpt2", "t5-base", "bert-base-uncased"):
        r = run("count", f"tests/data/hf-configs/{name}.json", "--json")
        assert r.code == 0 and r.err == "", (name, r.err)
        assert not any("defaulted" in n for n in r.json["notes"])
    from paramcalc.errors import InputWarning
    from paramcalc.inputs.hf import from_config

    with pytest.warns(InputWarning, match="defaulted vocab_size=50257, n_layer=12"):
        from_config({"model_type": "gpt2", "n_embd": 64, "n_head": 4}, "cfg.json")


def test_the_warning_names_transformers_config_class_for_every_family():
    auto = pytest.importorskip("transformers.models.auto.configuration_auto")
    from paramcalc.inputs.hf import FAMILIES, config_class

    assert {t: config_class(t) for t in FAMILIES} == {t: auto.CONFIG_MAPPING_NAMES[t] for t in FAMILIES}


# ---------------------------------------------------------------- verify checks a CNN's FLOPs

def test_verify_counts_a_cnns_flops_and_they_equal_flop_counter_mode_on_the_whole_network():
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from paramcalc.analysis.flops import count_flops
    from paramcalc.network import lower

    net = lower("examples/small-cnn.yaml")
    chain = torch.nn.Sequential(*(s.block.module() for s in net.stages for _ in range(s.count)
                                  if s.block.kind != "loss"))
    with FlopCounterMode(display=False) as counter:
        chain(torch.randn(2, 3, 32, 32))
    analytic = count_flops("examples/small-cnn.yaml", batch=2).flops.forward
    assert counter.get_total_flops() == analytic  # exact, on the CPU

    r = run("verify", "examples/small-cnn.yaml", "--batch", "2", "--json")
    assert r.code == 0, r.err
    report = r.json
    assert report["passed"] and report["totals"]["exact"] is True
    assert report["totals"]["counted_forward"] == report["totals"]["analytic_forward"] == analytic
    for c in report["components"]:
        assert c["flop_counter_forward"] == c["fvcore_forward"] == c["analytic_forward"], c["stage"]
        assert c["flop_counter_backward"] == c["analytic_backward"], c["stage"]
    stem = report["components"][0]
    assert stem["analytic_backward"] == stem["analytic_forward"]  # it reads images: weight gradient only

    table = run("verify", "examples/small-cnn.yaml").out
    network = next(line for line in table.splitlines() if "network fwd" in line)
    assert "n/a" not in network and network.count("23.00 MFLOP") == 2
    assert "not counted" not in table


# ---------------------------------------------------------------- bench-collectives takes binary sizes

def test_bench_collectives_takes_a_binary_size_and_measures_up_to_it(monkeypatch, tmp_path):
    import subprocess

    from paramcalc.torchref import collectives

    seen: list[list[str]] = []

    def torchrun(cmd, **kwargs):
        seen.append(cmd)
        largest = int(cmd[cmd.index("--max-bytes") + 1])
        sizes = collectives.message_sizes(largest)  # what collectives.main measures
        rows = [{"op": "all_reduce", "bytes": s, "seconds": 1.0, "algbw": s, "busbw": s} for s in sizes]
        out = cmd[cmd.index("--out") + 1]
        with open(out, "w") as f:
            json.dump({"command": "bench-collectives", "backend": "gloo", "world_size": 2, "device": "cpu",
                       "torch_version": "test", "results": rows, "busbw_max": sizes[-1]}, f)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", torchrun)
    r = run("bench-collectives", "--out", tmp_path / "comm.json", "--max-bytes", "64Mi", "--json")
    assert r.code == 0, r.err
    assert seen[0][seen[0].index("--max-bytes") + 1] == str(64 * 2**20)
    assert max(row["bytes"] for row in r.json["results"]) == 64 * 2**20


# ---------------------------------------------------------------- one recomputation vocabulary

@pytest.mark.parametrize("command", ["flops", "cost", "memory", "estimate", "sweep"])
def test_every_command_with_recompute_offers_op_and_deepseek_in_its_help(command):
    import typer

    from paramcalc.cli.app import app

    group = typer.main.get_command(app)
    (option,) = [p for p in group.commands[command].params if p.name == "recompute"]  # type: ignore[attr-defined]
    assert option.metavar == "none|selective|full|op|deepseek"
