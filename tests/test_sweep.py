"""`paramcalc sweep` and `--plot`: each point equals the single-point command,
and the SVG is a well-formed chart with one line per series."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from cli import run
from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.sweep import sweep


def test_each_memory_point_is_the_memory_command_at_that_value():
    r = sweep("llama-3.1-8b", over="seq-len", values="1024,4096", attention="flash")
    for seq, total in zip(r.values, r.series["total"]):
        assert total == estimate_memory("llama-3.1-8b", seq_len=seq, attention="flash").memory.total_per_gpu
    gpus = sweep("llama-3.1-8b", over="gpus", values="1,8")
    assert gpus.series["optimizer"][1] == -(-gpus.series["optimizer"][0] // 8)  # ZeRO-3 shards it 8 ways


def test_time_halves_when_the_gpus_double():
    r = sweep("llama-3.1-8b", figure="time", over="gpus", values="64,128", tokens="1T")
    assert r.series["wall-clock"][0] == 2 * r.series["wall-clock"][1]


def test_plot_writes_a_well_formed_svg_with_a_line_per_series(tmp_path):
    path = tmp_path / "memory.svg"
    r = run("sweep", "gpt2", "--over", "batch", "--values", "1,2,4,8", "--plot", path)
    assert r.code == 0, r.err
    root = ET.parse(path).getroot()
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 7 and all(len(line.get("points").split()) == 4 for line in lines)


def test_bad_sweeps_exit_2():
    for args in (("--figure", "heat"), ("--over", "layers"), ("--figure", "time", "--over", "batch"),
                 ("--values", "0,1"), ("--plot", "x.gif")):
        r = run("sweep", "gpt2", *args)
        assert r.code == 2 and "Traceback" not in r.err, (args, r.err)


def test_the_library_example_runs():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "examples" / "library.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Mixtral 8x7B: 46,702,792,704 parameters, 12,879,925,248 active per token" in out.stdout
    assert "TinyLlama-shaped: 1,100,048,384" in out.stdout
