"""Hyperparameter search: how many trials, how much each trains, how long the
pool takes (the `search:` block of a pipeline file, docs/plan.md).

- grid: every combination, trials = the product of the value counts.
- random: N trials drawn from the space (Bergstra & Bengio 2012).
- successive halving (Jamieson & Talwalkar 2016; Li et al. 2017, "Hyperband"):
  rung i runs floor(n / eta^i) trials on r x eta^i tokens each, for
  i = 0 .. floor(log_eta n); total = sum_i trials_i x budget_i (every rung
  trains from scratch, as the papers count it; `resume: true` charges only
  budget_i - budget_(i-1) to a promoted trial that resumes its checkpoint).
- bayesian (Snoek et al. 2012, "Practical Bayesian Optimization of Machine
  Learning Algorithms"): N trials, proposed `parallel` at a time by a
  surrogate fitted to every finished trial. Its GPU-hours are random's
  (N x one trial's); its wall-clock is ceil(N / parallel) sequential batches
  of one trial's time, each batch waiting for the model of the previous ones,
  however large the pool.

Each trial trains like one stage of the pipeline, at that stage's FLOPs and
GPU-hours per token. `pool_gpus // gpus_per_trial` trials run at once (a
bayesian search: `parallel`), so a
rung takes ceil(trials / parallel) waves of one trial's wall-clock. GPU-hours
count busy GPUs; a reserved pool bills pool_gpus x wall-clock instead.
"""

from __future__ import annotations

from fractions import Fraction
from math import prod

from paramcalc.errors import UserError
from paramcalc.inputs.pipeline_file import Search
from paramcalc.results.plan import Rung, SearchResult


def rungs(method: str, *, trials: int | None, eta: int, space: dict[str, list] | None,
          tokens: int) -> list[tuple[int, int]]:
    """(trials, budget tokens per trial) per rung.

    >>> rungs("halving", trials=27, eta=3, space=None, tokens=10)
    [(27, 10), (9, 30), (3, 90), (1, 270)]
    """
    if method == "grid":
        assert space is not None  # a grid's space is required (the file's validator, Search._consistent)
        return [(prod(len(v) for v in space.values()), tokens)]
    assert trials is not None  # random, halving and bayesian searches require trials (Search._consistent)
    if method in ("random", "bayesian"):
        return [(trials, tokens)]
    out, n, budget = [], trials, tokens
    while n >= 1:  # rung i: floor(n / eta^i) trials on r x eta^i tokens (Li et al. 2017, algorithm 1)
        out.append((n, budget))
        n, budget = n // eta, budget * eta
    return out


