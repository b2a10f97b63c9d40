"""`paramcalc.profile`: a live torch.nn.Module, measured by torch.

What the analytic path computes from blocks, measured on the module itself:
- parameters: `sum(p.numel() for p in module.parameters())` (a shared or tied
  parameter once), trainable where `requires_grad`, by top-level child;
- FLOPs: torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; matmuls,
  convolutions and attention kernels, elementwise work not counted) over one
  forward with the loss, then one backward of that scalar loss (the sum of the
  outputs' floating tensors, or `loss(output)`); a frozen weight gets no weight
  gradient, so the backward is measured, not assumed 2 x forward;
- saved bytes: every tensor torch.autograd.graph.saved_tensors_hooks sees in
  that forward and loss, each storage once, parameters and buffers excluded
  (docs/contract.md's activation truth, as tests/saved_bytes.py measures it).

The backward runs through torch.autograd.grad, so the module's `.grad`s are
left as they were. The module runs in the mode it is in (train or eval).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from paramcalc.errors import UserError
from paramcalc.network.profiled import Measurement, Part, Profiled


def profile(module: nn.Module, example_inputs, *, loss: Callable | None = None, name: str | None = None) -> Profiled:
    """Profile a live torch.nn.Module (on meta, CPU or CUDA) over `example_inputs`: a tensor
    (one positional input), a tuple of positional inputs, or a dict of keyword inputs.

    Returns a network that every analysis takes (`count_params`, `flops`, `memory`, `cost`,
    `estimate`): the exact parameter count (trainable and frozen, shared parameters once, by
    top-level child), forward and backward FLOPs and the bytes saved for backward, measured
    once here over one forward and one backward of a scalar loss (the sum of the outputs, or
    `loss(output)`). Analyses at another batch scale the measurement linearly from the
    example's batch (its first tensor's leading dimension); the example fixes the sequence.
    Memory rescales saved floating tensors in the parameters' dtype to the dtype it is asked
    about, and adds weights, gradients and optimizer state for the trainable parameters.

    Example (build on the meta device to profile a large model without memory):

        with torch.device("meta"):
            model = MyModel()
        net = paramcalc.profile(model, torch.zeros(8, 512, dtype=torch.long, device="meta"))
        paramcalc.count_params(net).params.trainable
        paramcalc.flops(net, batch=8).flops.train_step
        paramcalc.memory(net, batch=8, optimizer="adamw").memory.total_per_gpu
        paramcalc.cost(net, tokens="1T", gpu="h100-sxm").cost.gpu_hours
    """
    if not isinstance(module, nn.Module):
        raise UserError(f"profile takes a torch.nn.Module, not a {type(module).__name__}")
    m = measure_module(module, example_inputs, loss=loss)
    return profiled(module, name or type(module).__name__, lambda batch, seq: m, probe=False, example_seq=m.seq,
                    how="profiled with paramcalc.profile")


def profiled(module: nn.Module, name: str, measure: Callable[[int, int], Measurement] | None, *, probe: bool,
             example_seq: int | None, how: str, why: str = "") -> Profiled:
    """The network of a module: its parameters counted here, its FLOPs and saved bytes from `measure`."""
    parts = parts_of(module)
    total = sum(p.params for p in parts)
    trainable = sum(p.trainable for p in parts)
    frozen = f", {total - trainable:,} frozen (requires_grad False)" if trainable < total else ""
    note = (f"{type(module).__name__} {how}: parameters counted exactly (sum of numel, shared ones once), "
            f"{trainable:,} trainable{frozen}; FLOPs and saved bytes measured by torch, not by paramcalc's blocks")
    return Profiled(name, count=total, embedding=embedding_params(module),
                    buffer_count=sum(b.numel() for b in module.buffers()), model_class=type(module).__name__,
                    note=note, parts=parts, measure=measure, probe=probe, example_seq=example_seq, why=why)


def parts_of(module: nn.Module, expand: str | None = None) -> tuple[Part, ...]:
    """Parameters by top-level child (the module's own parameters by name first); each once.
    `expand` names a child shown by its own children instead (a transformers model's base model:
    `model.vision_tower`, `model.language_model`)."""
    seen: set[int] = set()

    def part(name: str, kind: str, params) -> Part | None:
        n = t = 0
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
                t += p.numel() if p.requires_grad else 0
        return Part(name, kind, n, t) if n else None

    own = [part(name, "parameter", [p]) for name, p in module.named_parameters(recurse=False)]
    children: list[Part | None] = []
    for name, child in module.named_children():
        if name == expand:
            children += [part(f"{name}.{own_name}", "parameter", [p])
                         for own_name, p in child.named_parameters(recurse=False)]
            children += [part(f"{name}.{sub}", type(inner).__name__, inner.parameters())
                         for sub, inner in child.named_children()]
        else:
            children.append(part(name, type(child).__name__, child.parameters()))
    return tuple(p for p in (*own, *children) if p is not None)


def embedding_params(module: nn.Module) -> int:
    """The nn.Embedding tables a module holds, each once."""
    tables = {id(m.weight): m.weight.numel() for m in module.modules() if isinstance(m, nn.Embedding)}
    return sum(tables.values())


def split_inputs(inputs) -> tuple[tuple, dict]:
    """(positional, keyword) inputs: a dict is keywords, a tuple or list positionals, anything else one input."""
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def tensors_in(value) -> list[torch.Tensor]:
    """Every tensor inside nested tuples, lists and mappings (transformers' ModelOutput is one)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in tensors_in(v)]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_in(v)]
    return []


def example_shape(inputs) -> tuple[int, int | None]:
    """(batch, seq) of example inputs: the first tensor's leading dimension, and its second where it
    holds token ids (a 2-D integer tensor)."""
    first = next((t for t in tensors_in(inputs) if t.dim() >= 1), None)
    if first is None:
        return 1, None
    seq = first.shape[1] if first.dim() == 2 and not first.is_floating_point() else None
    return int(first.shape[0]), None if seq is None else int(seq)


def describe(inputs) -> str:
    args, kwargs = split_inputs(inputs)
    words = [_word(v) for v in args] + [f"{k}={_word(v)}" for k, v in kwargs.items()]
    return ", ".join(words) or "no inputs"


def _word(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} {tuple(value.shape)} on {value.device.type}"
    return type(value).__name__


def first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def measure_module(module: nn.Module, inputs, *, loss: Callable | None = None) -> Measurement:
    """One forward (with the loss) and one backward of `module` over `inputs`, measured."""
    from paramcalc.torchref.reference import flop_counter

    args, kwargs = split_inputs(inputs)
    cls = type(module).__name__
    params = list(module.parameters())
    floating = [p for p in params if p.is_floating_point()]
    param_dtype = floating[0].dtype if floating else torch.get_default_dtype()
    owned = {t.untyped_storage()._cdata for t in (*params, *module.buffers())}
    seen: dict[int, tuple[int, bool]] = {}
    keep: list[torch.Tensor] = []  # every saved tensor held, so no storage address is reused

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in owned and storage._cdata not in seen:
            seen[storage._cdata] = (storage.nbytes(), t.dtype == param_dtype)
            keep.append(t)
        return t

    device = params[0].device.type if params else "cpu"
    try:
        with torch.enable_grad(), flop_counter() as forward, \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = module(*args, **kwargs)
            scalar = _loss(out, loss, cls)
    except UserError:
        raise
    except Exception as error:
        on_meta = " on the meta device" if device == "meta" else ""
        fix = ("a forward that reads tensor values (.item(), data-dependent shapes, Python branches on them) "
               "cannot run on meta: build the module on CPU and profile it there, or give other inputs"
               if on_meta else "check the inputs' shapes, dtypes and device against the module's forward")
        raise UserError(f"{cls}'s forward did not run{on_meta} over {describe(inputs)} ({first_line(error)})",
                        fix=fix) from None
    leaves = [t for t in (*params, *tensors_in(inputs)) if t.requires_grad]
    backward_flops = 0
    if scalar.requires_grad and leaves:
        with flop_counter() as backward:
            torch.autograd.grad(scalar, leaves, allow_unused=True)
        backward_flops = backward.get_total_flops()
    batch, seq = example_shape(inputs)
    saved = sum(n for n, _ in seen.values())
    like = sum(n for n, same in seen.values() if same)
    keep.clear()
    return Measurement(batch=batch, seq=seq, forward_flops=forward.get_total_flops(), backward_flops=backward_flops,
                       saved_bytes=saved, saved_param_dtype_bytes=like,
                       param_dtype_bytes=torch.empty((), dtype=param_dtype).element_size(), inputs=describe(inputs))


def _loss(out, loss: Callable | None, cls: str) -> torch.Tensor:
    """The scalar the backward starts from: loss(output), or the sum of the output's floating tensors."""
    if loss is not None:
        value = loss(out)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise UserError(f"the loss must return a scalar tensor, got {_word(value)}", field="loss")
        return value.reshape(())
    floats = [t for t in tensors_in(out) if t.is_floating_point()]
    if not floats:
        raise UserError(f"{cls}'s output holds no floating-point tensor to sum into a loss", field="loss",
                        fix="give a loss function taking the output and returning a scalar")
    total = floats[0].sum()
    for t in floats[1:]:
        total = total + t.sum()
    return total


__all__ = ["describe", "embedding_params", "example_shape", "measure_module", "parts_of", "profile", "profiled"]
