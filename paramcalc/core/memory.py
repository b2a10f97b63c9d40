"""Memory per GPU for training and inference.

Model states (Rajbhandari et al. 2020, "ZeRO", section 3): with mixed-precision
Adam each parameter costs 2 (16-bit weight) + 2 (16-bit gradient) + 12 (fp32
master weight, momentum, variance) = 16 bytes; ZeRO stage 1 shards the 12 over
data-parallel ranks, stage 2 also the gradients, stage 3 also the weights.
Tensor and pipeline parallelism split the model first (Megatron-LM).

Activations: the bytes autograd saves in one training forward with the loss,
block by block (blocks/*.saved), as transformers' eager implementation keeps
them (CONTRACT.md); recomputation and tensor/sequence parallelism follow
Korthikanti et al. 2022 ("Reducing Activation Recomputation").

KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes;
MLA caches its latent (kv_lora_rank + rope dims) per token and layer; sliding
layers keep at most their window.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.mla import LatentAttention
from paramcalc.core.count import resolve, with_lora
from paramcalc.errors import UserError
from paramcalc.core.flops import RECOMPUTE, make_pass, seq_note
from paramcalc.network import build
from paramcalc.stages import Network
from paramcalc.results import Memory, MemoryReport
from paramcalc.spec import CountSpec, TransformerSpec
from paramcalc.units import GIB, parse_positive_int

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

# Optimizer state in bytes per trainable parameter, master weights excluded.
OPTIMIZER_STATE = {
    "adamw": 8, "adam": 8,  # fp32 momentum + variance (Kingma & Ba 2015)
    "adam-8bit": 2,  # 8-bit momentum + variance (Dettmers et al. 2022), block-wise scales left out (<1%)
    "sgd": 0,  # plain SGD keeps nothing
    "sgd-momentum": 4,  # one fp32 momentum buffer
    "lion": 4,  # one fp32 momentum buffer (Chen et al. 2023)
    "adafactor": None,  # factored second moment: rows + cols per matrix (Shazeer & Stern 2018), see below
}

# Training recipes: bytes per parameter of (weights, gradients, master copy).
PRECISION = {
    "mixed": (None, None, 4),  # ZeRO's recipe: 16-bit weights and gradients (--dtype), fp32 master
    "fp32": (4, 4, 0),  # everything fp32
    "amp": (4, 4, 0),  # PyTorch AMP: fp32 weights and gradients, 16-bit activations
    "megatron": (None, 4, 4),  # Megatron-LM: 16-bit weights, fp32 main gradients, fp32 master
}

# Runtime overheads outside the tensors PyTorch allocates, as calibratable terms.
CUDA_CONTEXT = 512 * 2**20  # CUDA context + cuBLAS/cuDNN workspaces, typically 0.4-0.6 GiB on H100 with torch
NCCL_BUFFERS = 512 * 2**20  # NCCL's communicator buffers when more than one GPU talks
FRAGMENTATION = 0.05  # the caching allocator's unusable slack, as a share of the tensors


@dataclass(frozen=True)
class Setup:
    """Every flag that shapes memory, parsed and checked."""

    mode: str = "train"
    dtype: str = "bf16"
    kv_dtype: str | None = None
    precision: str = "mixed"
    optimizer: str = "adamw"
    zero: int = 0
    dp: int = 1
    tp: int = 1
    pp: int = 1
    sequence_parallel: bool = False
    recompute: str = "none"
    attention: str = "eager"
    quantized_base: bool = False  # QLoRA: the frozen base is stored in --dtype int4, adapters train in bf16

    def check(self) -> "Setup":
        for flag, value, choices in (("--mode", self.mode, ("train", "infer")), ("--dtype", self.dtype, DTYPE_BYTES),
                                     ("--kv-dtype", self.kv_dtype or self.dtype, DTYPE_BYTES),
                                     ("--precision", self.precision, PRECISION),
                                     ("--optimizer", self.optimizer, OPTIMIZER_STATE),
                                     ("--recompute", self.recompute, RECOMPUTE),
                                     ("--attention", self.attention, ("eager", "flash"))):
            if value not in choices:
                raise UserError(f"unknown value {value!r}", where=flag, fix=f"choose from: {', '.join(choices)}")
        if self.zero not in (0, 1, 2, 3):
            raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {self.zero}", where="--zero")
        if self.mode == "train" and self.precision in ("mixed", "megatron") and DTYPE_BYTES[self.dtype] > 2:
            raise UserError(f"--precision {self.precision} trains with 16-bit (or 8-bit) weights, not {self.dtype}",
                            fix="use --dtype bf16 or fp16, or --precision fp32")
        if self.mode == "train" and DTYPE_BYTES[self.dtype] < 1 and not self.quantized_base:
            raise UserError(f"full training keeps no {self.dtype} weights",
                            fix="use --dtype bf16 (QLoRA's 4-bit base is frozen: see --lora options)")
        return self

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp


def model_states(params: int, s: Setup, adafactor_state: int | None = None,
                 trainable: int | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU after TP/PP and ZeRO sharding.

    Gradients, master weights and optimizer state exist for trainable
    parameters only (frozen parts, a LoRA model's base); frozen weights are
    stored like the others, or in 4 bits with --dtype int4 (QLoRA, Dettmers et
    al. 2023: a 4-bit frozen base, 16-bit adapters and activations)."""
    split = s.tp * s.pp
    if s.mode == "infer":
        return _ceil(_weight_bytes(params, s.dtype), split), 0, 0
    trainable = params if trainable is None else trainable
    frozen = params - trainable
    w_b, g_b, master = PRECISION[s.precision]
    dtype = 2 if s.quantized_base else DTYPE_BYTES[s.dtype]  # QLoRA computes (and trains adapters) in bf16
    weights = trainable * (w_b or dtype) + (_weight_bytes(frozen, s.dtype) if s.quantized_base else frozen * (w_b or dtype))
    grads = trainable * (g_b or max(dtype, 2))  # 8-bit (fp8) training still reduces 16-bit gradients
    state = OPTIMIZER_STATE[s.optimizer]
    opt = trainable * master + (adafactor_state if state is None else trainable * state)
    return (_ceil(weights, split * (s.dp if s.zero >= 3 else 1)),
            _ceil(grads, split * (s.dp if s.zero >= 2 else 1)),
            _ceil(opt, split * (s.dp if s.zero >= 1 else 1)))


