"""Each model of an RL stage on GPUs of its own (`placement:` in a pipeline file, docs/plan.md).

OpenRLHF's Ray launcher puts each model's ranks on a placement group of its own; two models may
share one (`--colocate_actor_ref`, `--colocate_critic_reward`). analysis/plan.py asks this module
three things:

- `actor_parallel`: the stage with the actor's group as its `parallel` (dp = actor GPUs / (tp x pp));
- `layout`: which models share which group, and each group's GPUs and degrees (validated);
- `iteration`: one iteration on those groups, by phase, as OpenRLHF's PPO trainer schedules it,
  and each group's memory and whether it fits.

plan.py builds each group's memory model and MFU (its own machinery) between `layout` and
`iteration`; this module only needs the two questions of `GroupMemory` and a `fit` to ask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from paramcalc.analysis.offload import OffloadTraffic, host_rate, offloaded_step_seconds, streamed_bytes
from paramcalc.errors import UserError
from paramcalc.inputs.files import dotted, locate
from paramcalc.inputs.gpu_file import Gpu
from paramcalc.inputs.pipeline_file import Grpo, Parallel, Ppo, Rloo
from paramcalc.results.plan import Break, PlacementGroup, Rollout, StageMemory

# A pass's phase, by its breakdown key: scoring forwards make the experience, training passes the update.
_EXPERIENCE = ("/logprobs", "/forward", "/values")
_UPDATE = ("/train", "/ptx")


class GroupMemory(Protocol):
    """What the iteration asks of a group's memory model (plan.py's _Memory)."""

    def offloaded_bytes(self) -> int:
        """Per GPU, the offloaded frozen weights streamed in for one forward."""
        ...

    def pcie(self, micro: int) -> OffloadTraffic:
        """Per GPU, the trained models' offload: PCIe bytes per optimizer step and per micro-batch, and
        the parameters stepped on the CPU."""
        ...


class Phases(Protocol):
    """An RL iteration's generation and weight sync, as plan.py times them (plan._Phases)."""

    generation_seconds: float | None  # on engines of their own; None: on the actor's group (from the passes)
    generation_gpus: int
    overlap: bool
    sync_seconds: float
    samples_per_prompt: int
    sequences: int


M = TypeVar("M", bound=GroupMemory)


@dataclass(frozen=True)
class Member:
    """One group of GPUs as `placement:` lays it out, before its memory is modelled."""

    key: str  # the placement key: actor, critic, reference, reward_model
    roles: list[str]  # the models on these GPUs: policy, critic, reference, reward_model
    gpus: int
    par: Parallel  # the stage's degrees with dp = gpus / (tp x pp)


@dataclass
class Group(Generic[M]):
    """A group with its memory model and the MFU its passes run at."""

    key: str
    roles: list[str]
    gpus: int
    par: Parallel
    memory: M
    mfu: float


@dataclass
class Placed:
    """One iteration under `placement:`: its phases, the stage's memory (the fullest group's), the
    training GPUs (every group's), its seconds, the groups' breaks and a note saying how it ran."""

    rollout: Rollout
    memory: StageMemory
    gpus: int
    seconds: float
    breaks: list[Break]
    note: str


def actor_parallel(st: Ppo | Grpo | Rloo, path: Path, here: tuple) -> Ppo | Grpo | Rloo:
    """The stage with the actor's group as its `parallel`: dp = placement.actor / (tp x pp)."""
    pl, par = st.placement, st.parallel
    assert pl is not None  # plan.py calls this for stages with placement only
    per = par.tp * par.pp
    loc = here + ("placement", "actor")
    if pl.actor % per:
        raise UserError(f"placement.actor {pl.actor} GPUs is not a multiple of tp x pp = {per}",
                        where=locate(path, loc), field=dotted(loc), fix=f"give a multiple of {per}")
    dp = pl.actor // per
    if "dp" in par.model_fields_set and par.dp != dp:
        loc = here + ("parallel", "dp")
        raise UserError(f"parallel.dp {par.dp} disagrees with placement: the actor's {pl.actor} GPUs / "
                        f"(tp x pp) = dp {dp}", where=locate(path, loc), field=dotted(loc),
                        fix="drop parallel.dp: with placement, each group's dp is its GPUs / (tp x pp)")
    return st.model_copy(update={"parallel": par.model_copy(update={"dp": dp})})


