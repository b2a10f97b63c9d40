"""The pipeline file (`paramcalc plan PIPELINE.yaml`, docs/plan.md): its format as
typed models, every problem placed at its key and line by the one loader."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from paramcalc.errors import UserError
from paramcalc.inputs.fields import STRICT, Count, Natural, Positive, Share, Text
from paramcalc.inputs.files import load_mapping, locate, validate

KINDS = ("pretrain", "sft", "reward", "ppo", "dpo", "grpo", "rloo")
# The choices of analysis/settings.py's tables (tests/test_plan.py holds them equal).
Dtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]
Precision = Literal["mixed", "fp32", "amp", "megatron", "bf16"]
Optimizer = Literal["adamw", "adamw-bf16", "adam", "adam-8bit", "adamw-8bit", "paged-adamw", "paged-adamw-8bit",
                    "sgd", "sgd-momentum", "lion", "adafactor"]


class Input(BaseModel):
    """A block of a pipeline file: frozen, and a typo in a key fails loudly."""

    model_config = STRICT


class Parallel(Input):
    """How one stage spreads over GPUs and holds its model (as `paramcalc memory` takes it)."""

    dp: Count = Field(1, description="data-parallel degree")
    tp: Count = Field(1, description="tensor-parallel degree")
    pp: Count = Field(1, description="pipeline stages")
    zero: int = Field(0, ge=0, le=3, description="ZeRO stage 0-3 (3 = FSDP full sharding)")
    sequence_parallel: bool = Field(False, description="sequence parallelism with TP (Korthikanti et al. 2022)")
    recompute: Literal["none", "selective", "full", "op", "deepseek"] = Field(
        "none", description="activation recomputation (op: torchtitan's op-level selective; deepseek: DeepSeek-V3's "
                            "norms, MLA up-projections and MoE SwiGLU)")
    attention: Literal["eager", "flash"] = Field("flash", description="attention kernel, for activation memory")
    precision: Precision = Field("mixed", description="mixed (16 B/param with Adam) | fp32 | amp "
                                                                     "| megatron")
    optimizer: Optimizer = Field("adamw", description="optimizer whose state is held")
    offload: Literal["none", "optimizer", "params", "both"] = Field(
        "none", description="training state in CPU memory: optimizer (ZeRO-Offload), params (offload_param, "
                            "ZeRO-3), both (FSDP CPU offload); PCIe time is added to the step")
    offload_activations: bool = Field(False, description="checkpointed layer inputs in CPU memory (torchtune; "
                                                         "needs recompute: full)")
    chunked_loss: bool = Field(False, description="fused linear cross-entropy, no full logits (Liger Kernel)")
    optimizer_in_backward: bool = Field(False, description="step and free each gradient in backward (torchtune)")
    fp8_activations: bool = Field(False, description="Linear inputs cached in fp8, the attention output in E5M6 "
                                                     "(DeepSeek-V3 report, section 3.3.3; needs dtype fp8)")


class Schedule(Input):
    """The learning-rate schedule: linear warm-up, then decay to the last step."""

    warmup_steps: Natural | None = Field(None, description="warm-up in optimizer steps")
    warmup_fraction: float | None = Field(None, ge=0, lt=1, description="instead: warm-up as a share of the steps")
    decay: Literal["cosine", "linear", "inverse-sqrt", "constant"] = Field("cosine", description="after warm-up")

    @model_validator(mode="after")
    def _one_warmup(self):
        if self.warmup_steps is not None and self.warmup_fraction is not None:
            raise ValueError("give warmup_steps or warmup_fraction, not both")
        return self


class Lora(Input):
    """LoRA adapters on the stage's trained models (Hu et al. 2021, as PEFT adds them); with
    `dtype: int4`, QLoRA (Dettmers et al. 2023): an NF4 frozen base, bf16 adapters."""

    rank: Count = Field(description="adapter rank r")
    alpha: Positive = Field(16, description="LoRA alpha (scales the update; no effect on cost)")
    targets: list[Text] = Field(["q_proj", "v_proj"], description="linears adapted (PEFT's target_modules)")
    modules_to_save: list[Text] = Field([], description="parts trained in full beside the adapters")
    dropout: float = Field(0.0, ge=0, lt=1, description="lora_dropout on each adapter's input (memory: each "
                                                        "keeps its dropped copy and mask)")
    double_quant: bool = Field(True, description="QLoRA: NF4 block scales double-quantized (4.127 bits a weight); "
                                                 "false: fp32 scales, 4.5 bits (transformers' default)")
    bnb_legacy: bool = Field(False, description="QLoRA on bitsandbytes up to 0.42: 4-bit linears keep their inputs "
                                                "for the graph's life, weights quantized from fp16")


class _Stage(Input):
    name: Text | None = Field(None, description="shown in reports [default: the kind]")
    model: Text | None = Field(None, description="any TARGET; paths relative to this file [default: the pipeline's]")
    gpu: Text | None = Field(None, description="accelerator or GPU .yaml [default: the pipeline's]")
    mfu: Share | None = Field(None, description="model FLOPs utilisation of training passes [default: the pipeline's]")
    dtype: Dtype | None = Field(None, description="weights and activations; sets the peak")
    usd_per_hour: Positive | None = Field(None, description="USD per GPU-hour [default: the pipeline's, or the table]")
    micro_batch: Count = Field(1, description="samples per GPU per forward (pairs for reward and dpo)")
    parallel: Parallel = Field(default_factory=Parallel, description="dp, tp, pp, ZeRO, recomputation, kernels")
    lr: Schedule = Field(default_factory=Schedule, description="learning-rate phases")
    lora: Lora | None = Field(None, description="train LoRA adapters instead of the whole model")
    trainer: Literal["hf", "litgpt"] = Field("hf", description="whose training loop: hf (transformers, PEFT, TRL, "
                                                               "DeepSpeed) | litgpt (LitGPT's pretrain and "
                                                               "finetune scripts)")
    longest_first: bool = Field(False, description="the longest batch runs first (lit-gpt 2023, HF's "
                                                   "group_by_length): no earlier step's leftovers meet it")

    @model_validator(mode="after")
    def _litgpt_stages(self):
        if self.trainer == "litgpt" and getattr(self, "kind", None) not in ("pretrain", "sft"):
            raise ValueError(f"trainer litgpt: LitGPT's scripts pretrain and fine-tune (sft), not "
                             f"{getattr(self, 'kind', 'this stage')}; use trainer hf")
        return self


class _Data(_Stage):
    seq_len: Count = Field(description="tokens per sequence (packed); for pairs, per chosen or rejected sequence")
    global_batch: Count = Field(description="samples per optimizer step: sequences, or pairs for reward and dpo")
    tokens: Count | None = Field(None, description="the token budget over all epochs")
    dataset_tokens: Count | None = Field(None, description="instead: tokens in the dataset, x epochs")
    samples: Count | None = Field(None, description="instead: sequences (pairs) in the dataset, x epochs")
    epochs: Positive | None = Field(None, description="passes over dataset_tokens or samples [default: 1]")
    mean_seq_len: Count | None = Field(None, description="the mean tokens of a sample's sequence (the data as it "
                                                         "is) [default: seq_len]")
    packing: bool = Field(True, description="true: sequences packed (compute at the mean length); false: padded "
                                            "to seq_len (compute at seq_len, tokens counted at the mean)")

    @model_validator(mode="after")
    def _one_size(self):
        given = [k for k in ("tokens", "dataset_tokens", "samples") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of tokens, dataset_tokens and samples (with epochs)"
                             + (f"; got {', '.join(given)}" if given else ""))
        if self.tokens is not None and self.epochs is not None:
            raise ValueError("tokens is the budget over all epochs; use dataset_tokens or samples with epochs")
        if self.mean_seq_len is not None and self.mean_seq_len > self.seq_len:
            raise ValueError(f"mean_seq_len {self.mean_seq_len} exceeds seq_len {self.seq_len}, the longest")
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


Offload = Literal["none", "cpu"]


class Dpo(_Data):
    """Direct preference optimisation on chosen/rejected pairs against a frozen reference."""

    kind: Literal["dpo"] = Field(description="dpo")
    reference: Text | None = Field(None, description="the frozen reference TARGET [default: the policy]; "
                                                     "`precomputed`: the default reference, precomputed")
    precompute_reference: bool = Field(False, description="the reference's log-probs computed once over the "
                                                          "dataset before training (TRL's precompute_ref_log_probs)")
    reference_offload: Offload = Field("none", description="cpu: the reference's weights in CPU memory, streamed "
                                                           "over PCIe for each forward")
    offload_frozen: bool = Field(False, description="true: every frozen model offloaded to CPU memory")


class Generation(Input):
    """How an RL stage (ppo, grpo, rloo) generates its rollouts: the decode roofline
    (analysis/serve.py) of an engine on the stage's own GPUs (colocated), or on `gpus` of its own
    (OpenRLHF's and verl's vLLM engines), with the policy's weights synced to it every iteration."""

    model_config = ConfigDict(**STRICT, populate_by_name=True)

    engine: Literal["vllm", "hf"] = Field("vllm", description="vllm: a vLLM/SGLang-style engine (CUDA graphs, "
                                                              "paged KV cache); hf: transformers' generate (eager)")
    tp: Count | None = Field(None, description="GPUs per generation replica [default: the stage's tp]")
    gpu_memory_utilization: Share = Field(0.9, description="vllm: the share of GPU memory the engine may use")
    gpus: Count | None = Field(None, description="GPUs of its own for generation (beside the stage's dp x tp x pp) "
                                                 "[default: none, colocated]")
    per_request: Count | None = Field(None, description="prompts each trainer rank sends an engine per request, "
                                                        "rank r to engine r mod engines (OpenRLHF before v0.5: "
                                                        "--micro_rollout_batch_size) [default: the whole rollout "
                                                        "at once, continuously batched]")
    overlap: bool = Field(False, alias="async", description="with gpus: generate the next rollout while training "
                                                             "on this one (one step off-policy)")