def _weight_bytes(params: int, dtype: str) -> int:
    """Inference weights; int4 adds an fp16 scale per group of 128 weights (GPTQ/AWQ-style)."""
    if dtype == "int4":
        return _ceil(params, 2) + 2 * _ceil(params, 128)
    return params * DTYPE_BYTES[dtype]


def _ceil(a: int | float, b: int) -> int:
    return -(-int(a) // b)


def kv_cache_bytes(net: Network, tokens: int, batch: int, dtype: str) -> int:
    """Exact cache size: K and V per layer per token; MLA keeps one latent."""
    total = 0
    for stage in net.layers:
        att = stage.block.attention
        if isinstance(att, Attention) and not att.causal:
            continue  # encoder self-attention (BERT, ViT) sees the whole input at once: nothing is cached
        if isinstance(att, LatentAttention):
            per_token = att.kv_lora_rank + att.qk_rope_head_dim
        else:
            per_token = 2 * att.kv_heads * att.head_dim
        kept = min(tokens, att.window) if isinstance(att, Attention) and att.window else tokens
        total += stage.count * per_token * kept * batch
    return int(total * DTYPE_BYTES[dtype])


def activation_bytes(spec: TransformerSpec, net: Network, p: Pass, s: Setup) -> Breakdown:
    """Saved bytes of one micro-batch on one GPU, by stage."""
    x = 4 if s.precision == "fp32" else int(DTYPE_BYTES[s.dtype]) or 2  # a 4-bit base computes in bf16
    if not isinstance(spec, TransformerSpec):  # a layers network: its blocks chain their saved tensors
        return net.saved(p, Activations(dtype_bytes=x, mask_bytes=x))
    a = Activations(dtype_bytes=x, mask_bytes=x, attention=s.attention, attention_dropout=spec.attention_dropout > 0,
                    hidden_dropout=spec.hidden_dropout > 0, embedding_dropout=spec.embedding_dropout > 0,
                    softmax_fp32=spec.softmax_fp32, scores_fp32=spec.scores_fp32,
                    attention_output_dropout=spec.attention_output_dropout)
    out = net.saved(p, a)
    layers = {st.name: st for st in net.layers}
    result: Breakdown = {}
    for key, value in out.items():
        stage = key.split("/", 1)[0]
        if stage in layers:
            value = _layer_share(key, value, s)
        elif stage == "head" and key.rsplit("/", 1)[-1] in ("loss", "softcap"):
            value = _ceil(value, s.tp)  # Megatron's vocab-parallel head: each TP rank holds V/tp logits
        result[key] = value
    if s.recompute == "full":  # keep each layer's input; one layer is recomputed at a time in backward
        peak_layer = max(sum(v for k, v in result.items() if k.startswith(st.name + "/")) // st.count
                         for st in net.layers)
        result = {k: v for k, v in result.items() if k.split("/", 1)[0] not in layers}
        hidden = spec.hidden_size
        result["layers/checkpointed_inputs"] = sum(st.count for st in net.layers) * a.x * p.tokens * hidden
        result["layers/recomputed_layer"] = peak_layer
    if s.pp > 1:
        result = _first_or_last_stage(result, set(layers), s.pp)
    return result


def _first_or_last_stage(parts: Breakdown, layer_stages: set[str], pp: int) -> Breakdown:
    """1F1B pipelining (Narayanan et al. 2021): the first stage holds pp
    micro-batches of its L/pp layers (about L layers' worth) plus the
    embedding; the last holds one micro-batch of L/pp layers plus head and loss.
    The busier of the two sets the per-GPU peak."""
    layer = {k: v for k, v in parts.items() if k.split("/", 1)[0] in layer_stages}
    first = {**layer, **{k: v for k, v in parts.items() if k.startswith("embedding")}}
    last = {**{k: _ceil(v, pp) for k, v in layer.items()},
            **{k: v for k, v in parts.items() if k.split("/", 1)[0] not in layer_stages and not k.startswith("embedding")}}
    return first if sum(first.values()) >= sum(last.values()) else last


_ATTENTION_CORE = ("softmax", "probs", "dropout", "softcap", "position_buckets")


def _layer_share(key: str, value: int, s: Setup) -> int:
    """Selective recomputation drops the attention core; TP splits what lives
    inside a sublayer (Korthikanti et al. 2022, section 4); SP splits the rest."""
    leaf = key.rsplit("/", 1)[-1]
    inside_attention = "/attention/" in key or "/cross_attention/" in key
    if s.recompute == "selective" and inside_attention and leaf in _ATTENTION_CORE:
        return 0
    sharded = inside_attention and leaf != "input" or ("/mlp/" in key or "/moe/" in key) and leaf != "input"
    if sharded or s.sequence_parallel:
        return _ceil(value, s.tp)
    return value


def estimate_memory(target, *, mode: str = "train", seq_len=None, batch=1, dtype: str = "bf16",
                    kv_dtype: str | None = None, precision: str | None = None, optimizer: str = "adamw", zero=0, dp=1,
                    tp=1, pp=1, sequence_parallel: bool = False, recompute: str = "none",
                    attention: str = "eager", gpu: str | None = None, lora_rank=None,
                    lora_targets: str | None = None, context_bytes=CUDA_CONTEXT,
                    fragmentation=FRAGMENTATION) -> MemoryReport:
    """Bytes per GPU: weights, gradients, optimizer state, activations, KV cache, overheads.

    >>> estimate_memory("llama-3.1-8b", mode="infer", seq_len=8192, batch=2).memory.kv_cache
    2147483648
    """
    spec = with_lora(resolve(target), lora_rank, lora_targets)
    if precision is None:  # fp32 weights train in fp32; 16- and 8-bit ones in ZeRO's mixed recipe
        precision = "fp32" if dtype in ("fp32", "tf32") else "mixed"
    net = None if isinstance(spec, CountSpec) else build(spec)
    params = spec.params if net is None else sum(net.params().values())
    trainable = params if net is None else sum(net.trainable_params().values())
    quantized = mode == "train" and dtype == "int4" and trainable < params
    setup = Setup(mode, dtype, kv_dtype, precision, optimizer, _stage(zero),
                  parse_positive_int(dp, what="--dp"), parse_positive_int(tp, what="--tp"),
                  parse_positive_int(pp, what="--pp"), sequence_parallel, recompute, attention, quantized).check()
    p = make_pass(spec, seq_len, batch)
    weights_are = "an int4 frozen base, bf16 adapters and activations (QLoRA)" if quantized \
        else f"{setup.dtype} weights and activations"
    notes = [f"{setup.mode}: {weights_are}"
             + (f", {setup.precision} precision, {setup.optimizer}, ZeRO-{setup.zero}" if setup.mode == "train" else ""),
             "bytes per GPU; GiB = 2^30 bytes", *seq_note(spec, seq_len)]
    adafactor = None
    if net is None:
        notes.append("a bare count: activations and KV cache need the architecture (null)")
    else:
        adafactor = _adafactor_bytes(spec, trainable)
    if setup.mode == "train" and trainable < params:
        notes.append(f"gradients and optimizer state for the {trainable:,} trainable of {params:,} parameters"
                     + ("; the 4-bit base keeps an fp16 scale per 128 weights" if quantized else "")
                     + "; activations as if every layer trained (errs high: frozen layers keep less)")
    layers_net = net is not None and not isinstance(spec, TransformerSpec)
    if layers_net and setup.mode == "train" and (setup.recompute != "none" or setup.tp > 1 or setup.pp > 1):
        notes.append("recomputation and tensor/pipeline splits of activations are not modelled for layers "
                     "networks: activations are one whole micro-batch's")
        setup = Setup(**{**setup.__dict__, "recompute": "none", "tp": 1, "pp": 1})
    weights, grads, opt = model_states(params, setup, adafactor, trainable)
    states = weights + grads + opt
    breakdown: Breakdown = {}
    activations = kv = None
    if net is not None:
        if setup.mode == "train":
            breakdown = activation_bytes(spec, net, p, setup)
            activations = sum(breakdown.values())
            kv = 0
        elif layers_net:
            kv = 0
            activations = _layers_working_set(net, p, setup)
        else:
            kv = _ceil(kv_cache_bytes(net, p.seq, p.batch, setup.kv_dtype or setup.dtype), setup.tp * setup.pp)
            # Serving keeps no autograd state; the working set is one layer's widest intermediates (errs high).
            width = max(3 * spec.intermediate_size, 4 * spec.hidden_size)
            activations = _ceil(DTYPE_BYTES[setup.dtype] * p.tokens * width, setup.tp)
    overhead = None
    total = None
    if activations is not None:
        tensors = states + activations + (kv or 0)
        terms = _overheads(net, p, setup, tensors, context_bytes, fragmentation)
        breakdown.update({f"overhead/{k}": v for k, v in terms.items()})
        overhead = sum(terms.values())
        total = tensors + overhead
    fits = _fits(gpu, total)
    if fits:
        def total_at(b: int) -> int:
            return estimate_memory(spec, mode=mode, seq_len=p.seq, batch=b, dtype=dtype, kv_dtype=kv_dtype,
                                   precision=precision, optimizer=optimizer, zero=zero, dp=dp, tp=tp, pp=pp,
                                   sequence_parallel=sequence_parallel, recompute=recompute, attention=attention,
                                   context_bytes=context_bytes, fragmentation=fragmentation).memory.total_per_gpu

        fits["gpus"] = setup.world
        fits["max_batch"] = _largest_batch(total_at, fits["gpu_bytes"])
    return MemoryReport(
        model=spec.name or "model", mode=setup.mode, seq_len=p.seq, batch=p.batch, notes=notes,
        settings={k: v for k, v in setup.__dict__.items()},
        memory=Memory(weights=weights, gradients=grads, optimizer=opt, activations=activations, kv_cache=kv,
                      model_states_per_gpu=states, overhead=overhead, total_per_gpu=total),
        breakdown=breakdown, fits=fits)


def _stage(zero) -> int:
    from paramcalc.units import parse_number

    value = parse_number(zero, what="ZeRO stage")
    if value not in (0, 1, 2, 3):
        raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}", where="--zero")
    return int(value)


