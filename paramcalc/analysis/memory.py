"""Memory per GPU for training and inference.

Model states (Rajbhandari et al. 2020, "ZeRO", section 3): with mixed-precision
Adam each parameter costs 2 (16-bit weight) + 2 (16-bit gradient) + 12 (fp32
master weight, momentum, variance) = 16 bytes; ZeRO stage 1 shards the 12 over
data-parallel ranks, stage 2 also the gradients, stage 3 also the weights.
Tensor and pipeline parallelism split the model first (Megatron-LM).

Activations: the bytes autograd saves in one training forward with the loss,
block by block (blocks/*.saved), as transformers' eager implementation keeps
them (docs/contract.md); recomputation and tensor/sequence parallelism follow
Korthikanti et al. 2022 ("Reducing Activation Recomputation").

KV cache: 2 (K and V) x layers x kv_heads x head_dim x tokens x batch x bytes;
MLA caches its latent (kv_lora_rank + rope dims) per token and layer; sliding
layers keep at most their window.
"""

from __future__ import annotations

from paramcalc.analysis.settings import (
    DTYPE_BYTES,
    OPTIMIZER_STATE,
    PRECISION,
    RECOMPUTE,
    choose,
    make_pass,
    parse_attention,
    with_lora_flags,
)
from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Breakdown, Pass
from paramcalc.blocks.mla import LatentAttention
from paramcalc.errors import UserError
from paramcalc.network import Model, Network, lower, transformer_layer
from paramcalc.results.memory import Fit, Memory, MemoryReport, Setup
from paramcalc.units import GIB, parse_number, parse_positive_int

# Runtime overheads outside the tensors PyTorch allocates, as calibratable terms.
CUDA_CONTEXT = 512 * 2**20  # CUDA context + cuBLAS/cuDNN workspaces, typically 0.4-0.6 GiB on H100 with torch
NCCL_BUFFERS = 512 * 2**20  # NCCL's communicator buffers when more than one GPU talks
FRAGMENTATION = 0.05  # the caching allocator's unusable slack, as a share of the tensors


def check_setup(s: Setup) -> Setup:
    """Every memory setting checked, each error naming its setting."""
    for field, value, choices in (("mode", s.mode, ("train", "infer")), ("dtype", s.dtype, DTYPE_BYTES),
                                  ("kv_dtype", s.kv_dtype or s.dtype, DTYPE_BYTES),
                                  ("precision", s.precision, PRECISION), ("optimizer", s.optimizer, OPTIMIZER_STATE),
                                  ("recompute", s.recompute, RECOMPUTE),
                                  ("attention", s.attention, ("eager", "flash"))):
        choose(value, choices, field)
    if s.zero not in (0, 1, 2, 3):
        raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {s.zero}", field="zero")
    if s.mode == "train" and s.precision in ("mixed", "megatron") and DTYPE_BYTES[s.dtype] > 2:
        raise UserError(f"the {s.precision} recipe trains with 16-bit (or 8-bit) weights, not {s.dtype}",
                        field="precision", fix="use {dtype} bf16 or fp16, or {precision} fp32")
    if s.mode == "train" and DTYPE_BYTES[s.dtype] < 1 and not s.quantized_base:
        raise UserError(f"full training keeps no {s.dtype} weights", field="dtype",
                        fix="use bf16 (QLoRA's 4-bit base is frozen: give {lora_rank})")
    return s


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
    frozen_bytes = _weight_bytes(frozen, s.dtype) if s.quantized_base else frozen * (w_b or dtype)
    weights = trainable * (w_b or dtype) + frozen_bytes
    grads = trainable * (g_b or max(dtype, 2))  # 8-bit (fp8) training still reduces 16-bit gradients
    state = OPTIMIZER_STATE[s.optimizer]
    if state is None:  # adafactor: its factored state depends on the matrices' shapes, which the caller knows
        assert adafactor_state is not None, "adafactor's state is the caller's to count"
        opt = trainable * master + adafactor_state
    else:
        opt = trainable * master + trainable * state
    return (_ceil(weights, split * (s.dp if s.zero >= 3 else 1)),
            _ceil(grads, split * (s.dp if s.zero >= 2 else 1)),
            _ceil(opt, split * (s.dp if s.zero >= 1 else 1)))


def _weight_bytes(params: int, dtype: str) -> int:
    """Inference weights; int4 adds an fp16 scale per group of 128 weights (GPTQ/AWQ-style)."""
    if dtype == "int4":
        return _ceil(params, 2) + 2 * _ceil(params, 128)
    return params * int(DTYPE_BYTES[dtype])  # whole bytes for every dtype but int4