def cost_search(search: Search, *, stage: str, stage_tokens: int, stage_flops: int, stage_gpu_hours: float,
                usd_per_gpu_hour: float | None, configs: list[tuple[int, int, float, int]] | None = None,
                total_weight: int | None = None) -> SearchResult:
    """Trials, rungs, FLOPs, GPU-hours and wall-clock of a search whose trials
    train like `stage` (its FLOPs and GPU-hours per token).

    `configs`: the settings of swept stage keys that fit, each (weight, FLOPs, GPU-hours, tokens) of the stage
    planned at those settings, the weight being how many configurations of the space share them;
    `total_weight`: the weights of every setting, fitting or not. A grid runs only the fitting combinations;
    random and halving draw their trials from the fitting ones, each priced at the weighted mean.
    Default: one setting, the stage's own."""
    if configs is None:
        configs = [(1, stage_flops, stage_gpu_hours, stage_tokens)]
    fit_weight = sum(w for w, *_ in configs)
    total_weight = total_weight or fit_weight
    tokens = search.trial_tokens or int(Fraction(str(search.trial_fraction)) * stage_tokens)
    if tokens < 1:
        raise UserError(f"trial_fraction {search.trial_fraction} of stage {stage!r}'s {stage_tokens:,} tokens "
                        "is less than one token", fix="raise trial_fraction or give trial_tokens")
    parallel = search.pool_gpus // search.gpus_per_trial
    if search.method == "bayesian":
        assert search.parallel is not None  # required for bayesian (Search._batch)
        parallel = search.parallel  # a batch waits for the surrogate fitted to every earlier trial
    out, previous, warnings = [], 0, []
    for i, (n, budget) in enumerate(rungs(search.method, trials=search.trials, eta=search.eta, space=search.space,
                                          tokens=tokens)):
        trained = budget - previous if search.resume else budget
        previous = budget
        if budget > stage_tokens:
            warnings.append(f"rung {i}: {n} trial(s) on {budget:,} tokens each, more than stage {stage}'s own "
                            f"{stage_tokens:,}: a trial outgrows the run it tunes (lower trial_tokens or eta)")
        # a grid runs its fitting combinations; random and halving draw n trials among the fitting settings
        run = n * fit_weight // total_weight if search.method == "grid" else (n if fit_weight else 0)
        # one trial's GPU-hours: the same GPU-hours per token as its stage, the weighted mean over settings
        each = [(w, f * trained // t, h * trained / t) for w, f, h, t in configs]
        if len(each) == 1:
            per_trial, flops = each[0][2], run * each[0][1]
        else:
            per_trial = sum(w * x for w, _, x in each) / fit_weight if fit_weight else 0.0
            flops = sum(run * w * f for w, f, _ in each) // fit_weight if fit_weight else 0
        gpu_hours = run * per_trial
        # waves x one trial's mean wall-clock (with settings that differ in cost the mean errs low: the
        # slowest trial of a wave sets its end)
        waves = -(-run // parallel)
        out.append(Rung(trials=run, budget_tokens=budget, trained_tokens=trained, waves=waves,
                        flops=flops, gpu_hours=gpu_hours,
                        wall_clock_hours=waves * per_trial / search.gpus_per_trial))
    gpu_hours = sum(r.gpu_hours for r in out)
    wall = sum(r.wall_clock_hours for r in out)
    notes = [f"each trial trains like stage {stage!r}: its FLOPs and GPU-hours per token, on "
             f"{tokens:,} tokens" + (" in the first rung" if search.method == "halving" else ""),
             (f"{parallel} trial{'s' if parallel > 1 else ''} at once (parallel: {parallel} x "
              f"{search.gpus_per_trial} GPUs of a {search.pool_gpus}-GPU pool)" if search.method == "bayesian" else
              f"{parallel} trial{'s' if parallel > 1 else ''} at once ({search.pool_gpus} GPUs // "
              f"{search.gpus_per_trial} per trial)")
             + "; wall-clock = ceil(trials / parallel) x one trial's"
             + (" per rung" if search.method == "halving" else "")]
    if search.method == "halving":
        notes.append(f"successive halving, eta {search.eta}: "
                     + ("promoted trials resume (each rung charges the extra tokens only)" if search.resume
                        else "every rung trains from scratch (sum of trials x budget, as Jamieson & Talwalkar count)"))
    if search.method == "bayesian":
        notes.append(f"Bayesian optimisation (Snoek et al. 2012): {out[0].trials} trials in {out[0].waves} sequential "
                     f"batch{'es' if out[0].waves > 1 else ''} of {parallel}, each proposed by the surrogate fitted "
                     "to the trials before it: the GPU-hours of a random search of as many trials, a longer "
                     "wall-clock when parallel is below the pool's capacity")
    return SearchResult(method=search.method, stage=stage, trials=out[0].trials,
                        space={k: len(v) for k, v in (search.space or {}).items()},
                        gpus_per_trial=search.gpus_per_trial, pool_gpus=search.pool_gpus, parallel_trials=parallel,
                        rungs=out, flops=sum(r.flops for r in out), gpu_hours=gpu_hours,
                        reserved_gpu_hours=search.pool_gpus * wall, wall_clock_hours=wall,
                        usd=None if usd_per_gpu_hour is None else gpu_hours * usd_per_gpu_hour, warnings=warnings,
                        notes=notes)


__all__ = ["rungs", "cost_search"]
