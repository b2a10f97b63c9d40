"""Regenerate docs/cli.md from every command's `--help` (run after changing a flag):

    python docs/make_cli.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("count", "flops", "memory", "estimate", "cost", "serve", "check", "diff", "size", "plan", "checkpoint",
            "sweep", "verify", "bench", "bench-collectives", "presets", "gpus", "schema")
HEAD = """# Command-line reference

Generated from `paramcalc COMMAND --help` by `python docs/make_cli.py`. Every estimating command
takes one TARGET: a `config.json` (or a folder holding one, such as a downloaded Hugging Face
snapshot), a `.yaml` spec, a preset name or a bare count (`7.5B`). Numbers take the grammar `15e12`,
`1.56e+13`, `7.5B`, `15T`, and binary `8Ki`, `64Mi`. `--json` prints exactly one JSON document (with
`schema_version`) on stdout. Exit codes: 0 done (for `check`: every budget holds), 1 `check` only: a
budget is exceeded, 2 bad input or usage, with one message on stderr naming the file, line or field,
3 an internal error (`--debug` shows the traceback).
"""


def main() -> None:
    env = dict(os.environ, COLUMNS="110", NO_COLOR="1", TERM="dumb")
    parts = [HEAD]
    for command in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "paramcalc", command, "--help"], capture_output=True,
                              text=True, env=env, cwd=ROOT, check=True)
        text = "\n".join(line.rstrip() for line in proc.stdout.splitlines())
        parts.append(f"## paramcalc {command}\n\n```text\n{text}\n```\n")
    (ROOT / "docs" / "cli.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
