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

from dataclasses import dataclass, replace
from functools import cache

from paramcalc.analysis.offload import OFFLOAD_PCIE_BYTES_PER_PARAM, zero_offload_pcie
from paramcalc.analysis.op_checkpoint import op_checkpoint
from paramcalc.analysis.settings import (
    DTYPE_BYTES,
    OFFLOAD,
    OPTIMIZER_STATE,
    PRECISION,
    RECOMPUTE_MODULES,
    STATE_IN_BF16,
    TRAIN_RECOMPUTE,
    TRAINERS,
    check_fp8_activations,
    choose,
    make_pass,
    parse_attention,
    recipe_layers,
    with_lora_flags,
)
from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Breakdown, Pass
from paramcalc.blocks.embed import LMHead
from paramcalc.blocks.lora import quantized_inputs
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.ssm import Mamba, Mamba2
from paramcalc.errors import UserError
from paramcalc.network import Model, Network, lower, stage_of, transformer_layer, unwrap
from paramcalc.network.measured import MeasuredCount
from paramcalc.results.memory import Fit, Memory, MemoryReport, Setup
from paramcalc.units import GIB, human_bytes, parse_number, parse_positive_int

# Runtime overheads outside the tensors PyTorch allocates, as calibratable terms.
CUDA_CONTEXT = 512 * 2**20  # CUDA context + cuBLAS/cuDNN workspaces, typically 0.4-0.6 GiB on H100 with torch
NCCL_BUFFERS = 512 * 2**20  # NCCL's communicator buffers when more than one GPU talks
FRAGMENTATION = 0.05  # the caching allocator's unusable slack, as a share of the tensors

# Whose saved tensors: transformers' eager reference (single-device Hugging Face training), or
# Megatron-LM with Transformer Engine, which multi-GPU plans with TP, SP, PP or CP run (auto: so chosen).
PROFILES = ("auto", "transformers", "megatron")

# Pipeline schedules: 1f1b (Narayanan et al. 2021; interleaved with vpp > 1) and DualPipe
# (DeepSeek-V3 report, section 3.2.1; deepseek-ai/DualPipe).
SCHEDULES = ("1f1b", "dualpipe")


def check_setup(s: Setup) -> Setup:
    """Every memory setting checked, each error naming its setting."""
    for field, value, choices in (("mode", s.mode, ("train", "infer")), ("dtype", s.dtype, DTYPE_BYTES),
                                  ("kv_dtype", s.kv_dtype or s.dtype, DTYPE_BYTES),
                                  ("precision", s.precision, PRECISION), ("optimizer", s.optimizer, OPTIMIZER_STATE),
                                  ("recompute", s.recompute, TRAIN_RECOMPUTE), ("schedule", s.schedule, SCHEDULES),
                                  ("attention", s.attention, ("eager", "flash")),
                                  ("profile", s.profile, PROFILES), ("offload", s.offload, OFFLOAD)):
        choose(value, choices, field)
    if s.mode == "train" and s.precision == "bf16" and s.dtype != "bf16" and not s.quantized_base:
        raise UserError(f"the pure-bf16 recipe keeps bf16 weights, not {s.dtype}", field="precision",
                        fix="use {dtype} bf16, or {precision} mixed")
    if s.mode == "train" and s.offload in ("params", "both") and s.zero < 3:
        raise UserError(f"offloading parameters needs ZeRO-3 / FSDP (they are fetched per layer), got ZeRO-{s.zero}",
                        field="offload", fix="give {zero} 3, or offload the optimizer only")
    if s.mode == "train":
        check_fp8_activations(s.fp8_activations, s.dtype)
    if s.mode == "train" and s.fsdp2 and s.zero < 3:
        raise UserError(f"FSDP2 shards the weights, gradients and optimizer state: it is ZeRO-3, not ZeRO-{s.zero}",
                        field="fsdp2", fix="give {zero} 3, or drop the option")
    if s.mode == "train" and (s.recompute == "deepseek" or s.fp8_activations) and s.profile == "transformers":
        raise UserError("DeepSeek-V3's recomputation and fp8 activation caching are Megatron-style kernels: "
                        "transformers' eager layers keep other tensors", field="profile",
                        fix="use {profile} megatron or auto")
    if s.mode == "train" and s.offload_activations and s.recompute != "full":
        raise UserError("activation offload moves the checkpointed layer inputs to the CPU: it needs full "
                        "recomputation", field="offload_activations", fix="give {recompute} full")
    if s.mode == "train" and s.optimizer_in_backward and s.micro_batches > 1:
        raise UserError("the optimizer step in backward frees each gradient at once: it cannot accumulate "
                        f"{s.micro_batches} micro-batches (torchtune refuses it too)", field="optimizer_in_backward",
                        fix="use one micro-batch per step, or drop the option")
    if s.zero not in (0, 1, 2, 3):
        raise UserError(f"ZeRO stage must be 0, 1, 2 or 3, got {s.zero}", field="zero")
    if s.mode == "train" and s.precision in ("mixed", "megatron") and DTYPE_BYTES[s.dtype] > 2:
        raise UserError(f"the {s.precision} recipe trains with 16-bit (or 8-bit) weights, not {s.dtype}",
                        field="precision", fix="use {dtype} bf16 or fp16, or {precision} fp32")
    if s.mode == "train" and DTYPE_BYTES[s.dtype] < 1 and not s.quantized_base:
        raise UserError(f"full training keeps no {s.dtype} weights", field="dtype",
                        fix="use bf16 (QLoRA's 4-bit base is frozen: give {lora_rank})")
    if s.cp > 1 and s.attention != "flash":
        raise UserError("context parallelism runs flash attention on each sequence chunk", field="attention",
                        fix="use flash attention with {cp}")
    if s.vpp > 1 and s.pp == 1:
        raise UserError("virtual stages interleave a pipeline", field="vpp", fix="give {pp} > 1, or vpp 1")
    if s.mode == "train" and s.schedule == "dualpipe":  # a training schedule: inference ignores it
        check_dualpipe(s.pp, s.vpp, s.micro_batches)
    return s


def dualpipe_problem(pp: int, vpp: int, micro_batches: int) -> str | None:
    """The DualPipe rule a pipeline breaks, as the setting to change ("pp", "vpp", "micro_batches"),
    or None. DualPipe's own limits (deepseek-ai/DualPipe, DualPipe.step's asserts): an even number of
    pipeline ranks, an even number of micro-batches, at least two per rank; its two stages per rank
    are its own interleaving (no virtual stages). The one rule: the memory check, the plan search
    and the estimate's explanation all ask it."""
    if pp < 2 or pp % 2:
        return "pp"
    if vpp > 1:
        return "vpp"
    if micro_batches % 2 or micro_batches < 2 * pp:
        return "micro_batches"
    return None


def dualpipe_error(problem: str, pp: int, micro_batches: int) -> UserError:
    """The error for a `dualpipe_problem`."""
    if problem == "pp":
        return UserError(f"DualPipe feeds the pipeline from both ends: it needs an even number of stages, got {pp}",
                         field="schedule", fix="give an even {pp}, or {schedule} 1f1b")
    if problem == "vpp":
        return UserError("DualPipe places two stages on each rank itself: it takes no virtual stages",
                         field="vpp", fix="give vpp 1 with {schedule} dualpipe")
    return UserError(f"DualPipe needs an even number of micro-batches, at least 2 x pp = {2 * pp}; got "
                     f"{micro_batches}", field="micro_batches", fix="raise the global batch or lower the micro-batch")


def check_dualpipe(pp: int, vpp: int, micro_batches: int) -> None:
    """Raise the error for the first DualPipe rule broken (`dualpipe_problem`)."""
    problem = dualpipe_problem(pp, vpp, micro_batches)
    if problem is not None:
        raise dualpipe_error(problem, pp, micro_batches)


