"""#19 defect 1: no table is cut. Piped or in a narrow terminal, every exact number is printed
whole and every row of a boxed table ends in its right rule (a table too wide runs long)."""

from __future__ import annotations

import re

import pytest
from cli import run_process

BOX_ROW = re.compile(r"^[│┃┏┡┌└├┗╇┳┯┬┼╋╀]")
CASES = [
    ("estimate", "llama-3.1-8b"),
    ("estimate", "llama-3.1-405b", "--gpus", "16384"),
    ("count", "llama-3.1-405b"),
    ("serve", "llama-3.1-70b"),
    ("memory", "llama-3.1-8b"),
]


@pytest.mark.parametrize("columns", [None, "60"])
@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a))
def test_every_boxed_row_keeps_its_right_rule_and_no_number_is_cut(args, columns):
    import os

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = columns
    r = run_process(*args, env=env)
    assert r.code == 0, r.err
    assert "…" not in r.out
    rows = [line.rstrip() for line in r.out.splitlines() if BOX_ROW.match(line)]
    assert rows
    for line in rows:
        assert line[-1] in "│┃┐┓┘┛┤┫┩", line
