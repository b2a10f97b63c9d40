"""What the bench and the tests measure real modules with, and how a
prediction is set up to match a module.

The modules themselves are the blocks' own (blocks/*.module(a)): given the
`Activations` a prediction reads, each computes as the implementation it
mirrors (transformers 5.24.0's eager or SDPA attention, its norms' arithmetic,
gelu_new composed of elementwise ops), so what autograd saves running them is
what `saved(p, a)` predicts. Left out, as in the blocks' modules: rotary
embeddings and ALiBi (no parameters, no matmul FLOPs; the network-level
cos/sin tables are not a layer's), T5's relative position bias, and dropout
(the bench runs without it).

- `activations`: the Activations of a reference run (dropout off);
- `predicted_layer`: the layer as the reference module realises it;
- `SavedBytes`, `LiveBytes`: what autograd saves, what is alive op by op;
- `flop_counter`: FlopCounterMode, with the CPU flash kernel's FLOPs registered.
"""

from __future__ import annotations

import weakref
from dataclasses import replace

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Block
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.network import Network

ATTENTION_IMPLS = ("eager", "sdpa")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def activations(net: Network, dtype_bytes: int, attention: str) -> Activations:
    """The `Activations` of a reference run: the network's own (its softmax upcast,
    eager or flash attention) with every weight training (the reference stacks train them
    all) and dropout off, and no separate fp32 copy when the model dtype is fp32 already
    (`.to(float32)` of an fp32 tensor is the tensor itself)."""
    a = net.activations(dtype_bytes, "eager" if attention == "eager" else "flash")
    return replace(a, frozen_base=False, attention_dropout=False, hidden_dropout=False, embedding_dropout=False,
                   attention_output_dropout=True, softmax_fp32=a.softmax_fp32 and dtype_bytes < 4,
                   scores_fp32=a.scores_fp32 and dtype_bytes < 4)


def predicted_layer(layer: Block) -> Block:
    """The layer as the reference module realises it: q, k and v come from
    separate projections (no fused-view storage at batch 1) and no relative
    position bucket ids are computed."""
    if not isinstance(layer, TransformerLayer):  # a LoRA-adapted layer: its base's bytes plus the adapters'
        return layer
    att = layer.attention
    if isinstance(att, Attention) and (att.fused_views or att.relative_buckets):
        layer = replace(layer, attention=replace(att, fused_views=False, relative_buckets=0))
    return layer


class SavedBytes:
    """Bytes autograd saves for backward inside the context, as docs/contract.md
    defines them: every tensor `saved_tensors_hooks` sees, each storage once,
    the parameters' storages excluded."""

    def __init__(self, exclude: nn.Module | list[nn.Module]):
        modules = exclude if isinstance(exclude, list) else [exclude]
        self._weights = {p.untyped_storage()._cdata for m in modules for p in m.parameters()}
        self._seen: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []  # hold every saved tensor so no storage address is reused
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in self._weights:
            self._seen.setdefault(storage._cdata, storage.nbytes())
            self._keep.append(t)
        return t

    def __enter__(self) -> SavedBytes:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        self._keep.clear()

    @property
    def total(self) -> int:
        return sum(self._seen.values())


class LiveBytes(TorchDispatchMode):
    """The most tensor bytes alive at once inside the context, op by op, on
    any device: every op's outputs are tracked by storage until the storage is
    freed (a storage's Python object lives exactly as long as the storage, so a
    finalizer on it sees the free). Storages alive before the context are
    `held` and not counted. What CUDA's max_memory_allocated measures, minus
    the caching allocator's rounding and kernels' private workspaces."""

    def __init__(self, held: list):
        super().__init__()
        self._alive = {t.untyped_storage()._cdata for t in held}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, size = storage._cdata, storage.nbytes()
                if key not in self._alive and size:
                    self._alive.add(key)
                    self.current += size
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key, size)
        return out

    def _free(self, key: int, size: int) -> None:
        self._alive.discard(key)
        self.current -= size


def _cpu_flash_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter():
    """FlopCounterMode (2 FLOPs per multiply-add), taught the CPU's fused SDPA
    kernel with the formulas torch uses for the CUDA ones: the full q x k
    rectangle forward (dense, even when causal), and a backward that
    recomputes the scores (five score-sized matmuls instead of four)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops,
    })


_FUSED_ATTENTION = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


def attention_kernels(counter) -> list[str]:
    """The fused attention ops a FlopCounterMode run dispatched, by name."""
    ops = counter.get_flop_counts().get("Global", {})
    return sorted({str(op).removeprefix("aten.") for op in ops if any(tag in str(op) for tag in _FUSED_ATTENTION)})