def _ceil(a: int | float, b: int) -> int:
    return -(-int(a) // b)


def kv_cache_bytes(net: Network, tokens: int, batch: int, dtype: str) -> int:
    """Exact cache size: K and V per layer per token; MLA keeps one latent."""
    total = 0
    for stage in net.layers:
        att = transformer_layer(stage).attention
        if isinstance(att, Attention) and not att.causal:
            continue  # encoder self-attention (BERT, ViT) sees the whole input at once: nothing is cached
        if isinstance(att, LatentAttention):
            per_token = att.kv_lora_rank + att.qk_rope_head_dim
        else:
            per_token = 2 * att.kv_heads * att.head_dim
        kept = min(tokens, att.window) if isinstance(att, Attention) and att.window else tokens
        total += stage.count * per_token * kept * batch
    return int(total * DTYPE_BYTES[dtype])


def activation_bytes(net: Network, p: Pass, s: Setup) -> Breakdown:
    """Saved bytes of one micro-batch on one GPU, by stage."""
    x = 4 if s.precision == "fp32" else int(DTYPE_BYTES[s.dtype]) or 2  # a 4-bit base computes in bf16
    out = net.saved(p, net.activations(x, s.attention))
    if not net.layers:  # a layers network: one whole micro-batch, its blocks chaining their saved tensors
        return out
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
        result["layers/checkpointed_inputs"] = sum(st.count for st in net.layers) * x * p.tokens * (net.width or 0)
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
            **{k: v for k, v in parts.items()
               if k.split("/", 1)[0] not in layer_stages and not k.startswith("embedding")}}
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


