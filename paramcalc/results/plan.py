"""A costed training pipeline and its hyperparameter search (`paramcalc plan`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from typing import Any

from pydantic import Field

from paramcalc.results.base import Report, Result


class Break(Result):
    field: str = Field(description="where in the file, e.g. stages[0].global_batch")
    message: str
    fix: str | None = None


class LrSplit(Result):
    decay: str
    warmup_steps: int
    decay_steps: int = Field(description="steps after warm-up, to the end of the stage")


class StageMemory(Result):
    peak_per_gpu: int | None = Field(description="bytes: trained models' states, the busiest one's activations "
                                                  "and overheads, frozen weights; null for a bare count")
    gpu_bytes: int
    fits: bool | None
    max_micro_batch: int | None = Field(description="the largest micro-batch that fits, up to global_batch / dp "
                                                    "(0: none)")
    breakdown: dict[str, int | None]


class PlacementGroup(Result):
    """One group of GPUs of an RL stage with `placement:` and the models it holds."""

    roles: list[str] = Field(description="the models on these GPUs: policy, critic, reference, reward_model")
    gpus: int
    dp: int = Field(description="gpus / (tp x pp): what ZeRO shards over")
    peak_per_gpu: int | None = Field(description="bytes: the group's models' states, the busiest one's activations, "
                                                  "frozen weights; null for a bare count")
    fits: bool | None
    breakdown: dict[str, int | None]
    experience_seconds: float = Field(description="the group's scoring forwards of one rollout (and offloaded "
                                                  "weights streamed in)")
    update_seconds: float = Field(description="the group's training passes of one iteration (and optimizer offload "
                                              "traffic)")


class Rollout(Result):
    """An RL iteration's time, by phase (ppo, grpo, rloo)."""

    placement: str = Field(description="colocated (generation on the training GPUs) | separate (its own GPUs)")
    generation_gpus: int = Field(description="GPUs that generate (colocated: the stage's)")
    samples_per_prompt: int = Field(description="sequences generated per prompt (grpo, rloo: the group size)")
    sequences: int = Field(description="sequences generated per iteration")
    generation_seconds: float
    training_seconds: float = Field(description="scoring forwards, updates and PCIe offload traffic")
    weight_sync_seconds: float = Field(description="separate: the policy's 16-bit weights broadcast to the engine")
    overlapped: bool = Field(description="async: the next rollout is generated while this one trains")
    iteration_seconds: float = Field(description="colocated or synchronous: the sum (with placement, the sync "
                                                 "overlaps the critic's update); async: the slower of generation "
                                                 "and training, plus the weight sync")
    generation_share: float = Field(description="generation_seconds / iteration_seconds")
    experience_seconds: float | None = Field(None, description="with placement: the scoring phase, the slowest "
                                                               "group's forwards (groups run at once)")
    update_seconds: float | None = Field(None, description="with placement: the update phase, the slowest group's "
                                                           "training, the actor's including the weight sync")
    groups: list[PlacementGroup] | None = Field(None, description="with placement: each group of GPUs, its memory "
                                                                  "and phase times")


class StageResult(Result):
    name: str
    kind: str
    objective: str
    models: dict[str, str] = Field(description="role -> model")
    gpu: str
    gpus: int = Field(description="dp x tp x pp; with placement, every group's GPUs (the engines' apart)")
    dp: int
    tp: int
    pp: int
    seq_len: int = Field(description="tokens per sequence (ppo: prompt + response)")
    sequences_per_sample: int = Field(description="2 for pairs (chosen and rejected), else 1")
    global_batch: int = Field(description="samples per optimizer step")
    micro_batch: int
    grad_accum: int | None = Field(description="global_batch / (micro_batch x dp); null when it does not divide")
    tokens_per_step: int
    steps: int = Field(description="optimizer steps")
    iterations: int | None = Field(None, description="ppo: rollout-and-update iterations")
    tokens: int = Field(description="tokens trained (ppo: prompt + response tokens of all rollouts)")
    generated_tokens: int | None = None
    mean_seq_len: int | None = Field(None, description="the data's mean tokens per sequence, when given")
    rollout: Rollout | None = Field(None, description="ppo, grpo, rloo: the iteration's time by phase")
    generation_gpus: int | None = Field(None, description="GPUs of the generation engine beside `gpus` (separate)")
    time_per_step_seconds: float
    lr: LrSplit
    flops: int
    flops_breakdown: dict[str, int]
    memory: StageMemory
    gpu_hours: float
    wall_clock_hours: float
    usd: float | None
    usd_per_gpu_hour: float | None
    breaks: list[Break]
    notes: list[str] = Field([])


class Totals(Result):
    flops: int
    gpu_hours: float
    wall_clock_hours: float = Field(description="search, then the stages, one after another")
    usd: float | None = Field(description="null when a part has no price")
    breaks: int


class Rung(Result):
    trials: int = Field(description="trials run in this rung")
    budget_tokens: int = Field(description="tokens each trial has trained by the end of the rung")
    trained_tokens: int = Field(description="tokens each trial trains in this rung (the budget, or its increment "
                                            "with resume)")
    waves: int = Field(description="ceil(trials / parallel trials)")
    flops: int
    gpu_hours: float
    wall_clock_hours: float = Field(description="waves x one trial's wall-clock")


class TrialFit(Result):
    """One configuration of a search's stage settings, checked against its GPUs' memory."""

    settings: dict[str, Any] = Field(description="the swept stage keys (model, micro_batch, lora.rank, ...)")
    trials: int = Field(description="grid: trials with these settings; random, halving: configurations of the "
                                    "other hyperparameters")
    gpus: int = Field(description="gpus_per_trial")
    peak_per_gpu: int | None = Field(description="bytes, the stage's memory model at dp = gpus_per_trial / (tp x pp)")
    gpu_bytes: int
    fits: bool | None = Field(description="false: not priced; null: unknown (a bare count)")
    reason: str | None = None
    gpu_hours_per_token: float = Field(description="what a trial of these settings costs per token")


class SearchResult(Result):
    method: str
    stage: str = Field(description="the stage each trial trains like")
    trials: int = Field(description="distinct configurations tried")
    space: dict[str, int] = Field(description="hyperparameter -> values listed")
    gpus_per_trial: int
    pool_gpus: int
    parallel_trials: int = Field(description="pool_gpus // gpus_per_trial (bayesian: `parallel`)")
    rungs: list[Rung]
    flops: int
    gpu_hours: float = Field(description="busy GPU-hours, summed over trials")
    reserved_gpu_hours: float = Field(description="pool_gpus x wall-clock: what a reserved pool bills")
    wall_clock_hours: float
    usd: float | None = Field(description="busy GPU-hours x the stage's price")
    configurations: list[TrialFit] = Field([], description="each setting of the swept stage keys and its fit")
    unfit_trials: int = Field(0, description="trials whose settings do not fit gpus_per_trial: not priced")
    breaks: list[Break] = Field([], description="trials that do not fit (counted in totals.breaks)")
    warnings: list[str] = Field([], description="e.g. a halving rung whose budget exceeds the stage's")
    notes: list[str] = Field([])


class PlanReport(Report):
    command: str = "plan"
    file: str
    stages: list[StageResult]
    search: SearchResult | None
    totals: Totals