class Placement(Input):
    """Each model of an RL stage on a group of GPUs of its own, as OpenRLHF's Ray placement groups
    run them (`--actor_num_gpus_per_node` x `--actor_num_nodes`, and likewise `critic`, `ref`,
    `reward`); two models may share a group (`--colocate_actor_ref`, `--colocate_critic_reward`).
    Each group shards its models' ZeRO states over its own GPUs, and the groups work at once:
    the scoring forwards side by side, then actor and critic training side by side. The engine's
    GPUs are `generation.gpus`. Without this block every model shares the stage's dp x tp x pp GPUs
    (DeepSpeed-Chat's hybrid engine, verl's colocated workers)."""

    actor: Count = Field(description="GPUs that train the policy (the actor); its dp = actor / (tp x pp)")
    critic: Count | None = Field(None, description="ppo: GPUs of the critic [required unless "
                                                   "colocate_critic_reward puts it with the reward model]")
    reference: Count | None = Field(None, description="GPUs of the frozen reference [required unless "
                                                      "colocate_actor_ref]")
    reward_model: Count | None = Field(None, description="GPUs of the reward model [required unless "
                                                         "colocate_critic_reward, or rewards by rule]")
    colocate_actor_ref: bool = Field(False, description="the reference on the actor's GPUs (OpenRLHF's "
                                                        "--colocate_actor_ref)")
    colocate_critic_reward: bool = Field(False, description="the reward model on the critic's GPUs (OpenRLHF's "
                                                            "--colocate_critic_reward)")

    @model_validator(mode="after")
    def _colocated_groups_have_one_size(self):
        if self.colocate_actor_ref and self.reference not in (None, self.actor):
            raise ValueError(f"colocate_actor_ref puts the reference on the actor's {self.actor} GPUs, but reference "
                             f"is {self.reference}: drop reference, or set it to {self.actor}")
        if self.colocate_critic_reward and None not in (self.critic, self.reward_model) \
                and self.critic != self.reward_model:
            raise ValueError(f"colocate_critic_reward shares one group, but critic is {self.critic} GPUs and "
                             f"reward_model {self.reward_model}: give one of them, or the same number")
        return self