def estimate_memory(model: Model, *, mode: str = "train", seq_len=None, batch=1, dtype: str = "bf16",
                    kv_dtype: str | None = None, precision: str | None = None, optimizer: str = "adamw", zero=0, dp=1,
                    tp=1, pp=1, sequence_parallel: bool = False, recompute: str = "none",
                    attention: str = "eager", gpu: str | None = None, lora_rank=None,
                    lora_targets: str | None = None, context_bytes=CUDA_CONTEXT,
                    fragmentation=FRAGMENTATION) -> MemoryReport:
    """Bytes per GPU: weights, gradients, optimizer state, activations, KV cache, overheads.

    >>> estimate_memory("llama-3.1-8b", mode="infer", seq_len=8192, batch=2).memory.kv_cache
    2147483648
    """
    net = with_lora_flags(lower(model), lora_rank, lora_targets)
    if precision is None:  # fp32 weights train in fp32; 16- and 8-bit ones in ZeRO's mixed recipe
        precision = "fp32" if dtype in ("fp32", "tf32") else "mixed"
    params = net.total_params
    trainable = sum(net.trainable_params().values()) if net.has_architecture else params
    quantized = mode == "train" and dtype == "int4" and trainable < params
    setup = check_setup(Setup(mode=mode, dtype=dtype, kv_dtype=kv_dtype, precision=precision, optimizer=optimizer,
                              zero=_stage(zero), dp=parse_positive_int(dp, field="dp"),
                              tp=parse_positive_int(tp, field="tp"), pp=parse_positive_int(pp, field="pp"),
                              sequence_parallel=sequence_parallel, recompute=recompute,
                              attention=parse_attention(attention), quantized_base=quantized))
    if setup.tp > 1:
        net.check_tensor_parallel(setup.tp)
    p = make_pass(net, seq_len, batch)
    asked = None if seq_len is None else p.seq
    weights_are = "an int4 frozen base, bf16 adapters and activations (QLoRA)" if quantized \
        else f"{setup.dtype} weights and activations"
    notes = [f"{setup.mode}: {weights_are}"
             + (f", {setup.precision} precision, {setup.optimizer}, ZeRO-{setup.zero}"
                if setup.mode == "train" else ""),
             "bytes per GPU; GiB = 2^30 bytes", *net.seq_notes(asked)]
    if not net.has_architecture:
        notes.append("a bare count: activations and KV cache need the architecture (null)")
    if setup.mode == "train" and trainable < params:
        notes.append(f"gradients and optimizer state for the {trainable:,} trainable of {params:,} parameters"
                     + ("; the 4-bit base keeps an fp16 scale per 128 weights" if quantized else "")
                     + "; activations as if every layer trained (errs high: frozen layers keep less)")
    layered = bool(net.layers)
    if net.has_architecture and not layered and setup.mode == "train" \
            and (setup.recompute != "none" or setup.tp > 1 or setup.pp > 1):
        notes.append("recomputation and tensor/pipeline splits of activations are not modelled for layers "
                     "networks: activations are one whole micro-batch's")
        setup = setup.model_copy(update={"recompute": "none", "tp": 1, "pp": 1})
    weights, grads, opt = model_states(params, setup, _adafactor_bytes(net, trainable), trainable)
    states = weights + grads + opt
    breakdown: Breakdown = {}
    activations = kv = None
    if net.has_architecture:
        if setup.mode == "train":
            breakdown = activation_bytes(net, p, setup)
            activations = sum(breakdown.values())
            kv = 0
        else:
            # Serving keeps no autograd state: the working set of one layer, split by TP where there are layers.
            kv = _ceil(kv_cache_bytes(net, p.seq, p.batch, setup.kv_dtype or setup.dtype), setup.tp * setup.pp)
            working = net.working_set(p, int(DTYPE_BYTES[setup.dtype]) or 2)
            activations = _ceil(working, setup.tp) if layered else working
    overhead = None
    total = None
    if activations is not None:
        tensors = states + activations + (kv or 0)
        terms = _overheads(net, p, setup, tensors, context_bytes, fragmentation)
        breakdown.update({f"overhead/{k}": v for k, v in terms.items()})
        overhead = sum(terms.values())
        total = tensors + overhead
    fit = None
    if gpu is not None and total is not None:
        from paramcalc.catalog import load_gpu

        card = load_gpu(gpu)

        def total_at(b: int) -> int:
            at_b = estimate_memory(net, mode=mode, seq_len=p.seq, batch=b, dtype=dtype, kv_dtype=kv_dtype,
                                   precision=precision, optimizer=optimizer, zero=zero, dp=dp, tp=tp, pp=pp,
                                   sequence_parallel=sequence_parallel, recompute=recompute, attention=attention,
                                   context_bytes=context_bytes, fragmentation=fragmentation).memory.total_per_gpu
            assert at_b is not None  # the same network and settings as `total`, which is known
            return at_b

        fit = Fit(gpu=card.name, gpu_bytes=card.memory_bytes, fits=total <= card.memory_bytes,
                  headroom=card.memory_bytes - total, gpus=setup.world,
                  max_batch=_largest_batch(total_at, card.memory_bytes))
    return MemoryReport(
        model=net.name, mode=setup.mode, seq_len=p.seq, batch=p.batch, notes=notes, settings=setup,
        memory=Memory(weights=weights, gradients=grads, optimizer=opt, activations=activations, kv_cache=kv,
                      model_states_per_gpu=states, overhead=overhead, total_per_gpu=total),
        breakdown=breakdown, fits=fit)


def _stage(zero) -> int:
    value = parse_number(zero, field="zero")
    if value not in (0, 1, 2, 3):
        raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}", field="zero")
    return int(value)


def _adafactor_bytes(net: Network, params: int) -> int:
    """Factored second moments: 4 x (rows + cols) per r x c matrix, approximated
    as 8 x params / hidden (exact for h x h matrices, high for wider ones);
    a network without one width: an unfactored fp32 moment (errs high)."""
    return 8 * params // net.width if net.width else 4 * params


def _overheads(net: Network, p: Pass, s: Setup, tensors: int, context: int, slack: float) -> Breakdown:
    """The per-GPU peak beyond the tensors, as named terms (the first two calibratable):
    the CUDA context, allocator fragmentation, NCCL's buffers, the fp32 logits
    gradient backward materialises, and ZeRO-3's gathered parameters: DeepSpeed's
    estimator keeps 4 bytes per parameter of the largest layer (its 16-bit weights
    and gradients); prefetching the next layer adds its weights again."""
    from paramcalc.units import parse_number

    context = int(parse_number(context, field="context_bytes"))
    slack = float(parse_number(slack, field="fragmentation"))
    if context < 0:
        raise UserError("the CUDA context must be >= 0 bytes", field="context_bytes")
    if not 0 <= slack < 1:
        raise UserError("fragmentation is a share of the tensors in [0, 1)", field="fragmentation")
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


__all__ = ["estimate_memory", "kv_cache_bytes", "model_states", "GIB", "DTYPE_BYTES", "PRECISION", "OPTIMIZER_STATE"]
