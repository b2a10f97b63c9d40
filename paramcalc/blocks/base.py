"""What every building block answers, and the pass it answers it for.

A block is a small frozen dataclass. It owns, in one file:
- `params()`: its parameter tensors, `{"q_proj": 16777216, ...}`;
- `flops(p)`: forward matmul FLOPs for one pass, keyed the same way;
- `saved(p, a)`: bytes autograd keeps for backward in a training forward;
- `backward_steps(p, a)`: how backward allocates and frees memory, step by step;
- `module(a)`: the PyTorch module that realises it (torch imported lazily),
  whose `named_parameters()` the tests compare with `params()`; given the
  `Activations` that `saved(p, a)` reads, its forward computes as that
  implementation does (eager or SDPA attention, the softmax's dtype, the
  norm's arithmetic), so what autograd saves running it is what `saved`
  predicts: each block file proves its own saved bytes with its own module.

FLOPs convention, said once for the package: 2 FLOPs per multiply-add, so a
(m x k) @ (k x n) matmul is 2*m*k*n FLOPs. fvcore and many papers count one
multiply-add as one "flop" (a MAC); we convert at that boundary only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paramcalc.errors import UserError

Breakdown = dict[str, int]

# DeepSeek-V3's activation quantization tile: 1 x 128 channels of one token share an fp32 scale
# (DeepSeek-V3 report, section 3.3.2, "Fine-Grained Quantization")
FP8_TILE = 128


@dataclass(frozen=True)
class Pass:
    """One forward pass over `batch` sequences of `seq` tokens.

    `context` is how many positions each query attends over (the KV length):
    `seq` for training and prefill, the cache length when decoding one token.
    `attention` is the FLOPs convention for score and value matmuls:
    `dense` counts the full query x key rectangle (what eager kernels compute,
    the PaLM / Megatron MFU convention); `causal` counts the unmasked part only
    (what flash kernels compute), capped by a sliding window.
    """

    batch: int
    seq: int
    attention: str = "dense"
    context: int | None = None

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def keys(self) -> int:
        return self.seq if self.context is None else self.context

    def attended_pairs(self, window: int | None = None, causal_mask: bool = True) -> int:
        """(query, key) pairs scored per sequence and head.

        Dense: seq x keys. Causal: query i (0-based, after `keys - seq` cached
        positions) sees keys [0, keys - seq + i], at most `window` of them.
        """
        s, k = self.seq, self.keys
        if self.attention == "dense" or not causal_mask:
            return s * k
        past = k - s
        w = window or k
        # sum over i in [0, s) of min(past + i + 1, w), in closed form.
        full = max(0, min(s, w - past))  # queries whose whole prefix fits the window
        seen_full = full * past + full * (full + 1) // 2
        return seen_full + (s - full) * w


def nest(prefix: str, parts: Breakdown) -> Breakdown:
    """{'weight': 3} under 'q_proj' -> {'q_proj/weight': 3}; '' keys take the prefix itself."""
    return {(f"{prefix}/{k}" if k else prefix): v for k, v in parts.items()}


def merge(*named: tuple[str, Breakdown]) -> Breakdown:
    out: Breakdown = {}
    for prefix, parts in named:
        for key, value in nest(prefix, parts).items():
            out[key] = out.get(key, 0) + value
    return out


def scale(parts: Breakdown, factor: int) -> Breakdown:
    return {k: v * factor for k, v in parts.items()}


def divide(what: str, numerator: int, denominator: int, *, fix: str) -> int:
    """Exact integer division for derived sizes; a remainder is the user's error."""
    if denominator <= 0 or numerator % denominator:
        raise UserError(f"{what}: {numerator} is not divisible by {denominator}", fix=fix)
    return numerator // denominator


@dataclass(frozen=True)
class Step:
    """One step of a block's backward, for peak memory: the weight gradients it
    allocates (they stay), the gradients alive only inside it (`transient`),
    and the saved bytes it frees once done."""

    grads: int = 0
    transient: int = 0
    freed: int = 0


def peak_live(steps: list[Step], held: int) -> int:
    """The most bytes alive during a backward that starts with `held` bytes
    alive (weights, inputs, every saved activation) and runs `steps` in order."""
    peak = live = held
    for step in steps:
        live += step.grads
        peak = max(peak, live + step.transient)
        live -= step.freed
    return peak


class Block:
    """Base class: a block with no parameters, no FLOPs and nothing saved."""

    kind: ClassVar[str] = "other"  # the table row it belongs to: embedding, attention, mlp, ...

    def params(self) -> Breakdown:
        return {}

    def active_params(self) -> Breakdown:
        """Parameters one token uses (differs from `params` for MoE only)."""
        return self.params()

    def buffers(self) -> Breakdown:
        """Non-trained state the module registers (batch norm's running statistics)."""
        return {}

    def flops(self, p: Pass) -> Breakdown:
        return {}

    def output_elements(self, p: Pass) -> int:
        """Elements of the block's output: for a head, the logits whose fp32
        gradient backward materialises (0 where it does not matter)."""
        return 0

    def data_input_flops(self, p: Pass) -> int:
        """FLOPs of the matmuls that read this block's input directly, which
        backward skips when that input is data (images, features) rather than a
        trained tensor: no input gradient is needed. 0 where unknown (errs high)."""
        return 0

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        return {}

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        """Default: the weight gradients (in the activation dtype) at once, then
        everything the block saved is freed. Blocks with large gradient
        temporaries (attention's s x s, the MLP's T x f) refine this."""
        return [Step(grads=a.x * sum(self.params().values()), freed=sum(self.saved(p, a).values()))]

    def module(self, a: Activations | None = None):  # pragma: no cover - every concrete block overrides
        """The PyTorch module, computing as `a` describes (None: transformers' eager defaults)."""
        raise NotImplementedError(type(self).__name__)