class _Rl(_Stage):
    """What every RL stage shares: rollouts generated by the policy, then updates on them."""

    reference: Text | None = Field(None, description="frozen reference TARGET [default: the policy]")
    iterations: Count | None = Field(None, description="rollout-and-update iterations")
    prompts: Count | None = Field(None, description="instead: prompts in the dataset, x epochs / rollout_batch")
    epochs: Positive | None = Field(None, description="passes over `prompts` [default: 1]")
    rollout_batch: Count = Field(description="prompts generated per iteration")
    prompt_tokens: Count = Field(description="tokens per prompt")
    response_tokens: Count = Field(description="tokens generated per prompt (the maximum: early stops err high)")
    ppo_epochs: Count = Field(1, description="passes of updates over each rollout (GRPO's mu)")
    global_batch: Count | None = Field(None, description="sequences per optimizer step (the mini-batch) "
                                                         "[default: every sequence of the rollout]")
    generation: Generation = Field(default_factory=Generation, description="the generation engine")
    placement: Placement | None = Field(None, description="each model on GPUs of its own (OpenRLHF's Ray "
                                                          "placement groups) [default: all on dp x tp x pp]")
    generation_mfu: Share | None = Field(None, description="instead: a fixed share of the dense peak that "
                                                           "generation reaches (overrides `generation`)")
    recompute_logprobs: bool = Field(True, description="a policy forward recomputes the rollout's log-probs "
                                                       "(false: taken from generation)")
    reference_offload: Offload = Field("none", description="cpu: the reference's weights in CPU memory, streamed "
                                                           "over PCIe for each forward (DeepSpeed-Chat's "
                                                           "--offload_reference_model; OpenRLHF --ref_reward_offload)")
    reward_offload: Offload = Field("none", description="cpu: the reward model's weights in CPU memory, streamed "
                                                        "over PCIe for each forward")
    offload_frozen: bool = Field(False, description="true: every frozen model (reference, reward model) offloaded")
    ptx_coef: float = Field(0, ge=0, description="PPO-ptx (Ouyang et al. 2022, section 3.5): the pretraining "
                                                 "loss's weight; above 0, a pretraining batch trains with each "
                                                 "update")
    ptx_tokens: Count | None = Field(None, description="pretraining tokens per optimizer step [default: as many "
                                                       "as the step's RL tokens]")
    ptx_ratio: Positive | None = Field(None, description="instead: pretraining sequences per RL sequence trained "
                                                         "[default: 1]")

    @model_validator(mode="after")
    def _one_length(self):
        if (self.iterations is None) == (self.prompts is None):
            raise ValueError("give exactly one of iterations and prompts (with epochs)")
        if self.iterations is not None and self.epochs is not None:
            raise ValueError("epochs counts passes over prompts; with iterations, leave it out")
        return self


