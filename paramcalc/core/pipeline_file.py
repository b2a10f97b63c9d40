"""The pipeline file (`paramcalc plan PIPELINE.yaml`): its format as pydantic
models, and its errors placed at their key and line (docs/plan.md)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, model_validator

from paramcalc.core.memory import DTYPE_BYTES, OPTIMIZER_STATE, PRECISION
from paramcalc.core.search import Input, Positive, Search, Share, Text, Whole
from paramcalc.errors import UserError
from paramcalc.files import dotted, flag_keys, in_file_words, located
from paramcalc.units import parse_number

KINDS = ("pretrain", "sft", "reward", "ppo", "dpo")


def _count(value) -> int:
    """A whole number, zero allowed (warm-up steps)."""
    try:
        number = parse_number(value)
    except UserError as e:
        raise ValueError(str(e)) from None
    if not isinstance(number, int) or number < 0:
        raise ValueError(f"must be a whole number >= 0, got {value!r}")
    return number


Count = Annotated[int, BeforeValidator(_count)]

# ---------------------------------------------------------------- the file format


class Parallel(Input):
    """How one stage spreads over GPUs and holds its model (as `paramcalc memory` takes it)."""

    dp: Whole = Field(1, description="data-parallel degree")
    tp: Whole = Field(1, description="tensor-parallel degree")
    pp: Whole = Field(1, description="pipeline stages")
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage 0-3 (3 = FSDP full sharding)")
    sequence_parallel: bool = Field(False, description="sequence parallelism with TP (Korthikanti et al. 2022)")
    recompute: Literal["none", "selective", "full"] = Field("none", description="activation recomputation")
    attention: Literal["eager", "flash"] = Field("flash", description="attention kernel, for activation memory")
    precision: Literal[tuple(PRECISION)] = Field("mixed", description="mixed (16 B/param with Adam) | fp32 | amp "
                                                                     "| megatron")
    optimizer: Literal[tuple(OPTIMIZER_STATE)] = Field("adamw", description="optimizer whose state is held")


class Schedule(Input):
    """The learning-rate schedule: linear warm-up, then decay to the last step."""

    warmup_steps: Count | None = Field(None, description="warm-up in optimizer steps")
    warmup_fraction: float | None = Field(None, ge=0, lt=1, description="instead: warm-up as a share of the steps")
    decay: Literal["cosine", "linear", "inverse-sqrt", "constant"] = Field("cosine", description="after warm-up")

    @model_validator(mode="after")
    def _one_warmup(self):
        if self.warmup_steps is not None and self.warmup_fraction is not None:
            raise ValueError("give warmup_steps or warmup_fraction, not both")
        return self


class _Stage(Input):
    name: Text | None = Field(None, description="shown in reports [default: the kind]")
    model: Text | None = Field(None, description="any TARGET; paths relative to this file [default: the pipeline's]")
    gpu: Text | None = Field(None, description="accelerator or GPU .yaml [default: the pipeline's]")
    mfu: Share | None = Field(None, description="model FLOPs utilisation of training passes [default: the pipeline's]")
    dtype: Literal[tuple(DTYPE_BYTES)] | None = Field(None, description="weights and activations; sets the peak")
    usd_per_hour: Positive | None = Field(None, description="USD per GPU-hour [default: the pipeline's, or the table]")
    micro_batch: Whole = Field(1, description="samples per GPU per forward (pairs for reward and dpo)")
    parallel: Parallel = Field(default_factory=Parallel, description="dp, tp, pp, ZeRO, recomputation, kernels")
    lr: Schedule = Field(default_factory=Schedule, description="learning-rate phases")


class _Data(_Stage):
    seq_len: Whole = Field(description="tokens per sequence (packed); for pairs, per chosen or rejected sequence")
    global_batch: Whole = Field(description="samples per optimizer step: sequences, or pairs for reward and dpo")
    tokens: Whole | None = Field(None, description="the token budget over all epochs")
    dataset_tokens: Whole | None = Field(None, description="instead: tokens in the dataset, x epochs")
    samples: Whole | None = Field(None, description="instead: sequences (pairs) in the dataset, x epochs")
    epochs: Positive | None = Field(None, description="passes over dataset_tokens or samples [default: 1]")

    @model_validator(mode="after")
    def _one_size(self):
        given = [k for k in ("tokens", "dataset_tokens", "samples") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tokens, dataset_tokens and samples (with epochs)"
                             + (f"; got {', '.join(given)}" if given else ""))
        if self.tokens is not None and self.epochs is not None:
            raise ValueError("tokens is the budget over all epochs; use dataset_tokens or samples with epochs")
        return self


class Pretrain(_Data):
    """Causal LM on a decoder (masked LM on an encoder, span corruption on T5)."""

    kind: Literal["pretrain"] = Field(description="pretrain")


class Sft(_Data):
    """Supervised fine-tuning: next-token loss on prompt + response, fewer tokens, several epochs."""

    kind: Literal["sft"] = Field(description="sft")


class Reward(_Data):
    """A reward model (the LM with a scalar head) on chosen/rejected pairs."""

    kind: Literal["reward"] = Field(description="reward")


class Dpo(_Data):
    """Direct preference optimisation on chosen/rejected pairs against a frozen reference."""

    kind: Literal["dpo"] = Field(description="dpo")
    reference: Text | None = Field(None, description="the frozen reference TARGET [default: the policy]")


class Ppo(_Stage):
    """PPO-RLHF: generate, score, update actor and critic (Ouyang et al. 2022)."""

    kind: Literal["ppo"] = Field(description="ppo")
    reference: Text | None = Field(None, description="frozen reference TARGET [default: the policy]")
    reward_model: Text | None = Field(None, description="frozen reward TARGET, given a scalar head "
                                                        "[default: the last reward stage's model, else the policy]")
    critic: Text | None = Field(None, description="trained value TARGET, given a scalar head "
                                                  "[default: the reward model]")
    iterations: Whole | None = Field(None, description="rollout-and-update iterations")
    prompts: Whole | None = Field(None, description="instead: prompts in the dataset, x epochs / rollout_batch")
    epochs: Positive | None = Field(None, description="passes over `prompts` [default: 1]")
    rollout_batch: Whole = Field(description="prompts generated per iteration")
    prompt_tokens: Whole = Field(description="tokens per prompt")
    response_tokens: Whole = Field(description="tokens generated per prompt (the maximum: early stops err high)")
    ppo_epochs: Whole = Field(1, description="passes of actor and critic updates over each rollout")
    global_batch: Whole | None = Field(None, description="sequences per optimizer step (the PPO mini-batch) "
                                                         "[default: rollout_batch]")
    generation_mfu: Share = Field(0.1, description="share of the dense peak that generation reaches "
                                                   "(decode is memory-bound)")
    recompute_logprobs: bool = Field(True, description="a policy forward recomputes the rollout's log-probs "
                                                       "(false: taken from generation)")

    @model_validator(mode="after")
    def _one_length(self):
        if (self.iterations is None) == (self.prompts is None):
            raise ValueError("give exactly one of iterations and prompts (with epochs)")
        if self.iterations is not None and self.epochs is not None:
            raise ValueError("epochs counts passes over prompts; with iterations, leave it out")
        return self


Stage = Annotated[Union[Pretrain, Sft, Reward, Ppo, Dpo], Field(discriminator="kind")]
STAGES = {"pretrain": Pretrain, "sft": Sft, "reward": Reward, "ppo": Ppo, "dpo": Dpo}


class Pipeline(Input):
    """A training pipeline: defaults, stages in order, and an optional search."""

    name: Text | None = Field(None, description="shown in reports")
    model: Text | None = Field(None, description="default model of every stage (any TARGET)")
    gpu: Text = Field("h100-sxm", description="default accelerator (paramcalc gpus) or GPU .yaml")
    mfu: Share = Field(0.4, description="default MFU of training passes")
    dtype: Literal[tuple(DTYPE_BYTES)] = Field("bf16", description="default weights/activations dtype and peak")
    usd_per_hour: Positive | None = Field(None, description="default USD per GPU-hour [default: the price table]")
    stages: list[Stage] = Field(min_length=1, description="run one after another")
    search: Search | None = Field(None, description="a hyperparameter search, run before the stages")


# ---------------------------------------------------------------- errors, placed in the file


def validate_pipeline(data: dict, path: Path) -> Pipeline:
    from pydantic import ValidationError

    try:
        pipe = Pipeline.model_validate(data)
    except ValidationError as e:
        err = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")[0]
        loc = _clean(tuple(err["loc"]))
        message, fix = {
            "extra_forbidden": ("unknown key", _suggest(loc, data)),
            "missing": ("required key missing", "see docs/plan.md for each stage kind's keys"),
            "union_tag_invalid": (f"unknown stage kind {err.get('ctx', {}).get('tag')!r}",
                                  f"use one of: {', '.join(KINDS)}"),
            "union_tag_not_found": ("a stage needs `kind:`", f"use one of: {', '.join(KINDS)}"),
            "too_short": ("no stages", "list at least one stage under `stages:`"),
        }.get(err["type"], (err["msg"].removeprefix("Value error, "), None))
        raise UserError(message, where=at(path, loc), fix=fix) from None
    seen: set[str] = set()
    for i, stage in enumerate(pipe.stages):
        name = stage.name or stage.kind
        if name in seen:
            raise UserError(f"a second stage named {name!r}", where=at(path, ("stages", i)),
                            fix="give each stage its own `name:`")
        seen.add(name)
    return pipe


def _clean(loc: tuple) -> tuple:
    """Drop pydantic's discriminator tag: ('stages', 0, 'ppo', 'iterations') -> ('stages', 0, 'iterations')."""
    if len(loc) > 2 and loc[0] == "stages" and loc[2] in KINDS:
        return loc[:2] + loc[3:]
    return loc