@dataclass(frozen=True)
class Activations:
    """How a training forward runs, for the bytes autograd saves for backward.

    The reference (docs/contract.md) is transformers' eager implementation: what
    `saved_tensors_hooks` sees, each storage once, weights excluded. Blocks count
    their own input when their first op saves it, so a tensor shared by two
    consumers (q/k/v reading one normed input) is counted once.

    `profile` names the implementation: "transformers" (that reference) or
    "megatron", what Megatron-LM with Transformer Engine keeps (Korthikanti et
    al. 2022, section 4.1: 16-bit activations, 1-byte dropout masks, fused norms
    that keep their input, no fp32 softmax copy), which large multi-GPU plans run.
    """

    dtype_bytes: int = 2  # activations (bf16)
    attention: str = "eager"  # eager keeps the s x s probabilities; flash keeps q, k, v, out and the logsumexp
    attention_dropout: bool = False
    hidden_dropout: bool = False
    attention_output_dropout: bool = True  # hidden_dropout also on the attention's output (DistilBERT, Falcon: no)
    embedding_dropout: bool = False
    # Dropout on the meta/CPU reference path saves its scaled noise tensor in the
    # activation dtype; CUDA's fused kernel keeps a 1-byte mask instead.
    mask_bytes: int = 2
    softmax_fp32: bool = True  # eager softmax upcasts scores (Llama, OPT, BLOOM) or not (GPT-2, BERT, T5, Falcon)
    scores_fp32: bool = False  # eager q k^T reads fp32 copies of q and k (GPT-J, GPT-Neo)
    profile: str = "transformers"  # transformers | megatron
    # Sublayers recomputed in backward, in Megatron-Core's names (analysis/settings.py RECOMPUTE_MODULES):
    # layernorm (the pre-sublayer norms' outputs), mla_up_proj (MLA's up-projections and rotary),
    # moe_act (the routed experts' activation output). Megatron profile only.
    recompute_modules: frozenset[str] = frozenset()
    # FP8 training that caches each Linear's input in fp8 for its weight-gradient GEMM (DeepSeek-V3
    # report, section 3.3.3, "Low-Precision Activation"): see `linear_input`. Megatron profile only.
    fp8_cache: bool = False
    # LoRA: the layers' base weights are frozen, so frozen linears keep no input and frozen norms no
    # normalised copy (blocks/lora.py Adapted.saved; TransformerNetwork.activations sets it)
    frozen_base: bool = False
    # QLoRA on bitsandbytes before 0.43.2: MatMul4Bit kept every 4-bit linear's input in `ctx.tensors = (A, B)`
    # for the graph's life though backward never reads it (fixed by bitsandbytes PR #1270, 2024-07-16:
    # `(None, B)`); later versions keep none, as a frozen nn.Linear
    quantized_inputs: bool = False
    # LitGPT's model (litgpt 0.3, April 2024; measured on CPU against litgpt 0.3.1): one fused qkv linear whose
    # q, k, v are views of its output; rope makes new q and k, so under flash attention MHA and MQA keep the
    # whole qkv storage (through v, a view) beside them, and GQA copies k and v to every query head. With
    # LoRA, LoRAQKVLinear has one lora_dropout for q, k and v, and where not all three are adapted its
    # zero_pad keeps the adapted outputs (index_copy_ saves its source). blocks/attention.py, blocks/lora.py
    litgpt: bool = False

    @property
    def megatron(self) -> bool:
        return self.profile == "megatron"

    def recomputes(self, module: str) -> bool:
        return module in self.recompute_modules

    def linear_input(self, elements: int, bits: int = 8) -> int:
        """Bytes of `elements` kept as a Linear's input for its backward: the activation dtype, or
        under `fp8_cache` DeepSeek-V3's fine-grained fp8 (section 3.3.2: one fp32 scale per 1 x 128
        tile of a token's channels; `bits` 12 for the E5M6 attention output of section 3.3.3 (1),
        counted packed: errs low by half a byte an element if it is kept in 16-bit words). The scale
        is counted as fp32 (the E5M6 tiles' power-of-2 scales may be smaller: errs high by <= 4/128
        bytes an element)."""
        if not self.fp8_cache:
            return self.x * elements
        return -(-bits * elements // 8) + 4 * -(-elements // FP8_TILE)

    @property
    def x(self) -> int:
        return self.dtype_bytes

    @property
    def eager(self) -> bool:
        return self.attention == "eager"
