"""Checkpoint sizes on disk: weights only, a resumable training checkpoint, the
shard each data-parallel rank writes under ZeRO/FSDP, and the disk that
keeping K checkpoints takes (issue #9).

A resumable checkpoint holds what training cannot recompute: the weights, the
fp32 master copy and the optimizer state. Gradients are not saved; they are
rebuilt by the next backward. With the ZeRO paper's mixed-precision Adam
(Rajbhandari et al. 2020, arXiv:1910.02054, section 3.1: 2 + 2 + 12 bytes of
model states per parameter) that is 2 (16-bit weights) + 4 (fp32 master) +
4 + 4 (fp32 momentum and variance) = 14 bytes per parameter, the 16 bytes of
model states less the 2 of gradients. The per-parameter bytes come from
paramcalc.analysis.settings' PRECISION and OPTIMIZER_STATE tables, one place for
both memory and disk.

Sharding follows DeepSpeed's checkpoint layout: with ZeRO stage 1 or 2 every
rank writes its 1/N of the fp32 master and optimizer state
(`zero_pp_rank_i_..._optim_states.pt`) and rank 0 alone writes the 16-bit
weights (`mp_rank_00_model_states.pt`); with stage 3 (FSDP's full sharding)
every rank writes 1/N of the weights too. Without ZeRO the replicas are
identical and rank 0 writes everything. Sizes are tensor bytes: the pickle or
safetensors headers (kilobytes to a few megabytes) are left out, so they err
low by well under 0.1% for models of a billion parameters and more.

LoRA (`lora_rank`): PEFT's `save_pretrained` writes the adapters only
(adapter_model.safetensors: lora_A and lora_B of every adapted linear, and any
modules_to_save), and a resumable checkpoint adds the optimizer state and
master copy of those trainable parameters only; the frozen base is not saved
(it is the published model, loaded again on resume). So both are megabytes.
"""

from __future__ import annotations

