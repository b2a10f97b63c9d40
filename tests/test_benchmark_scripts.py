"""The benchmark scripts docs are generated from: their tables are what the docs
hold (regenerate them after a change to the model), and the GPU kernel sweep's
code path runs (on CPU, tiny shapes) and writes the catalog's efficiency keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_scale_validation_table_is_the_one_in_the_docs():
    table = _script("scale_validation.py")
    doc = (ROOT / "docs" / "scale-validation.md").read_text()
    for line in table.splitlines():
        assert line in doc, f"docs/scale-validation.md is stale: regenerate it ({line[:60]})"


@pytest.mark.slow
def test_gpu_kernel_sweep_runs_and_suggests_the_catalog_keys(tmp_path):
    out = tmp_path / "kernels.json"
    _script("gpu_kernels.py", str(out), "--device", "cpu", "--quick")
    doc = json.loads(out.read_text())
    assert doc["kind"] == "paramcalc.kernels"
    assert {"gemm_bf16", "attention", "memory", "source"} <= set(doc["efficiency"])
    shapes = {r["shape"] for r in doc["results"]["gemm_bf16"]}
    assert "llama-3.1-405b qkv /8" in shapes and len(shapes) == 3 * 4 * 2


def test_post_training_validation_table_is_the_one_in_the_docs():
    table = _script("post_training_validation.py").splitlines()
    doc = (ROOT / "docs" / "post-training-validation.md").read_text().splitlines()
    rows = [line for line in doc if line.startswith("| ")]
    stale = [line[:60] for line in table if line not in doc]
    assert not stale, f"docs/post-training-validation.md is stale: regenerate its table ({stale[0]})"
    assert rows == table, "docs/post-training-validation.md holds table rows the script does not print"
