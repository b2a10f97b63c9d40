"""Budgets for CI: limits on parameters, memory and training cost, checked
against paramcalc's own estimates (`paramcalc check BUDGET.yaml`).

A budget file (CONTRACT.md, "Budget files for `check`") is a top-level
`budgets:` list. Each budget names a model (any TARGET; paths are relative to
the budget file), optional `train:` settings (those of `paramcalc cost`) and
`memory:` settings (those of `paramcalc memory`), and `max_*` limits. A limit
holds when actual <= max. Numbers follow the command line's grammar (`9e9`,
`15T`): PyYAML reads `9e9` as a string, as YAML 1.1 wants a dot. Memory limits
also take byte units: `80GiB` is 80 x 2^30 bytes, `80GB` is 80 x 10^9.
"""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from paramcalc.errors import UserError
from paramcalc.files import dotted, flag_keys, in_file_words, located
from paramcalc.results import SCHEMA_VERSION, _Result
from paramcalc.units import human_count, parse_number

# ---------------------------------------------------------------- parsing


def _positive(value) -> int | float:
    try:
        number = parse_number(value)
    except UserError as e:
        raise ValueError(str(e)) from None
    if number <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def _whole(value) -> int:
    number = _positive(value)
    if not isinstance(number, int):
        raise ValueError(f"must be a whole number, got {value!r}")
    return number


_BYTE_UNITS = {"kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30,
               "tb": 10**12, "tib": 2**40, "pb": 10**15, "pib": 2**50}
_BYTES = re.compile(r"^\s*(\d[\d_]*\.?\d*(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)\s*([kmgtp]i?b)\s*$", re.IGNORECASE)


def parse_bytes(value) -> int:
    """`80GiB` -> 85899345920, `80GB` -> 80000000000, `8.5e10` -> 85000000000 (whole bytes, rounded down).

    GiB = 2^30 and GB = 10^9 (units.py); a bare number is bytes, in the count grammar (`80G` = 80e9).
    """
    match = _BYTES.match(value) if isinstance(value, str) else None
    try:
        number = (Decimal(match.group(1).replace("_", "")) * _BYTE_UNITS[match.group(2).lower()] if match
                  else parse_number(value))
    except (UserError, InvalidOperation):
        raise ValueError(f"{value!r} is not a byte count; write 80GiB, 80GB or a number of bytes") from None
    if number < 1:
        raise ValueError(f"must be at least one byte, got {value!r}")
    return int(number)


