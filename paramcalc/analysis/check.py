"""Budgets for CI: limits on parameters, memory and training cost, checked
against paramcalc's own estimates (`paramcalc check BUDGET.yaml`).

The file's format is inputs/budget_file.py. A limit holds when actual <= max.
Each budget's model is lowered once; its count, memory and cost come from the
same library calls as `paramcalc count`, `memory` and `cost`, and an error
they raise about a setting lands on the budget file's key for it.
"""

from __future__ import annotations

from pathlib import Path

from paramcalc.errors import UserError
from paramcalc.inputs.budget_file import LIMITS, Budget, BudgetFile, Limit, MemorySettings
from paramcalc.inputs.files import load_mapping, locate, placed, validate
from paramcalc.network import lower
from paramcalc.results.check import BudgetResult, CheckReport, LimitResult
from paramcalc.units import human_count


def check_budgets(path: str | Path) -> CheckReport:
    """Check every budget of a budget file; UserError (naming file:line:col) on bad input.

    >>> check_budgets("examples/budget.yaml").passed
    True
    """
    path = Path(path)
    budgets = validate(BudgetFile, load_mapping(path), path=path).budgets
    _consistent(budgets, path)
    results = [_check(budget, ("budgets", i), path) for i, budget in enumerate(budgets)]
    return CheckReport(file=str(path), passed=all(r.passed for r in results), results=results)


def _consistent(budgets: list[Budget], path: Path) -> None:
    """What the format alone cannot say: one name per budget, a limit in each, a run for each cost limit."""
    seen: set[str] = set()
    for i, budget in enumerate(budgets):
        here = ("budgets", i)
        if budget.name in seen:
            raise UserError(f"a second budget named {budget.name!r}", where=locate(path, here + ("name",)),
                            field=f"budgets[{i}].name", fix="give every budget its own name (each is one JUnit "
                                                            "test case)")
        seen.add(budget.name)
        given = [limit for limit in LIMITS if getattr(budget, limit.key) is not None]
        if not given:
            raise UserError(f"budget {budget.name!r} sets no limit", where=locate(path, here), field=f"budgets[{i}]",
                            fix=f"add one of {', '.join(limit.key for limit in LIMITS)}")
        for limit in given:
            if limit.needs == "train" and budget.train is None:
                raise UserError(f"{limit.key} needs the training run it prices", field=f"budgets[{i}].{limit.key}",
                                where=locate(path, here + (limit.key,)),
                                fix="add train: {tokens: 15e12, gpu: h100-sxm} to this budget (mfu, gpus, seq_len "
                                    "and usd_per_hour optional)")


def _check(budget: Budget, here: tuple, path: Path) -> BudgetResult:
    needs = {limit.needs for limit in LIMITS if getattr(budget, limit.key) is not None}
    with placed(path, here + ("model",)):
        net = lower(budget.model, base=path.parent)
    actual: dict[str, int | float | None] = {}
    notes: list[str] = []
    if "count" in needs:
        from paramcalc.analysis.count import count_params

        params = count_params(net).params
        actual |= {"max_params": params.total, "max_active_params": params.active}
    if "memory" in needs:
        from paramcalc.analysis.memory import estimate_memory

        settings = budget.memory or MemorySettings()
        kwargs = settings.model_dump()
        if kwargs["seq_len"] is None and budget.train is not None:
            kwargs["seq_len"] = budget.train.seq_len  # one sequence length for the whole budget
        with placed(path, here + ("memory",), settings.model_fields_set):
            m = estimate_memory(net, **kwargs)
        actual["max_memory_per_gpu"] = m.memory.total_per_gpu
        s = m.settings
        notes.append(f"memory: {m.mode}, seq {m.seq_len}, micro-batch {m.batch}, {s.dtype}"
                     + (f" {s.precision} precision, {s.optimizer}, ZeRO-{s.zero}" if m.mode == "train" else "")
                     + f", dp {s.dp} tp {s.tp} pp {s.pp}, {s.attention} attention, "
                       f"recompute {s.recompute}; peak bytes per GPU with runtime overheads")
    if "train" in needs:
        from paramcalc.analysis.cost import estimate_cost

        train = budget.train
        assert train is not None  # _consistent: a training limit has its run
        kwargs = train.model_dump()
        gpu = Path(train.gpu)
        if gpu.suffix.lower() in (".yaml", ".yml") and not gpu.is_absolute():
            kwargs["gpu"] = str(path.parent / gpu)
        with placed(path, here + ("train",), train.model_fields_set):
            c = estimate_cost(net, **kwargs)
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
            raise UserError(_unknown(limit, budget), where=locate(path, here + (limit.key,)),
                            field=f"budgets[{here[1]}].{limit.key}")
        limits.append(LimitResult(limit=limit.key, unit=limit.unit, max=maximum, actual=value, passed=value <= maximum))
    return BudgetResult(name=budget.name, model=budget.model, passed=all(x.passed for x in limits), limits=limits,
                        notes=notes)


def _unknown(limit: Limit, budget: Budget) -> str:
    if limit.key == "max_usd":
        assert budget.train is not None
        return (f"max_usd needs a price, and none is known for {budget.train.gpu!r}; "
                "add train.usd_per_hour (USD per GPU-hour)")
    return (f"{limit.key} needs the architecture, and {budget.model!r} is a bare parameter count; "
            "give a preset, a config.json or a paramcalc .yaml spec")
