"""A wheel built from the repository carries the package and its presets (the
top-level presets/ folder, installed as paramcalc.presets) and their stored
networks: installed into a fresh virtualenv, away from the checkout, it counts
a preset from its stored network and lists the GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_built_from_the_repo_counts_a_preset_from_its_own_presets(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("paramcalc-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True)
    # the dependencies (typer, rich, pydantic, pyyaml) come from this interpreter's site-packages, added
    # after the fresh venv's own: its paramcalc is the wheel's (no .pth of the editable install runs)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = lambda *args: subprocess.run([str(python), *args], capture_output=True, text=True, cwd=tmp_path)  # noqa
    where = run("-c", "import paramcalc, paramcalc.catalog as c; print(paramcalc.__file__); print(c.presets_root())")
    module, presets = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(presets) == site / "paramcalc" / "presets", where.stderr
    stored = run("-c", "from paramcalc.presets_store import load; print(load('llama-3.1-8b').total_params)")
    assert stored.stdout == "8030261248\n", stored.stderr  # the wheel's sources fingerprint as the checkout's
    count = run("-m", "paramcalc", "count", "llama-3.1-8b", "--json")
    assert count.returncode == 0 and json.loads(count.stdout)["params"]["total"] == 8_030_261_248, count.stderr
    gpus = json.loads(run("-m", "paramcalc", "gpus", "--json").stdout)["gpus"]
    assert {"h100-sxm", "a100-80gb", "mi300x"} <= {g["name"] for g in gpus}
    assert run("-m", "paramcalc", "cost", "7B", "--tokens", "1T", "--gpu", "h100-sxm", "--json").returncode == 0
