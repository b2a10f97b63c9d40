"""A whole training pipeline, costed (`paramcalc plan PIPELINE.yaml`, docs/plan.md).

A pipeline file lists stages (pretrain, sft, reward, ppo, dpo), run one after
another, and optionally a hyperparameter `search:` (analysis/search.py). Each
stage becomes a training plan:

- batches: gradient accumulation = global_batch / (micro_batch x dp), exactly;
  optimizer steps = tokens // (global_batch x seq_len x sequences per sample);
- FLOPs: model FLOPs (2 per multiply-add; backward = 2 x forward, or for
  LoRA the input gradients of the frozen weights plus the adapters' two
  gradients, analysis/flops.py backward_flops; dense attention for every
  training or scoring pass, the PaLM/Megatron MFU convention; generation
  counts the causal pairs its kernels compute);
- time: FLOPs / (GPUs x dense peak x MFU), as `paramcalc cost` (docs/contract.md),
  with the stage's or the pipeline's `mfu`; where neither sets one, the step
  time of analysis/step.py (GEMM shapes, the attention core, elementwise
  traffic, communication, the optimizer step) at the stage's micro-batch and
  length, and the MFU it implies; ppo's generation from the decode roofline of
  analysis/serve.py (analysis/rollout below) unless `generation_mfu` is given;
- memory: analysis.memory.estimate_memory with the stage's parallel settings for
  every trained model, plus the weights (stage dtype) of every frozen one, against the GPU;
- where it breaks: a batch that does not divide, a micro-batch that does not
  fit (with the largest that does), a warm-up longer than the run.

Stage work, per optimizer step (F = one forward, 3F = forward + backward):
- pretrain, sft: 3F(model) over global_batch sequences;
- reward: 3F(scalar-head model) over chosen + rejected (2 per pair);
- dpo: 3F(policy) + F(reference), both over chosen + rejected (Rafailov et al. 2023);
- ppo, per iteration (Ouyang et al. 2022): generation (prefill + decode) timed
  by the decode roofline, then forwards of policy (old log-probs), reference, reward
  model and critic (values) over prompt + response, then ppo_epochs x 3F of
  policy and critic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from itertools import product
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from paramcalc.analysis.flops import backward_flops, forward_flops
from paramcalc.analysis.memory import CUDA_CONTEXT, estimate_memory, kv_cache_bytes
from paramcalc.analysis.offload import (
    HOST_MEMORY_BYTES_PER_SECOND,
    OffloadTraffic,
    cpu_adam_seconds,
    host_rate,
    offloaded_step_seconds,
    streamed_bytes,
)
from paramcalc.analysis.placement import Group, actor_parallel, iteration, layout
from paramcalc.analysis.search import cost_search
from paramcalc.analysis.settings import DTYPE_BYTES, OPTIMIZER_BYTES
from paramcalc.blocks.base import Pass
from paramcalc.catalog import load_gpu, price
from paramcalc.errors import UserError
from paramcalc.inputs.files import dotted, locate, placed
from paramcalc.inputs.gpu_file import Gpu
from paramcalc.inputs.pipeline_file import (
    STAGE_KEYS,
    Dpo,
    Grpo,
    Lora,
    Parallel,
    Pipeline,
    Ppo,
    Pretrain,
    Reward,
    Rloo,
    Schedule,
    Sft,
    read_pipeline,
)
from paramcalc.network import Network, TransformerNetwork, lower
from paramcalc.network.transformer import score_head
from paramcalc.results.plan import (
    Break,
    LrSplit,
    PlanReport,
    Rollout,
    SearchResult,
    StageMemory,
    StageResult,
    Totals,
    TrialFit,
)
from paramcalc.units import human_bytes

RL_KINDS = ("ppo", "grpo", "rloo")

# ---------------------------------------------------------------- models in roles


@dataclass(frozen=True)
class _Model:
    """One model in one role (policy, reference, reward_model, critic)."""

    target: str
    net: Network
    shared: bool = False  # a LoRA policy's base with its adapters disabled: no weights of its own
    adapters: Lora | None = None  # the stage's `lora:` block, where the model carries its adapters

    @property
    def name(self) -> str:
        return self.net.name

    @cached_property
    def params(self) -> int:
        return self.net.total_params

    @property
    def lora(self) -> bool:
        """LoRA adapters on a frozen base (PEFT): a reference can share the base, with adapters disabled."""
        return getattr(self.net, "adapters", None) is not None

    def train(self, p: Pass) -> int:
        """Forward + backward. Backward = 2 x forward when every weight trains (an input- and a
        weight-gradient matmul per forward matmul); frozen weights (LoRA's base) skip their weight
        gradient (analysis/flops.py backward_flops), so a LoRA step is about 2 x forward + the adapters'."""
        if not self.net.has_architecture or not self.net.freeze:
            return 3 * self.forward(p)
        return self.forward(p) + backward_flops(self.net, p)

    def forward(self, p: Pass) -> int:
        """Matmul FLOPs of one forward; a bare count: 2N per token (Kaplan et al. 2020; no attention, errs low)."""
        return forward_flops(self.net, p) if self.net.has_architecture else 2 * self.params * p.tokens

    def head_per_token(self) -> int:
        """The output head's FLOPs per token (0 for a bare count, whose head is unknown)."""
        return sum(self.net.stages[-1].block.flops(Pass(1, 1)).values()) if self.net.has_architecture else 0

    def scalar(self) -> _Model:
        """The same network with one score per token instead of logits (transformers'
        *ForSequenceClassification, num_labels=1): a reward model or critic. A bare
        count keeps its LM head's 2hV per token (unknown), so it errs high."""
        if not isinstance(self.net, TransformerNetwork):
            return self
        return _Model(self.target, score_head(self.net))


# ---------------------------------------------------------------- planning


def plan_pipeline(path: str | Path) -> PlanReport:
    """Every stage's plan, the search and the totals; UserError (file:line:col) on bad input.

    >>> plan_pipeline("examples/pipeline.yaml").totals.breaks
    0
    """
    path = Path(path)
    pipe = read_pipeline(path)
    planner = _Planner(path, pipe)
    stages = [planner.stage(s, i) for i, s in enumerate(pipe.stages)]
    search = planner.search(stages) if pipe.search else None
    parts = stages + ([search] if search else [])
    usd = [x.usd for x in parts]
    totals = Totals(flops=sum(x.flops for x in parts), gpu_hours=sum(x.gpu_hours for x in parts),
                    wall_clock_hours=sum(x.wall_clock_hours for x in parts),
                    usd=None if None in usd else sum(usd),
                    breaks=sum(len(s.breaks) for s in stages) + (len(search.breaks) if search else 0))
    notes = ["stages run one after another (the search first): wall-clock hours add up",
             "FLOPs: 2 per multiply-add, backward = 2 x forward, dense attention for training and scoring passes "
             "(the MFU convention); generation counts the causal pairs its kernels compute",
             "GPU-hours = FLOPs / (dense peak x MFU) / 3600, as `paramcalc cost`; the MFU absorbs communication"]
    if totals.usd is None:
        notes.append("dollars: a part has no price; set usd_per_hour")
    return PlanReport(model=pipe.name or pipe.model or "pipeline", file=str(path), stages=stages, search=search,
                      totals=totals, notes=notes)


@dataclass
class _Setting:
    """A stage's resolved settings: its own value or the pipeline's."""

    gpu: Gpu
    peak: int
    mfu: float
    dtype: str
    price: float | None
    explicit_mfu: bool = True  # the stage or the pipeline sets `mfu`; else step.py times training passes


@dataclass
class _Work:
    """What one stage does: passes per unit of work (an optimizer step, or a ppo
    iteration), how many units, and the batches that make them."""

    objective: str
    models: dict[str, str]
    passes: list[tuple[str, int, float]]  # (breakdown key, FLOPs per unit, MFU it runs at)
    memory: _Memory
    units: int
    steps_per_unit: int
    global_batch: int
    per: int  # sequences per sample: 2 for pairs
    seq_len: int
    tokens: int  # tokens trained (ppo: rollout tokens)
    notes: list[str]
    iterations: int | None = None
    generated: int | None = None
    tokens_per_step: int | None = None  # real tokens per step, when the data's mean length is given
    mean_seq_len: int | None = None
    rollout: _Phases | None = None  # RL stages: how an iteration's time splits
    once: list[tuple[str, int, float]] = field(default_factory=list)  # passes run once before training
    frozen_pcie: int = 0  # bytes per GPU and unit streamed from offloaded frozen models
    groups: list[Group[_Memory]] | None = None  # RL stages with `placement:`: each group of GPUs and its models


@dataclass
class _Phases:
    """An RL iteration on the GPUs: generation (on the stage's GPUs or its own), the rest, the weight sync."""

    generation_seconds: float | None  # separate GPUs: wall-clock of generation; colocated: None (from the passes)
    generation_gpus: int  # 0: colocated
    overlap: bool
    sync_seconds: float
    samples_per_prompt: int
    sequences: int


class _Planner:
    def __init__(self, path: Path, pipe: Pipeline):
        self.path, self.pipe = path, pipe
        self.reward_target: tuple[str, tuple] | None = None  # the last reward stage's model, for ppo's default

    # ------------------------------------------------ resolving

    def _origin(self, stage, i: int, key: str) -> tuple:
        """Where a setting comes from: the stage's key, else the pipeline's."""
        return ("stages", i, key) if key in stage.model_fields_set else (key,)

    def model(self, target: str, loc: tuple, lora: Lora | None = None, lora_loc: tuple = ()) -> _Model:
        with placed(self.path, loc):
            net = lower(target, base=self.path.parent)
        if lora is not None:
            from paramcalc.network.adapters import with_lora

            keys = {"rank": ("rank",), "target_modules": ("targets",), "modules_to_save": ("modules_to_save",),
                    "dropout": ("dropout",)}
            with placed(self.path, lora_loc, keys):
                net = with_lora(net, lora.rank, alpha=float(lora.alpha), targets=tuple(lora.targets),
                                modules_to_save=tuple(lora.modules_to_save), dropout=float(lora.dropout))
        return _Model(target, net, adapters=lora)

    def settings(self, stage, i: int) -> _Setting:
        gpu = stage.gpu or self.pipe.gpu
        if Path(gpu).suffix.lower() in (".yaml", ".yml") and not Path(gpu).is_absolute():
            gpu = str(self.path.parent / gpu)
        with placed(self.path, self._origin(stage, i, "gpu")):
            card = load_gpu(gpu)
        dtype = stage.dtype or self.pipe.dtype
        with placed(self.path, self._origin(stage, i, "dtype")):
            # QLoRA dequantizes its 4-bit base to bf16 for every matmul: it runs at the bf16 peak
            peak = card.peak("bf16" if dtype == "int4" and stage.lora is not None else dtype)
        rate = stage.usd_per_hour or self.pipe.usd_per_hour or price(card.name)
        explicit = "mfu" in stage.model_fields_set or "mfu" in self.pipe.model_fields_set
        return _Setting(card, peak, float(stage.mfu or self.pipe.mfu), dtype, None if rate is None else float(rate),
                        explicit)

    # ------------------------------------------------ one stage

    def stage(self, st, i: int) -> StageResult:
        here = ("stages", i)
        s = self.settings(st, i)
        if getattr(st, "placement", None) is not None:
            st = actor_parallel(st, self.path, here)
        target = st.model or self.pipe.model
        if target is None:
            raise UserError("no model for this stage", where=locate(self.path, here), field=dotted(here),
                            fix="set `model:` on the stage or at the top of the file")
        model = self.model(target, here + ("model",) if st.model else ("model",), st.lora, here + ("lora",))
        breaks: list[Break] = []
        w = (self._rl if st.kind in RL_KINDS else self._trained)(st, here, s, model, breaks)
        par = st.parallel
        gpus = par.dp * par.tp * par.pp
        flops = {key: w.units * f for key, f, _ in w.passes} | {key: f for key, f, _ in w.once}
        # docs/contract.md: GPU-hours = FLOPs / (dense peak x MFU) / 3600, each pass at its own MFU
        gpu_hours = sum(w.units * f / (s.peak * mfu) for _, f, mfu in w.passes) / 3600
        gpu_hours += sum(f / (s.peak * mfu) for _, f, mfu in w.once) / 3600  # before training, on the same GPUs
        unit_seconds = sum(f / (gpus * s.peak * mfu) for _, f, mfu in w.passes)
        accum = None
        if w.global_batch % (st.micro_batch * par.dp):
            breaks.append(_accumulation_break(here, st.micro_batch, par.dp, w.global_batch))
        else:
            accum = w.global_batch // (st.micro_batch * par.dp)
        if par.optimizer_in_backward and (accum or 1) > 1:
            loc = here + ("parallel", "optimizer_in_backward")
            breaks.append(Break(field=dotted(loc), message=f"the optimizer step in backward frees each gradient at "
                                f"once, so it cannot accumulate {accum} micro-batches per step",
                                fix=f"set micro_batch to global_batch / dp = {w.global_batch // par.dp}, or drop "
                                    "the option"))
        steps = w.units * w.steps_per_unit
        lr = _schedule(st.lr, steps, here, breaks)
        if w.groups:  # placement: each group's memory, offload traffic and phases (analysis/placement.py)
            assert w.rollout is not None  # only RL stages take placement
            micro, mini = st.micro_batch, w.global_batch

            def fit(g: Group[_Memory]) -> tuple[StageMemory, list[Break]]:
                local: list[Break] = []
                return _memory(g.memory, s, micro, max(micro, mini // g.par.dp), here, local), local

            by_group = iteration(w.groups, w.passes, w.rollout, peak=s.peak, micro=micro, mini=mini,
                                steps_per_unit=w.steps_per_unit, card=s.gpu, fit=fit)
            breaks += by_group.breaks
            w.notes.append(by_group.note)
            rollout, mem, gpus, unit_seconds = by_group.rollout, by_group.memory, by_group.gpus, by_group.seconds
            all_gpus = gpus + w.rollout.generation_gpus
            gpu_hours = all_gpus * w.units * unit_seconds / 3600  # every group is held for the whole iteration
        else:
            mem = _memory(w.memory, s, st.micro_batch, max(st.micro_batch, w.global_batch // par.dp), here, breaks)
            if mem.fits and mem.peak_per_gpu is not None and mem.peak_per_gpu > mem.gpu_bytes:
                # the verdict of analysis/memory.py: a paged optimizer's state moves to CPU memory under pressure
                w.notes.append(f"fits by paging: {human_bytes(mem.peak_per_gpu - mem.gpu_bytes)} of the "
                               f"{par.optimizer} state lives in CPU memory, paged in for each optimizer step "
                               "(slower steps, not timed)")
            # offload's PCIe traffic (ZeRO-Offload, parameter and activation offload) and ZeRO-Offload's optimizer
            # step on the CPU, not overlapped with compute (errs slow: DeepSpeed and torchtune overlap part of the
            # traffic on side streams)
            traffic = w.memory.pcie(st.micro_batch)
            per_node, host = s.gpu.gpus_per_node, host_rate(s.gpu)
            link = s.gpu.host_link.name if s.gpu.host_link is not None else "PCIe Gen5 x16"
            pcie_seconds = offloaded_step_seconds(traffic, accum or 1, s.gpu) * w.steps_per_unit
            if w.frozen_pcie:  # offloaded frozen models streamed in for each use, not overlapped (errs slow)
                frozen_seconds = w.frozen_pcie / host
                gpu_hours += gpus * w.units * frozen_seconds / 3600
                unit_seconds += frozen_seconds
                w.notes.append(f"frozen-model offload: {human_bytes(w.frozen_pcie)} over PCIe per GPU and "
                               f"{'iteration' if w.rollout else 'optimizer step'} at {host / 1e9:.0f} GB/s ({link}, "
                               f"effective), {frozen_seconds:.2f} s, not overlapped with compute (errs slow)")
            if pcie_seconds:
                gpu_hours += gpus * w.units * pcie_seconds / 3600
                unit_seconds += pcie_seconds
                cpu = cpu_adam_seconds(traffic.cpu_params, per_node)
                moved = traffic.step_bytes + (accum or 1) * traffic.micro_bytes
                w.notes.append(f"offload: {human_bytes(moved)} over PCIe per GPU and "
                               f"optimizer step at {host / 1e9:.0f} GB/s ({link}, effective)"
                               + (f", then the optimizer step on the CPU (DeepSpeed's CPUAdam, memory-bound: "
                                  f"{OPTIMIZER_BYTES} bytes a parameter at 1/{per_node} of the host's "
                                  f"{HOST_MEMORY_BYTES_PER_SECOND / 1e9:.0f} GB/s) {cpu:.2f} s" if cpu else "")
                               + f"; {pcie_seconds / w.steps_per_unit:.2f} s a step, not overlapped (errs slow)")
            rollout, all_gpus = None, gpus
            if w.rollout is not None:
                rollout, unit_seconds = _phases(w, s, gpus, unit_seconds)
                if w.rollout.generation_gpus:  # both pools are held for the whole iteration
                    all_gpus = gpus + w.rollout.generation_gpus
                    gpu_hours = all_gpus * w.units * unit_seconds / 3600
        notes = w.notes + [f"{gpus:,} x {s.gpu.name} (dp {par.dp}, tp {par.tp}, pp {par.pp}, ZeRO-{par.zero}, "
                           f"recompute {par.recompute}, {par.attention} attention), dense "
                           f"{'bf16' if s.dtype == 'int4' and st.lora else s.dtype} peak, "
                           + (f"MFU {s.mfu:.2f}" if s.explicit_mfu else
                              "training passes timed by the step-time model (analysis/step.py)")]
        if s.price is None:
            notes.append(f"no price known for {s.gpu.name}; set usd_per_hour")
        return StageResult(
            name=st.name or st.kind, kind=st.kind, objective=w.objective, models=w.models, gpu=s.gpu.name, gpus=gpus,
            dp=par.dp, tp=par.tp, pp=par.pp, seq_len=w.seq_len, sequences_per_sample=w.per,
            global_batch=w.global_batch, micro_batch=st.micro_batch, grad_accum=accum,
            tokens_per_step=w.tokens_per_step or w.global_batch * w.per * w.seq_len, steps=steps,
            iterations=w.iterations, tokens=w.tokens, generated_tokens=w.generated, mean_seq_len=w.mean_seq_len,
            rollout=rollout, generation_gpus=(w.rollout.generation_gpus or None) if w.rollout else None,
            time_per_step_seconds=unit_seconds / w.steps_per_unit,
            lr=lr, flops=sum(flops.values()), flops_breakdown=flops, memory=mem, gpu_hours=gpu_hours,
            wall_clock_hours=gpu_hours / all_gpus, usd=None if s.price is None else gpu_hours * s.price,
            usd_per_gpu_hour=s.price, breaks=breaks, notes=notes)

    def _trained(self, st: Pretrain | Sft | Reward | Dpo, here: tuple, s: _Setting, base: _Model,
                 breaks: list[Break]) -> _Work:
        """pretrain, sft, reward, dpo: the unit of work is one optimizer step."""
        per = 2 if st.kind in ("reward", "dpo") else 1
        B = st.global_batch
        once_passes: list[tuple[str, int, float]] = []
        # the data as it is: with a mean length below seq_len, a step trains B x mean real tokens; packed,
        # the compute runs at the mean length (documents packed into rows, attention within each, as flash's
        # varlen kernels run it: errs low by cross-document attention where it is not masked); padded to the
        # longest (seq_len), it runs at seq_len, the padding costing compute but training nothing
        mean = st.mean_seq_len or st.seq_len
        S = mean if st.packing else st.seq_len
        tokens_per_step = B * per * mean
        # exactly one of tokens, dataset_tokens and samples is given (the file's validator, _Data._one_size)
        if st.tokens is not None:
            key, budget = "tokens", st.tokens
            dataset = budget  # a token budget is read as one pass over its data
        else:
            if st.dataset_tokens is not None:
                key, size = "dataset_tokens", st.dataset_tokens
            else:
                assert st.samples is not None
                key, size = "samples", st.samples * per * mean
            # epochs may be fractional (2.5): exact, then floored to whole tokens
            budget = int(size * Fraction(str(st.epochs or 1)))
            dataset = size
        steps = budget // tokens_per_step
        notes = []
        if steps == 0:
            breaks.append(Break(field=dotted(here + (key,)), message=f"{budget:,} tokens do not fill one step of "
                                f"{tokens_per_step:,} tokens", fix="raise the token budget or lower global_batch"))
        elif budget > steps * tokens_per_step:
            notes.append(f"the last {budget - steps * tokens_per_step:,} tokens do not fill a step and are dropped")
        seqs = Pass(B * per, S)  # one step's sequences: every sample, chosen and rejected for pairs
        if st.kind == "reward":
            rm = base.scalar()
            mfu = self._mfu(st, s, rm, S, per, B, notes)
            models, trained, frozen = {"reward_model": rm.name}, [("reward_model", rm)], []
            passes = [("reward_model/train", rm.train(seqs), mfu)]
            objective = "reward model: chosen and rejected through a scalar head (Bradley-Terry loss)"
            notes.append("reward model: the LM's head swapped for one score per token (h x 1)"
                         + ("; a bare count keeps the LM head's FLOPs, so it errs high" if rm.net is None else ""))
            self.reward_target = (base.target, here + ("model",) if st.model else ("model",))
        elif st.kind == "dpo":
            assert isinstance(st, Dpo)
            precomputed = st.precompute_reference or st.reference == "precomputed"
            ref = self.model(st.reference, here + ("reference",)) if st.reference not in (None, "precomputed") \
                else self._reference(base, st, here)
            mfu = self._mfu(st, s, base, S, per, B, notes)
            models = {"policy": base.name, "reference": ref.name}
            trained, frozen = [("policy", base)], _frozen_roles(base, [("reference", ref)], notes)
            passes = [("policy/train", base.train(seqs), mfu)]
            if precomputed:
                # TRL's DPOConfig(precompute_ref_log_probs=True): one reference forward over the dataset's
                # chosen and rejected sequences before training, the log-probs stored with the data; the
                # reference is not resident while the policy trains
                once = ref.forward(seqs) * dataset // tokens_per_step
                per_step_ref = ref.forward(seqs) * steps
                held = sum(_frozen_bytes(m, st.parallel, s.dtype) for _, m in frozen)
                frozen = []
                once_passes = [("reference/precompute", once, mfu)]
                notes.append(f"reference log-probs precomputed once over the dataset ({dataset:,} tokens) before "
                             f"training (TRL's precompute_ref_log_probs): {once:.3g} FLOPs instead of "
                             f"{per_step_ref:.3g} over the training steps, and {human_bytes(held)} per GPU of "
                             "reference weights not resident while the policy trains (the precompute pass holds "
                             "the reference alone)")
            else:
                passes.append(("reference/forward", ref.forward(seqs), mfu))
                notes.append("DPO per pair: policy forward + backward x 2 sequences + reference forward x 2 "
                             "(reference log-probs recomputed every epoch; precomputing them errs this high)")
            objective = "DPO: policy forward + backward and frozen reference forward on chosen and rejected"
        else:
            mfu = self._mfu(st, s, base, S, per, B, notes)
            models, trained, frozen = {"model": base.name}, [("model", base)], []
            passes = [("model/train", base.train(seqs), mfu)]
            objective = _objective(base, st.kind)
        notes.append("FLOPs per step: forward + backward = 3 x forward, dense attention (the MFU convention)"
                     if not base.lora else "FLOPs per step: LoRA: forward + backward without the frozen weights' "
                     "gradients (about 2 x forward + the adapters'), dense attention")
        if st.mean_seq_len is not None:
            notes.append(f"data: sequences of {mean:,} tokens on average, up to {st.seq_len:,}; "
                         + (f"packed, so compute runs at the mean ({mean:,} tokens a sequence)" if st.packing else
                            f"padded to {st.seq_len:,}, so compute runs at the padded length while a step trains "
                            f"{tokens_per_step:,} real tokens ({mean / st.seq_len:.0%} of the computed positions)"))
        offloaded = _offloaded(st, [r for r, _ in frozen], notes)
        memory = _Memory(trained, frozen, S, per, st.parallel, s.dtype, self.path, here, offloaded, st.trainer,
                         st.longest_first)
        # each offloaded frozen model streams its per-GPU shard in for each micro-batch's forward
        micro_batches = -(-B // (st.micro_batch * st.parallel.dp))
        return _Work(objective, models, passes, memory,
                     units=steps, steps_per_unit=1, global_batch=B, per=per, seq_len=st.seq_len,
                     tokens=steps * tokens_per_step, notes=notes, tokens_per_step=tokens_per_step,
                     mean_seq_len=st.mean_seq_len, once=once_passes,
                     frozen_pcie=micro_batches * memory.offloaded_bytes())

    def _rl(self, st: Ppo | Grpo | Rloo, here: tuple, s: _Setting, policy: _Model, breaks: list[Break]) -> _Work:
        """ppo, grpo, rloo: the unit of work is one iteration (rollout, scoring, ppo_epochs of updates).

        ppo (Ouyang et al. 2022): one response per prompt, a reward model, a critic trained beside the policy.
        grpo (Shao et al. 2024, DeepSeekMath, section 4.1) and rloo (Ahmadian et al. 2024, "Back to Basics:
        Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs", section 3): G
        responses per prompt whose rewards baseline each other, so no critic; rewards from a rule or
        verifier (no model) or a reward model's forward; a reference forward for the KL term unless
        kl_coef is 0."""
        if isinstance(policy.net, TransformerNetwork) and policy.net.kind != "decoder":
            loc = here + ("model",) if st.model else ("model",)
            raise UserError(f"{st.kind} generates text: {policy.name} is an {policy.net.kind} model",
                            where=locate(self.path, loc), field=dotted(loc),
                            fix="give a decoder (causal LM) as the policy")
        if st.reference == "precomputed":
            loc = here + ("reference",)
            raise UserError(f"a {st.kind} stage cannot precompute its reference log-probs: its responses are "
                            "generated during training, so the reference must score each rollout",
                            where=locate(self.path, loc), field=dotted(loc),
                            fix="precompute the reference on a dpo stage, or offload it: reference_offload: cpu")
        for key in ("ptx_tokens", "ptx_ratio"):
            if getattr(st, key) is not None and not st.ptx_coef:
                loc = here + (key,)
                raise UserError(f"{key} is given but ptx_coef is 0, so no pretraining loss is mixed in",
                                where=locate(self.path, loc), field=dotted(loc),
                                fix="set ptx_coef (InstructGPT's gamma, e.g. 27.8), or drop " + key)
        if st.ptx_tokens is not None and st.ptx_ratio is not None:
            loc = here + ("ptx_ratio",)
            raise UserError("give ptx_tokens or ptx_ratio, not both", where=locate(self.path, loc),
                            field=dotted(loc), fix="keep one")
        grouped = isinstance(st, (Grpo, Rloo))
        G = st.group_size if isinstance(st, (Grpo, Rloo)) else 1
        uses_ref = not isinstance(st, (Grpo, Rloo)) or st.kl_coef > 0
        uses_rm = not isinstance(st, (Grpo, Rloo)) or st.reward == "model"
        ref = (self.model(st.reference, here + ("reference",)) if st.reference
               else self._reference(policy, st, here)) if uses_ref else None
        rm_target, rm_loc = ((st.reward_model, here + ("reward_model",)) if st.reward_model
                             else self.reward_target or (None, ()))
        reward = (self.model(rm_target, rm_loc) if rm_target else policy).scalar() if uses_rm else None
        critic = None
        if isinstance(st, Ppo):
            if st.lora is not None:  # LoRA trains the critic's adapters too (DeepSpeed-Chat's --critic_lora_dim)
                policy_loc = here + ("model",) if st.model else ("model",)
                target, loc = ((st.critic, here + ("critic",)) if st.critic else (rm_target, rm_loc) if rm_target
                               else (policy.target, policy_loc))
                critic = self.model(target, loc, st.lora, here + ("lora",)).scalar()
            else:
                assert reward is not None  # ppo always scores with a reward model
                critic = (self.model(st.critic, here + ("critic",)) if st.critic else reward).scalar()
        prompts, P, R = st.rollout_batch, st.prompt_tokens, st.response_tokens
        B = prompts * G  # sequences generated, scored and trained per iteration
        S = P + R
        if st.iterations is not None:
            iterations = st.iterations
        else:
            assert st.prompts is not None  # exactly one of iterations and prompts (the file's validator)
            iterations = int(st.prompts * Fraction(str(st.epochs or 1))) // prompts
            if iterations == 0:
                breaks.append(Break(field=dotted(here + ("prompts",)), message=f"{st.prompts:,} prompts do not "
                                    f"fill one rollout of {prompts:,}", fix="lower rollout_batch or add prompts"))
        mini = st.global_batch or B
        if B % mini:
            what = f"rollout_batch {prompts} x group_size {G} = {B}" if grouped else f"rollout_batch {B}"
            breaks.append(Break(field=dotted(here + ("global_batch",)),
                                message=f"{what} is not a multiple of the mini-batch global_batch {mini}",
                                fix=f"use a divisor of {B}, such as {_nearest_divisor(B, mini)}"))
        full = Pass(B, S)  # the rollout's sequences, prompt + response, scored or trained densely
        # generation (causal, as flash/paged kernels run): prefill keeps logits of the last prompt token only;
        # then R - 1 decode steps, token t attending over the P + t cached positions (the last token is not fed back)
        prefill = policy.forward(Pass(B, P, "causal")) - policy.head_per_token() * B * (P - 1)
        decode = policy.forward(Pass(B, R - 1, "causal", context=S - 1)) if R > 1 else 0
        notes: list[str] = []
        frozen_roles = ([("reference", ref)] if ref is not None else []) \
            + ([("reward_model", reward)] if reward is not None else [])
        frozen = _frozen_roles(policy, frozen_roles, notes)
        trained = [("policy", policy)] + ([("critic", critic)] if critic is not None else [])
        offloaded = _offloaded(st, [r for r, _ in frozen], notes)
        roles = {"policy": policy, "reference": ref, "reward_model": reward, "critic": critic}
        groups = self._groups(st, here, s, roles, frozen, offloaded, S, min(mini, B)) if st.placement else None
        # colocated generation runs on the actor's group, beside its models only
        memory = groups[0].memory if groups else _Memory(trained, frozen, S, 1, st.parallel, s.dtype, self.path,
                                                         here, offloaded, st.trainer, st.longest_first)
        mini_seqs = min(mini, B)
        mfu = self._mfu(st, s, policy, S, 1, mini_seqs, notes)
        gpus = st.parallel.dp * st.parallel.tp * st.parallel.pp
        g = st.generation
        separate = g.gpus is not None and st.generation_mfu is None
        timed = None if st.generation_mfu is not None else _rollout(self.path, here, st, s, policy, memory, breaks, B)
        gen_seconds: float | None = None
        if timed is None:
            gen = float(st.generation_mfu if st.generation_mfu is not None else 0.1)
            rates = (gen, gen)
            how = f"at MFU {gen:.2f} (`generation_mfu`)" if st.generation_mfu is not None else \
                f"at MFU {gen:.2f} (no architecture for the decode roofline)"
            if g.gpus is not None:  # a fixed MFU on the engine's own GPUs
                gen_seconds = (prefill + decode) / (g.gpus * s.peak * gen)
                separate = True
        else:
            (prefill_s, decode_s), how = timed
            if separate:
                gen_seconds = prefill_s + decode_s
            # the seconds as the MFU they imply, so that time = FLOPs / (GPUs x peak x MFU) holds for every pass
            on = g.gpus if separate and g.gpus else gpus
            rates = (prefill / (on * s.peak * prefill_s) if prefill and prefill_s else 1.0,
                     decode / (on * s.peak * decode_s) if decode and decode_s else 1.0)
        passes = [("generation/prefill", prefill, rates[0]), ("generation/decode", decode, rates[1])]
        if st.recompute_logprobs:
            passes.append(("policy/logprobs", policy.forward(full), mfu))
        if ref is not None:
            passes.append(("reference/forward", ref.forward(full), mfu))
        if reward is not None:
            passes.append(("reward_model/forward", reward.forward(full), mfu))
        if critic is not None:
            passes.append(("critic/values", critic.forward(full), mfu))
        passes.append(("policy/train", st.ppo_epochs * policy.train(full), mfu))
        if critic is not None:
            passes.append(("critic/train", st.ppo_epochs * critic.train(full), mfu))
        steps_per_unit = st.ppo_epochs * -(-B // mini)
        if st.ptx_coef:
            # PPO-ptx (Ouyang et al. 2022, section 3.5, eq. 2): gamma x the pretraining log-likelihood joins
            # the objective, so each policy update also runs forward + backward over a pretraining batch.
            # OpenRLHF (--ptx_coef, --pretrain_data) and DeepSpeed-Chat (--unsup_coef) take one pretraining
            # sequence per RL sequence, of the rollout's length: the default (ptx_ratio 1)
            if st.ptx_tokens is not None:
                per_step = Fraction(st.ptx_tokens, S)
                said = f"{st.ptx_tokens:,} pretraining tokens per optimizer step"
            else:
                ratio = Fraction(str(st.ptx_ratio or 1))
                per_step = ratio * min(mini, B)
                said = f"{float(ratio):g} pretraining sequence(s) of {S:,} tokens per RL sequence"
            ptx = int(steps_per_unit * per_step * policy.train(Pass(1, S)))
            passes.append(("policy/ptx", ptx, mfu))
            notes.append(f"PPO-ptx (InstructGPT, section 3.5; ptx_coef {st.ptx_coef:g}): {said}, forward + backward "
                         f"of the policy in sequences of {S:,} tokens ({ptx:.3g} FLOPs an iteration); its backward "
                         "runs after the RL loss's (OpenRLHF), so the peak memory is unchanged at the same "
                         "micro-batch")
        models = {"policy": policy.name}
        if ref is not None:
            models["reference"] = ref.name
        if reward is not None:
            models["reward_model"] = reward.name
        if critic is not None:
            models["critic"] = critic.name
        sync = 0.0
        if separate:
            assert g.gpus is not None  # separate placement names the engine's GPUs
            trainers = sum(x.gpus for x in groups) if groups else gpus
            sync, link = _weight_sync(policy, s.gpu, trainers + g.gpus, self.path, here)
            how += (f"; on {g.gpus} GPU(s) of its own, the policy's 16-bit weights broadcast to them every "
                    f"iteration over {link} ({sync:.2f} s)"
                    + ("; asynchronous: the next rollout generates while this one trains" if g.overlap else ""))
        scored = ", ".join(x for x in ("policy (log-probs)" if st.recompute_logprobs else "",
                                       "reference" if ref is not None else "",
                                       "reward model" if reward is not None else "",
                                       "critic" if critic is not None else "") if x)
        head = (f"per iteration: generate {B:,} x {R:,} tokens after {P:,}-token prompts"
                + (f" ({prompts:,} prompts x {G} samples)" if grouped else "") + f" {how}; "
                + (f"forwards of {scored} over {S:,} tokens; " if scored else "")
                + f"{st.ppo_epochs} x (forward + backward) of the policy" + (" and critic" if critic else ""))
        notes = [head, *notes]
        if groups:  # placement: each group holds its own models, sharded over its own GPUs
            held = "; ".join(f"{' + '.join(r.replace('_', ' ') for r in g.roles)} on {g.gpus:,} GPUs" for g in groups)
            notes.append(f"memory: each placement group holds only its own models ({held}), their states sharded "
                         "(ZeRO) over the group's own ranks; trained models with optimizer state, frozen ones "
                         "weights only; the stage's memory is the fullest group's; generation's KV cache takes what "
                         "is left on the GPUs that generate (it sets the decode batch)")
        elif isinstance(st, Ppo):
            notes.append("memory: policy and critic with optimizer state (updated in turn), reference and reward "
                         "model frozen (weights only); generation's KV cache takes what is left (it sets the "
                         "decode batch)")
        if not isinstance(st, Ppo):
            assert isinstance(st, (Grpo, Rloo))
            notes.append(("GRPO (Shao et al. 2024, DeepSeekMath): group-normalised rewards as advantages"
                          if st.kind == "grpo" else "RLOO (Ahmadian et al. 2024): each sample baselined by the mean "
                          "reward of the other k - 1") + "; no critic; "
                         + ("rewards by rule or verifier (no model, no FLOPs counted)" if reward is None else
                            "rewards from a reward model's forward") + "; "
                         + ("no reference (kl_coef 0)" if ref is None else f"a reference forward for the KL term "
                                                                           f"(kl_coef {st.kl_coef:g})")
                         + "; prefill counted per sample (vLLM's prefix caching shares a prompt's G prefills: "
                           "errs high by the prompt's share)")
        objective = ("PPO-RLHF: generate, score with reward model and critic, update policy and critic"
                     if st.kind == "ppo" else f"{st.kind.upper()}: generate {G} samples per prompt, score them, "
                     "update the policy against the group baseline (no critic)")
        return _Work(objective, models, passes, memory, units=iterations, steps_per_unit=steps_per_unit,
                     global_batch=mini, per=1, seq_len=S, tokens=iterations * B * S, notes=notes,
                     iterations=iterations, generated=iterations * B * R,
                     rollout=_Phases(gen_seconds, g.gpus if separate and g.gpus else 0, g.overlap and separate, sync,
                                     G, B),
                     frozen_pcie=streamed_bytes(B, st.micro_batch, st.parallel.dp, memory.offloaded_bytes()),
                     groups=groups)

    # ------------------------------------------------ placement (each model on GPUs of its own)

    def _groups(self, st: Ppo | Grpo | Rloo, here: tuple, s: _Setting, roles: dict[str, _Model | None],
                frozen: list[tuple[str, _Model]], offloaded: frozenset[str], S: int,
                mini: int) -> list[Group[_Memory]]:
        """The groups of analysis/placement.py's layout, each with its models' memory (ZeRO sharded
        over the group's own dp) and the MFU the step-time model gives its own model at that dp."""
        present = {r for r, m in roles.items() if m is not None}
        ref = roles["reference"]
        is_frozen = dict(frozen)
        groups = []
        for g in layout(st, present, ref is not None and ref.shared, self.path, here):
            trained = [(r, m) for r in g.roles if r in ("policy", "critic") and (m := roles[r]) is not None]
            held = [(r, is_frozen[r]) for r in g.roles if r in is_frozen]
            memory = _Memory(trained, held, S, 1, g.par, s.dtype, self.path, here, offloaded & set(g.roles),
                             st.trainer, st.longest_first)
            model = trained[0][1] if trained else held[0][1] if held else roles["policy"]
            assert model is not None  # every group holds a model
            mfu = s.mfu
            if not s.explicit_mfu:
                mfu = _step_mfu(model, g.par, st.micro_batch, mini, S, s) or s.mfu
            groups.append(Group(g.key, g.roles, g.gpus, g.par, memory, mfu))
        return groups

    def _reference(self, policy: _Model, st, here: tuple) -> _Model:
        """The default reference: the policy; a LoRA policy's base with the adapters disabled."""
        if not policy.lora:
            return policy
        return replace(self.model(policy.target, here + ("model",) if st.model else ("model",)), shared=True)

    def _mfu(self, st, s: _Setting, model: _Model, seq: int, per: int, batch: int, notes: list[str]) -> float:
        """The MFU of the stage's training and scoring passes: the stage's or pipeline's `mfu`, else
        the one analysis/step.py's time of an optimizer step implies."""
        if s.explicit_mfu:
            return s.mfu
        implied = _step_mfu(model, st.parallel, st.micro_batch * per, batch * per, seq, s)
        if implied is None:
            notes.append(f"MFU {s.mfu:.2f} (the default): the step-time model needs a transformer, a bf16, fp16 or "
                         "fp8 dtype and a batch that divides into micro-batches")
            return s.mfu
        notes.append(f"training passes at MFU {implied:.3f}: the step time of analysis/step.py at micro-batch "
                     f"{st.micro_batch * per} x {seq:,} tokens (GEMM shapes, attention, elementwise traffic, "
                     "communication, the optimizer step), also used for the scoring forwards")
        return implied

    # ------------------------------------------------ the search

    def search(self, stages: list[StageResult]) -> SearchResult:
        search = self.pipe.search
        assert search is not None  # plan_pipeline runs the search when the file has one
        names = [s.name for s in stages]
        if search.stage is not None and search.stage not in names:
            raise UserError(f"no stage named {search.stage!r}", where=locate(self.path, ("search", "stage")),
                            field="search.stage", fix=f"use one of: {', '.join(names)}")
        index = names.index(search.stage) if search.stage else 0
        stage = stages[index]
        if stage.tokens == 0:
            raise UserError(f"stage {stage.name!r} trains no tokens, so a trial has no cost per token",
                            where=locate(self.path, ("search", "stage")), field="search.stage")
        st = self.pipe.stages[index]
        space = search.space or {}
        swept = [k for k in space if _stage_key(st, k)]
        for j, target in enumerate(space.get("model", [])):
            with placed(self.path, ("search", "space", "model", j)):
                lower(str(target), base=self.path.parent)
        others = 1
        for k, v in space.items():
            if k not in swept:
                others *= len(v)
        fits: list[TrialFit] = []
        configs: list[tuple[int, int, float, int]] = []
        breaks: list[Break] = []
        for values in product(*(space[k] for k in swept)):
            settings = dict(zip(swept, values))
            trial = self._apply(st, settings) if settings else st
            priced = self.stage(trial, index) if settings else stage
            fit = self._trial_fit(trial, index, search.gpus_per_trial, settings)
            per_token = priced.gpu_hours / priced.tokens if priced.tokens else 0.0
            fits.append(replace_fit(fit, others, per_token))
            if fit.fits is False:
                what = ", ".join(f"{k} {v}" for k, v in settings.items()) or f"stage {stage.name}'s settings"
                breaks.append(Break(field="search.space" if settings else "search.gpus_per_trial",
                                    message=f"trials with {what} do not fit {search.gpus_per_trial} GPU(s): "
                                            + (fit.reason or ""), fix="raise gpus_per_trial, or drop these values"
                                                                     if settings else "raise gpus_per_trial"))
            elif priced.tokens:
                configs.append((others, priced.flops, priced.gpu_hours, priced.tokens))
        total = others * len(fits)
        with placed(self.path, ("search",)):
            result = cost_search(search, stage=stage.name, stage_tokens=stage.tokens, stage_flops=stage.flops,
                                 stage_gpu_hours=stage.gpu_hours, usd_per_gpu_hour=stage.usd_per_gpu_hour,
                                 configs=configs, total_weight=total)
        unfit = sum(f.trials for f in fits if f.fits is False)
        notes = result.notes + [f"each trial's memory: stage {stage.name!r}'s memory model at dp = gpus_per_trial / "
                                "(tp x pp)" + (f" and each setting of {', '.join(swept)}" if swept else "")
                                + "; trials that do not fit are reported, not priced"]
        if swept:
            notes.append("swept stage keys: each setting is planned as the stage with those values (its FLOPs and "
                         "GPU-hours per token); random and halving draw among the settings that fit, priced at "
                         "their mean")
        return result.model_copy(update={"configurations": fits, "unfit_trials": unfit, "breaks": breaks,
                                         "notes": notes})

    def _apply(self, st, settings: dict[str, Any]):
        """The stage with swept keys set (`model`, `micro_batch`, `lora.rank`, `parallel.zero`, ...)."""
        data = st.model_dump(exclude_unset=True, by_alias=True)
        for key, value in settings.items():
            *outer, last = key.split(".")
            node = data
            for part in outer:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[last] = value
        try:
            return type(st).model_validate(data)
        except ValidationError as e:
            key = next(iter(settings))
            for k in settings:
                if any(k.split(".")[0] == str(err["loc"][0]) for err in e.errors() if err["loc"]):
                    key = k
            loc = ("search", "space", key)
            raise UserError(f"{key}: {e.errors()[0]['msg']}", where=locate(self.path, loc),
                            field=dotted(loc), fix="give values the stage's key accepts") from None

    def _trial_fit(self, st, index: int, gpus: int, settings: dict[str, Any]) -> TrialFit:
        """Whether one trial fits its gpus_per_trial: the stage's memory at dp = gpus / (tp x pp)."""
        par = st.parallel
        card = self.settings(st, index).gpu
        if gpus % (par.tp * par.pp):
            return TrialFit(settings=settings, trials=1, gpus=gpus, peak_per_gpu=None, gpu_bytes=card.memory_bytes,
                            fits=False, reason=f"gpus_per_trial {gpus} is not a multiple of tp x pp = "
                                               f"{par.tp * par.pp}", gpu_hours_per_token=0.0)
        trial = st.model_copy(update={"parallel": par.model_copy(update={"dp": gpus // (par.tp * par.pp)})})
        mem = self.stage(trial, index).memory
        reason = None
        if mem.fits is False:
            assert mem.peak_per_gpu is not None
            reason = (f"{human_bytes(mem.peak_per_gpu)} per GPU at dp {gpus // (par.tp * par.pp)}, more than the "
                      f"{card.name}'s {human_bytes(mem.gpu_bytes)}")
        return TrialFit(settings=settings, trials=1, gpus=gpus, peak_per_gpu=mem.peak_per_gpu,
                        gpu_bytes=mem.gpu_bytes, fits=mem.fits, reason=reason, gpu_hours_per_token=0.0)


def replace_fit(fit: TrialFit, trials: int, per_token: float) -> TrialFit:
    return fit.model_copy(update={"trials": trials, "gpu_hours_per_token": per_token})


def _stage_key(st, key: str) -> bool:
    """A search dimension that is one of the stage's own keys (dotted for nested ones: `lora.rank`), so
    it changes what a trial costs and holds; anything else (learning_rate) changes neither."""
    head, *rest = key.split(".")
    if head not in type(st).model_fields or head in ("name", "kind"):
        return False
    return bool(rest) == (head in _BLOCKS)  # a block's bare name (`lr: [1e-4, 3e-4]`) is a hyperparameter


_BLOCKS = ("parallel", "lr", "lora", "generation")  # a stage's nested blocks: swept by their dotted keys


def _frozen_roles(policy: _Model, roles: list[tuple[str, _Model]], notes: list[str]) -> list[tuple[str, _Model]]:
    """Frozen models that hold their own weights. A reference that is the LoRA policy itself
    shares its base: PEFT computes its log-probs with the adapters disabled
    (`disable_adapter()`, as TRL's DPO and PPO trainers do with a PEFT model), so no second copy."""
    kept = [(role, m) for role, m in roles if not m.shared]
    if len(kept) < len(roles):
        notes.append("reference: the LoRA policy's base with its adapters disabled (PEFT, as TRL runs it): "
                     "no second copy in memory; its forward FLOPs still count")
    return kept


def _step_mfu(model: _Model, par: Parallel, micro: int, batch: int, seq: int, s: _Setting) -> float | None:
    """The MFU analysis/step.py's time of one optimizer step implies (model FLOPs / (GPUs x the
    dtype's dense peak x seconds)), at the stage's real micro-batch and length; None where it
    does not apply. LoRA: frozen weights compute no weight gradient, so the GEMMs are 2 x forward
    instead of 3 (flops.backward_flops), and only the adapters' gradients are reduced and stepped
    (errs fast by the adapters' own small GEMMs and, under ZeRO-3, the frozen weights' gathers)."""
    from paramcalc.analysis.step import Plan, Work, step_time

    net = model.net
    if not isinstance(net, TransformerNetwork) or s.dtype not in ("bf16", "fp16", "fp8", "int4") \
            or batch % (micro * par.dp) or micro > batch:
        return None
    work = Work.of(net, seq)  # LoRA's frozen weights: 2 x forward of GEMMs (Work.of)
    # pipeline stages train transformers models (TRL, DeepSpeed-Chat, OpenRLHF, Alpaca's and LitGPT-style
    # loops): eager attention runs its op-by-op kernels (analysis/step.py eager_score_bytes)
    plan = Plan(tp=par.tp, pp=par.pp, dp=par.dp, micro_batch=micro, global_batch=batch, zero=par.zero,
                recompute=par.recompute, sp=par.sequence_parallel, attention=par.attention,
                dtype="fp8" if s.dtype == "fp8" else "bf16", kernels="transformers")
    seconds = step_time(net, work, plan, s.gpu).seconds
    if s.dtype == "int4" and model.lora:
        # QLoRA: bitsandbytes' matmul_4bit dequantizes each NF4 weight to bf16 before the GEMM, in forward
        # and again for the input gradient: ~0.5 read + 2 written + 2 read back = 4.5 bytes a weight,
        # twice per micro-batch, at HBM bandwidth x the memory efficiency (errs slow: caches help)
        from paramcalc.analysis.memory import nf4_base

        weights = nf4_base(net)[0] / (par.tp * par.pp)
        seconds += 2 * 4.5 * weights * plan.micro_batches / (s.gpu.memory_bandwidth * s.gpu.efficiency.memory)
    return model.train(Pass(batch, seq)) / (plan.gpus * s.peak * seconds)


# Transformers' generate runs eager PyTorch: each decode step launches every layer's kernels from
# Python, about 1 ms a layer on an A100 whatever the batch (PyTorch's "Accelerating Generative AI
# with PyTorch II: GPT, Fast", 2023: Llama-7B eager decodes 25.5 tokens/s, 39 ms a token for 32
# layers, where reading its weights takes ~8 ms). A step takes the longer of that and the roofline
# (the CPU launches overlap the GPU's work). Errs slow on faster CPUs and later transformers
# releases (static caches and torch.compile close the gap).
HF_LAYER_SECONDS = 1e-3


def _rollout(path: Path, here: tuple, st: Ppo | Grpo | Rloo, s: _Setting, policy: _Model, memory: _Memory,
             breaks: list[Break], B: int) -> tuple[tuple[float, float], str] | None:
    """(prefill, decode) seconds of one iteration's generation on the stage's GPUs, from the decode
    roofline of analysis/serve.py: replicas of `generation.tp` GPUs each generate their share of
    the rollout in rounds of the batch whose KV cache fits beside what stays resident (every
    model's states and frozen weights; the engine's own weight copy with vLLM, or the gathered
    weights under ZeRO-3, DeepSpeed-Chat's hybrid engine). Each round: TTFT, then R - 1 decode
    steps at the mean context (serve.py's TPOT). With `generation.gpus`, the replicas run on GPUs of
    their own (OpenRLHF's and verl's vLLM engines), where only the engine's weights sit beside the KV
    cache. B: the sequences generated (prompts x samples per prompt). None without attention layers."""
    from paramcalc.analysis.memory import inference_kv_dtype
    from paramcalc.analysis.serve import (
        decode_time,
        kv_shards,
        prefill_time,
        profile_working_set,
        serving_rates,
        serving_weight_bytes,
    )

    net, g, par = policy.net, st.generation, st.parallel
    if not net.layers:
        return None
    separate = g.gpus is not None
    gpus = g.gpus if g.gpus is not None else par.dp * par.tp * par.pp
    tp = g.tp or par.tp
    loc = here + ("generation", "tp")
    if gpus % tp:
        where = "generation's" if separate else "the stage's"
        raise UserError(f"generation tp {tp} does not divide {where} {gpus} GPUs", where=locate(path, loc),
                        field=dotted(loc), fix="give a divisor of " + ("generation.gpus" if separate
                                                                      else "dp x tp x pp"))
    with placed(path, loc):
        net.check_tensor_parallel(tp)
    replicas = gpus // tp
    P, R = st.prompt_tokens, st.response_tokens
    kv_dtype = inference_kv_dtype(s.dtype)
    rates = serving_rates(s.gpu, s.dtype, tp, 1, None, None)
    replica = -(-serving_weight_bytes(net, s.dtype) // tp)
    kv_split = kv_shards(net, tp)
    per_sequence = -(-kv_cache_bytes(net, P + R, 1, kv_dtype) // kv_split)
    if separate:  # the engine's GPUs hold its weights only
        resident = CUDA_CONTEXT
    else:
        _, parts = memory.peak(st.micro_batch)
        resident = sum(v or 0 for k, v in parts.items() if k.endswith(("/model_states", "/weights"))) + CUDA_CONTEXT
    copy = separate or g.engine == "vllm" or (par.zero >= 3 and par.dp > 1)
    if copy:
        resident += replica
    share = float(g.gpu_memory_utilization) if g.engine == "vllm" else 1.0
    # vLLM's profiling forward of 2,048 tokens and 256 sequences' logits (serve.py's non-large default)
    working = profile_working_set(net, 2048, 256, tp)
    free = int(share * s.gpu.memory_bytes) - resident - working
    largest = max(free, 0) // per_sequence
    per_replica = -(-B // replicas)
    if largest < 1:
        gloc = here + ("generation",)
        breaks.append(Break(field=dotted(gloc), message=f"generation has no room for one sequence's KV cache "
                            f"({human_bytes(per_sequence)}) beside {human_bytes(resident)} of resident weights and "
                            "states", fix="raise generation.tp, parallel.zero or tp, or use LoRA"))
        largest = 1
    engines = replicas
    if g.per_request is not None:
        # OpenRLHF before v0.5 (RemoteExperienceMaker._generate_vllm, replaced by "Send all prompts to vllm"
        # #507, 2024-11): each trainer rank asks engine rank % engines for its micro_rollout_batch_size
        # prompts and waits, request after request; an engine batches the requests of the ranks it serves
        ranks = par.dp * par.tp * par.pp
        engines = min(replicas, ranks)
        concurrent = g.per_request * -(-ranks // engines)
        per_replica = -(-B // engines)
    at_once = largest if g.per_request is None else min(largest, concurrent)
    rounds = -(-per_replica // at_once)
    b = -(-per_replica // rounds)
    ttft = prefill_time(net, rates, b, P, replica, kv_dtype, kv_split)[0]
    tpot = decode_time(net, rates, b, P, R, replica, kv_dtype, kv_split)[0] if R > 1 else 0.0
    layers = sum(x.count for x in net.layers)
    if g.engine == "hf":
        ttft += layers * HF_LAYER_SECONDS
        tpot = max(tpot, layers * HF_LAYER_SECONDS) if R > 1 else 0.0
    engine = "vLLM-style engine" if g.engine == "vllm" else "HF generate, eager: at least "
    how = (("on separate GPUs " if separate else "") + f"by the decode roofline ({engine}"
           + (f"{HF_LAYER_SECONDS * 1e3:.0f} ms a layer a step" if g.engine == "hf" else "")
           + f"): {replicas} replica(s) of {tp} GPU(s)"
           + (f" ({engines} used: one per trainer rank at most)" if engines < replicas else "")
           + f", {per_replica:,} prompts each in {rounds} round(s) of "
           f"{b:,} (KV room for {largest:,}{' beside its own weight copy' if copy else ''}"
           + (f"; {g.per_request} per request from each trainer rank" if g.per_request is not None else "")
           + f"); TTFT "
           f"{ttft * 1e3:,.0f} ms, TPOT {tpot * 1e3:,.1f} ms")
    return (rounds * ttft, rounds * (R - 1) * tpot), how


def _weight_sync(policy: _Model, gpu: Gpu, gpus: int, path: Path, here: tuple) -> tuple[float, str]:
    """Seconds to send the policy's 16-bit weights to a generation engine on GPUs of its own, every
    iteration: OpenRLHF (`_broadcast_to_vllm`) and verl broadcast each tensor from the trainer's rank 0
    over NCCL; a pipelined broadcast moves the bytes once at the link's bus bandwidth, whatever the
    receivers (Chan et al. 2007's pipelined broadcast bound). Inside a node (training and generation
    GPUs together within gpus_per_node) over the scale-up link, else the network, each at the card's
    `efficiency.link` of its per-direction bandwidth. A LoRA policy is sent merged, as its full 16-bit
    weights (TRL and OpenRLHF merge before the sync): errs slow for engines that load adapters."""
    nbytes = 2 * policy.params
    link = gpu.interconnect if gpus <= gpu.gpus_per_node and gpu.interconnect else gpu.network or gpu.interconnect
    if link is None:
        loc = here + ("generation", "gpus")
        raise UserError(f"{gpu.name} has no interconnect or network link in its catalog entry to sync weights over",
                        where=locate(path, loc), field=dotted(loc),
                        fix="add `interconnect:` or `network:` to the GPU file, or generate colocated")
    return nbytes / (float(link.bandwidth) * gpu.efficiency.link), link.name


def _phases(w: _Work, s: _Setting, gpus: int, unit_seconds: float) -> tuple[Rollout, float]:
    """An RL iteration's time by phase, and the iteration's seconds. Colocated (today's default, as
    DeepSpeed-Chat's hybrid engine and TRL run it): generation, then scoring and training, one after
    another on the same GPUs. On GPUs of its own (OpenRLHF, verl): synchronous, generation + training +
    weight sync; asynchronous (one step off-policy: OpenRLHF's --async_train, verl's one-step-off
    recipe), the slower of generation and training, plus the weight sync, which both wait for."""
    phases = w.rollout
    assert phases is not None  # only RL stages have phases
    gen_keys = ("generation/prefill", "generation/decode")
    colocated_gen = sum(f / (gpus * s.peak * mfu) for k, f, mfu in w.passes if k in gen_keys)
    training = unit_seconds - colocated_gen
    if phases.generation_seconds is None:
        generation, iteration = colocated_gen, unit_seconds
    else:
        generation = phases.generation_seconds
        iteration = (max(generation, training) if phases.overlap else generation + training) + phases.sync_seconds
    rollout = Rollout(placement="separate" if phases.generation_gpus else "colocated",
                      generation_gpus=phases.generation_gpus or gpus, samples_per_prompt=phases.samples_per_prompt,
                      sequences=phases.sequences, generation_seconds=generation, training_seconds=training,
                      weight_sync_seconds=phases.sync_seconds, overlapped=phases.overlap,
                      iteration_seconds=iteration, generation_share=generation / iteration if iteration else 0.0)
    return rollout, iteration


def _objective(model: _Model, kind: str) -> str:
    if kind == "sft":
        return "supervised fine-tuning: next-token loss on packed prompt + response (FLOPs over every token)"
    architecture = getattr(model.net, "kind", None)
    return {"decoder": "causal LM", "encoder": "masked LM (the MLM head runs on every position)",
            "encoder-decoder": "span corruption: encoder and decoder both at seq_len"}.get(
        architecture or "", "the model's own loss over every sample (FLOPs of forward + backward)")


# ---------------------------------------------------------------- memory


@dataclass
class _Memory:
    """Peak bytes per GPU of a stage at a micro-batch: trained models update in
    turn, so one holds activations and overheads at a time beside every trained
    model's states; frozen models hold weights only (stage dtype), sharded as the trained ones'."""

    trained: list[tuple[str, _Model]]
    frozen: list[tuple[str, _Model]]
    seq_len: int
    per: int  # sequences per sample
    par: Parallel
    dtype: str
    path: Path
    here: tuple
    offloaded: frozenset[str] = frozenset()  # frozen roles kept in CPU memory, streamed in per use
    trainer: str = "hf"  # whose training loop (analysis/memory.py _overheads)
    longest_first: bool = False  # the longest batch runs first: no leftovers of an earlier step meet it

    def offloaded_bytes(self) -> int:
        """Per GPU, the bytes of every offloaded frozen model streamed in for one forward: its shard."""
        return sum(_frozen_bytes(m, self.par, self.dtype) for role, m in self.frozen if role in self.offloaded)

    def _memory(self, model: _Model, micro: int):
        """One trained model's memory at `micro` samples per micro-batch, with the stage's settings."""
        p = self.par
        # QLoRA's layout: the stage's lora block, for a model that carries the adapters (an error off int4)
        qlora = model.adapters
        with placed(self.path, self.here, STAGE_KEYS):
            return estimate_memory(model.net, mode="train", seq_len=self.seq_len, batch=micro * self.per,
                                   trainer=self.trainer, longest_first=self.longest_first,
                                   double_quant=qlora.double_quant if qlora else True,
                                   bnb_legacy=qlora.bnb_legacy if qlora else False,
                                   dtype=self.dtype, precision=p.precision, optimizer=p.optimizer, zero=p.zero,
                                   dp=p.dp, tp=p.tp, pp=p.pp, sequence_parallel=p.sequence_parallel,
                                   recompute=p.recompute, attention=p.attention, offload=p.offload,
                                   offload_activations=p.offload_activations, chunked_loss=p.chunked_loss,
                                   optimizer_in_backward=p.optimizer_in_backward,
                                   fp8_activations=p.fp8_activations).memory

    def peak(self, micro: int) -> tuple[int | None, dict[str, int | None]]:
        p, reports = self.par, []
        out: dict[str, int | None] = {}
        for role, model in self.trained:
            m = self._memory(model, micro)
            reports.append(m)
            out |= {f"{role}/model_states": m.model_states_per_gpu, f"{role}/activations": m.activations,
                    f"{role}/overhead": m.overhead}
            if m.cpu_bytes:
                out[f"{role}/cpu_offloaded"] = m.cpu_bytes
        frozen: dict[str, int] = {}
        for role, model in self.frozen:
            if role in self.offloaded:
                # DeepSpeed ZeRO-3 offload_param (DeepSpeed-Chat's --offload_reference_model, OpenRLHF's
                # --ref_reward_offload): the shard lives in CPU memory and one layer at a time is gathered
                frozen[f"{role}/weights"] = _layer_bytes(model, p, self.dtype)
                out[f"{role}/cpu_offloaded"] = _frozen_bytes(model, p, self.dtype)
            else:
                frozen[f"{role}/weights"] = _frozen_bytes(model, p, self.dtype)
        out |= frozen
        totals = [(m.total_per_gpu, m.model_states_per_gpu) for m in reports if m.total_per_gpu is not None]
        if len(totals) < len(reports):
            return None, out
        # a group of frozen models only (placement): their weights and the CUDA context (errs low by one
        # forward's working set and logits)
        busiest = max((total - states for total, states in totals), default=CUDA_CONTEXT)
        return sum(m.model_states_per_gpu for m in reports) + busiest + sum(frozen.values()), out

    def pageable(self, micro: int) -> int:
        """Per GPU, the optimizer state a paged optimizer may evict to CPU memory (analysis/memory.py's fit
        verdict: bitsandbytes' paged optimizers on CUDA unified memory); 0 for other optimizers."""
        if not self.par.optimizer.startswith("paged"):
            return 0
        return sum(self._memory(model, micro).optimizer_paged for _, model in self.trained)

    def pcie(self, micro: int) -> OffloadTraffic:
        """Every trained model's offload per GPU: PCIe bytes per optimizer step and per micro-batch,
        and the parameters stepped on the CPU."""
        p = self.par
        if p.offload == "none" and not p.offload_activations:
            return OffloadTraffic(0, 0)
        step = per_micro = params = 0
        for _, model in self.trained:
            m = self._memory(model, micro)
            step += m.pcie_bytes_per_step
            per_micro += m.pcie_bytes_per_micro_batch
            params += m.cpu_optimizer_params
        return OffloadTraffic(step, per_micro, params)


def _frozen_bytes(model: _Model, par: Parallel, dtype: str) -> int:
    """A frozen model's weights per GPU in the stage dtype, sharded like the trained weights
    (tp x pp, and dp too at ZeRO-3)."""
    shards = par.tp * par.pp * (par.dp if par.zero >= 3 else 1)
    return -(-int(model.params * DTYPE_BYTES[dtype]) // shards)


def _layer_bytes(model: _Model, par: Parallel, dtype: str) -> int:
    """An offloaded frozen model's GPU bytes: the largest block's weights (a transformer layer, or the
    embedding or head where larger), gathered whole within its tensor-parallel group (/ tp). Errs low:
    DeepSpeed prefetches the next module (stage3_prefetch_bucket_size) and may keep up to
    stage3_max_live_parameters resident. A bare count has no layers: its whole shard."""
    if not model.net.has_architecture or not model.net.stages:
        return _frozen_bytes(model, par, dtype)
    largest = max(sum(st.block.params().values()) for st in model.net.stages)
    return -(-int(largest * DTYPE_BYTES[dtype]) // par.tp)


def _offloaded(st, roles: list[str], notes: list[str]) -> frozenset[str]:
    """The frozen roles a stage keeps in CPU memory: `reference_offload`, `reward_offload`, `offload_frozen`."""
    every = getattr(st, "offload_frozen", False)
    wanted = {"reference": getattr(st, "reference_offload", "none") == "cpu" or every,
              "reward_model": getattr(st, "reward_offload", "none") == "cpu" or every}
    out = frozenset(r for r in roles if wanted.get(r))
    if out:
        notes.append(f"offloaded to CPU memory: {', '.join(sorted(out))}; each forward streams the per-GPU shard "
                     f"over PCIe and gathers one layer at a time (DeepSpeed ZeRO-3 offload_param, as "
                     "DeepSpeed-Chat's --offload_reference_model and OpenRLHF's --ref_reward_offload run it)")
    return out


def _memory(memory: _Memory, s: _Setting, micro: int, cap: int, here: tuple, breaks: list[Break]) -> StageMemory:
    peak, breakdown = memory.peak(micro)
    limit = s.gpu.memory_bytes
    if peak is None:
        return StageMemory(peak_per_gpu=None, gpu_bytes=limit, fits=None, max_micro_batch=None, breakdown=breakdown)
    lo, hi = 0, cap  # memory grows with the micro-batch: bisect for the largest that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        at_mid = peak if mid == micro else memory.peak(mid)[0]
        assert at_mid is not None  # None only without an architecture, at every micro-batch
        if at_mid - memory.pageable(mid) <= limit:
            lo = mid
        else:
            hi = mid - 1
    fits = peak - memory.pageable(micro) <= limit
    if not fits:
        unit = "pairs" if memory.per == 2 else "sequences"
        fix = (f"use micro_batch {lo} (the largest that fits)" if lo else
               "even micro_batch 1 does not fit: raise parallel.zero, tp or pp, or set parallel.recompute: full")
        breaks.append(Break(field=dotted(here + ("micro_batch",)),
                            message=f"micro_batch {micro} ({unit} of {memory.seq_len:,} tokens) needs "
                                    f"{human_bytes(peak)} per GPU, more than the {s.gpu.name}'s {human_bytes(limit)}",
                            fix=fix))
    return StageMemory(peak_per_gpu=peak, gpu_bytes=limit, fits=fits, max_micro_batch=lo, breakdown=breakdown)


# ---------------------------------------------------------------- batches and schedule


def _accumulation_break(here: tuple, micro: int, dp: int, batch: int) -> Break:
    per = micro * dp
    lo, hi = batch // per * per, (batch // per + 1) * per
    nearest = lo if lo and batch - lo <= hi - batch else hi
    return Break(field=dotted(here + ("global_batch",)),
                 message=f"global_batch {batch} is not a multiple of micro_batch x dp = {micro} x {dp} = {per} "
                         f"(gradient accumulation would be {batch / per:.4g} steps)",
                 fix=f"nearest valid global batch: {nearest}" + (f" ({lo} or {hi})" if lo else ""))


def _nearest_divisor(n: int, near: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - near), -d))


def _schedule(lr: Schedule, steps: int, here: tuple, breaks: list[Break]) -> LrSplit:
    warmup = lr.warmup_steps if lr.warmup_steps is not None else int(Fraction(str(lr.warmup_fraction or 0)) * steps)
    if warmup > steps:
        breaks.append(Break(field=dotted(here + ("lr", "warmup_steps")),
                            message=f"warm-up of {warmup:,} steps is longer than the stage's {steps:,} steps",
                            fix="lower warmup_steps or use warmup_fraction"))
    return LrSplit(decay=lr.decay, warmup_steps=min(warmup, steps), decay_steps=max(steps - warmup, 0))


