"""Typed results: what the library returns and `--json` prints, typed to the leaf.

Counts, bytes and FLOPs are ints (exact, unbounded), or None where the model
does not say enough (a bare count has no architecture). Hours, seconds and
dollars are floats. Every JSON document is a `Document`: it carries
`schema_version` and `command`, the same way for every command.
"""

# No `from __future__ import annotations`: pydantic reads these classes' fields
# at import, and real annotations spare it evaluating strings on every cold start.
from pydantic import BaseModel, ConfigDict, Field

from paramcalc.results import SCHEMA_VERSION


class Result(BaseModel):
    # Empty defaults are plain values, `Field([])`: pydantic copies a default for each
    # instance, while `default_factory=list` makes it parse the builtin's text
    # signature, compiling tokenize's regular expression (2 ms of a cold start).
    model_config = ConfigDict(frozen=True, defer_build=True)


class Document(Result):
    """One JSON document of the command line."""

    schema_version: int = SCHEMA_VERSION
    command: str
    notes: list[str] = Field([], description="conventions used and caveats")

    def json_text(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


class Report(Document):
    """A document about one model."""

    model: str


class Row(Result):
    """One line of a breakdown: a component of a stage, once and times its count."""

    stage: str
    component: str
    each: int | None
    count: int
    total: int | None
