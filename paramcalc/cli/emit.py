"""What every command prints: one JSON document or the rendering on stdout,
the input's caveats on stderr. Free of typer, click and rich, so the fast
path (cli/fast.py) prints through the same code as the full command line.
"""

from __future__ import annotations

import os
import sys


def emit(report, as_json: bool, render) -> None:
    """One JSON document on stdout, or the rich rendering. A reader that closes
    the pipe early (`| head -1`) changes nothing: the command's exit code stands.
    `report` is a typed result or, on the fast path, the plain data of its JSON
    (`model_dump(mode="json")`, analysis/count.py `count_data`), printed the same way."""
    try:
        caveats = say_warnings()  # on stderr; the JSON carries them in its notes too
        if caveats and as_json and isinstance(report, dict):
            report = {**report, "notes": [*caveats, *report["notes"]]}
        elif caveats and as_json and isinstance(getattr(report, "notes", None), list):
            report = report.model_copy(update={"notes": [*caveats, *report.notes]})
        if as_json:
            sys.stdout.write(json_text(report) if isinstance(report, dict) else report.json_text())
        else:
            render(report)
        sys.stdout.flush()  # a closed pipe shows here, not in click's exit (which would make it exit 1)
    except BrokenPipeError:
        quiet_stdout()


def json_text(data: dict) -> str:
    """Plain data as `Document.json_text` writes the model it dumps: the same bytes."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def say_warnings() -> list[str]:
    """The input's caveats (paramcalc.errors.warn) so far, each on stderr once; returned for the notes."""
    from paramcalc.errors import take_warnings

    caveats = take_warnings()
    for caveat in caveats:
        print(f"paramcalc: warning: {caveat}", file=sys.stderr)
    return caveats


def quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
