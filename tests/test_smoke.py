"""The installed command as a shell sees it, in a fresh interpreter: exit codes,
one JSON document, pipes, --debug anywhere, no torch on the analytic path.
(Everything else runs the same command line in-process: tests/cli.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli import run_process

ROOT = Path(__file__).resolve().parents[1]


def test_count_prints_one_json_document_and_exits_0():
    r = run_process("count", "llama-3.1-405b", "--json")
    assert r.code == 0 and json.loads(r.out)["params"]["total"] == 405_853_388_800 and r.err == ""


def test_bad_input_exits_2_with_one_line_and_no_traceback():
    r = run_process("memory", "llama-3.1-8b", "--tp", "3")
    assert r.code == 2 and r.err.startswith("paramcalc: error: --tp:") and "Traceback" not in r.err


def test_a_failing_budget_exits_1_even_when_the_reader_closes_the_pipe(tmp_path):
    budget = tmp_path / "budget.yaml"
    budget.write_text("budgets:\n  - {name: tight, model: gpt2, max_params: 1M}\n")
    for path, code in ((budget, 1), (ROOT / "examples" / "budget.yaml", 0)):
        proc = subprocess.run(f"set -o pipefail; {sys.executable} -m paramcalc check {path} | head -1",
                              shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr


def test_debug_is_accepted_after_the_command_and_version_prints():
    assert run_process("count", "gpt2", "--debug").code == 0
    r = run_process("--version")
    assert r.code == 0 and r.out.startswith("paramcalc 0.")
    assert run_process("count", "-h").code == 0


def test_the_analytic_path_imports_no_torch():
    code = ("import sys; from paramcalc.cli.app import run; run(['count', 'llama-3.1-8b', '--json']); "
            "run(['memory', 'llama-3.1-8b', '--json']); print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr.strip().endswith("False"), proc.stderr
