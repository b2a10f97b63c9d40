"""Hyperparameter search: how many trials, how much each trains, how long the
pool takes (the `search:` block of a pipeline file, docs/plan.md).

- grid: every combination, trials = the product of the value counts.
- random: N trials drawn from the space (Bergstra & Bengio 2012).
- successive halving (Jamieson & Talwalkar 2016; Li et al. 2017, "Hyperband"):
  rung i runs floor(n / eta^i) trials on r x eta^i tokens each, for
  i = 0 .. floor(log_eta n); total = sum_i trials_i x budget_i (every rung
  trains from scratch, as the papers count it; `resume: true` charges only
  budget_i - budget_(i-1) to a promoted trial that resumes its checkpoint).

Each trial trains like one stage of the pipeline, at that stage's FLOPs and
GPU-hours per token. `pool_gpus // gpus_per_trial` trials run at once, so a
rung takes ceil(trials / parallel) waves of one trial's wall-clock. GPU-hours
count busy GPUs; a reserved pool bills pool_gpus x wall-clock instead.
"""

from __future__ import annotations

from fractions import Fraction
from math import prod
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from paramcalc.core.budget import Positive, Text, Whole
from paramcalc.errors import UserError
from paramcalc.results import _Result
from paramcalc.units import parse_number


def _share(value) -> float:
    """A fraction in (0, 1]: MFU, warm-up share, a trial's share of a stage."""
    try:
        number = parse_number(value)
    except UserError as e:
        raise ValueError(str(e)) from None
    if not 0 < number <= 1:
        raise ValueError(f"must be a fraction in (0, 1], got {value!r} (write 0.4 for 40%)")
    return float(number)


Share = Annotated[float, BeforeValidator(_share)]