def _suggest(loc: tuple, data: dict) -> str:
    import difflib

    model = Pipeline
    if loc[0] == "search" and len(loc) > 1:
        model = Search
    elif loc[0] == "stages" and len(loc) > 2:
        model = STAGES.get(str(data["stages"][loc[1]].get("kind")), _Stage)
        if len(loc) > 3:
            model = {"parallel": Parallel, "lr": Schedule}.get(str(loc[2]), model)
    known = [k for k in model.model_fields]
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return (f"did you mean {close[0]}? " if close else "") + f"{dotted(loc[:-1]) or 'the top level'} takes: " \
        + ", ".join(known)


_KEYS = {"seq_len": ("seq_len",), "dtype": ("dtype",), "precision": ("parallel", "precision"),
         "optimizer": ("parallel", "optimizer"), "tp": ("parallel", "tp"), "pp": ("parallel", "pp")}


@contextmanager
def placed(path: Path, loc: tuple):
    """A library error about a flag (`--seq-len`) re-placed at the file's key (`stages[0].seq_len`)."""
    try:
        yield
    except UserError as error:
        stage = loc[:1] == ("stages",) and len(loc) == 2
        key = next((_KEYS[f] for f in flag_keys(error) if f in _KEYS), ()) if stage else ()
        raise in_file_words(error, at(path, loc + key)) from None


def at(path: Path, loc: tuple) -> str:
    return located(path, loc, "pipeline file")
