"""Low-rank adapters (Hu et al. 2021, "LoRA", section 4.1): a frozen linear
W (d_out x d_in) gains a trainable update (alpha / r) B A with A (r x d_in) and
B (d_out x r), so each adapted linear adds r (d_in + d_out) parameters and,
per token, 2 r (d_in + d_out) forward FLOPs. Adapters attach to linears by
their module name (PEFT's `target_modules`: q_proj, v_proj, ...), named as
PEFT names them (q_proj.lora_A, q_proj.lora_B).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, nest
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.norm import Norm


@dataclass(frozen=True)
class LoRA(Block):
    d_in: int
    d_out: int
    rank: int
    alpha: float = 16.0
    dropout: float = 0.0  # PEFT's lora_dropout on the adapter's input (LitGPT's default 0.05; PEFT's 0)
    kind = "lora"

    def params(self) -> Breakdown:
        return {"lora_A/weight": self.rank * self.d_in, "lora_B/weight": self.d_out * self.rank}

    def flops(self, p: Pass) -> Breakdown:
        return {"lora_A": 2 * p.tokens * self.d_in * self.rank, "lora_B": 2 * p.tokens * self.rank * self.d_out}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """B keeps A's r-wide output. A keeps what it reads: the base linear's input, one storage with
        it (Adapted.saved keeps that once), or, under lora_dropout, its own dropped copy beside the
        dropout's noise (PEFT's `lora_B(lora_A(dropout(x)))`, one dropout per adapted linear)."""
        out = {"lora_B_input": a.x * p.tokens * self.rank}
        if self.dropout:
            out["lora_A_input"] = (a.x + a.mask_bytes) * p.tokens * self.d_in
        return out

    def module(self, a: Activations | None = None):
        return _module_class()(self)


def linears(block: Block, prefix: str = "") -> Iterator[tuple[str, Linear]]:
    """Every linear inside a block, with its '/'-separated path (through `parts()`).
    Routed experts (MoE) are not walked: their linears repeat per expert."""
    if isinstance(block, Linear):
        yield prefix, block
        return
    parts = getattr(block, "parts", None)
    if callable(parts):
        for name, part in parts().items():
            yield from linears(part, f"{prefix}/{name}" if prefix else name)


@dataclass(frozen=True)
class Adapted(Block):
    """A block with LoRA adapters on some of its linears; otherwise the block itself."""

    base: Block
    adapters: tuple[tuple[str, LoRA], ...]

    def __getattr__(self, name: str):
        if name in ("base", "adapters") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)  # attention, mlp, norm_names, ...: the wrapped block's

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.base.kind

    def _with(self, base: Breakdown, figure) -> Breakdown:
        out = dict(base)
        for path, lora in self.adapters:
            out.update(nest(path, figure(lora)))
        return out

    def params(self) -> Breakdown:
        return self._with(self.base.params(), lambda adapter: adapter.params())

    def active_params(self) -> Breakdown:
        return self._with(self.base.active_params(), lambda adapter: adapter.params())

    def flops(self, p: Pass) -> Breakdown:
        return self._with(self.base.flops(p), lambda adapter: adapter.flops(p))

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The base's saved bytes and the adapters', less the inputs of frozen linears that nothing
        keeps: autograd saves a linear's input for its weight gradient only, so a frozen 16-bit
        nn.Linear keeps none, and an input survives only where an adapter without dropout reads it
        (lora_A keeps that storage); so do bitsandbytes' 4-bit linears since 0.43.2 (before, they kept
        theirs: `a.quantized_inputs`). Only when the network's base is frozen (`a.frozen_base`: no
        modules_to_save inside the layers); Megatron's profile is left whole. Attention (q/k norms
        included), dense and MoE MLPs and the layers' norms only: MLA's projections and cross-attention
        are kept as if they trained (errs high). tests/test_lora_memory.py measures
        transformers layers with frozen weights and adapters."""
        out = self._with(self.base.saved(p, a), lambda adapter: adapter.saved(p, a))
        if a.litgpt:  # LitGPT's LoRAQKVLinear (blocks/base.py)
            qkv = [(path, lora) for path, lora in self.adapters  # the self-attention's (LitGPT has no other)
                   if path in ("attention/q_proj", "attention/k_proj", "attention/v_proj")]
            for path in [path for path, lora in qkv if lora.dropout][1:]:
                out.pop(f"{path}/lora_A_input", None)  # one dropped copy for q, k and v
            if 0 < len(qkv) < 3:  # zero_pad: the adapted outputs (index_copy_'s source) and its int64 index
                width = sum(lora.d_out for _, lora in qkv)
                out["attention/lora_zero_pad"] = a.x * p.tokens * width + 8 * width
        if a.megatron or not a.frozen_base:
            return out
        for name, part in getattr(self.base, "parts", dict)().items():  # frozen norms' weight multiplies
            if isinstance(part, Norm) and name in out:
                out[name] = max(0, out[name] - part.weight_input_rows(p.tokens, a))
        keeps = {path for path, lora in self.adapters if not lora.dropout}
        for part, key, size, readers in _linear_inputs(self.base, p, a):
            norm = key.endswith("_norm")  # q/k norms: torch's, not bitsandbytes'
            if a.quantized_inputs and not norm:
                continue
            if f"{part}/{key}" in out and not any(r in keeps for r in readers):
                out[f"{part}/{key}"] = max(0, out[f"{part}/{key}"] - size)
        return out

    def output_elements(self, p: Pass) -> int:
        return self.base.output_elements(p)

    def data_input_flops(self, p: Pass) -> int:
        return self.base.data_input_flops(p)

    def module(self, a: Activations | None = None):
        module = self.base.module(a)
        for path, lora in self.adapters:
            attach(module.get_submodule(path.replace("/", ".")), lora.module())
        return module