class Input(BaseModel):
    """A block of a pipeline file: frozen, and a typo in a key fails loudly."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Search(Input):
    """How many trials a hyperparameter search runs, each a short training run."""

    method: Literal["grid", "random", "halving"] = Field(
        description="grid: every combination of `space`; random: `trials` draws; halving: successive halving")
    space: dict[str, list[Any]] | None = Field(
        None, description="hyperparameter -> the values tried (grid: required; trials = product of the counts)")
    trials: Whole | None = Field(None, description="random: trials drawn; halving: trials in the first rung (n)")
    eta: Whole = Field(3, description="halving: the reduction factor; 1/eta of the trials go on to eta x the budget")
    resume: bool = Field(False, description="halving: promoted trials resume their checkpoint (pay only the extra "
                                            "tokens); false counts every rung from scratch, as the papers do")
    stage: Text | None = Field(None, description="the stage whose model, batch, GPU and MFU a trial trains with "
                                                 "[default: the first stage]")
    trial_tokens: Whole | None = Field(None, description="tokens one trial trains (halving: the first rung's budget)")
    trial_fraction: Share | None = Field(None, description="instead of trial_tokens: a share of the stage's tokens")
    gpus_per_trial: Whole = Field(description="GPUs one trial occupies")
    pool_gpus: Whole = Field(description="GPUs the search may use at once")

    @model_validator(mode="after")
    def _consistent(self):
        if (self.trial_tokens is None) == (self.trial_fraction is None):
            raise ValueError("give exactly one of trial_tokens and trial_fraction")
        if self.method == "grid":
            if not self.space:
                raise ValueError("a grid search needs `space:` (hyperparameter -> list of values)")
            if self.trials is not None:
                raise ValueError("a grid's trials are the product of the value counts; remove `trials`")
        elif self.trials is None:
            raise ValueError(f"a {self.method} search needs `trials`")
        for name, values in (self.space or {}).items():
            if not values:
                raise ValueError(f"space.{name} lists no values")
        if self.method == "halving" and self.eta < 2:
            raise ValueError(f"eta must be at least 2, got {self.eta}")
        if self.gpus_per_trial > self.pool_gpus:
            raise ValueError(f"gpus_per_trial ({self.gpus_per_trial}) exceeds pool_gpus ({self.pool_gpus}): "
                             "not one trial fits the pool")
        return self


class Rung(_Result):
    trials: int = Field(description="trials run in this rung")
    budget_tokens: int = Field(description="tokens each trial has trained by the end of the rung")
    trained_tokens: int = Field(description="tokens each trial trains in this rung (the budget, or its increment "
                                            "with resume)")
    waves: int = Field(description="ceil(trials / parallel trials)")
    flops: int
    gpu_hours: float
    wall_clock_hours: float = Field(description="waves x one trial's wall-clock")


class SearchResult(_Result):
    method: str
    stage: str = Field(description="the stage each trial trains like")
    trials: int = Field(description="distinct configurations tried")
    space: dict[str, int] = Field(description="hyperparameter -> values listed")
    gpus_per_trial: int
    pool_gpus: int
    parallel_trials: int = Field(description="pool_gpus // gpus_per_trial")
    rungs: list[Rung]
    flops: int
    gpu_hours: float = Field(description="busy GPU-hours, summed over trials")
    reserved_gpu_hours: float = Field(description="pool_gpus x wall-clock: what a reserved pool bills")
    wall_clock_hours: float
    usd: float | None = Field(description="busy GPU-hours x the stage's price")
    notes: list[str] = Field([])


def rungs(method: str, *, trials: int | None, eta: int, space: dict[str, list] | None,
          tokens: int) -> list[tuple[int, int]]:
    """(trials, budget tokens per trial) per rung.

    >>> rungs("halving", trials=27, eta=3, space=None, tokens=10)
    [(27, 10), (9, 30), (3, 90), (1, 270)]
    """
    if method == "grid":
        return [(prod(len(v) for v in space.values()), tokens)]
    if method == "random":
        return [(trials, tokens)]
    out, n, budget = [], trials, tokens
    while n >= 1:  # rung i: floor(n / eta^i) trials on r x eta^i tokens (Li et al. 2017, algorithm 1)
        out.append((n, budget))
        n, budget = n // eta, budget * eta
    return out


def cost_search(search: Search, *, stage: str, stage_tokens: int, stage_flops: int, stage_gpu_hours: float,
                usd_per_gpu_hour: float | None) -> SearchResult:
    """Trials, rungs, FLOPs, GPU-hours and wall-clock of a search whose trials
    train like `stage` (its FLOPs and GPU-hours per token)."""
    tokens = search.trial_tokens or int(Fraction(str(search.trial_fraction)) * stage_tokens)
    if tokens < 1:
        raise UserError(f"trial_fraction {search.trial_fraction} of stage {stage!r}'s {stage_tokens:,} tokens "
                        "is less than one token", fix="raise trial_fraction or give trial_tokens")
    parallel = search.pool_gpus // search.gpus_per_trial
    out, previous = [], 0
    for n, budget in rungs(search.method, trials=search.trials, eta=search.eta, space=search.space, tokens=tokens):
        trained = budget - previous if search.resume else budget
        previous = budget
        gpu_hours = stage_gpu_hours * trained / stage_tokens  # same GPU-hours per token as the stage
        waves = -(-n // parallel)
        out.append(Rung(trials=n, budget_tokens=budget, trained_tokens=trained, waves=waves,
                        flops=n * (stage_flops * trained // stage_tokens), gpu_hours=n * gpu_hours,
                        wall_clock_hours=waves * gpu_hours / search.gpus_per_trial))
    gpu_hours = sum(r.gpu_hours for r in out)
    wall = sum(r.wall_clock_hours for r in out)
    notes = [f"each trial trains like stage {stage!r}: its FLOPs and GPU-hours per token, on "
             f"{tokens:,} tokens" + (" in the first rung" if search.method == "halving" else ""),
             f"{parallel} trial{'s' if parallel > 1 else ''} at once ({search.pool_gpus} GPUs // "
             f"{search.gpus_per_trial} per trial); wall-clock = ceil(trials / parallel) x one trial's"
             + (" per rung" if search.method == "halving" else "")]
    if search.method == "halving":
        notes.append(f"successive halving, eta {search.eta}: "
                     + ("promoted trials resume (each rung charges the extra tokens only)" if search.resume
                        else "every rung trains from scratch (sum of trials x budget, as Jamieson & Talwalkar count)"))
    return SearchResult(method=search.method, stage=stage, trials=out[0].trials,
                        space={k: len(v) for k, v in (search.space or {}).items()},
                        gpus_per_trial=search.gpus_per_trial, pool_gpus=search.pool_gpus, parallel_trials=parallel,
                        rungs=out, flops=sum(r.flops for r in out), gpu_hours=gpu_hours,
                        reserved_gpu_hours=search.pool_gpus * wall, wall_clock_hours=wall,
                        usd=None if usd_per_gpu_hour is None else gpu_hours * usd_per_gpu_hour, notes=notes)


__all__ = ["Search", "SearchResult", "Rung", "rungs", "cost_search", "Share", "Input", "Positive", "Whole", "Text"]
