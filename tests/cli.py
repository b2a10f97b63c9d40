"""Run the `paramcalc` command line as CI users do: in this process, through the
typer app (`paramcalc.cli.app.run`, stdout and stderr captured), or, for the
few tests that need a fresh interpreter, in a subprocess. The console script
enters at `paramcalc.cli.fast:main`, whose fast path runs plain `count` and
`flops --json` invocations itself and hands the rest to that same `run`;
`run` here skips the fast path (tests/test_fast_path.py compares the two),
`run_process` takes it as users do."""

from __future__ import annotations

import contextlib
import io
import json
import os
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
    """`paramcalc ARGS` in this process, through the typer app: its exit code, stdout and stderr."""
    from paramcalc.cli.app import run as cli

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli([str(a) for a in args])
    finally:
        os.chdir(here)
    return Result(code, out.getvalue(), err.getvalue())


def run_process(*args, cwd=None, env=None) -> Result:
    """`python -m paramcalc ARGS` in a fresh interpreter (imports, exit codes, pipes as a shell sees them)."""
    proc = subprocess.run([sys.executable, "-m", "paramcalc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(r: Result, *fragments: str) -> None:
    """Exit 2, no traceback, and a message on stderr naming every fragment."""
    assert r.code == 2, (r.code, r.out, r.err)
    assert "Traceback" not in r.out + r.err
    for fragment in fragments:
        assert fragment in r.err, r.err
