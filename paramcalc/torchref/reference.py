"""The bench's reference layers: paramcalc's own block modules, with their
attention core, RMSNorms and tanh-GELU computed the way transformers' eager
(or SDPA) implementation computes them, so what autograd saves is what
`paramcalc memory` predicts.

The blocks' modules (blocks/*.module) keep the arithmetic minimal: softmax in
the input dtype, a boolean causal mask, torch's native RMSNorm, exact GELU.
Their parameters and matmuls are the spec's, which is all `verify` needs. The
bench also compares saved bytes, so here the same modules get a forward that
follows transformers 5.24.0 (CONTRACT.md's reference) where it changes what
is saved; parameters and matmul FLOPs are untouched:

- attention: repeat_kv as expand + reshape, an additive float mask (saves
  nothing, where masked_fill would keep a boolean s x s mask), the softmax
  upcast to fp32 when the spec says so, soft-capping as tanh; or
  `F.scaled_dot_product_attention(is_causal=True, enable_gqa=True)`, which is
  transformers' SDPA call when no padding mask is given;
- RMSNorm: upcast to fp32, rsqrt of the mean square, back to the model dtype,
  times the weight (Llama); T5's and Gemma's variants as the spec's
  `rmsnorm_style` names them;
- `gelu_new` / `gelu_fast`: the tanh formula composed of elementwise ops.

Left out, as in the blocks' modules: rotary embeddings and ALiBi (no
parameters, no matmul FLOPs; the network-level cos/sin tables are not a
layer's), T5's relative position bias, and dropout (the bench runs without it).
"""

from __future__ import annotations

import math
import types
import weakref
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.spec import TransformerSpec

ATTENTION_IMPLS = ("eager", "sdpa")
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def activations(spec: TransformerSpec, dtype_bytes: int, attention: str) -> Activations:
    """The `Activations` that describe a reference layer: core.memory's
    conventions (the spec's softmax upcast, eager or flash attention) with
    dropout off, and no separate fp32 softmax copy when the model dtype is
    fp32 already (`.to(float32)` of an fp32 tensor is the tensor itself)."""
    return Activations(dtype_bytes=dtype_bytes, mask_bytes=dtype_bytes,
                       attention="eager" if attention == "eager" else "flash",
                       softmax_fp32=spec.softmax_fp32 and dtype_bytes < 4,
                       scores_fp32=spec.scores_fp32 and dtype_bytes < 4)


def predicted_layer(layer: TransformerLayer) -> TransformerLayer:
    """The layer as the reference module realises it: q, k and v come from
    separate projections (no fused-view storage at batch 1) and no relative
    position bucket ids are computed."""
    if not isinstance(layer, TransformerLayer):  # a LoRA-adapted layer: its base's bytes plus the adapters'
        return layer
    att = layer.attention
    if isinstance(att, Attention) and (att.fused_views or att.relative_buckets):
        layer = replace(layer, attention=replace(att, fused_views=False, relative_buckets=0))
    return layer


def prepare(module: nn.Module, spec: TransformerSpec, attention: str = "eager") -> nn.Module:
    """Give every attention, RMSNorm and tanh-GELU inside `module` the
    transformers-like forward described above; returns `module`."""
    cap, upcast = spec.attn_logit_softcapping, spec.softmax_fp32 or spec.scores_fp32
    for sub in module.modules():
        block = getattr(sub, "spec", None)
        if isinstance(block, Attention):
            sub.forward = types.MethodType(_attention_forward(attention, cap, upcast, spec.scores_fp32), sub)
        elif isinstance(block, LatentAttention):
            sub.forward = types.MethodType(_latent_forward(attention, upcast), sub)
        elif isinstance(block, MLP) and block.act in ("gelu_new", "gelu_fast"):
            sub.act = TanhGelu()
        elif isinstance(sub, nn.RMSNorm):
            sub.forward = types.MethodType(_RMS_STYLES[spec.rmsnorm_style], sub)
        elif isinstance(sub, nn.LayerNorm) and spec.layernorm_style != "native":
            sub.forward = types.MethodType(_LAYERNORM_STYLES[spec.layernorm_style], sub)
    return module