def layout(st: Ppo | Grpo | Rloo, present: set[str], ref_shared: bool, path: Path, here: tuple) -> list[Member]:
    """The stage's groups of GPUs, the actor's first, as OpenRLHF's launcher
    (openrlhf/trainer/ray/launcher.py, PPORayActorGroup) places them: each model's ranks on a
    placement group of its own, the reference on the actor's bundles with --colocate_actor_ref
    and the reward model on the critic's with --colocate_critic_reward. A LoRA policy's
    reference is its own base (adapters disabled, `ref_shared`): it stays on the actor's GPUs.
    `present`: the roles the stage runs (policy, reference, reward_model, critic)."""
    pl, par = st.placement, st.parallel
    assert pl is not None  # plan.py calls this for stages with placement only
    per = par.tp * par.pp
    members: list[tuple[str, list[str], int | None]] = []  # (placement key, roles, GPUs)
    actor = ["policy"] + (["reference"] if "reference" in present and (pl.colocate_actor_ref or ref_shared)
                          else [])
    members.append(("actor", actor, pl.actor))
    if "reference" in present and "reference" not in actor:
        members.append(("reference", ["reference"], pl.reference))
    if "critic" in present:
        with_rm = pl.colocate_critic_reward and "reward_model" in present
        members.append(("critic", ["critic"] + (["reward_model"] if with_rm else []),
                        pl.critic if pl.critic is not None else pl.reward_model if with_rm else None))
    if "reward_model" in present and not any("reward_model" in r for _, r, _ in members):
        members.append(("reward_model", ["reward_model"], pl.reward_model))
    placed = {key for key, _, _ in members} | ({"reward_model"} if "reward_model" in present else set())
    for key in ("critic", "reference", "reward_model"):
        # a colocated reference may repeat the actor's count (the file's check allows that one value)
        same = key == "reference" and "reference" in actor and pl.colocate_actor_ref and pl.reference == pl.actor
        if getattr(pl, key) is not None and key not in placed and not same:
            loc = here + ("placement", key)
            why = {"critic": f"a {st.kind} stage has no critic",
                   "reference": "the reference shares the actor's GPUs" if "reference" in present
                   else "no reference model is run (kl_coef 0)",
                   "reward_model": "rewards come from a rule, not a model"}[key]
            raise UserError(f"placement.{key} is given, but {why}", where=locate(path, loc),
                            field=dotted(loc), fix=f"remove placement.{key}")
    out = []
    for key, names, gpus in members:
        loc = here + ("placement", key)
        if gpus is None:
            raise UserError(f"placement gives no GPUs for the {key.replace('_', ' ')}", where=locate(
                path, here + ("placement",)), field=dotted(loc),
                fix=f"add placement.{key}: N" + (", or colocate_actor_ref: true" if key == "reference" else ""))
        if gpus % per:
            raise UserError(f"placement.{key} {gpus} GPUs is not a multiple of tp x pp = {per}",
                            where=locate(path, loc), field=dotted(loc), fix=f"give a multiple of {per}")
        out.append(Member(key, names, gpus, par.model_copy(update={"dp": gpus // per})))
    return out


def iteration(groups: list[Group[M]], passes: list[tuple[str, int, float]], phases: Phases, *, peak: float,
              micro: int, mini: int, steps_per_unit: int, card: Gpu,
              fit: Callable[[Group[M]], tuple[StageMemory, list[Break]]]) -> Placed:
    """An RL iteration under `placement:`, as OpenRLHF's PPO trainer runs it (PPOTrainer.fit,
    RemoteExperienceMaker.make_experience, ActorPPOTrainer.ppo_train in openrlhf/trainer/ray):

    1. generation on the engines' GPUs (`generation.gpus`), or on the actor's group without them;
    2. experience: the actor's log-probs and the reference, reward model and critic forwards, each
       on its own group, at once (`.remote()` calls awaited together); the groups run side by
       side and the models of one group one after another, so the phase is the slowest group's;
    3. update: the critic's training fired first (`critic.fit.remote()`), the actor's beside it,
       then the actor's weights broadcast to the engines (`_broadcast_to_vllm`) while the critic
       may still train: max(actor's training + sync, every other group's training);
    with `async`, generation overlaps the rest (one step off-policy), as plan.py's _phases.
    Each group's memory is its own models' (ZeRO shards over its dp); the stage fits when every
    group does. Offload traffic (optimizer, frozen weights) is timed on the group that moves it,
    not overlapped (errs slow), and so is ZeRO-Offload's optimizer step on the CPU (analysis/offload.py).

    passes: (breakdown key, FLOPs per iteration, MFU) with keys `role/pass`; peak: the dense
    FLOP/s of one GPU; micro, mini: sequences per micro-batch and per optimizer step; card: the GPU
    (its host link, and the GPUs per node whose processes share a host's memory bandwidth); fit: a
    group's memory at the stage's micro-batch, and the breaks it finds."""
    B = phases.sequences
    results: list[PlacementGroup] = []
    update: dict[str, float] = {}
    experience: dict[str, float] = {}
    fitted: list[StageMemory] = []
    breaks: list[Break] = []
    generation = phases.generation_seconds
    for g in groups:
        gpus, dp = g.gpus, g.par.dp
        flop_rate = gpus * peak * g.mfu
        mine = [(k, f) for k, f, _ in passes if k.split("/")[0] in g.roles]
        exp = sum(f / flop_rate for k, f in mine if k.endswith(_EXPERIENCE))
        upd = sum(f / flop_rate for k, f in mine if k.endswith(_UPDATE))
        # offloaded frozen weights stream in for each micro-batch's forward (a shard per GPU of the group)
        exp += streamed_bytes(B, micro, dp, g.memory.offloaded_bytes()) / host_rate(card)
        # optimizer offload of the group's trained models (PCIe, then the step on the CPU) per optimizer step,
        # and parameter / activation offload per micro-batch
        upd += offloaded_step_seconds(g.memory.pcie(micro), -(-mini // (micro * dp)), card) * steps_per_unit
        if generation is None and g.key == "actor":  # colocated generation: the actor's group generates
            generation = sum(f / (gpus * peak * mfu) for k, f, mfu in passes if k.startswith("generation/"))
        experience[g.key], update[g.key] = exp, upd
        m, local = fit(g)
        breaks += [b.model_copy(update={"message": f"the {g.key.replace('_', ' ')}'s group ({gpus} GPUs: "
                                                   f"{', '.join(g.roles)}): {b.message}"}) for b in local]
        fitted.append(m)
        results.append(PlacementGroup(roles=g.roles, gpus=gpus, dp=dp, peak_per_gpu=m.peak_per_gpu, fits=m.fits,
                                      breakdown=m.breakdown, experience_seconds=exp, update_seconds=upd))
    assert generation is not None  # separate engines are timed by plan.py, else the actor's group above
    sync = phases.sync_seconds
    exp_phase = max(experience.values())
    upd_phase = max([update["actor"] + sync, *(v for k, v in update.items() if k != "actor")])
    rest = exp_phase + upd_phase - sync  # what the trainers do besides the sync
    seconds = (max(generation, rest) + sync) if phases.overlap else generation + exp_phase + upd_phase
    rollout = Rollout(placement="separate" if phases.generation_gpus else "colocated",
                      generation_gpus=phases.generation_gpus or groups[0].gpus,
                      samples_per_prompt=phases.samples_per_prompt, sequences=B, generation_seconds=generation,
                      training_seconds=rest, weight_sync_seconds=sync, overlapped=phases.overlap,
                      iteration_seconds=seconds, generation_share=generation / seconds if seconds else 0.0,
                      experience_seconds=exp_phase, update_seconds=upd_phase, groups=results)
    return Placed(rollout, _stage_memory(fitted), sum(g.gpus for g in groups), seconds, breaks,
                  _note(groups, generation, exp_phase, upd_phase, sync))


def _stage_memory(fitted: list[StageMemory]) -> StageMemory:
    """The stage's memory: the fullest group's peak; it fits when every group does."""
    peaks = [m.peak_per_gpu for m in fitted]
    largest = [m.max_micro_batch for m in fitted]
    known = [p for p in peaks if p is not None]
    breakdown: dict[str, int | None] = {}
    for m in fitted:
        breakdown |= m.breakdown
    fits = [m.fits for m in fitted]
    return StageMemory(peak_per_gpu=max(known) if len(known) == len(peaks) else None,
                       gpu_bytes=fitted[0].gpu_bytes, fits=None if None in fits else all(fits),
                       max_micro_batch=None if None in largest else min(x for x in largest if x is not None),
                       breakdown=breakdown)


def _note(groups: list[Group[M]], generation: float, experience: float, update: float, sync: float) -> str:
    return ("placement: " + "; ".join(f"{g.key.replace('_', ' ')} group {g.gpus} GPU(s) "
                                      f"({', '.join(g.roles)}, dp {g.par.dp}, MFU {g.mfu:.3f})" for g in groups)
            + f"; per iteration: generation {generation:,.1f} s, then experience {experience:,.1f} s (the "
              f"slowest group's forwards; groups at once), then update {update:,.1f} s (actor and critic "
              f"at once; the weight sync of {sync:,.2f} s after the actor's, beside the critic's) "
              "(OpenRLHF's Ray PPO schedule)")