from paramcalc.analysis.memory import _adafactor_bytes, check_setup, model_states
from paramcalc.analysis.settings import DTYPE_BYTES, OPTIMIZER_STATE, PRECISION, with_lora_flags
from paramcalc.errors import UserError
from paramcalc.network import Model, lower
from paramcalc.results.checkpoint import CheckpointReport, CheckpointSizes
from paramcalc.results.memory import Setup
from paramcalc.units import parse_number, parse_positive_int


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def checkpoint_sizes(model: Model, *, dtype: str = "bf16", precision: str | None = None, optimizer: str = "adamw",
                     zero=0, dp=1, keep=1, train_dtype: str | None = None, lora_rank=None,
                     lora_targets: str | None = None) -> CheckpointReport:
    """Disk bytes of TARGET's checkpoints: weights only in `dtype`; resumable as
    trained in `train_dtype` (default `dtype`) with `precision` (default: fp32
    for fp32 weights, else ZeRO's mixed recipe, as `memory` does).

    >>> c = checkpoint_sizes("llama-3.1-8b").checkpoint
    >>> c.weights, c.resumable  # 2 and 14 bytes per parameter
    (16060522496, 112423657472)
    """
    net = with_lora_flags(lower(model), lora_rank, lora_targets)
    stage = parse_number(zero, field="zero")
    if stage not in (0, 1, 2, 3):
        raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}", field="zero")
    train = train_dtype or dtype
    if precision is None:
        precision = "fp32" if train in ("fp32", "tf32") else "mixed"
    if train_dtype is None and DTYPE_BYTES.get(dtype, 1) < 1:
        raise UserError(f"{dtype} is an export format that training does not keep", field="train_dtype",
                        fix="give the dtype the run trains in (bf16) for the resumable checkpoint")
    setup = check_setup(Setup(mode="train", dtype=train, precision=precision, optimizer=optimizer, zero=int(stage),
                              dp=parse_positive_int(dp, field="dp")))
    check_setup(Setup(mode="infer", dtype=dtype))
    k = parse_positive_int(keep, field="keep")
    total = net.total_params
    # LoRA: only the trainable parameters (adapters, modules_to_save) are saved (module docstring)
    params = sum(net.trainable_params().values()) if getattr(net, "adapters", None) is not None else total
    if not net.has_architecture and OPTIMIZER_STATE[setup.optimizer] is None:
        raise UserError("adafactor's factored state depends on the matrix shapes, which a bare count lacks",
                        field="optimizer", fix="give a preset, config.json or spec, or another optimizer")
    adafactor = _adafactor_bytes(net, params)

    # (1) inference export in --dtype: the same bytes as inference weights in memory (int4 adds group scales)
    weights, _, _ = model_states(params, Setup(mode="infer", dtype=dtype))
    # (2) resumable: weights as trained (PRECISION[0], None = --dtype) + fp32 master (PRECISION[2])
    #     + optimizer buffers (OPTIMIZER_STATE); gradients are not saved
    w_bytes, _, master_bytes = PRECISION[setup.precision]
    training_weights = params * int(w_bytes or DTYPE_BYTES[setup.dtype])
    master = params * master_bytes
    state = OPTIMIZER_STATE[setup.optimizer]
    optimizer_state = adafactor if state is None else params * state
    resumable = training_weights + master + optimizer_state
    # (3) shards: ZeRO >= 1 splits master + optimizer over dp ranks, ZeRO 3 also the weights;
    #     unsharded parts are written once, by rank 0
    n, rest = setup.dp, master + optimizer_state
    w_shard = _ceil(training_weights, n) if setup.zero >= 3 else 0
    o_shard = _ceil(rest, n) if setup.zero >= 1 else 0
    rank0 = (w_shard if setup.zero >= 3 else training_weights) + (o_shard if setup.zero >= 1 else rest)
    other = w_shard + o_shard if n > 1 else 0
    # (4) keeping K: K full checkpoints; a rotation writes the newest before deleting the oldest
    sizes = CheckpointSizes(weights=weights, training_weights=training_weights, master_weights=master,
                            optimizer_state=optimizer_state, resumable=resumable, per_rank=rank0,
                            per_other_rank=other, kept=k * resumable, rotation_peak=(k + 1) * resumable)

    per = {"weights": training_weights, "fp32 master": master, f"{setup.optimizer} state": optimizer_state}
    recipe = " + ".join(f"{v / params:g} {name}" for name, v in per.items() if v)
    notes = [f"resumable: {recipe} = {resumable / params:g} bytes/param, gradients not saved (ZeRO paper's "
             "mixed-precision Adam: 2 + 4 + 8 = 14, its 16 bytes of model states less 2 of gradients)",
             f"weights only: {dtype}" + (" with an fp16 scale per 128 weights" if dtype == "int4" else "")
             + (f"; trained in {setup.dtype}" if setup.dtype != dtype else ""),
             "GiB = 2^30 bytes; tensor bytes only, file headers left out (errs low, <0.1%)"]
    adapters = getattr(net, "adapters", None)
    if adapters is not None:
        notes.insert(0, f"LoRA rank {adapters.rank}: adapter-only checkpoints (PEFT's save_pretrained) of the "
                        f"{params:,} trainable of {total:,} parameters; the frozen base is not saved")
    if n > 1:
        layout = {0: "no ZeRO: replicas are identical, rank 0 writes everything",
                  1: "ZeRO-1: each rank writes 1/dp of master + optimizer state; rank 0 also the weights",
                  2: "ZeRO-2: as ZeRO-1 on disk (gradients are not saved)",
                  3: "ZeRO-3 / FSDP full sharding: each rank writes 1/dp of everything"}[setup.zero]
        notes.append(f"{layout} (DeepSpeed's checkpoint layout)")
    if state is None:
        notes.append("adafactor: factored second moments approximated as 8 x params / hidden (as in `memory`)")
    return CheckpointReport(model=net.name, params=params, dtype=dtype,
                            train_dtype=setup.dtype if w_bytes is None else "fp32", precision=setup.precision,
                            optimizer=setup.optimizer, zero=setup.zero, dp=n, keep=k,
                            bytes_per_param=resumable / params, checkpoint=sizes, notes=notes)
