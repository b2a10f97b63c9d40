"""Run the real `paramcalc` command line in a subprocess, as CI users do."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)


def run(*args, cwd=None) -> Result:
    proc = subprocess.run([sys.executable, "-m", "paramcalc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(r: Result, *fragments: str) -> None:
    """Exit 2, no traceback, and a message on stderr naming every fragment."""
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.out + r.err
    for fragment in fragments:
        assert fragment in r.err, r.err