class Ppo(_Rl):
    """PPO-RLHF: generate, score, update actor and critic (Ouyang et al. 2022)."""

    kind: Literal["ppo"] = Field(description="ppo")
    reward_model: Text | None = Field(None, description="frozen reward TARGET, given a scalar head "
                                                        "[default: the last reward stage's model, else the policy]")
    critic: Text | None = Field(None, description="trained value TARGET, given a scalar head "
                                                  "[default: the reward model]")


class _Grouped(_Rl):
    """Critic-free RL over groups of samples per prompt: the group's rewards are the baseline."""

    reward: Literal["rule", "model"] = Field("rule", description="rule: a verifier or rule scores responses "
                                                                 "(no model); model: a reward model forward")
    reward_model: Text | None = Field(None, description="reward: model: the frozen reward TARGET, given a "
                                                        "scalar head [default: the last reward stage's model, "
                                                        "else the policy]")
    kl_coef: float = Field(0.04, ge=0, description="weight of the KL penalty against the reference; 0: no reference "
                                                   "model is held or run")

    @model_validator(mode="after")
    def _reward_model_needs_model_rewards(self):
        if self.reward_model is not None and self.reward == "rule":
            raise ValueError("reward_model is given but reward is rule; set reward: model, or drop reward_model")
        return self


class Grpo(_Grouped):
    """GRPO (Shao et al. 2024, DeepSeekMath, section 4.1): G samples per prompt, the group-normalised
    rewards as advantages, no critic."""

    kind: Literal["grpo"] = Field(description="grpo")
    group_size: Count = Field(8, description="samples generated per prompt (G)")


class Rloo(_Grouped):
    """RLOO (Ahmadian et al. 2024, "Back to Basics"): k samples per prompt, each baselined by the mean
    reward of the other k - 1, no critic."""

    kind: Literal["rloo"] = Field(description="rloo")
    group_size: Count = Field(4, description="samples generated per prompt (k)")
    kl_coef: float = Field(0.05, ge=0, description="weight of the KL penalty against the reference; 0: no reference "
                                                   "model is held or run")