def model_states(params: int, s: Setup, adafactor_state: int | None = None,
                 trainable: int | None = None, nf4: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(weights, gradients, optimizer) bytes per GPU of `params` parameters that live on
    this GPU before ZeRO (the caller splits by tensor, pipeline and expert parallelism);
    ZeRO stage 1 shards the optimizer state over dp x cp, stage 2 the gradients too,
    stage 3 (FSDP) the weights too.

    Gradients, master weights and optimizer state exist for trainable
    parameters only (frozen parts, a LoRA model's base). FP8 training
    (Transformer Engine, torchao) keeps 16-bit weights beside its fp8 GEMMs, and
    fp32 master weights and optimizer state.

    QLoRA (`s.quantized_base`; Dettmers et al. 2023, section 3, as its qlora.py
    and bitsandbytes run it): `nf4` = (parameters, bytes) of the frozen layer
    linears held in NF4 blocks (`nf4_bytes`); every other frozen parameter
    (embeddings, lm_head, norms, biases: PEFT and bitsandbytes leave them
    unquantized) stays 16-bit. The adapters train in bf16 with no fp32 master
    copy (qlora.py casts its LoRA layers to bf16), bf16 gradients, and the
    optimizer's 32-bit state (paged_adamw_32bit: 8 bytes a parameter). Without
    `nf4`, every frozen parameter counts as NF4 (errs low by the 16-bit parts)."""
    if s.mode == "infer":
        return _weight_bytes(params, s.dtype), 0, 0
    trainable = params if trainable is None else trainable
    frozen = params - trainable
    w_b, g_b, master = PRECISION[s.precision]
    dtype = 2 if s.quantized_base or s.dtype == "fp8" else DTYPE_BYTES[s.dtype]  # QLoRA and fp8 keep bf16 weights
    if s.quantized_base:
        quantized, quantized_bytes = nf4 if nf4 is not None else (frozen, nf4_bytes(frozen))
        quantized = min(quantized, frozen)
        frozen_bytes = quantized_bytes + 2 * (frozen - quantized)
        w_b, g_b, master = 2, 2, 0  # bf16 adapters and gradients, no master copy (qlora.py)
    else:
        frozen_bytes = int(frozen * (w_b or dtype))
    weights = trainable * (w_b or dtype) + frozen_bytes
    grads = trainable * (g_b or max(dtype, 2))
    state = (STATE_IN_BF16 if s.precision == "bf16" else OPTIMIZER_STATE)[s.optimizer]
    if state is None:  # adafactor: its factored state depends on the matrices' shapes, which the caller knows
        assert adafactor_state is not None, "adafactor's state is the caller's to count"
        opt = trainable * master + adafactor_state
    else:
        opt = trainable * master + trainable * state
    shards = s.shards
    return (_ceil(weights, shards if s.zero >= 3 else 1), _ceil(grads, shards if s.zero >= 2 else 1),
            _ceil(opt, shards if s.zero >= 1 else 1))


# bitsandbytes' NF4 layout (Linear4bit, quant_type="nf4", compress_statistics=True: QLoRA's
# double quantization; Dettmers et al. 2023, section 3): 4-bit codes, two to a byte; one absmax per
# block of NF4_BLOCK weights, itself quantized to 8 bits in blocks of DQ_BLOCK absmaxes, each such
# block with an fp32 absmax; plus one fp32 offset per tensor (the absmaxes' mean, subtracted before
# quantizing them). Per parameter: 0.5 + 1/64 + 4/(64 x 256) bytes = 4.127 bits: the paper's
# "0.127 bits per parameter" of constants (against 32/64 = 0.5 bits for fp32 absmaxes). Without
# double quantization (compress_statistics=False: transformers' BitsAndBytesConfig default,
# bnb_4bit_use_double_quant=False; Lightning's and LitGPT's "nf4" against "nf4-dq") each block keeps
# its absmax in fp32: 0.5 + 4/64 bytes = 4.5 bits. The shared 256-entry code tables are not per
# tensor and are left out (kilobytes: errs low by that).
NF4_BLOCK = 64
DQ_BLOCK = 256


def nf4_bytes(n: int, double_quant: bool = True) -> int:
    """Bytes of one n-element weight tensor in bitsandbytes' NF4, its block scales double-quantized
    or not (see NF4_BLOCK)."""
    if n <= 0:
        return 0
    blocks = _ceil(n, NF4_BLOCK)
    if not double_quant:
        return _ceil(n, 2) + 4 * blocks
    return _ceil(n, 2) + blocks + 4 * _ceil(blocks, DQ_BLOCK) + 4


def quantized_weights(net: Network, head: bool = False) -> list[tuple[int, int]]:
    """(elements, copies) of each frozen weight tensor QLoRA stores in 4 bits: every nn.Linear of the
    transformer layers (transformers' bitsandbytes integration replaces them all but the output
    embedding, `llm_int8_skip_modules`' default; embeddings, norms, biases and MoE routers stay 16-bit),
    and with `head` the LM head too, as Lightning's BitsandbytesPrecision replaces every nn.Linear
    (`_convert_layers`, no ignore_modules in LitGPT's scripts). A head tied to the embedding stays 16-bit.
    A MoE layer's routed experts are each their own nn.Linear (transformers 4.x's per-expert modules, as PEFT
    and bitsandbytes quantize them): E tensors of 1/E of the bank each. transformers 5 keeps a layer's experts
    as fused 3D parameters, which its bitsandbytes integration (nn.Linear only) leaves in bf16: not modelled."""
    out = []
    for stage in net.layers:
        experts = next((part.experts for part in getattr(unwrap(stage.block), "parts", dict)().values()
                        if isinstance(part, MoE)), 1)
        for key, n in stage.block.params().items():
            full = f"{stage.name}/{key}"
            if (full.endswith("/weight") and "norm" not in full and "/router/" not in full and "lora_" not in full
                    and net.is_frozen(full)):
                out.append((n // experts, stage.copies * experts) if "/experts/" in key else (n, stage.copies))
    if head and net.head is not None:
        for stage in net.stages:
            if unwrap(stage.block) is net.head:  # through a LoRA wrapper (LitGPT's lora_head)
                out += [(n, 1) for key, n in stage.block.params().items()
                        if key.endswith("/weight") and "lora_" not in key and net.is_frozen(f"{stage.name}/{key}")]
    return out


def nf4_base(net: Network, head: bool = False, double_quant: bool = True) -> tuple[int, int]:
    """(parameters, bytes) of the frozen weights QLoRA stores in NF4 (`quantized_weights`), each tensor
    in its own blocks."""
    tensors = quantized_weights(net, head)
    return (sum(n * c for n, c in tensors), sum(nf4_bytes(n, double_quant) * c for n, c in tensors))


def _weight_bytes(params: int, dtype: str) -> int:
    """Inference weights; int4 adds an fp16 scale per group of 128 weights (GPTQ/AWQ-style)."""
    if dtype == "int4":
        return _ceil(params, 2) + 2 * _ceil(params, 128)
    return params * int(DTYPE_BYTES[dtype])  # whole bytes for every dtype but int4


def _ceil(a: int | float, b: int) -> int:
    return -(-int(a) // b)


def inference_kv_dtype(dtype: str, kv_dtype: str | None = None) -> str:
    """The KV cache's dtype when serving: --kv-dtype when given, else 16-bit (bf16) under 8- and
    4-bit weights (GPTQ/AWQ weight-only and fp8 W8A8 keep a 16-bit cache unless told: vLLM's
    kv_cache_dtype "auto" is the model's dtype), else the weights' own (fp32, fp16, bf16)."""
    if kv_dtype:
        return kv_dtype
    return dtype if DTYPE_BYTES.get(dtype, 2) >= 2 else "bf16"


def kv_cache_bytes(net: Network, tokens: int, batch: int, dtype: str) -> int:
    """Exact cache size: K and V per layer per token; MLA keeps one latent; a Mamba layer its
    recurrent state (conv and SSM state, blocks/ssm.py) per sequence; Whisper's decoder layers
    also the K and V of the encoder's fixed positions per sequence; in the cache dtype."""
    if getattr(net, "kind", None) == "clip":  # CLIP's towers encode (causal text included): nothing is generated
        return 0
    total = 0
    for stage in net.layers:
        att = transformer_layer(stage).attention
        cross = transformer_layer(stage).cross_attention
        if cross is not None and cross.memory:  # Whisper: the encoder's K and V, cached once per sequence
            total += stage.count * 2 * cross.kv_heads * cross.head_dim * cross.memory * batch
        if isinstance(att, Attention) and not att.causal:
            continue  # encoder self-attention (BERT, ViT) sees the whole input at once: nothing is cached
        if isinstance(att, (Mamba, Mamba2)):  # no K/V: a constant conv + SSM state per sequence, whatever its length
            total += stage.count * att.state_elements() * batch
            continue
        if isinstance(att, LatentAttention):
            per_token = att.kv_lora_rank + att.qk_rope_head_dim
        else:
            per_token = 2 * att.kv_heads * att.head_dim
        kept = min(tokens, att.window) if isinstance(att, Attention) and att.window else tokens
        total += stage.count * per_token * kept * batch
    return int(total * DTYPE_BYTES[dtype])


# ---------------------------------------------------------------- training: what one GPU holds


@dataclass(frozen=True)
class StageLoad:
    """What one pipeline stage's GPU holds: its parameters (before ZeRO) and the
    activations it saves at its peak, by part."""

    name: str  # whole | first | last
    params: int
    trainable: int
    activations: Breakdown
    head: bool  # the LM head lives here (its logits gradient peaks in backward)
    experts: int = 0  # of `params`, routed-expert parameters (already 1/ep): ZeRO shards them over dp x cp / ep
    experts_trainable: int = 0


def head_layers(net: Network) -> float:
    """The LM head's work in layers' worth (its parameters over a layer's average: GEMM FLOPs per
    token follow parameters), for Megatron's uneven pipeline split."""
    params = net.params()
    names = {st.name for st in net.layers}
    L = sum(st.count for st in net.layers)
    in_layers = sum(v for k, v in params.items() if stage_of(k, names))
    head = net.head
    size = head.vocab * head.width if isinstance(head, LMHead) else sum(head.params().values())
    return size / (in_layers / L) if L and in_layers else 0.0


@cache
def pipeline_split(layers: int, pp: int, head: float) -> tuple[int, int]:
    """(layers on each of the first pp - 1 stages, layers on the last): Megatron-LM lets stages
    differ (--decoder-last-pipeline-num-layers; Llama 3 took a layer off its first and last stages),
    so the last stage, which also runs the head (`head` layers' worth), takes fewer layers when that
    evens the busiest stage."""
    if pp == 1:
        return layers, layers
    most = -(-layers // pp)
    best = (float(most + head), most, max(0, layers - (pp - 1) * most))
    # the busiest stage, max(k, layers - (pp - 1) k + head), falls strictly then rises strictly in k:
    # its first minimum lies beside where the two meet, k = (layers + head) / pp, so only the few
    # k around there are tried (the same answer as every k from `most`, in constant time)
    top = layers // (pp - 1)
    meet = min(int((layers + head) // pp), top)
    for k in range(max(most, meet - 1), min(top, meet + 2) + 1):
        last = layers - (pp - 1) * k
        busiest = max(float(k), last + head)
        if busiest < best[0]:
            best = (busiest, k, last)
    return best[1], best[2]


def recipe_activations(net: Network, s: Setup) -> Activations:
    """How the plan's training forward keeps tensors: the network's own profile, or Megatron-LM's
    (fused dropout: 1-byte masks), with the recomputed modules and fp8 caching the setup asks for."""
    a = net.activations(activation_precision(s), s.attention)
    if s.quantized_base and s.bnb_legacy:  # bitsandbytes < 0.43.2 keeps 4-bit linears' inputs (blocks/base.py)
        a = replace(a, quantized_inputs=True)
    if s.trainer == "litgpt":  # LitGPT's model and LoRA layers (blocks/base.py)
        a = replace(a, litgpt=True)
    if a.megatron or s.profile == "megatron":
        # Megatron's fused dropout keeps 1-byte masks
        a = replace(a, profile="megatron", mask_bytes=1,
                    recompute_modules=RECOMPUTE_MODULES.get(s.recompute, frozenset()), fp8_cache=s.fp8_activations)
    return a


def activation_precision(s: Setup) -> int:
    """Bytes of a stored activation: fp32 recipes 4; a 4-bit base and fp8 recipes compute in bf16."""
    return 4 if s.precision == "fp32" else int(DTYPE_BYTES[s.dtype]) if DTYPE_BYTES[s.dtype] >= 2 else 2


def stage_loads(net: Network, p: Pass, s: Setup) -> list[StageLoad]:
    """The GPU of each pipeline stage that can be the busiest: the only one without
    pipelining; else the first (the embedding and the most micro-batches in flight)
    and the last (the head, its logits and loss)."""
    x = activation_precision(s)
    a = recipe_activations(net, s)
    tokens_cp = Pass(p.batch, p.seq // s.cp, p.attention, p.context)  # context parallel: 1/cp of every sequence
    saved = net.saved(tokens_cp, a)
    params = net.params()
    trainable = net.trainable_params()
    # expert parallelism: each GPU holds 1/ep of the routed experts (Lepikhin et al. 2021)
    local = {k: (_ceil(v, s.ep) if "/moe/experts/" in k else v) for k, v in params.items()}
    local_train = {k: (_ceil(v, s.ep) if "/moe/experts/" in k else v) for k, v in trainable.items()}
    if not net.layers:  # a layers network: one whole micro-batch, its blocks chaining their saved tensors
        return [StageLoad("whole", sum(params.values()), sum(trainable.values()), saved, True)]

    def experts(d: dict[str, int], share: float = 1.0) -> int:
        return int(sum(v for k, v in d.items() if "/moe/experts/" in k) * share)

    first_params = sum(v for k, v in params.items() if k.startswith("embedding"))
    layer_names = {st.name for st in net.layers}
    L = sum(st.count for st in net.layers)
    sp_split = s.tp if s.sequence_parallel else 1

    def is_layer(key: str) -> bool:
        return stage_of(key, layer_names) is not None

    # per-layer saved bytes of one micro-batch at the plan's splits (Korthikanti et al. 2022, section 4)
    layer_bytes = {k: _layer_share(k, v, s) for k, v in saved.items() if is_layer(k)}
    # one layer is recomputed at a time in backward: its whole saved set is live while it runs (under op-level
    # SAC the set includes the part already kept, so errs high by that, one layer's op-saved bytes)
    peak_layer = max(sum(v for k, v in layer_bytes.items() if k.startswith(st.name + "/")) // st.count
                     for st in net.layers)
    if a.recompute_modules:
        # module recomputation (deepseek): one layer's rerun tensors are live at a time in its backward,
        # the most any layer drops (errs high: the norms', the up-projections' and the SwiGLU's outputs
        # are rerun one after another, not held together)
        whole = net.saved(tokens_cp, replace(a, recompute_modules=frozenset()))
        peak_layer = max(sum(_layer_share(k, v, s) - layer_bytes[k] for k, v in whole.items()
                             if k.startswith(st.name + "/")) // st.count for st in net.layers)
        layer_bytes["layers/recomputed_layer"] = peak_layer
    if s.recompute == "full":  # keep each layer's input
        inputs = _ceil(x * tokens_cp.tokens * (net.width or 0), sp_split)  # split by TP under SP
        layer_bytes = {"layers/checkpointed_inputs": L * inputs, "layers/recomputed_layer": peak_layer}
    elif s.recompute == "op":  # torchtitan's op-level SAC: the input, every other mm's output, SDPA's outputs
        kept = op_checkpoint(net, p.batch, p.seq, x=x, tp=s.tp, cp=s.cp, sequence_parallel=s.sequence_parallel,
                             fp8=s.dtype == "fp8")
        layer_bytes = {"layers/op_checkpointed": sum(n * c.saved_bytes for n, c in kept),
                       "layers/recomputed_layer": peak_layer}
    # Megatron's vocab-parallel head: V/tp logits on each rank; sequence parallelism also splits the
    # embedding's output, the final norm and the head's input over the tensor-parallel ranks
    outside = {k: (_ceil(v, s.tp) if k.rsplit("/", 1)[-1] in ("loss", "softcap") else _ceil(v, sp_split))
               for k, v in saved.items() if not is_layer(k)}
    first_keys = [k for k in outside if k.startswith("embedding")]
    if s.pp == 1:
        return [StageLoad("whole", sum(local.values()), sum(local_train.values()), {**layer_bytes, **outside}, True,
                          experts(local), experts(local_train))]

    # 1F1B holds min(m, p) micro-batches of the first stage's layers; the interleaved schedule about
    # L (1 + (p - 1) / (p v)) layers' worth (Korthikanti et al. 2022, section 4.2.3); the last stage one
    most, fewest = pipeline_split(L, s.pp, head_layers(net))
    in_flight = min(s.micro_batches, s.pp)
    first_factor = most / L * in_flight if s.vpp == 1 else in_flight / s.pp * (1 + (s.pp - 1) / (s.pp * s.vpp))

    def scaled(factor: float) -> Breakdown:  # the one layer being recomputed is not multiplied by micro-batches
        return {k: v if k == "layers/recomputed_layer" else int(v * factor) for k, v in layer_bytes.items()}

    in_layers = sum(v for k, v in local.items() if is_layer(k))
    train_layers = sum(v for k, v in local_train.items() if is_layer(k))
    last_params = sum(v for k, v in params.items() if not is_layer(k) and not k.startswith("embedding"))
    head = net.head
    if isinstance(head, LMHead) and head.tied:  # the last stage keeps its own copy of a tied table (Megatron)
        last_params += head.vocab * head.width
    if s.schedule == "dualpipe":
        # DualPipe (DeepSeek-V3 report, section 3.2.1 and table 2): rank i holds stage i and stage p - 1 - i,
        # so two stages' parameters (2x), rank 0 both ends (the embedding, the head and its loss), and p + 1
        # micro-batches of one stage's activations in flight (errs high on rank 0, whose last stage is shorter)
        factor = most / L * min(s.micro_batches, s.pp + 1)
        ends, middle = most + fewest, 2 * most
        return [StageLoad("first", in_layers * ends // L + first_params + last_params,
                          train_layers * ends // L + first_params + last_params, {**scaled(factor), **outside}, True,
                          experts(local, ends / L), experts(local_train, ends / L)),
                StageLoad("middle", in_layers * middle // L, train_layers * middle // L, scaled(factor), False,
                          experts(local, middle / L), experts(local_train, middle / L))]
    first = StageLoad("first", in_layers * most // L + first_params, train_layers * most // L + first_params,
                      {**scaled(first_factor), **{k: outside[k] for k in first_keys}}, False,
                      experts(local, most / L), experts(local_train, most / L))
    last = StageLoad("last", in_layers * fewest // L + last_params, train_layers * fewest // L + last_params,
                     {**scaled(fewest / L), **{k: v for k, v in outside.items() if k not in first_keys}}, True,
                     experts(local, fewest / L), experts(local_train, fewest / L))
    return [first, last]


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


def resolve_profile(profile: str, s: Setup) -> str:
    """auto: Megatron-LM's tensors for a plan with TP, SP, PP or CP (what such plans run), else
    transformers' eager reference (single-device Hugging Face training)."""
    choose(profile, PROFILES, "profile")
    if profile != "auto":
        return profile
    parallel = s.tp > 1 or s.sequence_parallel or s.pp > 1 or s.cp > 1
    # DeepSeek-V3's recipe exists only as Megatron-style kernels (its own framework, Megatron-Core's modules)
    recipe = s.recompute == "deepseek" or s.fp8_activations
    return "megatron" if s.mode == "train" and (parallel or recipe) else "transformers"


@dataclass(frozen=True)
class Terms:
    """One GPU's bytes, by kind, and the parts they are made of."""

    weights: int
    gradients: int
    optimizer: int
    activations: int | None
    kv_cache: int | None
    overhead: int | None
    breakdown: Breakdown
    cpu: int = 0  # bytes offloaded to CPU memory
    pcie_step: int = 0  # PCIe bytes per optimizer step (optimizer offload)
    pcie_micro: int = 0  # PCIe bytes per micro-batch (parameter, activation and ZeRO-Offload's gradient offload)
    cpu_params: int = 0  # parameters stepped on the CPU (optimizer offload's shard)
    paged: int = 0  # of `optimizer`, what a paged optimizer keeps in CUDA managed memory (`paged_share`)

    @property
    def states(self) -> int:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> int | None:
        if self.activations is None:
            return None
        return self.states + self.activations + (self.kv_cache or 0) + (self.overhead or 0)


def memory_terms(net: Network, p: Pass, s: Setup, *, context: int = CUDA_CONTEXT,
                 slack: float = FRAGMENTATION) -> Terms:
    """The bytes of the busiest GPU (a pipeline's first or last stage), without a report:
    what `estimate_memory` reports and the plan search (analysis/estimate.py) compares."""
    params = net.total_params
    if not net.has_architecture:
        split = s.tp * s.pp
        trainable = sum(net.trainable_params().values())
        weights, grads, opt = model_states(_ceil(params, split), s, _adafactor_bytes(net, trainable),
                                           _ceil(trainable, split))
        # a module torch profiled (network/profiled.py): what autograd saved, one whole micro-batch
        saved = net.saved_bytes(p.batch, p.seq, activation_precision(s)) \
            if isinstance(net, MeasuredCount) and s.mode == "train" else None
        if saved is None:
            return Terms(weights, grads, opt, None, None, None, {})
        terms = {"cuda_context": context, "fragmentation": int(slack * (weights + grads + opt + saved))}
        if s.world > 1:
            terms["nccl_buffers"] = NCCL_BUFFERS
        return Terms(weights, grads, opt, saved, 0, sum(terms.values()),
                     {"activations/measured": saved} | {f"overhead/{k}": v for k, v in terms.items()})
    if s.mode == "infer":
        split = s.tp * s.pp
        weights, _, _ = model_states(_ceil(params, split), s)
        kv = _ceil(kv_cache_bytes(net, p.seq, p.batch, inference_kv_dtype(s.dtype, s.kv_dtype)), split)
        # Serving keeps no autograd state: the working set of one layer (eager attention's s x s scores
        # too), split by TP where there are layers; 8- and 4-bit weights compute in 16-bit activations.
        working = net.working_set(p, max(2, int(DTYPE_BYTES[s.dtype])), s.attention)
        activations = _ceil(working, s.tp) if net.layers else working
        terms = _overheads(net, p, s, weights + activations + kv, context, slack, head=False, stage_params=0)
        return Terms(weights, 0, 0, activations, kv, sum(terms.values()),
                     {f"overhead/{k}": v for k, v in terms.items()})
    best: Terms | None = None
    base = nf4_base(net, s.trainer == "litgpt", s.double_quant) if s.quantized_base else None
    frozen_all = params - sum(net.trainable_params().values())
    for load in stage_loads(net, p, s):
        local, train = _ceil(load.params, s.tp), _ceil(load.trainable, s.tp)
        nf4 = None
        if base is not None:  # this GPU's share of the NF4 base: exact without TP/PP, else pro rata (errs either way)
            share = (local - train) / frozen_all if frozen_all else 0.0
            nf4 = (int(base[0] * share), int(base[1] * share))
        if s.ep > 1 and load.experts:
            # expert parameters shard over the expert-data-parallel group: dp x cp / ep ranks (Megatron-Core)
            e_local, e_train = _ceil(load.experts, s.tp), _ceil(load.experts_trainable, s.tp)
            grouped = s.model_copy(update={"dp": max(1, s.shards // s.ep), "cp": 1})
            ew, eg, eo = model_states(e_local, grouped, _adafactor_bytes(net, e_train), e_train)
            dw, dg, do = model_states(local - e_local, s, _adafactor_bytes(net, train - e_train), train - e_train,
                                      nf4)
            weights, grads, opt = dw + ew, dg + eg, do + eo
        else:
            weights, grads, opt = model_states(local, s, _adafactor_bytes(net, train), train, nf4)
        kept: Breakdown = dict(load.activations)
        cpu, pcie_step, pcie_micro = {}, 0, 0
        if s.chunked_loss and load.head:
            kept = _chunked_loss(net, p, s, kept)
        if s.offload_activations:
            kept, cpu["activations"] = _offload_activations(net, kept)
            pcie_micro += 2 * cpu["activations"]  # out in forward, back in for the backward's recomputation
        if s.optimizer_in_backward:
            grads = _largest_gradient(net, s, train)
        cpu_params = 0
        if s.offload in ("optimizer", "both"):
            # ZeRO-Offload (Ren et al. 2021, section 4.1): fp32 master, optimizer state and the gradients
            # live on the CPU, where the step runs on this GPU's shard
            cpu["optimizer"], cpu["gradients"] = opt, grads
            cpu_params = _ceil(train, s.shards if s.zero >= 1 else 1)
            if s.offload == "optimizer":  # DeepSpeed's gradient round trips per micro-batch (analysis/offload.py)
                step_bytes, micro_bytes = zero_offload_pcie(cpu_params, s.zero)
                pcie_step, pcie_micro = pcie_step + step_bytes, pcie_micro + micro_bytes
            else:  # FSDP's CPUOffload: the paper's minimum, 16-bit gradients out and weights in (errs fast)
                pcie_step += OFFLOAD_PCIE_BYTES_PER_PARAM * cpu_params
            opt, grads = 0, 0
        if s.offload in ("params", "both"):
            # DeepSpeed's offload_param / FSDP's CPUOffload: the 16-bit weight shards live on the CPU and
            # are copied in before each gather, in forward and again in backward (per micro-batch)
            cpu["weights"] = weights
            pcie_micro += 2 * weights
            weights = 0
        activations = sum(kept.values())
        terms = _overheads(net, p, s, weights + grads + opt + activations, context, slack, head=load.head,
                           stage_params=local, loss_saved=kept.get("head/loss", 0))
        parts = kept | {f"overhead/{k}": v for k, v in terms.items()} | {f"cpu/{k}": v for k, v in cpu.items()}
        candidate = Terms(weights, grads, opt, activations, 0, sum(terms.values()), parts, sum(cpu.values()),
                          pcie_step, pcie_micro, cpu_params, int(opt * paged_share(net, s)))
        if best is None or (candidate.total or 0) > (best.total or 0):
            best = candidate
    assert best is not None  # stage_loads returns at least one stage
    return best


def estimate_memory(model: Model, *, mode: str = "train", seq_len=None, batch=1, dtype: str = "bf16",
                    kv_dtype: str | None = None, precision: str | None = None, optimizer: str = "adamw", zero=0, dp=1,
                    tp=1, pp=1, cp=1, ep=1, vpp=1, micro_batches=None, sequence_parallel: bool = False,
                    recompute: str = "none", attention: str = "flash", reshard: bool = True, profile: str = "auto",
                    schedule: str = "1f1b", fsdp2: bool | None = None,
                    gpu: str | None = None, lora_rank=None, lora_targets: str | None = None, lora_dropout=None,
                    bnb_legacy: bool = False, double_quant: bool = True, trainer: str = "hf",
                    longest_first: bool = False,
                    context_bytes=CUDA_CONTEXT, fragmentation=FRAGMENTATION, offload: str = "none",
                    offload_activations: bool = False, chunked_loss: bool = False,
                    optimizer_in_backward: bool = False, fp8_activations: bool = False) -> MemoryReport:
    """Bytes per GPU: weights, gradients, optimizer state, activations, KV cache, overheads.

    Training at the model's pre-training context (`seq_len` default) with flash attention by
    default; a plan's degrees (dp, tp, pp, cp, ep, vpp) split it as Megatron-LM does, and
    `micro_batches` per step set how many a pipeline's first stage holds (default: pp; 2 x pp, its
    least, under DualPipe). `fsdp2`: ZeRO-3 is torchtitan's FSDP2 (`torchtitan`), as `estimate`'s
    plans take it; by default, where the Megatron profile's ZeRO-3 runs the 1F1B schedule.

    >>> estimate_memory("llama-3.1-8b", mode="infer", seq_len=8192, batch=2).memory.kv_cache
    2147483648
    """
    net = with_lora_flags(lower(model), lora_rank, lora_targets, lora_dropout)
    if precision is None:  # fp32 weights train in fp32; 16- and 8-bit ones in ZeRO's mixed recipe
        precision = "fp32" if dtype in ("fp32", "tf32") else "mixed"
    params = net.total_params
    trainable = sum(net.trainable_params().values())
    quantized = mode == "train" and dtype == "int4" and trainable < params
    for field, what, given in (("bnb_legacy", "bnb_legacy", bnb_legacy),
                               ("double_quant", "NF4 without double quantization", not double_quant)):
        if given and not quantized:
            raise UserError(f"{what} describes QLoRA's 4-bit base", field=field,
                            fix="QLoRA: dtype int4 with LoRA adapters, training")
    if trainer not in TRAINERS:
        raise UserError(f"unknown trainer {trainer!r}", field="trainer", fix=f"one of {', '.join(TRAINERS)}")
    if trainer == "litgpt" and (getattr(net, "kind", None) != "decoder" or getattr(net, "recurrent_state", False)
                                or recipe_layers(net)[0]):
        raise UserError(f"LitGPT's scripts do not train {net.name} (trainer litgpt models LitGPT's decoder layers)",
                        field="trainer", fix="a decoder-only transformer with multi-head, grouped-query or "
                                             "multi-query attention, or trainer hf")
    ranks = {k: parse_positive_int(v, field=k) for k, v in (("dp", dp), ("tp", tp), ("pp", pp), ("cp", cp),
                                                              ("ep", ep), ("vpp", vpp))}
    setup = Setup(mode=mode, dtype=dtype, kv_dtype=kv_dtype, precision=precision, optimizer=optimizer,
                  zero=_stage(zero), **ranks, sequence_parallel=sequence_parallel, recompute=recompute,
                  attention=parse_attention(attention), reshard=reshard, quantized_base=quantized,
                  bnb_legacy=bnb_legacy and quantized, double_quant=double_quant, trainer=trainer,
                  longest_first=longest_first,
                  micro_batches=ranks["pp"] * (2 if schedule == "dualpipe" else 1) if micro_batches is None else
                  parse_positive_int(micro_batches, field="micro_batches"), offload=offload, schedule=schedule,
                  offload_activations=offload_activations, chunked_loss=chunked_loss,
                  optimizer_in_backward=optimizer_in_backward, fp8_activations=fp8_activations)
    profile = resolve_profile(profile, setup)
    if fsdp2 is None:  # ZeRO-3 beside TP, PP or CP is in practice torchtitan's FSDP2, as the plans take it
        fsdp2 = setup.zero >= 3 and profile == "megatron" and setup.schedule == "1f1b"
    setup = check_setup(setup.model_copy(update={"profile": profile, "fsdp2": fsdp2}))
    if setup.tp > 1:
        net.check_tensor_parallel(setup.tp)
    if setup.ep > 1 and setup.shards % setup.ep:
        raise UserError(f"expert parallel {setup.ep} must divide dp x cp = {setup.shards}", field="ep",
                        fix="experts spread over the data-parallel ranks")
    asked = None if seq_len is None else parse_positive_int(seq_len, field="seq_len")
    if asked is None and mode == "train":
        asked = net.training_seq_len
    p = make_pass(net, asked, batch)
    if setup.cp > 1 and p.seq % setup.cp:
        raise UserError(f"context parallel {setup.cp} does not divide the sequence ({p.seq})", field="cp")
    weights_are = "an int4 frozen base, bf16 adapters and activations (QLoRA)" if quantized \
        else "fp8 GEMMs, bf16 weights, the Linears' inputs cached in fp8 (DeepSeek-V3's recipe)" \
        if setup.dtype == "fp8" and setup.mode == "train" and setup.fp8_activations \
        else "fp8 GEMMs, bf16 weights and activations (Transformer Engine's recipe)" \
        if setup.dtype == "fp8" and setup.mode == "train" else f"{setup.dtype} weights and activations" \
        if setup.mode == "train" or DTYPE_BYTES[setup.dtype] >= 2 else \
        f"{setup.dtype} weights, 16-bit activations and a {inference_kv_dtype(setup.dtype, setup.kv_dtype)} KV " \
        "cache (weight-only GPTQ/AWQ and fp8 W8A8 keep a 16-bit cache unless a KV dtype is given)"
    notes = [f"{setup.mode}: {weights_are}"
             + (f", {setup.precision} precision, {setup.optimizer}, ZeRO-{setup.zero}"
                if setup.mode == "train" else ""),
             "bytes per GPU; GiB = 2^30 bytes", *net.seq_notes(None if seq_len is None else p.seq)]
    if setup.mode == "train" and seq_len is None:
        notes.append(f"sequence: {p.seq:,} tokens, the context the model was pre-trained at (or the default)")
    if setup.mode == "train" and net.layers:
        notes.append("activations as " + ("Megatron-LM with Transformer Engine keeps them (Korthikanti et al. "
                                          "2022: 16-bit tensors, 1-byte dropout masks)" if setup.profile == "megatron"
                                          else "LitGPT's model keeps them (transformers' reference with LitGPT's fused "
                                          "qkv and LoRA layers, measured against litgpt 0.3.1)"
                                          if setup.trainer == "litgpt"
                                          else "transformers' eager implementation keeps them (the reference)")
                     + f", {setup.attention} attention")
    if getattr(net, "recurrent_state", False):
        notes.append("state-space (Mamba) layers cache no keys or values: the KV cache term is their recurrent "
                     "state, conv (d_inner x (conv_kernel - 1)) and SSM (d_inner x state_size) per layer and "
                     "sequence, whatever its length" + ("; attention layers (a hybrid: Jamba) cache keys and values "
                                                        "per token" if getattr(net, "heads", 0) else "")
                     if setup.mode == "infer" else
                     "Mamba layers' activations: transformers' torch path (the sequential selective scan, fp32 "
                     "d_inner x state_size tensors per token), under any profile; fused CUDA kernels keep far less")
    measured = isinstance(net, MeasuredCount) and setup.mode == "train" \
        and net.saved_bytes(p.batch, p.seq, activation_precision(setup)) is not None
    if measured:
        notes.append("activations: the bytes torch saw saved for backward (saved_tensors_hooks, each storage once, "
                     "parameters excluded) in one forward with the loss, floating tensors in the parameters' dtype "
                     "at this dtype; recomputation and tensor/pipeline splits of them are not modelled")
    elif not net.has_architecture:
        notes.append("a bare count: activations and KV cache need the architecture (null)")
    if setup.mode == "train" and trainable < params:
        notes.append(f"gradients and optimizer state for the {trainable:,} trainable of {params:,} parameters"
                     + ("; QLoRA: the layers' frozen linears" + (" and the LM head" if trainer == "litgpt" else "")
                        + " in NF4 (blocks of 64, " + ("double-quantized scales: 4.127" if double_quant else
                                                       "fp32 scales: 4.5") + " bits a weight), embeddings "
                        + ("and norms" if trainer == "litgpt" else "lm_head and norms") + " in bf16 (as "
                        + ("Lightning's BitsandbytesPrecision leaves" if trainer == "litgpt" else
                           "bitsandbytes and PEFT leave") + " them), bf16 adapters and gradients without an fp32 "
                        f"master copy, {setup.optimizer} state in "
                        + ("8 bits" if "8bit" in setup.optimizer else "32 bits" if setup.precision != "bf16"
                           or setup.optimizer.startswith("paged") else "bf16 (torch.optim's under pure bf16)") + (
                            "" if setup.optimizer.startswith("paged") else
                            " (QLoRA's own optimizer is paged_adamw_32bit, which pages its state to CPU memory under "
                            "pressure: --optimizer paged-adamw lets the fit verdict count on that)")
                        if quantized else "")
                     + ("" if measured else _frozen_note(net, setup, quantized)))
    if net.has_architecture and not net.layers and setup.mode == "train" \
            and (setup.recompute != "none" or setup.tp > 1 or setup.pp > 1 or setup.cp > 1):
        notes.append("recomputation and tensor/pipeline/context splits of activations are not modelled for layers "
                     "networks: activations are one whole micro-batch's")
        setup = setup.model_copy(update={"recompute": "none", "tp": 1, "pp": 1, "cp": 1})
    if setup.mode == "infer" and setup.schedule == "dualpipe":
        notes.append("schedule dualpipe ignored: a training schedule (forward and backward chunks paired); "
                     "inference memory does not depend on it")
        setup = setup.model_copy(update={"schedule": "1f1b"})
    if setup.mode == "infer" and (setup.recompute != "none" or setup.fp8_activations):
        ignored = [f"recompute {setup.recompute}"] * (setup.recompute != "none") \
            + ["fp8 activations"] * setup.fp8_activations
        notes.append(f"{' and '.join(ignored)} ignored: training only (what backward reruns or reads); inference "
                     "keeps no activations for a backward")
        setup = setup.model_copy(update={"recompute": "none", "fp8_activations": False})
    if setup.pp > 1 and setup.mode == "train" and setup.schedule == "dualpipe":
        notes.append("DualPipe (DeepSeek-V3): each rank holds two stages (twice the parameters) and pp + 1 "
                     "micro-batches of a stage's activations; rank 0 holds both ends, the embedding and the head")
    elif setup.pp > 1 and setup.mode == "train":
        notes.append("the busiest pipeline stage: the first (the embedding and the micro-batches in flight) or the "
                     "last (the head and its loss), whichever holds more")
    mla, moe = recipe_layers(net)
    if setup.mode == "train" and setup.recompute == "deepseek":
        rerun = ["the norms' outputs", *["MLA's up-projections with their rotary"] * mla,
                 *["the routed experts' SwiGLU output"] * moe]
        listed = rerun[0] if len(rerun) == 1 else ", ".join(rerun[:-1]) + ("," if len(rerun) > 2 else "") \
            + " and " + rerun[-1]
        absent = " or ".join(name for name, has in (("MLA", mla), ("MoE", moe)) if not has)
        notes.append("deepseek recomputation (DeepSeek-V3 report, section 3.2.3; Megatron-Core's recompute modules "
                     f"layernorm, mla_up_proj, moe_act): {listed} are rerun in backward"
                     + (f" (no {absent} layers here)" if absent else "") + "; each layer keeps the rest")
    if setup.mode == "train" and setup.fp8_activations:
        notes.append("fp8 activations (DeepSeek-V3 report, section 3.3.3): each Linear's input cached in fp8 with an "
                     "fp32 scale per 128 channels, the attention output in 12-bit E5M6"
                     + (", the MoE SwiGLU's input in fp8" if moe else "") + "; attention's q, k, v"
                     + (", the norms' inputs and the router's input" if moe else " and the norms' inputs")
                     + " stay 16-bit")
    if setup.mode == "train" and setup.recompute == "op":
        notes.append("op-level selective recomputation (torchtitan): each layer keeps its input, every other "
                     "matmul's output (none under fp8: torchao's GEMMs are not aten.mm) and the attention output "
                     "with its logsumexp; the backward reruns the rest")
    if torchtitan(setup) and isinstance(net.head, LMHead) and net.layers:
        piped = (", gradients accumulate unsharded in fp32 over micro-batches, and every pipeline stage keeps "
                 "each micro-batch's output until the step ends") if setup.pp > 1 else ""
        notes.append("ZeRO-3 as torchtitan's FSDP2 runs it: its loss upcasts the logits to fp32 (12 bytes a logit at "
                     "the backward peak, 16 under TP's loss parallel)" + piped)
    notes += _saver_notes(setup) + _trainer_notes(setup)
    terms = memory_terms(net, p, setup, context=_context(context_bytes), slack=_slack(fragmentation))
    total = terms.total
    fit = None
    fits = None
    if gpu is not None and total is not None:
        from paramcalc.catalog import load_gpu

        card = load_gpu(gpu)

        def total_at(b: int) -> int:
            at_b = memory_terms(net, replace(p, batch=b), setup, context=_context(context_bytes),
                                slack=_slack(fragmentation)).total
            assert at_b is not None  # the same network and settings as `total`, which is known
            return at_b

        # bitsandbytes' paged optimizers keep their state in CUDA unified memory, which the driver evicts to CPU
        # memory when the GPU runs out and pages back for each step (Dettmers et al. 2023, QLoRA, section 3,
        # "Paged Optimizers"): a run fits when everything but that state does
        pageable = terms.paged
        fits = total - pageable <= card.memory_bytes
        if fits and total > card.memory_bytes:
            notes.append(f"fits by paging: {human_bytes(total - card.memory_bytes)} of the {setup.optimizer} state "
                         "lives in CPU memory (bitsandbytes' paged optimizers on CUDA unified memory), paged in for "
                         "each optimizer step: slower steps")
        fit = Fit(gpu=card.name, gpu_bytes=card.memory_bytes, fits=fits, headroom=card.memory_bytes - total,
                  gpus=setup.world, max_batch=_largest_batch(total_at, card.memory_bytes + pageable))
    return MemoryReport(
        model=net.name, mode=setup.mode, seq_len=p.seq, batch=p.batch, notes=notes, settings=setup,
        memory=Memory(weights=terms.weights, gradients=terms.gradients, optimizer=terms.optimizer,
                      activations=terms.activations, kv_cache=terms.kv_cache, model_states_per_gpu=terms.states,
                      overhead=terms.overhead, total_per_gpu=total, fits=fits, cpu_bytes=terms.cpu,
                      pcie_bytes_per_step=terms.pcie_step, pcie_bytes_per_micro_batch=terms.pcie_micro,
                      cpu_optimizer_params=terms.cpu_params, optimizer_paged=terms.paged),
        breakdown=terms.breakdown, fits=fit)


def _frozen_note(net: Network, s: Setup, quantized: bool) -> str:
    """How a partly frozen network's activations are counted (blocks/lora.py Adapted.saved)."""
    if not net.frozen_base() or net.adapters is None or s.profile == "megatron":  # Megatron's profile: whole
        return "; activations as if every layer trained (errs high: frozen layers keep less)"
    bnb = (", bitsandbytes' 4-bit linears theirs, as before 0.43.2" if s.bnb_legacy else
           "; bitsandbytes' 4-bit linears keep none either, since 0.43.2" if quantized else "")
    dropout = net.adapters.dropout
    return ("; activations as autograd keeps them with the base frozen: a frozen linear keeps no input (the adapters "
            f"keep what they read{bnb}), a frozen norm no normalised copy (attention, dense and MoE MLPs, layer and "
            "q/k norms; MLA projections and cross-attention as if trained: errs high)"
            + (f", each adapter its lora_dropout copy and mask (p = {dropout:g})" if dropout else ""))


def _trainer_notes(s: Setup) -> list[str]:
    """The transients QLoRA and LitGPT's loop add at the peak, said where they apply."""
    if s.mode != "train":
        return []
    notes = []
    if s.quantized_base:
        notes.append("QLoRA's matmuls dequantize each 4-bit weight whole before the GEMM (bitsandbytes' MatMul4Bit): "
                     "the largest one's 16-bit copy is counted at the peak, "
                     + ("4 bytes a weight (quantized from fp16, so an fp16 copy and its bf16 cast at once: "
                        + ("bitsandbytes up to 0.42)" if s.bnb_legacy else "Lightning's plugin)")
                        if s.bnb_legacy or s.trainer == "litgpt" else "2 bytes a weight"))
    if s.trainer == "litgpt":
        notes.append("LitGPT's loop (finetune/lora.py, full.py) holds the last step's logits until the next forward "
                     "returns and its graph until the next loss exists"
                     + (": with bitsandbytes' kept inputs (--bnb-legacy) they outlive the step, counted with the old "
                        "logits as previous_step where that beats the backward peak"
                        if s.quantized_base and s.bnb_legacy else
                        " (the old bf16 logits stay under the loss's own peak); its loss stays bf16 (no fp32 upcast)"))
    return notes


def _saver_notes(s: Setup) -> list[str]:
    """What each memory saver does to the bytes, and which implementation it mirrors."""
    if s.mode != "train":
        return []
    notes = []
    if s.optimizer == "adamw-bf16":
        notes.append("adamw-bf16: AdamW's first and second moments in bf16, 4 bytes a parameter (DeepSeek-V3 report, "
                     "section 3.3.3); master weights and gradients as the precision keeps them")
    if s.precision == "bf16":
        notes.append("pure bf16 (torchtune's dtype bf16, LitGPT's bf16-true): bf16 weights and gradients, no fp32 "
                     "master copy, torch.optim's state in bf16 (Adam: 2 + 2 + 4 bytes a parameter; bitsandbytes' "
                     "8-bit and paged optimizers keep their own)")
    if "8bit" in s.optimizer or s.optimizer.startswith("paged"):
        notes.append(f"{s.optimizer}: bitsandbytes' " + ("8-bit states (2 bytes a parameter, block scales left "
                                                         "out)" if "8bit" in s.optimizer else "32-bit states")
                     + ("; paged: unified memory that moves to the CPU under pressure: counted in the total, "
                        "and the fit verdict lets it page out (tensors of 100,000 elements or more; bitsandbytes keeps "
                        "smaller ones in plain GPU memory)"
                        if s.optimizer.startswith("paged") else ""))
    if s.chunked_loss:
        notes.append("chunked loss: Liger Kernel's fused linear cross-entropy (Hsu et al. 2024): one chunk of "
                     "logits and the head input's gradient instead of fp32 logits over the whole vocabulary")
    if s.optimizer_in_backward:
        notes.append("optimizer step in backward (torchtune's optimizer_in_bwd): each gradient is applied and "
                     "freed at once; the largest trainable tensor's gradient is held")
    if s.offload != "none":
        notes.append({"optimizer": "offload optimizer (DeepSpeed ZeRO-Offload, Ren et al. 2021): master, "
                                   "optimizer state and gradients in CPU memory, the step on the CPU",
                      "params": "offload params (DeepSpeed's offload_param under ZeRO-3): the 16-bit weight "
                                "shards in CPU memory, copied in per layer in forward and backward",
                      "both": "offload both (FSDP's CPUOffload(offload_params=True), DeepSpeed's offload_param "
                              "+ offload_optimizer): weights, gradients and optimizer state in CPU memory"}[s.offload]
                     + "; cpu_bytes reports them, and PCIe traffic per step and micro-batch is given")
    if s.offload_activations:
        notes.append("activation offload (torchtune's OffloadActivations, Megatron-LM's --cpu-offloading): the "
                     "checkpointed layer inputs in pinned CPU memory, two layers' worth on the GPU")
    return notes


def _context(value) -> int:
    context = int(parse_number(value, field="context_bytes"))
    if context < 0:
        raise UserError("the CUDA context must be >= 0 bytes", field="context_bytes")
    return context


def _slack(value) -> float:
    slack = float(parse_number(value, field="fragmentation"))
    if not 0 <= slack < 1:
        raise UserError("fragmentation is a share of the tensors in [0, 1)", field="fragmentation")
    return slack


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


def _chunked_loss(net: Network, p: Pass, s: Setup, saved: Breakdown) -> Breakdown:
    """Liger Kernel's fused linear cross-entropy (Hsu et al. 2024, "Liger Kernel: Efficient Triton
    Kernels for LLM Training", section 3; liger_kernel/ops/fused_linear_cross_entropy.py; torchtune's
    chunked CE does the same in 8 chunks): the logits never exist whole. The head's input is split into
    chunks of next_power_of_2(ceil(T / ceil(V / h))) tokens (so a chunk's logits are about the size of
    the hidden states); each chunk's logits are computed in the activation dtype, turned into their
    gradient in place, and multiplied back at once into the input's gradient (T x h, allocated up
    front) and the head's weight gradient (counted with the gradients). Kept: one chunk of logits, the
    input gradient and an fp32 loss per token, instead of the fp32 log-probabilities over V per token
    and their gradient. Mirrors liger_kernel's LigerFusedLinearCrossEntropyLoss (TRL's and Axolotl's
    `use_liger_kernel`)."""
    head = net.head
    if not isinstance(head, LMHead):
        raise UserError(f"{net.name} has no language-model head to fuse with its loss", field="chunked_loss",
                        fix="drop the option: the fused loss replaces an LM head's logits")
    name = net.stages[-1].name
    x = activation_precision(s)
    T = _ceil(p.batch * p.seq, s.cp)
    chunk = 1 << max(0, (_ceil(T, _ceil(head.vocab, head.hidden)) - 1).bit_length())
    chunk = min(chunk, T)
    kept = {k: v for k, v in saved.items() if not (k.startswith(name + "/") and k.rsplit("/", 1)[-1]
                                                   in ("loss", "softcap"))}
    return kept | {f"{name}/fused_loss_chunk": _ceil(x * chunk * head.vocab, s.tp),
                   f"{name}/fused_loss_input_grad": x * T * head.hidden + 4 * T}


def _offload_activations(net: Network, saved: Breakdown) -> tuple[Breakdown, int]:
    """torchtune's OffloadActivations (with activation checkpointing; Megatron-LM's
    --cpu-offloading does the same): each layer's checkpointed input goes to pinned CPU memory in
    forward and comes back, one layer ahead, in backward. The GPU keeps two layers' inputs (the one
    in use and the one in flight); the rest is CPU memory. (saved on the GPU, bytes on the CPU)."""
    key = "layers/checkpointed_inputs"
    total = saved.get(key, 0)
    layers = sum(st.count for st in net.layers) or 1
    kept = min(total, 2 * _ceil(total, layers))
    return saved | {key: kept}, total - kept


def _largest_gradient(net: Network, s: Setup, trainable: int) -> int:
    """torchtune's optimizer_in_bwd (register_post_accumulate_grad_hook): each parameter steps as soon
    as its gradient is complete, and the gradient is freed; the peak holds about one tensor's
    gradient, the largest trainable one (errs low when several finish together)."""
    counts = {st.name: st.count for st in net.layers}
    largest = max((v // counts.get(stage_of(k, counts) or "", 1) for k, v in net.trainable_params().items()),
                  default=0)
    g_b = 2 if s.quantized_base else PRECISION[s.precision][1] or max(int(DTYPE_BYTES[s.dtype]), 2)
    return _ceil(min(largest, trainable) * g_b, s.tp)


def _overheads(net: Network, p: Pass, s: Setup, tensors: int, context: int, slack: float, *, head: bool,
               stage_params: int, loss_saved: int = 0) -> Breakdown:
    """The per-GPU peak beyond the tensors, as named terms (the first two calibratable):
    the CUDA context, allocator fragmentation, NCCL's buffers, the loss's gradients
    over the logits at its backward peak (on the head's stage: `_loss_gradient_bytes`;
    torchtitan's loss under FSDP2 plans: `_torchtitan_loss`), and ZeRO-3's gathered parameters: DeepSpeed's
    estimator keeps 4 bytes per parameter of the largest layer (its 16-bit weights and
    gradients); prefetching the next layer adds its weights again. FSDP without
    resharding (Llama 3's and torchtitan's with pipelining) keeps the stage's 16-bit
    weights gathered from forward to backward, and, accumulating over micro-batches,
    their unsharded gradients until the last one reduce-scatters: in fp32, FSDP2's
    reduce_dtype (torchtitan's default mixed_precision_reduce), which FSDP2 accumulates
    in when it skips the reduce-scatter (pytorch/pytorch#125191, "Accumulated in
    reduce_dtype if not syncing grads": FSDPParam.unsharded_accumulated_grad; torch's
    PipelineStage sets requires_gradient_sync False for every backward but the last).
    QLoRA adds the 16-bit copy of a 4-bit weight each matmul dequantizes (`_dequantized_weight`);
    LitGPT's loop the last step's logits and leftovers (`_previous_step`)."""
    out = {"cuda_context": context, "fragmentation": int(slack * tensors)}
    if s.world > 1:
        out["nccl_buffers"] = NCCL_BUFFERS
    if s.mode == "train":
        titan = torchtitan(s) and isinstance(net.head, LMHead)
        logits = 0
        if head and not s.chunked_loss:  # a fused loss keeps only a chunk (in the activations)
            logits = _ceil(net.stages[-1].block.output_elements(p), s.tp * s.cp)
            if titan:
                out |= _torchtitan_loss(logits, s)
            else:
                out["logits_gradient"] = _loss_gradient_bytes(net, s) * logits
        dequantized = _dequantized_weight(net, s) if s.quantized_base else 0
        if dequantized:
            out["dequantized_weight"] = dequantized
        if s.trainer == "litgpt" and head and not s.longest_first:
            backward = out.get("logits_gradient", 0) + out.get("loss_backward", 0) + dequantized
            held = _previous_step(net, p, s, activation_precision(s) * logits, loss_saved, dequantized)
            if held > backward:
                out["previous_step"] = held - backward
        if titan and s.pp > 1:
            out["pipeline_outputs"] = _stage_outputs(net, p, s, head=head)
        if s.zero >= 3 and s.shards > 1:
            x = 2 if s.dtype == "fp8" else int(DTYPE_BYTES[s.dtype])
            if s.reshard:
                # each GPU gathers its 1/ep of a MoE layer's routed experts
                largest = max(sum(v // (s.ep if "experts/" in k else 1) for k, v in stage.block.params().items())
                              for stage in net.stages)
                out["zero3_gathered"] = _ceil(3 * x * largest, s.tp)
            else:
                out["unsharded_weights"] = x * stage_params
                if s.micro_batches > 1:  # gradients accumulate unsharded until the last micro-batch reduces them
                    # FSDP2 in its reduce_dtype (torchtitan's mixed_precision_reduce, default "float32"),
                    # other ZeRO-3s in the 16-bit compute dtype
                    reduce = int(DTYPE_BYTES[s.grad_reduce]) if torchtitan(s) else x
                    out["unsharded_gradients"] = reduce * stage_params
    return out


def _loss_gradient_bytes(net: Network, s: Setup) -> int:
    """Bytes a logit the loss's backward makes beside what it saved (blocks/embed.py LMHead.backward_steps).
    transformers' causal-LM loss (ForCausalLMLoss: `logits.float()`, then cross_entropy) makes nll_loss's
    and log-softmax's gradients in fp32: 8, beside the 4 of the saved log-probabilities (12 at the peak,
    measured with transformers' own loss on CPU, tests/test_torchtitan_memory.py). A loss in the
    activations' dtype makes the same two in that dtype: 2x (BERT's and T5's CrossEntropyLoss, LitGPT's
    chunked_cross_entropy, which saves bf16 log-probabilities while its loop keeps the bf16 logits: the 4
    bytes head/loss counts; errs high for its chunks, whose gradients replace their log-probabilities one
    chunk at a time). Megatron's fused vocab-parallel cross-entropy writes its gradient into the saved
    fp32 softmax: 4 (errs high). The transformers profile splits the logits over tensor-parallel ranks
    as Megatron does, where transformers' tp_plan gathers the head's output (errs low under TP)."""
    if s.profile == "megatron":
        return 4
    head = unwrap(net.stages[-1].block)  # through LoRA's wrapper on an adapted head
    if isinstance(head, LMHead) and head.loss_fp32 and s.trainer == "hf":
        return 8
    return 2 * activation_precision(s)


# bitsandbytes pages an optimizer's state only for tensors of this many elements or more; smaller ones get a plain
# torch.zeros_like on the GPU (Optimizer8bit.get_state_buffer: `if not self.is_paged or A.numel() < 1e5`)
PAGED_MIN_ELEMENTS = 100_000


def paged_share(net: Network, s: Setup) -> float:
    """The share of the optimizer state a paged bitsandbytes optimizer keeps in CUDA managed memory, which
    the driver may evict to CPU memory (Dettmers et al. 2023, QLoRA, section 3, "Paged Optimizers"): that of
    the trainable tensors of PAGED_MIN_ELEMENTS or more, counted whole (under ZeRO and FSDP1 the optimizer
    holds flat shards, which page whole: errs low there). 0 for every other optimizer."""
    if s.mode != "train" or not s.optimizer.startswith("paged"):
        return 0.0
    trained = paged = 0
    for stage in net.stages:
        for key, n in stage.block.params().items():
            if not net.is_frozen(f"{stage.name}/{key}"):
                trained += n * stage.copies
                paged += n * stage.copies if n >= PAGED_MIN_ELEMENTS else 0
    return paged / trained if trained else 0.0


def _dequantized_weight(net: Network, s: Setup) -> int:
    """The transient 16-bit copy of a 4-bit weight, at the peak. bitsandbytes' MatMul4Bit computes
    `linear(A, dequantize_4bit(B, quant_state).to(A.dtype).t())` in forward and the same product for
    the input gradient in backward (bitsandbytes/autograd/_functions.py, 0.41 to today): the whole
    weight dequantized to quant_state.dtype, the dtype it was quantized from, then cast to the
    activations'. bitsandbytes up to 0.42 (Params4bit.cuda: `self.data.contiguous().half()`) and
    Lightning's plugin (`_Linear4bit.quantize`: `.to(dtype=torch.half)`) quantize from fp16, so a bf16
    run holds an fp16 and a bf16 copy at once, 4 bytes a weight; later bitsandbytes keeps the weight's
    own dtype, 2 bytes (the cast is a no-op). Counted for the largest 4-bit weight (the LM head where
    Lightning quantizes it): the one in flight at the peak is the last layer's or the head's (errs high
    by the difference where the largest is elsewhere)."""
    head = s.trainer == "litgpt"
    largest = max((n for n, _ in quantized_weights(net, head)), default=0)
    return _ceil((4 if s.bnb_legacy or head else 2) * largest, s.tp)


def _previous_step(net: Network, p: Pass, s: Setup, logits_bytes: int, loss_saved: int, dequantized: int) -> int:
    """What LitGPT's loop adds to the next forward's peak, beyond the activations. Its finetune scripts
    (lora.py, full.py: `logits = model(input_ids, ...)`, `loss = chunked_cross_entropy(...)`,
    `fabric.backward(loss)`) keep the last step's `logits` and `loss` until the next step rebinds them:
    the old logits until the next forward returns, the old graph until the next loss exists. Backward
    frees what autograd saved (save_for_backward), not what a Function keeps as a plain ctx attribute:
    bitsandbytes up to 0.43.1 keeps each 4-bit linear's input in `ctx.tensors` (MatMul4Bit; PR #1270
    stopped it in 0.43.2), so those inputs outlive their step (`bnb_legacy`). Two moments, each
    beyond the activations: the head's last call in forward (the old logits and inputs, the dequantized
    head, not yet the loss's saved tensors) and the new loss done (the old inputs). Under full
    recomputation the checkpointed forward keeps no ctx (errs neither way); the old inputs are the whole
    network's, counted as one stage's (errs high under pipelining), split by tensor parallelism (errs low
    without sequence parallelism, where the layers' inputs are whole on every rank), the first layer's q/k/v
    input included (errs high: its input needs no gradient, so MatMul4Bit keeps none). Counted at full length:
    two longest batches in a row (a shuffled loader's worst case over a run). Where the longest batch runs first
    (`longest_first`: lit-gpt 2023's get_batch put it at iteration 0 "so potential OOMs happen right away", as
    HF's group_by_length does), the leftovers only ever meet shorter batches and the term is left out (errs low
    by what a shorter batch plus leftovers exceeds the first step by, which the drop in length makes rare)."""
    inputs = 0
    if s.quantized_base and s.bnb_legacy and s.recompute != "full":
        a = recipe_activations(net, s)
        tokens = Pass(p.batch, p.seq // s.cp, p.attention, p.context)
        inputs = _ceil(sum(stage.count * quantized_inputs(stage.block, tokens, a) for stage in net.layers), s.tp)
    return max(inputs + logits_bytes + dequantized - loss_saved, inputs)


def torchtitan(s: Setup) -> bool:
    """Whether the plan runs as torchtitan runs it (`Setup.fsdp2`, which step.Plan sets): a plan's
    ZeRO-3 is FSDP2 (the plans' only FSDP recipe: fp32 sharded masters, reshard_after_forward off
    under pipelining, torch's pipelining with its 1F1B schedules), whose loss is PyTorch's
    cross-entropy on upcast logits, not Megatron's fused vocab-parallel kernel."""
    return s.mode == "train" and s.fsdp2 and s.zero >= 3


def _torchtitan_loss(logits: int, s: Setup) -> Breakdown:
    """torchtitan's loss on `logits` logits on this GPU (train.py at 9dec370, the benchmarks' commit:
    `cross_entropy(pred.flatten(0, 1).float(), labels)`, then `del pred` and backward), at its
    backward peak, beyond the fp32 log-probabilities the loss saves (head/loss, 4 bytes a logit):
    - without TP, aten's nll_loss_backward makes a 4-byte gradient over the logits and
      _log_softmax_backward_data a 4-byte result beside it: 8 more bytes a logit (12 in all; the
      forward peaks lower, at 10: the bf16 logits, their fp32 copy and the log-probabilities);
    - with TP, loss parallel (torchtitan's default; torch.distributed.tensor.parallel.loss, whose
      `_nll_loss_and_log_softmax_backward` returns `(grad_input + exp(x)) * grad_output` beside a
      zeros_like(x) grad_input): the zeros, exp(x) and their sum, 12 more bytes a local logit
      (16 in all; forward 14: the bf16 logits kept by train.py, their fp32 copy, x - max and its exp).
    Both peaks are measured on CPU to the byte (tests/test_torchtitan_memory.py)."""
    return {"loss_backward": (12 if s.tp > 1 else 8) * logits}


def _stage_outputs(net: Network, p: Pass, s: Setup, *, head: bool) -> int:
    """The outputs torch's pipelining keeps for the step's final merge: PipelineStage.forward_one_chunk
    appends every micro-batch's output to `output_chunks`, cleared only when the next step starts
    (torch at the benchmarks' commit, 2024-12; every stage did so until pytorch/pytorch#153383,
    2025-05, kept the last stage's only). A layer stage's output is its hidden states (1/tp of the
    tokens under sequence parallelism), the last stage's the bf16 logits (1/tp of the vocabulary);
    a rank of an interleaved schedule holds `vpp` stages, the last rank one of them the head's."""
    x = activation_precision(s)
    hidden = x * _ceil(p.tokens, s.cp * (s.tp if s.sequence_parallel else 1)) * (net.width or 0)
    logits = x * _ceil(net.stages[-1].block.output_elements(p), s.tp * s.cp)
    per_micro_batch = (logits + (s.vpp - 1) * hidden) if head else s.vpp * hidden
    return per_micro_batch * s.micro_batches


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
