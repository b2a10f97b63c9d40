"""The value types of every file a user writes (specs, budgets, pipelines, GPU
files), in the command line's number grammar (paramcalc.units): PyYAML reads
`9e9` as a string (YAML 1.1 wants a dot), and `7.5B` or `8Ki` are strings to
any reader, so numbers are parsed here, the same way as flags are. A bool is
never a number (`num_hidden_layers: true` is refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field

from paramcalc import units
from paramcalc.errors import UserError

# Every file kind: frozen models that refuse unknown keys (a typo fails loudly, naming the key).
STRICT = ConfigDict(frozen=True, extra="forbid", defer_build=True)


def _through(parse: Callable[..., Any]) -> BeforeValidator:
    def check(value: Any) -> Any:
        try:
            return parse(value)
        except UserError as e:  # pydantic wants ValueError; the loader places it at the key
            raise ValueError(e.render()) from None

    return BeforeValidator(check)


def _number(value: Any) -> Any:
    return units.parse_number(value)


def _text(value: Any) -> Any:
    """A name or TARGET written as a bare YAML number (`model: 7000000000`) is still text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Count = Annotated[int, _through(units.parse_positive_int), Field(gt=0)]  # a whole number > 0
Natural = Annotated[int, _through(units.parse_natural), Field(ge=0)]  # a whole number >= 0
Positive = Annotated[int | float, _through(units.parse_positive), Field(gt=0)]  # any number > 0 (ints stay ints)
Number = Annotated[int | float, _through(_number)]  # any number; bounds come with the field
Share = Annotated[float, _through(units.parse_share), Field(gt=0, le=1)]  # a fraction in (0, 1]
Bytes = Annotated[int, _through(units.parse_bytes), Field(gt=0)]  # 80GiB, 80GB or bytes
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