class Search(Input):
    """How many trials a hyperparameter search runs, each a short training run."""

    method: Literal["grid", "random", "halving", "bayesian"] = Field(
        description="grid: every combination of `space`; random: `trials` draws; halving: successive halving; "
                    "bayesian: `trials` proposed by a surrogate model, `parallel` at a time (Snoek et al. 2012)")
    space: dict[str, list[Any]] | None = Field(
        None, description="hyperparameter -> the values tried (grid: required; trials = product of the counts)")
    trials: Count | None = Field(None, description="random: trials drawn; halving: trials in the first rung (n); "
                                                          "bayesian: trials evaluated")
    eta: Count = Field(3, description="halving: the reduction factor; 1/eta of the trials go on to eta x the budget")
    resume: bool = Field(False, description="halving: promoted trials resume their checkpoint (pay only the extra "
                                            "tokens); false counts every rung from scratch, as the papers do")
    stage: Text | None = Field(None, description="the stage whose model, batch, GPU and MFU a trial trains with "
                                                 "[default: the first stage]")
    trial_tokens: Count | None = Field(None, description="tokens one trial trains (halving: the first rung's budget)")
    trial_fraction: Share | None = Field(None, description="instead of trial_tokens: a share of the stage's tokens")
    gpus_per_trial: Count = Field(description="GPUs one trial occupies")
    pool_gpus: Count = Field(description="GPUs the search may use at once")
    # declared after method, gpus_per_trial and pool_gpus: its validator reads them (errors land at the key)
    parallel: Count | None = Field(None, validate_default=True,
                                   description="bayesian: trials proposed and run at once, each batch waiting for "
                                               "the model fitted to the previous ones (<= pool_gpus // gpus_per_trial)")

    @field_validator("parallel")
    @classmethod
    def _batch(cls, value: int | None, info: ValidationInfo) -> int | None:
        method = info.data.get("method")
        if method is None:  # the method failed its own check: that error is the one to show
            return value
        if method != "bayesian":
            if value is not None:
                raise ValueError(f"`parallel` is for a bayesian search; a {method} search runs "
                                 "pool_gpus // gpus_per_trial trials at once (remove `parallel`)")
            return value
        if value is None:
            raise ValueError("a bayesian search needs `parallel`: the trials proposed at once (1 = fully sequential)")
        per, pool = info.data.get("gpus_per_trial"), info.data.get("pool_gpus")
        if per is not None and pool is not None and value * per > pool:
            raise ValueError(f"parallel {value} x gpus_per_trial {per} = {value * per} GPUs exceeds pool_gpus "
                             f"({pool}): at most {pool // per} trial(s) at once")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if (self.trial_tokens is None) == (self.trial_fraction is None):
            raise ValueError("give exactly one of trial_tokens and trial_fraction")
        if self.method == "grid":
            if not self.space:
                raise ValueError("a grid search needs `space:` (hyperparameter -> list of values)")
            if self.trials is not None:
                raise ValueError("a grid's trials are the product of the value counts; remove `trials`")
        elif self.trials is None:  # random, halving, bayesian
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


Stage = Annotated[Union[Pretrain, Sft, Reward, Ppo, Dpo, Grpo, Rloo], Field(discriminator="kind")]
STAGES = {"pretrain": Pretrain, "sft": Sft, "reward": Reward, "ppo": Ppo, "dpo": Dpo, "grpo": Grpo, "rloo": Rloo}


class Pipeline(Input):
    """A training pipeline: defaults, stages in order, and an optional search."""

    name: Text | None = Field(None, description="shown in reports")
    model: Text | None = Field(None, description="default model of every stage (any TARGET)")
    gpu: Text = Field("h100-sxm", description="default accelerator (paramcalc gpus) or GPU .yaml")
    mfu: Share = Field(0.4, description="default MFU of training passes")
    dtype: Dtype = Field("bf16", description="default weights/activations dtype and peak")
    usd_per_hour: Positive | None = Field(None, description="default USD per GPU-hour [default: the price table]")
    stages: list[Stage] = Field(min_length=1, description="run one after another")
    search: Search | None = Field(None, description="a hyperparameter search, run before the stages")


# ---------------------------------------------------------------- reading


def read_pipeline(path: Path) -> Pipeline:
    """The pipeline file, validated; every problem placed at its key and line."""
    pipe = validate(Pipeline, load_mapping(path), path=path)
    seen: set[str] = set()
    for i, stage in enumerate(pipe.stages):
        name = stage.name or stage.kind
        if name in seen:
            raise UserError(f"a second stage named {name!r}", where=locate(path, ("stages", i)),
                            field=f"stages[{i}]", fix="give each stage its own `name:`")
        seen.add(name)
    return pipe


# Where a library setting lives in a stage: its own key, or the stage's `parallel:` block.
STAGE_KEYS = {"seq_len": ("seq_len",), "dtype": ("dtype",), "precision": ("parallel", "precision"),
              "optimizer": ("parallel", "optimizer"), "tp": ("parallel", "tp"), "pp": ("parallel", "pp"),
              "dp": ("parallel", "dp"), "zero": ("parallel", "zero"), "recompute": ("parallel", "recompute"),
              "attention": ("parallel", "attention"), "lora_rank": ("lora", "rank"),
              "lora_targets": ("lora", "targets"), "offload": ("parallel", "offload"),
              "offload_activations": ("parallel", "offload_activations"),
              "chunked_loss": ("parallel", "chunked_loss"),
              "optimizer_in_backward": ("parallel", "optimizer_in_backward"),
              "fp8_activations": ("parallel", "fp8_activations"), "double_quant": ("lora", "double_quant"),
              "bnb_legacy": ("lora", "bnb_legacy"), "trainer": ("trainer",), "longest_first": ("longest_first",)}
