"""Every number of the golden `--json` outputs (tests/golden/outputs.json,
written by tests/golden/make.py before the redesign of issue #14) is
reproduced exactly: counts, FLOPs, bytes, hours and dollars, at their JSON
paths. Wording (notes, names) may change; numbers may not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli import run

GOLDEN = json.loads((Path(__file__).parent / "golden" / "outputs.json").read_text())
ROOT = Path(__file__).resolve().parents[1]


def leaves(doc, path: str = "") -> dict[str, object]:
    """{'memory.weights': 123, 'points[0].ttft_seconds': 0.1, ...}: numbers, booleans and nulls."""
    if isinstance(doc, dict):
        return {k: v for key, value in doc.items() for k, v in leaves(value, f"{path}.{key}" if path else key).items()}
    if isinstance(doc, list):
        return {k: v for i, value in enumerate(doc) for k, v in leaves(value, f"{path}[{i}]").items()}
    return {} if isinstance(doc, str) else {path: doc}


@pytest.mark.parametrize("command", sorted(GOLDEN))
def test_every_golden_number_is_reproduced(command):
    args = command.split() + ([] if command.split()[0] == "check" else ["--json"])
    r = run(*args, cwd=ROOT)
    want = GOLDEN[command]
    if "exit_code" in want:
        assert r.code == want["exit_code"], r.err
        return
    got = leaves(r.json)
    missing = {k: v for k, v in leaves(want).items() if k not in got or repr(got[k]) != repr(v)}
    assert not missing, {k: (v, got.get(k, "<absent>")) for k, v in list(missing.items())[:10]}