def _linear_inputs(block: Block, p: Pass, a: Activations) -> Iterator[tuple[str, str, int, tuple[str, ...]]]:
    """(part, saved key, bytes, paths of the linears reading it) of a transformer layer's linear inputs
    (blocks' `linear_inputs`); where an MLP reads the attention's normed input (parallel-shared layouts) the
    attention's input has the MLP's readers too, and the MLP's own is counted as nothing already."""
    parts: dict[str, Block] = getattr(block, "parts", dict)()
    found = {name: part.linear_inputs(p, a) for name, part in parts.items()
             if isinstance(part, (Attention, MLP, MoE)) and name != "cross_attention"}
    shared = getattr(block, "layout", None) == "parallel-shared" and "mlp" in found and "attention" in found
    for name, inputs in found.items():
        for key, (size, readers) in inputs.items():
            if shared and name == "mlp" and key == "input":
                continue
            paths = tuple(f"{name}/{r}" for r in readers)
            if shared and name == "attention" and key == "input":
                paths += tuple(f"mlp/{r}" for r in found["mlp"]["input"][1])
            yield name, key, size, paths


def quantized_inputs(block: Block, p: Pass, a: Activations) -> int:
    """Bytes of the distinct inputs a layer's 4-bit linears hold in bitsandbytes' `ctx.tensors` before
    0.43.2 (MatMul4Bit keeps (A, B) as a plain ctx attribute, whoever else keeps A, and backward does
    not free it): the linears' inputs (`_linear_inputs`, q/k norms aside, which are torch's) and o_proj's
    input where flash attention's kernel keeps that storage itself (its output). Self-attention and
    MLPs only, as `_linear_inputs`."""
    base = block.base if isinstance(block, Adapted) else block
    total = sum(size for _, key, size, _ in _linear_inputs(base, p, a) if not key.endswith("_norm"))
    if not a.eager:
        parts: dict[str, Block] = getattr(base, "parts", dict)()
        total += sum(a.x * p.tokens * part.heads * part.head_dim for name, part in parts.items()
                     if isinstance(part, Attention) and name != "cross_attention")
    return total


def adapt(block: Block, rank: int, alpha: float, targets: tuple[str, ...], dropout: float = 0.0) -> Block:
    """The block with an adapter on every linear whose name is in `targets` (inside a fixed-length
    wrapper, so that the adapters run at the block's length: Whisper's encoder)."""
    from paramcalc.blocks.fixed import FixedLength

    if isinstance(block, FixedLength):
        inner = adapt(block.base, rank, alpha, targets, dropout)
        return block if inner is block.base else FixedLength(inner, block.seq)
    found = tuple((path, LoRA(lin.d_in, lin.d_out, rank, alpha, dropout)) for path, lin in linears(block)
                  if path.rsplit("/", 1)[-1] in targets)
    return Adapted(block, found) if found else block


def adapters_of(block: Block) -> tuple[tuple[str, LoRA], ...]:
    """The adapters a block carries, through a fixed-length wrapper."""
    while not isinstance(block, Adapted) and hasattr(block, "base"):
        block = block.base
    return block.adapters if isinstance(block, Adapted) else ()


def attach(linear, adapter) -> None:
    """Give an nn.Linear PEFT-style lora_A / lora_B children that add to its output."""
    linear.add_module("lora_A", adapter.lora_A)
    linear.add_module("lora_B", adapter.lora_B)
    linear.register_forward_hook(lambda m, args, out: out + m.lora_B(m.lora_A(args[0])) * adapter.scaling)


@cache
def _module_class():
    from torch import nn

    class LoRAModule(nn.Module):
        def __init__(self, spec: LoRA):
            super().__init__()
            self.lora_A = nn.Linear(spec.d_in, spec.rank, bias=False)
            self.lora_B = nn.Linear(spec.rank, spec.d_out, bias=False)
            nn.init.zeros_(self.lora_B.weight)  # B = 0: training starts from the frozen model (Hu et al.)
            self.scaling = spec.alpha / spec.rank

        def forward(self, x):
            return self.lora_B(self.lora_A(x)) * self.scaling

    return LoRAModule