def _text(value):
    """A name or TARGET written as a bare YAML number (`model: 7000000000`) is still text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Positive = Annotated[int | float, BeforeValidator(_positive)]
Whole = Annotated[int, BeforeValidator(_whole)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]


# ---------------------------------------------------------------- the file format


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Train(_Input):
    """One training run, as `paramcalc cost` takes it."""

    tokens: Whole = Field(description="training tokens (15e12, 15T)")
    gpu: str = Field(description="accelerator (paramcalc gpus), or a GPU .yaml file relative to the budget file")
    gpus: Whole = Field(1, description="GPUs in the run (wall-clock = GPU-hours / gpus)")
    mfu: Positive = Field(0.4, description="model FLOPs utilisation in (0, 1]")
    seq_len: Whole | None = Field(None, description="tokens per sequence [default: 2048 or the model's limit]")
    batch: Whole = Field(1, description="sequences per step (FLOPs scale per token, so it rarely matters)")
    dtype: str = Field("bf16", description="the dtype whose dense peak sets GPU-hours")
    usd_per_hour: Positive | None = Field(None, description="USD per GPU-hour [default: the built-in price table]")
    recompute: str = Field("none", description="none | selective | full: hardware FLOPs only, never GPU-hours")


class MemorySettings(_Input):
    """How one GPU holds the model, as `paramcalc memory` takes it."""

    mode: str = Field("train", description="train | infer")
    seq_len: Whole | None = Field(None, description="tokens per sequence [default: train.seq_len, else 2048]")
    batch: Whole = Field(1, description="micro-batch per GPU")
    dtype: str = Field("bf16", description="weights and activations")
    kv_dtype: str | None = Field(None, description="KV cache dtype (infer) [default: dtype]")
    precision: str = Field("mixed", description="mixed | fp32 | amp | megatron")
    optimizer: str = Field("adamw", description="adamw | adam | adam-8bit | sgd | sgd-momentum | lion | adafactor")
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage 0-3")
    dp: Whole = Field(1, description="data-parallel GPUs")
    tp: Whole = Field(1, description="tensor-parallel GPUs")
    pp: Whole = Field(1, description="pipeline stages")
    sequence_parallel: bool = Field(False, description="sequence parallelism with TP")
    recompute: str = Field("none", description="none | selective | full")
    attention: str = Field("eager", description="eager | flash")


class Budget(_Input):
    """One model and the limits it must stay under."""

    name: Text = Field(description="shown in reports (a JUnit test case name)")
    model: Text = Field(description="any TARGET; paths are relative to the budget file")
    train: Train | None = Field(None, description="the training run that GPU-hour, FLOP and dollar limits price")
    memory: MemorySettings | None = Field(None, description="the setup that max_memory_per_gpu measures")
    max_params: Whole | None = Field(None, description="unique parameters (tied weights once)")
    max_active_params: Whole | None = Field(None, description="parameters used per token (MoE: shared + top-k)")
    max_memory_per_gpu: Bytes | None = Field(None, description="peak bytes per GPU (80GiB, 80GB or bytes)")
    max_training_flops: Whole | None = Field(None, description="model FLOPs of the training run")
    max_gpu_hours: Positive | None = Field(None, description="GPU-hours of the training run")
    max_wall_clock_hours: Positive | None = Field(None, description="hours on train.gpus GPUs")
    max_usd: Positive | None = Field(None, description="dollars of the training run")


class BudgetFile(_Input):
    budgets: list[Budget] = Field(min_length=1, description="the budgets to check")


@dataclass(frozen=True)
class Limit:
    key: str
    unit: str  # params | bytes | FLOPs | GPU-hours | hours | USD
    needs: str  # which figure measures it: count, memory or train


LIMITS = (Limit("max_params", "params", "count"), Limit("max_active_params", "params", "count"),
          Limit("max_memory_per_gpu", "bytes", "memory"), Limit("max_training_flops", "FLOPs", "train"),
          Limit("max_gpu_hours", "GPU-hours", "train"), Limit("max_wall_clock_hours", "hours", "train"),
          Limit("max_usd", "USD", "train"))


# ---------------------------------------------------------------- results


class LimitResult(_Result):
    limit: str = Field(description="the budget key, e.g. max_params")
    unit: str = Field(description="params, bytes, FLOPs, GPU-hours, hours or USD")
    max: int | float
    actual: int | float
    passed: bool = Field(description="actual <= max")


class BudgetResult(_Result):
    name: str
    model: str = Field(description="the TARGET as the budget file writes it")
    passed: bool
    limits: list[LimitResult]
    notes: list[str] = Field([], description="the settings the figures assume")


class CheckReport(_Result):
    schema_version: int = SCHEMA_VERSION
    command: str = "check"
    file: str
    passed: bool = Field(description="every budget holds (exit 0); else exit 1")
    results: list[BudgetResult]


# ---------------------------------------------------------------- checking


def check_budgets(path: str | Path) -> CheckReport:
    """Check every budget of a budget file; UserError (naming file:line:col) on bad input.

    >>> check_budgets("examples/budget.yaml").passed  # doctest: +SKIP
    True
    """
    from paramcalc.files import load_yaml, require_mapping

    path = Path(path)
    budgets = _validate(require_mapping(load_yaml(path), str(path)), path)
    results = [_check(budget, i, path) for i, budget in enumerate(budgets)]
    return CheckReport(file=str(path), passed=all(r.passed for r in results), results=results)


def _validate(data: dict, path: Path) -> list[Budget]:
    from pydantic import ValidationError

    from paramcalc.files import yaml_line

    try:
        budgets = BudgetFile.model_validate(data).budgets
    except ValidationError as e:
        # an unknown key explains a "missing" one (a typo), so it is named first
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        loc = tuple(err["loc"])
        message, fix = {
            "extra_forbidden": ("unknown key", _suggest(loc)),
            "missing": ("required key missing", "a budget file is a `budgets:` list of budgets, each with name, "
                                                "model and max_* limits (docs/ci.md)"),
            "too_short": ("no budgets", "list at least one budget under `budgets:`"),
            "model_type": ("expected a mapping (key: value)", None),
            "list_type": ("expected a list (- name: ...)", None),
        }.get(err["type"], (err["msg"].removeprefix("Value error, "), None))
        raise UserError(message, where=f"{yaml_line(path, loc)}: {_dotted(loc)}", fix=fix) from None
    seen: set[str] = set()
    for i, budget in enumerate(budgets):
        here = ("budgets", i)
        if budget.name in seen:
            raise UserError(f"a second budget named {budget.name!r}", where=_at(path, here + ("name",)),
                            fix="give every budget its own name (each is one JUnit test case)")
        seen.add(budget.name)
        given = [limit for limit in LIMITS if getattr(budget, limit.key) is not None]
        if not given:
            raise UserError(f"budget {budget.name!r} sets no limit", where=_at(path, here),
                            fix=f"add one of {', '.join(limit.key for limit in LIMITS)}")
        for limit in given:
            if limit.needs == "train" and budget.train is None:
                raise UserError(f"{limit.key} needs the training run it prices", where=_at(path, here + (limit.key,)),
                                fix="add train: {tokens: 15e12, gpu: h100-sxm} to this budget (mfu, gpus, seq_len "
                                    "and usd_per_hour optional)")
    return budgets


def _check(budget: Budget, i: int, path: Path) -> BudgetResult:
    from paramcalc.target import load_spec

    here = ("budgets", i)
    needs = {limit.needs for limit in LIMITS if getattr(budget, limit.key) is not None}
    try:
        spec = load_spec(budget.model, base=path.parent)
    except UserError as e:
        raise e.at(_at(path, here + ("model",))) from None
    actual: dict[str, int | float | None] = {}
    notes: list[str] = []
    if "count" in needs:
        from paramcalc.core.count import count_params

        params = count_params(spec).params
        actual |= {"max_params": params.total, "max_active_params": params.active}
    if "memory" in needs:
        from paramcalc.core.memory import estimate_memory

        settings = budget.memory or MemorySettings()
        given = settings.model_fields_set
        kwargs = settings.model_dump()
        if kwargs["seq_len"] is None and budget.train is not None:
            kwargs["seq_len"] = budget.train.seq_len  # one sequence length for the whole budget
        with _placed(path, here + ("memory",), given):
            m = estimate_memory(spec, **kwargs)
        actual["max_memory_per_gpu"] = m.memory.total_per_gpu
        s = m.settings
        notes.append(f"memory: {m.mode}, seq {m.seq_len}, micro-batch {m.batch}, {s['dtype']}"
                     + (f" {s['precision']} precision, {s['optimizer']}, ZeRO-{s['zero']}" if m.mode == "train" else "")
                     + f", dp {s['dp']} tp {s['tp']} pp {s['pp']}, {s['attention']} attention, "
                       f"recompute {s['recompute']}; peak bytes per GPU with runtime overheads")
    if "train" in needs:
        from paramcalc.core.cost import estimate_cost

        train = budget.train
        kwargs = train.model_dump()
        gpu = Path(train.gpu)
        if gpu.suffix.lower() in (".yaml", ".yml") and not gpu.is_absolute():
            kwargs["gpu"] = str(path.parent / gpu)
        with _placed(path, here + ("train",), train.model_fields_set):
            c = estimate_cost(spec, **kwargs)
        actual |= {"max_training_flops": c.cost.training_flops, "max_gpu_hours": c.cost.gpu_hours,
                   "max_wall_clock_hours": c.cost.wall_clock_hours, "max_usd": c.cost.usd}
        price = "no price" if c.cost.usd_per_gpu_hour is None else f"${c.cost.usd_per_gpu_hour:,.2f}/GPU-hour"
        notes.append(f"train: {human_count(c.tokens)} tokens at seq {c.seq_len} on {c.gpus:,} x {c.gpu}, "
                     f"MFU {c.cost.mfu:.2f} of the dense {c.dtype} peak, {price}; model FLOPs (dense attention)")
    limits = []
    for limit in LIMITS:
        maximum = getattr(budget, limit.key)
        if maximum is None:
            continue
        value = actual[limit.key]
        if value is None:
            raise UserError(_unknown(limit, budget), where=_at(path, here + (limit.key,)))
        limits.append(LimitResult(limit=limit.key, unit=limit.unit, max=maximum, actual=value, passed=value <= maximum))
    return BudgetResult(name=budget.name, model=budget.model, passed=all(x.passed for x in limits), limits=limits,
                        notes=notes)


def _unknown(limit: Limit, budget: Budget) -> str:
    if limit.key == "max_usd":
        return (f"max_usd needs a price, and none is known for {budget.train.gpu!r}; "
                "add train.usd_per_hour (USD per GPU-hour)")
    return (f"{limit.key} needs the architecture, and {budget.model!r} is a bare parameter count; "
            "give a preset, a config.json or a paramcalc .yaml spec")


# ---------------------------------------------------------------- placing errors

_SECTIONS = {"train": Train, "memory": MemorySettings}


@contextmanager
def _placed(path: Path, loc: tuple, given: set[str]):
    """Re-place a library error about a flag (`--mfu`) at the budget file's
    line for that key (`train.mfu`), in the file's words."""
    try:
        yield
    except UserError as error:
        key = next((k for k in flag_keys(error) if k in given), None)
        raise in_file_words(error, _at(path, loc + ((key,) if key else ()))) from None


def _at(path: Path, loc: tuple) -> str:
    return located(path, loc, "budget file")


def _dotted(loc: tuple) -> str:
    return dotted(loc) or "budget file"


def _suggest(loc: tuple) -> str:
    """For an unknown key: the closest known one, and the keys that level takes."""
    model = BudgetFile if len(loc) == 1 else _SECTIONS.get(str(loc[-2]), Budget)
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"{hint}{'this level' if len(loc) == 1 else _dotted(loc[:-1])} takes: {', '.join(known)}"