class TanhGelu(nn.Module):
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as
    transformers composes it (pow, tanh and two products keep four tensors)."""

    def forward(self, x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def _eps(norm: nn.RMSNorm) -> float:
    return norm.eps if norm.eps is not None else 1e-6


def _rms_llama(self, x):
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + _eps(self))
    h = h.to(dtype)
    return self.weight * h if self.weight is not None else h


def _rms_t5(self, x):
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    h = x * torch.rsqrt(variance + _eps(self))
    if self.weight is not None and self.weight.dtype in (torch.float16, torch.bfloat16):
        h = h.to(self.weight.dtype)
    return self.weight * h if self.weight is not None else h


def _rms_gemma(self, x):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + _eps(self))
    if self.weight is not None:
        h = h * (1.0 + self.weight.float())
    return h.type_as(x)


def _rms_olmo2(self, x):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + _eps(self))
    return (self.weight * h).to(x.dtype) if self.weight is not None else h.to(x.dtype)


def _layernorm_fp32(self, x):
    return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps).to(x.dtype)


def _layernorm_cohere(self, x):
    h = x.to(torch.float32)
    mean = h.mean(-1, keepdim=True)
    variance = (h - mean).pow(2).mean(-1, keepdim=True)
    h = (h - mean) * torch.rsqrt(variance + self.eps)
    return (self.weight.to(torch.float32) * h).to(x.dtype) if self.weight is not None else h.to(x.dtype)


_LAYERNORM_STYLES = {"fp32": _layernorm_fp32, "cohere": _layernorm_cohere}
_RMS_STYLES = {"llama": _rms_llama, "t5": _rms_t5, "gemma": _rms_gemma, "olmo2": _rms_olmo2}


def _additive_mask(module, t: int, k: int, window: int | None, like: torch.Tensor) -> torch.Tensor:
    """A (t, k) float mask, 0 where a query sees a key and -inf elsewhere,
    cached on the module (built once, outside the timed steps)."""
    key = (t, k, window, like.dtype, like.device)
    cache = module.__dict__.setdefault("_bench_masks", {})
    if key not in cache:
        with torch.no_grad():
            keep = torch.ones(t, k, dtype=torch.bool, device=like.device).tril(k - t)
            if window:
                keep &= ~torch.ones_like(keep).tril(k - t - window)
            cache[key] = torch.zeros(t, k, dtype=like.dtype, device=like.device).masked_fill(~keep, float("-inf"))
    return cache[key]


def _core(module, q, k, v, *, causal: bool, window: int | None, impl: str, softcap: float | None,
          fp32_softmax: bool, scale: float, fp32_scores: bool = False):
    """softmax(q k^T * scale + mask) v over (b, heads, t, d) tensors; k and v
    may have fewer heads (GQA)."""
    n, g = q.shape[1], k.shape[1]
    if impl == "sdpa":
        mask = None
        if causal and window and window < k.shape[-2]:  # transformers passes a mask for sliding layers
            mask = _additive_mask(module, q.shape[-2], k.shape[-2], window, q)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                              scale=scale, enable_gqa=n != g)
    if n != g:  # transformers' repeat_kv: expand, then reshape (a copy unless it can stay a view)
        b, _, s, d = k.shape
        k = k[:, :, None].expand(b, g, n // g, s, d).reshape(b, n, s, d)
        v = v[:, :, None].expand(b, g, n // g, s, v.shape[-1]).reshape(b, n, s, v.shape[-1])
    if fp32_scores and q.dtype != torch.float32:  # GPT-J: q k^T in fp32, probabilities back in the model dtype
        q, k = q.float(), k.float()
    scores = torch.matmul(q, k.transpose(2, 3)) * scale
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    if causal:
        scores = scores + _additive_mask(module, q.shape[-2], k.shape[-2], window, scores)
    probs = scores.softmax(-1, dtype=torch.float32).to(v.dtype) if fp32_softmax else scores.softmax(-1)
    return torch.matmul(probs, v)


def _attention_forward(impl: str, softcap: float | None, upcast: bool, fp32_scores: bool = False):
    def forward(self, x, memory=None):
        s: Attention = self.spec
        src = x if memory is None else memory
        b, t, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(src), self.v_proj(src)
        if s.q_norm and s.q_norm.dim != s.head_dim:  # OLMo 2 normalises the whole projection
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, t, s.heads, s.head_dim)
        k = k.view(b, src.shape[1], s.kv_heads, s.head_dim)
        v = v.view(b, src.shape[1], s.kv_heads, s.head_dim)
        if s.q_norm and s.q_norm.dim == s.head_dim:  # Qwen3 normalises per head before the transpose
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        fp32 = upcast and q.dtype != torch.float32
        out = _core(self, q, k, v, causal=s.causal and memory is None, window=s.window, impl=impl,
                    softcap=softcap if s.softcap else None, fp32_softmax=fp32, scale=s.head_dim**-0.5,
                    fp32_scores=fp32_scores)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, s.heads * s.head_dim))

    return forward


def _latent_forward(impl: str, upcast: bool):
    def forward(self, x):
        s: LatentAttention = self.spec
        b, t, _ = x.shape
        q, k, v = self.qkv(x)
        fp32 = upcast and q.dtype != torch.float32
        out = _core(self, q, k, v, causal=True, window=None, impl=impl, softcap=None, fp32_softmax=fp32,
                    scale=s.qk_head_dim**-0.5)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, s.heads * s.v_head_dim))

    return forward


class SavedBytes:
    """Bytes autograd saves for backward inside the context, as CONTRACT.md
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

    def __enter__(self) -> "SavedBytes":
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
