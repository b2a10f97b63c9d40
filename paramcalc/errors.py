"""One exception type for every mistake a user can make.

The library raises `UserError`; the command line catches it once, prints it
and exits 2. Anything else that escapes is a bug: exit 3 (cli/app.py).

An error names what is wrong (`message`), how to fix it (`fix`) and where:
- `field` is the setting in the library's own words, the keyword argument or
  file key (`seq_len`, `tp`, `moe.num_experts`). The command line shows it as
  its flag (`--seq-len`); a budget or pipeline file as its key at its line.
- `where` is a place already resolved: a file, or `file:line:col`.
The core never names a command-line flag. A message or fix that points at
another setting writes it in braces (`give {lora_rank} too`): the command
line shows it as that flag, a file and the library as the name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SETTING = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class UserError(Exception):
    """Bad input: what is wrong, where, and how to fix it."""

    def __init__(self, message: str, *, field: str | None = None, where: str | None = None,
                 fix: str | None = None):
        self.message, self.field, self.where, self.fix = message, field, where, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.render()

    def render(self, name: Callable[[str], str] | None = None) -> str:
        """One line; `name` spells the settings as the caller shows them (`seq_len` -> `--seq-len`).
        An error placed in a file keeps the file's own key names."""
        spell = (lambda s: s) if name is None or self.where else name
        words = lambda text: _SETTING.sub(lambda m: spell(m.group(1)), text)  # noqa: E731
        field = spell(self.field) if self.field else None
        place = ": ".join(part for part in (self.where, field) if part)
        text = f"{place}: {words(self.message)}" if place else words(self.message)
        return f"{text}; {words(self.fix)}" if self.fix else text

    def placed(self, where: str, field: str | None = None) -> UserError:
        """The same error at a resolved place (`file:line:col`), its field spelt as the file's key."""
        return UserError(self.message, field=field, where=where, fix=self.fix)

    def under(self, prefix: str) -> UserError:
        """The same error with its field nested under `prefix` (`lora` + `rank` -> `lora.rank`)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return UserError(self.message, field=field, where=self.where, fix=self.fix)


class InputWarning(UserWarning):
    """A caveat about the input that changes no result (a config.json that leaves sizes to defaults)."""


_collected: ContextVar[list[str] | None] = ContextVar("paramcalc_warnings", default=None)


def warn(message: str) -> None:
    """Say a caveat about the input once. Under `collect_warnings` (the command line) it is kept
    for the caller, who prints it on stderr and adds it to the report's notes; elsewhere it is a
    Python warning (InputWarning) for a library caller."""
    collected = _collected.get()
    if collected is None:
        import warnings

        warnings.warn(message, InputWarning, stacklevel=3)
    elif message not in collected:
        collected.append(message)


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Keep the caveats `warn` is given in this block, in order, each once."""
    kept: list[str] = []
    token = _collected.set(kept)
    try:
        yield kept
    finally:
        _collected.reset(token)


def take_warnings() -> list[str]:
    """The caveats kept so far (under `collect_warnings`), handed over once: the list is emptied."""
    collected = _collected.get()
    if not collected:
        return []
    taken = list(collected)
    collected.clear()
    return taken
