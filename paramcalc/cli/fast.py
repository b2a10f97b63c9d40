"""The program's entry: plain machine-readable invocations without typer.

`paramcalc count TARGET --json` in a CI script should cost little more than
the count. Importing typer (and click with it) and building the app is about
a quarter of that cold start, so `main` first tries the few invocations it
recognises exactly (`count` and `flops` with `--json` and their plain
options) and runs them itself, printing through the same `emit` as the full
command line. `count PRESET --json` (no other option) goes further: it reads
the preset's stored network (paramcalc/presets_store.py) and prints its count
from plain data, importing neither pydantic nor yaml. Anything else (help, human output, an option spelt any other
way, a repeated or unknown option) goes to the typer app unchanged. Bad
input (a UserError) is reported here as the typer app reports it: one line on
stderr, its setting spelt as the flag (`seq_len` -> `--seq-len`), exit 2, and
the command is not run again. Only a bug hands over: the typer app reruns the
command and reports it (exit 3, `--debug` for the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Command:
    """A command the fast path runs: its value options (flag -> library keyword), their
    defaults as the typer command declares them (cli/app.py; tests/test_fast_path.py checks
    both against it), and the library call."""

    flags: dict[str, str]
    defaults: dict[str, Any]
    call: Callable[..., Any]


def _count(target: str, **options):
    """A preset's count from its stored network, as plain data (no pydantic, no yaml:
    paramcalc/presets_store.py); any other count, or a stale store, through the library."""
    if all(value is None for value in options.values()):
        from paramcalc.presets_store import load

        net = load(target)
        if net is not None:
            from paramcalc.analysis.count import count_data

            return count_data(net)
    from paramcalc.analysis.count import count_params

    return count_params(target, **options)


def _flops(target: str, **options):
    from paramcalc.analysis.flops import count_flops

    return count_flops(target, **options)


_COMMANDS = {
    "count": _Command(flags={"--lora-rank": "lora_rank", "--lora-targets": "lora_targets", "--revision": "revision"},
                      defaults={"lora_rank": None, "lora_targets": None, "revision": None}, call=_count),
    "flops": _Command(flags={"--seq-len": "seq_len", "-s": "seq_len", "--batch": "batch", "-b": "batch",
                             "--attention": "attention", "--recompute": "recompute"},
                      defaults={"seq_len": None, "batch": "1", "attention": "eager", "recompute": "none"},
                      call=_flops),
}


def fast_call(args: list[str]) -> Callable[[], Any] | None:
    """The library call `args` asks for when they are a plain `--json` invocation of a
    command above (`count llama-3.1-8b --json`, `flops gpt2 --seq-len 1024 --json`),
    else None: the typer app decides what they mean."""
    if not args or args[0] not in _COMMANDS:
        return None
    command = _COMMANDS[args[0]]
    options: dict[str, str] = {}
    positional: list[str] = []
    as_json = False
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--json":
            as_json = True
        elif arg.startswith("-"):
            flag, eq, value = arg.partition("=")
            keyword = command.flags.get(flag)
            if keyword is None or keyword in options or (eq and not flag.startswith("--")):
                return None  # unknown, repeated, or `-s=2048` (click reads the value "=2048")
            if not eq:
                following = next(rest, None)
                if following is None or following.startswith("-"):
                    return None
                value = following
            options[keyword] = value
        else:
            positional.append(arg)
    if not as_json or len(positional) != 1:
        return None
    target = positional[0]
    chosen = {**command.defaults, **options}
    return lambda: command.call(target, **chosen)


def flag_for(command: str, field: str) -> str:
    """How the typer app spells a setting of `command` in an error (cli/app.py `flag_for`): its
    long flag (`seq_len` -> `--seq-len`), TARGET for the target, else the setting's own name."""
    if field == "target":
        return "TARGET"
    flags = [flag for flag, keyword in _COMMANDS[command].flags.items() if keyword == field and flag.startswith("--")]
    return flags[0] if flags else field


def run_fast(args: list[str]) -> int | None:
    """Run `args` on the fast path: the exit code, or None when the typer app must run them
    (not a fast invocation, or a bug, which the full command line reruns and reports)."""
    args = [a for a in args if a != "--debug"]
    call = fast_call(args)
    if call is None:
        return None
    from paramcalc.cli.emit import emit, say_warnings
    from paramcalc.errors import UserError, collect_warnings

    with collect_warnings():  # dropped if the command hands over: the rerun says them again
        try:
            report = call()
        except KeyboardInterrupt:
            return 130
        except UserError as e:  # bad input: said once, as the typer app says it (cli/app.py `_run`)
            say_warnings()  # before the error, which they may explain
            print(f"paramcalc: error: {e.render(lambda setting: flag_for(args[0], setting))}", file=sys.stderr)
            return 2
        except Exception:  # a bug: the typer app reruns it and reports it (exit 3, --debug's traceback)
            return None
        emit(report, True, render=None)
    return 0


def main() -> None:
    # Pydantic plugins observe validation in users' own models, not in this
    # program's; looking for them scans every installed distribution's
    # metadata (4 ms of a cold `paramcalc count`). Only the command line opts
    # out, `import paramcalc` leaves them be, and a value the user set wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    args = sys.argv[1:]
    code = run_fast(args)
    if code is None:
        from paramcalc.cli.app import run

        code = run(args)
    sys.exit(code)