def _adafactor_bytes(spec: TransformerSpec, params: int) -> int:
    """Factored second moments: 4 x (rows + cols) per r x c matrix, approximated
    as 8 x params / hidden (exact for h x h matrices, high for wider ones);
    a layers network without one width: an unfactored fp32 moment (errs high)."""
    if not isinstance(spec, TransformerSpec):
        return 4 * params
    return 8 * params // spec.hidden_size


def _layers_working_set(net: Network, p: Pass, s: Setup) -> int:
    """Serving a layers network: the widest layer's input and output live at
    once (a residual block also keeps its input for the shortcut); errs low by
    the branch's intermediates inside a residual block."""
    from paramcalc.blocks.shaped import Shaped

    a = Activations(dtype_bytes=int(DTYPE_BYTES[s.dtype]) or 2)
    sizes = [b.in_bytes(p, a) * (1 + (b.kind == "residual")) + b.out_bytes(p, a)
             for b in (st.block for st in net.stages) if isinstance(b, Shaped)]
    return max(sizes, default=0)


def _overheads(net: Network, p: Pass, s: Setup, tensors: int, context: int, slack: float) -> Breakdown:
    """The per-GPU peak beyond the tensors, as named terms (the first two calibratable):
    the CUDA context, allocator fragmentation, NCCL's buffers, the fp32 logits
    gradient backward materialises, and ZeRO-3's gathered parameters: DeepSpeed's
    estimator keeps 4 bytes per parameter of the largest layer (its 16-bit weights
    and gradients); prefetching the next layer adds its weights again."""
    from paramcalc.units import parse_number

    context, slack = int(parse_number(context, what="--context-gib")), float(parse_number(slack, what="--fragmentation"))
    if context < 0 or not 0 <= slack < 1:
        raise UserError("overheads must be >= 0 bytes and a fragmentation share in [0, 1)", where="--fragmentation")
    out = {"cuda_context": context, "fragmentation": int(slack * tensors)}
    if s.world > 1:
        out["nccl_buffers"] = NCCL_BUFFERS
    if s.mode == "train":
        out["logits_gradient"] = _ceil(4 * net.stages[-1].block.output_elements(p), s.tp)
        if s.zero >= 3 and s.dp > 1:
            largest = max(sum(stage.block.params().values()) for stage in net.stages)
            out["zero3_gathered"] = _ceil(3 * int(DTYPE_BYTES[s.dtype]) * largest, s.tp * s.pp)
    return out


def _largest_batch(total_at, capacity: int, limit: int = 2**20) -> int:
    """The largest micro-batch (or, serving, concurrent sequences) whose per-GPU
    total fits: memory grows with the batch, so double, then bisect. 0: none fits."""
    if total_at(1) > capacity:
        return 0
    low = 1
    while low < limit and total_at(2 * low) <= capacity:
        low *= 2
    high = min(2 * low, limit + 1)  # total_at(high) > capacity (or the limit)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if total_at(mid) <= capacity else (low, mid)
    return low


def _fits(gpu: str | None, total: int | None) -> dict:
    if gpu is None or total is None:
        return {}
    from paramcalc.catalog import load_gpu

    card = load_gpu(gpu)
    return {"gpu": card.name, "gpu_bytes": card.memory_bytes, "fits": total <= card.memory_bytes,
            "headroom": card.memory_bytes - total}


__all__ = ["estimate_memory", "kv_cache_bytes", "model_states", "GIB"]
