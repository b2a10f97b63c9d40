"""Serving estimates on a roofline (Williams et al. 2009), shaped as vLLM and
TensorRT-LLM run a replica: each phase takes the longer of its compute time and
its memory-traffic time, then adds what cannot overlap either.

- Prefill (time to first token, TTFT): the prompts' forward FLOPs (causal
  attention, logits for the last position only) at the matmul peak x the card's
  GEMM efficiency (score and value matmuls at its attention efficiency), or the
  weights plus the KV cache written at HBM bandwidth x its memory efficiency,
  whichever is longer; plus 2 tensor-parallel all-reduces per layer (Megatron-LM,
  Shoeybi et al. 2019) and a fixed per-layer kernel cost.
- Decode (time per output token, TPOT): one token per sequence; every step
  reads the weights (for MoE, the experts some token in the batch routes to)
  and the KV cache at the mean context over the output, plus the same
  all-reduces (latency-bound) and kernel cost.
- Static batch (every request starts together, as TensorRT-LLM's
  gptSessionBenchmark runs): tokens/s = batch x output / (TTFT + output x TPOT).
- Continuous batching (--concurrency, --rate): the steady state of an in-flight batching engine
  (iteration-level scheduling, Orca: Yu et al. 2022) with chunked prefill (Sarathi-Serve: Agrawal
  et al. 2024; vLLM's scheduler runs every decoding sequence, then prompt chunks up to
  max_num_batched_tokens): see `continuous_batching`.
- Speculative decoding (--draft): a draft proposes `lookahead` tokens, the target verifies them in one
  forward (Leviathan et al. 2023): see `speculative_points`.
- KV capacity (vLLM's profile, worker `determine_num_available_blocks`):
  utilisation x memory - weights - the activation peak of a profiling forward
  of max_num_batched_tokens - the CUDA context (and NCCL's buffers with TP),
  in whole blocks of 16 tokens.

Quantisation as the engines run it: fp8 is W8A8 (fp8 weights and matmuls at the
fp8 peak, vLLM's and TensorRT-LLM's FP8); int8 and int4 are weight-only
(GPTQ/AWQ: 16-bit matmuls after dequantisation, an fp16 scale per group of 128
weights). Embeddings, the LM head and norms stay 16-bit, and so do activations
and the KV cache unless --kv-dtype says otherwise (vLLM's kv_cache_dtype "auto").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from paramcalc.analysis.memory import CUDA_CONTEXT, NCCL_BUFFERS, inference_kv_dtype, kv_cache_bytes
from paramcalc.analysis.settings import DTYPE_BYTES, choose
from paramcalc.blocks.base import Pass
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.moe import MoE
from paramcalc.catalog import load_gpu
from paramcalc.errors import UserError
from paramcalc.inputs.gpu_file import Gpu
from paramcalc.network import Model, Network, lower, stage_of, transformer_layer
from paramcalc.results.serve import (
    ContinuousPoint,
    ContinuousReport,
    ServePoint,
    ServeReport,
    SpeculativePoint,
    SpeculativeReport,
)
from paramcalc.units import GIB, parse_list, parse_number, parse_positive, parse_positive_int

# vLLM's defaults: gpu_memory_utilization 0.9 (EngineArgs), 16-token KV blocks (CacheConfig.block_size).
MEMORY_UTILIZATION = 0.9
BLOCK_TOKENS = 16
# The utilisation applies to the memory cudaMemGetInfo reports, which is the card's less what the driver
# keeps: 81,559 of 81,920 MiB on an H100 80GB, 143,771 of 144,384 MiB on an H200, 23.58 of 24 GiB on an
# RTX 3090 (vllm-project/vllm#10517); 512 MiB, within ~0.15 GiB of each.
DRIVER_RESERVED = 512 * 2**20
# Weight-only quantisation (GPTQ, Frantar et al. 2023; AWQ, Lin et al. 2024): one fp16 scale per group of
# 128 weights along the input dimension (their default group size); zero points (4 bits a group) left out.
GROUP_SIZE = 128
WEIGHT_ONLY = {"int8": 1, "int4": 0.5}
# NCCL's small-message all-reduce latency inside an NVLink node: ~6 us on 2 H100s with CUDA graphs and
# rising with the GPU count (NVIDIA/nccl#1259, nccl-tests on HGX H100); 8 us for the usual TP 2-8.
ALLREDUCE_LATENCY = 8e-6
# Each prefill layer costs a near-constant ~0.1-0.2 ms beyond the roofline in TensorRT-LLM's published
# batch-1 first-token latencies (v0.5: H100 fp8 and A100 fp16, Llama 2 7B and 70B, 128 and 2048 tokens;
# docs/serve-validation.md): the context phase runs outside CUDA graphs, with per-GEMM activation
# quantisation, QKV preprocessing and rotary, context attention, norms and residual kernels. Calibrated
# on those points (0.15 ms leaves every one within 26%, most erring low), so they do not validate it
# independently.
PREFILL_LAYER_SECONDS = 1.5e-4
# A decode layer (captured in CUDA graphs) runs ~9 kernels besides its all-reduces (norm, QKV GEMM,
# rotary, attention, O GEMM, fused residual-add and norm, gate-up GEMM, SiLU-and-mul, down GEMM: vLLM's
# LlamaDecoderLayer); each costs a few microseconds however small (launch, ramp-up and tail: NVIDIA's
# "Getting Started with CUDA Graphs", 2019, measures ~3 us a kernel). Errs low without CUDA graphs.
KERNELS_PER_LAYER = 9
KERNEL_SECONDS = 3e-6
# vLLM's max_num_batched_tokens and max_num_seqs for `vllm serve` (EngineArgs.get_batch_defaults): 8192
# and 1024 on GPUs of 70 GiB or more other than the A100, else 2048 and 256. The profiling forward runs
# that many tokens, and the sampler that many sequences' logits.
BATCHED_TOKENS = {"large": (8192, 1024), "other": (2048, 256)}


def estimate_serving(model: Model, *, gpu: str, tp=1, pp=1, prompt=1024, output=256, batches=(1, 8, 32, 128),
                     dtype: str = "bf16", kv_dtype: str | None = None, gpu_memory_utilization=MEMORY_UTILIZATION,
                     max_batched_tokens=None, compute_efficiency=None, bandwidth_efficiency=None,
                     concurrency=None, rate=None, draft: Model | None = None, accept=0.7,
                     lookahead=4) -> ServeReport:
    """TTFT, TPOT and tokens/s of one replica (`tp` x `pp` GPUs) for each batch of concurrent
    sequences, and the KV cache it holds. The efficiencies default to the GPU file's
    (`efficiency:`); `compute_efficiency` and `bandwidth_efficiency` override them.

    Pipeline stages split the layers (weights and KV cache) but run one batch in sequence: TTFT
    and a static batch's TPOT do not shrink, and each adds pp - 1 hand-offs of the activations.

    `concurrency` (requests in flight) and `rate` (requests per second, open loop), each one value
    or a comma-separated list, add the steady state of continuous batching; `draft` (a TARGET)
    adds speculative decoding with acceptance `accept` and `lookahead` draft tokens per step, its
    weights and KV cache taken from the memory the target's KV cache would use."""
    net = lower(model)
    if not net.layers:
        raise UserError("serving estimates need attention layers (a KV cache)",
                        fix="give a transformer preset, config.json or YAML spec (not a bare count or a layers "
                            "network)")
    if getattr(net, "recurrent_state", False):
        raise UserError(f"{net.name} keeps a constant state-space (Mamba) state per sequence, not a paged KV cache: "
                        "serving estimates model the latter", field="model",
                        fix="use `paramcalc memory --mode infer` (its cache term is the recurrent state)")
    encoder_seq = getattr(net, "encoder_seq", None)
    if encoder_seq:
        raise UserError(f"{net.name} is a speech encoder-decoder: each request runs its encoder once over "
                        f"{encoder_seq} audio positions and caches their keys and values per sequence beside "
                        "the decoder's: serving estimates model a decoder's paged KV cache alone", field="model",
                        fix="use `paramcalc memory --mode infer` (its cache term holds both) and `paramcalc flops` "
                            "(prefill and decode FLOPs)")
    image_tokens = getattr(net, "image_tokens", None)
    if image_tokens:
        raise UserError(f"{net.name} is a vision-language model: each request's image runs the vision tower over "
                        f"{getattr(net, 'vision_seq', 0)} positions and fills {image_tokens} of its prompt's tokens; "
                        "serving estimates model text prompts alone", field="model",
                        fix="use `paramcalc flops` (prefill runs the vision tower) and `paramcalc memory --mode "
                            "infer`; or serve its language model alone (text_config saved as its own config.json)")
    if not kv_cache_bytes(net, 1, 1, "bf16"):
        raise UserError(f"{net.name} caches no keys and values (an encoder sees its whole input at once)",
                        fix="serving estimates are for decoders: give a causal language model")
    choose(dtype, DTYPE_BYTES, "dtype")
    kv_dtype = inference_kv_dtype(dtype, kv_dtype)
    choose(kv_dtype, DTYPE_BYTES, "kv_dtype")
    tp = parse_positive_int(tp, field="tp")
    net.check_tensor_parallel(tp)
    pp = parse_positive_int(pp, field="pp")
    layers = layer_count(net)
    if pp > layers:
        raise UserError(f"{pp} pipeline stages for {layers} layers", field="pp", fix=f"use at most {layers}")
    stage = -(-layers // pp) / layers  # the busiest stage's share of the layers
    try:
        prompt = net.seq_len(parse_positive_int(prompt, field="prompt"))
    except UserError as e:
        raise UserError(e.message, field="prompt", fix=e.fix) from None
    output = parse_positive_int(output, field="output")
    utilization = float(parse_number(gpu_memory_utilization, field="gpu_memory_utilization"))
    if not 0 < utilization <= 1:
        raise UserError(f"the memory utilisation is a share in (0, 1], got {gpu_memory_utilization!r}",
                        field="gpu_memory_utilization", fix="vLLM's default is 0.9")
    card = load_gpu(gpu)
    rates = serving_rates(card, dtype, tp, pp, compute_efficiency, bandwidth_efficiency)
    large = card.memory_bytes >= 70 * GIB and "a100" not in card.name
    tokens_default, seqs = BATCHED_TOKENS["large" if large else "other"]
    profile_tokens = tokens_default if max_batched_tokens is None else \
        parse_positive_int(max_batched_tokens, field="max_batched_tokens")

    replica = -(-serving_weight_bytes(net, dtype) // tp)  # what one batch reads, stage after stage
    weights = -(-replica // pp)  # per GPU: split evenly (errs low by the embedding or head of an end stage)
    kv_split = kv_shards(net, tp)
    per_token = -(-int(kv_cache_bytes(net, 1, 1, kv_dtype) * stage) // kv_split)
    working = profile_working_set(net, profile_tokens, min(seqs, profile_tokens), tp)
    overhead = CUDA_CONTEXT + (NCCL_BUFFERS if tp * pp > 1 else 0)
    spec = None if draft is None else _draft(draft, net, tp, pp, dtype, kv_dtype, accept, lookahead)
    # vLLM gives the draft as many KV blocks as the target (one block table per sequence), so each token
    # of capacity costs both models' bytes; the draft's weights come off the same memory.
    draft_weights = spec.weights if spec else 0
    draft_token = spec.kv_token if spec else 0
    cap = int(utilization * (card.memory_bytes - DRIVER_RESERVED))
    free = cap - weights - draft_weights - working - overhead
    kv_tokens = max(0, free // (per_token + draft_token)) // BLOCK_TOKENS * BLOCK_TOKENS
    context = prompt + output
    blocks = -(-context // BLOCK_TOKENS) * BLOCK_TOKENS  # vLLM gives a sequence whole blocks
    per_sequence = -(-int(kv_cache_bytes(net, context, 1, kv_dtype) * stage) // kv_split)
    per_sequence_blocks = -(-int(kv_cache_bytes(net, blocks, 1, kv_dtype) * stage) // kv_split)
    max_batch = kv_tokens * per_token // per_sequence_blocks

    points = []
    listed = parse_list(batches, parse_positive_int, field="batch") if isinstance(batches, str) else batches
    for b in listed:
        b = parse_positive_int(b, field="batch")
        ttft, ttft_bound, ttft_comm = prefill_time(net, rates, b, prompt, replica, kv_dtype, kv_split)
        tpot, tpot_bound, tpot_comm = decode_time(net, rates, b, prompt, output, replica, kv_dtype, kv_split)
        cache = -(-int(kv_cache_bytes(net, context, b, kv_dtype) * stage) // kv_split) + draft_token * context * b
        request = ttft + output * tpot
        points.append(ServePoint(batch=b, fits=b <= max_batch,
                                 memory_per_gpu=weights + draft_weights + working + overhead + cache,
                                 ttft_seconds=ttft, tpot_seconds=tpot, prefill_bound=ttft_bound,
                                 decode_bound=tpot_bound, ttft_allreduce_seconds=ttft_comm,
                                 tpot_allreduce_seconds=tpot_comm, tokens_per_second=b * output / request,
                                 request_seconds=request))
    notes = [f"{_quantization(dtype)}; KV cache {kv_dtype}",
             f"prefill at {rates.gemm:.0%} of the dense {rates.mm_dtype} peak (attention {rates.attention:.0%} of "
             f"bf16), decode reads at {rates.memory:.0%} of {card.memory_bandwidth / 1e12:.2f} TB/s; the slower of "
             "compute and memory, plus what cannot overlap",
             f"TPOT at the mean context over the output ({prompt + (output + 1) // 2:,} tokens); tokens/s for a "
             "static batch: batch x output / (TTFT + output x TPOT)",
             f"tensor parallel {tp}: 2 ring all-reduces per layer of batch x tokens x hidden x 2 bytes, "
             f"{ALLREDUCE_LATENCY * 1e6:.0f} us + 2(t-1)/t x bytes / ({rates.link / 1e9:,.0f} GB/s x "
             f"{rates.link_efficiency:.0%})" if tp > 1 else "one GPU: no all-reduces",
             f"fixed costs per layer: {PREFILL_LAYER_SECONDS * 1e3:.2f} ms in the prefill (calibrated on "
             f"TensorRT-LLM's first-token latencies), {KERNELS_PER_LAYER} kernels x {KERNEL_SECONDS * 1e6:.0f} us "
             "in each decode step",
             f"KV capacity as vLLM sizes it: {utilization:.0%} of {card.memory_bytes / GIB:.1f} GiB (less the "
             f"driver's {DRIVER_RESERVED / GIB:.1f} GiB) less weights, a profiling forward of {profile_tokens:,} "
             f"tokens ({working / GIB:.2f} GiB) and {overhead / GIB:.1f} GiB of CUDA context"
             f"{' and NCCL buffers' if tp * pp > 1 else ''}, in blocks of {BLOCK_TOKENS} tokens",
             f"KV cache per sequence of {context:,} tokens: {per_sequence:,} bytes per GPU"]
    if kv_split == 1 and tp > 1:
        notes.append("latent attention (MLA): every tensor-parallel GPU keeps the whole latent cache, as vLLM does")
    continuous = None
    if concurrency is not None or rate is not None:
        engine = _engine(net, rates, prompt, output, replica, kv_dtype, kv_split, profile_tokens)
        continuous = continuous_batching(engine, concurrency, rate, int(max_batch), seqs)
        notes += _continuous_notes(continuous, profile_tokens, seqs, prompt, output, spec is not None, pp)
    speculative = None
    if spec is not None:
        speculative = speculative_points(spec, net, rates, points, prompt, output, replica, kv_dtype, kv_split)
        notes += _speculative_notes(speculative)
    if pp > 1:
        notes.append(f"pipeline {pp}: each GPU holds {stage:.0%} of the layers' KV cache and 1/{pp} of the weights; "
                     f"a batch crosses the stages in turn ({pp - 1} hand-offs), so TTFT and a static batch's TPOT do "
                     "not shrink")
    return ServeReport(model=net.name, gpu=card.name, tp=tp, pp=pp, prompt_tokens=prompt, output_tokens=output,
                       dtype=dtype, kv_dtype=kv_dtype, weights_per_gpu=weights, kv_cache_per_sequence=per_sequence,
                       kv_cache_tokens=kv_tokens, kv_cache_bytes_per_token=per_token,
                       gpu_memory_utilization=utilization, working_set_per_gpu=working, overhead_per_gpu=overhead,
                       max_batched_tokens=profile_tokens, max_batch=int(max_batch), points=points,
                       continuous=continuous, speculative=speculative, notes=notes)


@dataclass(frozen=True)
class Rates:
    """What one GPU of the replica sustains: FLOP/s, bytes/s, and the TP link."""

    mm_dtype: str
    mm_peak: float
    gemm: float  # share of mm_peak the GEMMs reach
    attention_peak: float
    attention: float  # share of the bf16 peak flash attention reaches
    bandwidth: float
    memory: float
    tp: int
    link: float
    link_efficiency: float
    pp: int = 1
    stage_link: float = 0.0  # between pipeline stages

    @property
    def matmul(self) -> float:
        return self.mm_peak * self.gemm

    @property
    def attend(self) -> float:
        return self.attention_peak * self.attention

    @property
    def stream(self) -> float:
        return self.bandwidth * self.memory


def serving_rates(card: Gpu, dtype: str, tp: int, pp: int, compute_efficiency, bandwidth_efficiency) -> Rates:
    # fp8: W8A8 GEMMs at the fp8 peak; weight-only int8/int4 dequantise to 16-bit matmuls; else the dtype's peak
    mm_dtype = "bf16" if dtype in WEIGHT_ONLY else dtype
    eff = card.efficiency
    gemm = eff.gemm_fp8 if dtype == "fp8" else eff.gemm_bf16
    memory = eff.memory
    if compute_efficiency is not None:
        gemm = float(parse_positive(compute_efficiency, field="compute_efficiency"))
    if bandwidth_efficiency is not None:
        memory = float(parse_positive(bandwidth_efficiency, field="bandwidth_efficiency"))
    # a replica inside one node talks over the scale-up link (NVLink); past it, over the network
    link = card.interconnect if tp <= card.gpus_per_node else card.network
    stage_link = card.interconnect if tp * pp <= card.gpus_per_node else card.network
    return Rates(mm_dtype=mm_dtype, mm_peak=card.peak(mm_dtype), gemm=gemm, attention_peak=card.peak("bf16")
                 if "bf16" in card.peak_flops_dense else card.peak(mm_dtype), attention=eff.attention,
                 bandwidth=card.memory_bandwidth, memory=memory, tp=tp,
                 link=link.bandwidth if link else card.memory_bandwidth, link_efficiency=eff.link, pp=pp,
                 stage_link=stage_link.bandwidth if stage_link else card.memory_bandwidth)


def allreduce_seconds(nbytes: int, r: Rates) -> float:
    """A ring all-reduce (Patarasuk & Yuan 2009): each GPU sends and receives 2(t-1)/t x the
    message over its link at the link efficiency (NCCL's bus bandwidth), after a fixed latency."""
    if r.tp == 1:
        return 0.0
    return ALLREDUCE_LATENCY + 2 * (r.tp - 1) / r.tp * nbytes / (r.link * r.link_efficiency)


def handoff_seconds(nbytes: int, r: Rates) -> float:
    """pp - 1 sends of a batch's activations between consecutive stages (Narayanan et al. 2021), each
    the NCCL latency plus the bytes over the link (each TP rank sends its 1/tp share in parallel)."""
    if r.pp == 1:
        return 0.0
    return (r.pp - 1) * (ALLREDUCE_LATENCY + nbytes / r.tp / (r.stage_link * r.link_efficiency))


def layer_count(net: Network) -> int:
    return sum(stage.count for stage in net.layers)


def _communication(net: Network, r: Rates, tokens: int) -> float:
    """2 all-reduces per layer (after attention's output and the MLP's down projection, Megatron-LM)
    of tokens x hidden 16-bit activations, and the pipeline's hand-offs of the same tensor."""
    activations = 2 * tokens * (net.width or 0)
    return 2 * layer_count(net) * allreduce_seconds(activations, r) + handoff_seconds(activations, r)


def _kernels(net: Network) -> float:
    return layer_count(net) * KERNELS_PER_LAYER * KERNEL_SECONDS


def _compute_seconds(net: Network, p: Pass, r: Rates, head_rows: int) -> float:
    """Per GPU: GEMMs at the matmul rate, score and value matmuls at the attention rate; the LM head
    for `head_rows` positions only (engines compute the logits of each sequence's last position)."""
    parts = net.flops(p)
    attention = sum(v for k, v in parts.items() if k.rsplit("/", 1)[-1] in ("scores", "values"))
    head = sum(v for k, v in parts.items() if k.startswith("head"))
    gemm = sum(parts.values()) - attention - head + head * head_rows // p.tokens
    return (gemm / r.matmul + attention / r.attend) / r.tp


def prefill_time(net: Network, r: Rates, b: int, prompt: int, weights: int, kv_dtype: str,
             kv_split: int) -> tuple[float, str, float]:
    """TTFT of b prompts prefilled together: the slower of the causal forward's FLOPs and reading
    the weights once plus writing the prompts' KV cache; then the all-reduces and kernel costs."""
    compute = _compute_seconds(net, Pass(b, prompt, "causal"), r, head_rows=b)
    memory = (weights + kv_cache_bytes(net, prompt, b, kv_dtype) // kv_split) / r.stream
    comm = _communication(net, r, b * prompt)
    fixed = layer_count(net) * PREFILL_LAYER_SECONDS
    return max(compute, memory) + comm + fixed, "compute" if compute >= memory else "memory", comm


def decode_time(net: Network, r: Rates, b: int, prompt: int, output: int, weights: int, kv_dtype: str,
            kv_split: int) -> tuple[float, str, float]:
    """TPOT: one token for each of b sequences at the mean context over the output (prompt plus
    half the output: the KV read grows linearly, so output x TPOT is the sum over every step)."""
    context = prompt + (output + 1) // 2
    compute = _compute_seconds(net, Pass(b, 1, "causal", context=context), r, head_rows=b)
    read = weights - unread_expert_bytes(net, weights, b)
    memory = (read + kv_cache_bytes(net, context, b, kv_dtype) // kv_split) / r.stream
    comm = _communication(net, r, b)
    return max(compute, memory) + comm + _kernels(net), "compute" if compute >= memory else "memory", comm


def unread_expert_bytes(net: Network, weights: int, batch: int) -> int:
    """Bytes of routed experts no token of a decode step uses: with uniform routing of k of E
    experts, an expert is untouched by b tokens with probability (1 - k/E)^b (errs high on what is
    read: real routing is skewed, so fewer distinct experts are hit)."""
    params = net.params()
    total = sum(params.values())
    unread = 0.0
    for stage in net.layers:
        mlp = transformer_layer(stage).mlp
        if isinstance(mlp, MoE):
            experts = sum(v for k, v in params.items() if k.startswith(stage.name + "/") and "/experts/" in k)
            unread += experts * (1 - mlp.top_k / mlp.experts) ** batch
    return int(weights * unread / total) if total else 0


def _quantized(key: str, layer_names: set[str]) -> bool:
    """A linear weight inside a transformer layer: what GPTQ, AWQ and FP8 checkpoints quantise
    (norms, biases, MoE routers, embeddings and the LM head stay 16-bit)."""
    return (stage_of(key, layer_names) is not None and key.endswith("/weight") and "norm" not in key
            and "/router/" not in key)


def serving_weight_bytes(net: Network, dtype: str) -> int:
    """Weights as an engine holds them: every parameter at the dtype's width for 16- and 32-bit;
    fp8 (W8A8): one byte per layer linear weight (per-tensor scales, a few floats, left out);
    int8/int4 weight-only: their bits plus an fp16 scale per group of GROUP_SIZE weights. What is
    not a layer linear stays 16-bit."""
    params = net.params()
    total = sum(params.values())
    if DTYPE_BYTES[dtype] >= 2:
        return int(total * DTYPE_BYTES[dtype])
    names = {stage.name for stage in net.layers}
    quantized = sum(v for k, v in params.items() if _quantized(k, names))
    rest = 2 * (total - quantized)
    if dtype in WEIGHT_ONLY:
        return -(-int(quantized * 8 * WEIGHT_ONLY[dtype]) // 8) + 2 * -(-quantized // GROUP_SIZE) + rest
    return quantized * int(DTYPE_BYTES[dtype]) + rest


def kv_shards(net: Network, tp: int) -> int:
    """Tensor parallelism splits the KV heads over the GPUs; latent attention (MLA) caches one latent
    shared by every head, which vLLM keeps whole on each GPU."""
    latent = any(isinstance(transformer_layer(stage).attention, LatentAttention) for stage in net.layers)
    return 1 if latent else tp


def profile_working_set(net: Network, tokens: int, sequences: int, tp: int) -> int:
    """The activation peak of vLLM's profiling forward (worker `profile_run`): one layer's working set
    over `tokens` 16-bit tokens (network.working_set: split by TP) and the sampler's fp32 logits for
    `sequences` rows of the full vocabulary (gathered on each GPU)."""
    working = -(-net.working_set(Pass(1, tokens, "causal"), 2) // tp)
    vocab = getattr(net.head, "vocab", 0)
    return working + 4 * sequences * vocab


def _quantization(dtype: str) -> str:
    if dtype == "fp8":
        return "fp8 W8A8: fp8 layer weights and matmuls at the fp8 peak; embeddings, head and activations 16-bit"
    if dtype in WEIGHT_ONLY:
        return (f"{dtype} weight-only (GPTQ/AWQ): an fp16 scale per {GROUP_SIZE} weights, 16-bit matmuls after "
                "dequantisation; embeddings, head and activations 16-bit")
    return f"{dtype} weights and activations"


# --- speculative decoding -------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A draft model as the replica holds it: TP-split like the target (vLLM's default draft
    tensor-parallel size is the target's)."""

    net: Network
    accept: float
    lookahead: int
    replica: int  # weight bytes per TP GPU, read once per draft step
    weights: int  # weight bytes each GPU holds
    kv_token: int  # KV bytes per GPU of one token
    kv_split: int


def _draft(model: Model, target: Network, tp: int, pp: int, dtype: str, kv_dtype: str, accept,
           lookahead) -> Draft:
    accept = float(parse_number(accept, field="accept"))
    if not 0 <= accept <= 1:
        raise UserError(f"the acceptance rate is a probability in [0, 1], got {accept!r}", field="accept",
                        fix="0.6-0.8 is usual for a same-family draft; vLLM logs it as the draft acceptance rate")
    k = parse_positive_int(lookahead, field="lookahead")
    if pp > 1:
        raise UserError("speculative decoding with pipeline stages is not modelled (vLLM runs a draft with tensor "
                        "parallelism only)", field="draft", fix="drop --pp or --draft")
    try:
        net = lower(model)
        if net.layers:
            net.check_tensor_parallel(tp)
    except UserError as e:
        raise UserError(e.message, field="draft", fix=e.fix) from None
    if not net.layers or not kv_cache_bytes(net, 1, 1, "bf16"):
        raise UserError(f"{net.name} is no decoder with a KV cache", field="draft",
                        fix="give a small causal language model of the target's family (a preset or config.json)")
    vocab, target_vocab = getattr(net.head, "vocab", None), getattr(target.head, "vocab", None)
    if vocab and target_vocab and vocab != target_vocab:
        # Leviathan et al. 2023 accept or reject each draft token by comparing the two models'
        # probabilities of it: both must score the same vocabulary.
        raise UserError(f"the draft's vocabulary ({vocab:,}) is not the target's ({target_vocab:,})", field="draft",
                        fix="pick a draft with the target's tokenizer (the same model family)")
    replica = -(-serving_weight_bytes(net, dtype) // tp)
    split = kv_shards(net, tp)
    return Draft(net=net, accept=accept, lookahead=k, replica=replica, weights=replica,
                 kv_token=-(-kv_cache_bytes(net, 1, 1, kv_dtype) // split), kv_split=split)


def expected_tokens(accept: float, lookahead: int) -> float:
    """Tokens a verify step yields on average (Leviathan et al. 2023, eq. 1): (1 - a^(k+1)) / (1 - a),
    acceptances independent with probability a; k + 1 when every draft token is accepted."""
    if accept >= 1:
        return float(lookahead + 1)
    return (1 - accept ** (lookahead + 1)) / (1 - accept)


def _verify(net: Network, r: Rates, b: int, tokens: int, prompt: int, output: int, weights: int, kv_dtype: str,
            kv_split: int) -> tuple[float, str]:
    """One target forward over `tokens` positions of each of b sequences (the last accepted token and
    the draft's proposals): the weights and each sequence's cache (at the mean context) read once,
    since every query of a sequence attends the same keys; compute and logits for b x tokens positions."""
    context = prompt + (output + 1) // 2
    compute = _compute_seconds(net, Pass(b, tokens, "causal", context=context + tokens), r, head_rows=b * tokens)
    read = weights - unread_expert_bytes(net, weights, b * tokens)
    memory = (read + kv_cache_bytes(net, context, b, kv_dtype) // kv_split) / r.stream
    comm = _communication(net, r, b * tokens)
    return max(compute, memory) + comm + _kernels(net), "compute" if compute >= memory else "memory"


def speculative_points(d: Draft, net: Network, r: Rates, points: list[ServePoint], prompt: int, output: int,
                       replica: int, kv_dtype: str, kv_split: int) -> SpeculativeReport:
    """Per static batch: a verify step is `lookahead` draft decode steps (the draft's own TPOT
    roofline) and one target forward over lookahead + 1 tokens a sequence; TPOT = step / expected
    tokens. Errs optimistic: acceptances are taken as independent (eq. 1) and the rejection
    sampler's and scheduler's own costs are left out."""
    k = d.lookahead
    expected = expected_tokens(d.accept, k)
    out = []
    for p in points:
        b = p.batch
        draft_tpot = decode_time(d.net, r, b, prompt, output, d.replica, kv_dtype, d.kv_split)[0]
        verify, bound = _verify(net, r, b, k + 1, prompt, output, replica, kv_dtype, kv_split)
        step = k * draft_tpot + verify
        tpot = step / expected
        draft_ttft = prefill_time(d.net, r, b, prompt, d.replica, kv_dtype, d.kv_split)[0]
        request = p.ttft_seconds + draft_ttft + output * tpot
        out.append(SpeculativePoint(batch=b, draft_seconds=k * draft_tpot, verify_seconds=verify, step_seconds=step,
                                    tpot_seconds=tpot, speedup=p.tpot_seconds / tpot, bound=bound,
                                    tokens_per_second=b * output / request))
    return SpeculativeReport(draft=d.net.name, accept=d.accept, lookahead=k, expected_tokens_per_step=expected,
                             draft_weights_per_gpu=d.weights, draft_kv_bytes_per_token=d.kv_token, points=out)


def _speculative_notes(s: SpeculativeReport) -> list[str]:
    notes = [f"speculative decoding with {s.draft}: {s.lookahead} draft tokens a step accepted with probability "
             f"{s.accept:g} yield (1 - a^(k+1)) / (1 - a) = {s.expected_tokens_per_step:.2f} tokens per verify step "
             "(Leviathan et al. 2023, eq. 1); step = k draft decode steps + one target forward over k + 1 tokens",
             f"the draft's weights ({s.draft_weights_per_gpu / GIB:.2f} GiB per GPU) and KV cache "
             f"({s.draft_kv_bytes_per_token:,} bytes a token per GPU) come out of the target's KV capacity"]
    if len(s.points) > 1 and s.points[-1].speedup < s.points[0].speedup:
        notes.append(f"the speed-up shrinks with the batch ({s.points[0].speedup:.2f}x at {s.points[0].batch}, "
                     f"{s.points[-1].speedup:.2f}x at {s.points[-1].batch}): verifying k + 1 tokens a sequence "
                     "turns a memory-bound step compute-bound, and the draft's steps grow with the batch too")
    return notes


# --- continuous batching --------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """One replica's step time with `decodes` sequences decoding one token each and `prefill` prompt
    tokens of chunked prefill in the same step (vLLM's scheduler since chunked prefill: decodes
    first, then prompt chunks up to max_num_batched_tokens; Sarathi-Serve, Agrawal et al. 2024)."""

    net: Network
    r: Rates
    prompt: int
    output: int
    weights: int  # bytes per GPU read once a step (the stages in turn: a replica's whole share)
    kv_token: float  # KV bytes per GPU of one token, every layer
    budget: int  # max_num_batched_tokens
    decode_token: float  # compute seconds per decode token at the mean context
    prefill_token: float  # compute seconds per prompt token, a whole causal prefill spread over its tokens

    @property
    def context(self) -> int:
        return self.prompt + (self.output + 1) // 2

    def step(self, decodes: float, prefill: float) -> float:
        """The slower of compute (every token of the step) and memory (the weights once, the decoding
        sequences' caches at the mean context, the prompt chunk's cache written), then the all-reduces
        over every token of the step and the fixed kernel costs: the prefill's per-layer cost when a
        chunk is in the step (errs high on a small chunk), the decode kernels always."""
        tokens = max(1, math.ceil(decodes + prefill))
        compute = decodes * self.decode_token + prefill * self.prefill_token
        read = self.weights - unread_expert_bytes(self.net, self.weights, tokens)
        memory = (read + (decodes * self.context + prefill) * self.kv_token) / self.r.stream
        fixed = _kernels(self.net) + (layer_count(self.net) * PREFILL_LAYER_SECONDS if prefill > 0 else 0.0)
        return max(compute, memory) + _communication(self.net, self.r, tokens) + fixed


def _engine(net: Network, r: Rates, prompt: int, output: int, weights: int, kv_dtype: str, kv_split: int,
            budget: int) -> Engine:
    context = prompt + (output + 1) // 2
    decode = _compute_seconds(net, Pass(1, 1, "causal", context=context), r, head_rows=1)
    prefill = _compute_seconds(net, Pass(1, prompt, "causal"), r, head_rows=1) / prompt
    return Engine(net=net, r=r, prompt=prompt, output=output, weights=weights,
                  kv_token=kv_cache_bytes(net, 1, 1, kv_dtype) / kv_split, budget=budget, decode_token=decode,
                  prefill_token=prefill)


@dataclass(frozen=True)
class Steady:
    """The steady state of `running` sequences on one engine (a fluid model: means, not distributions)."""

    running: float
    ttft: float
    tpot: float
    step: float  # a decode-only step at the same batch
    decodes: float  # sequences decoding, time-averaged
    prefill: float  # prompt tokens per step, time-averaged
    budget_bound: bool


def steady_state(e: Engine, running: float, others: float) -> Steady:
    """A tagged request among `running` (`others` besides it: running - 1 for a closed loop of
    clients, running for Poisson arrivals, which see the time average, PASTA) solved as a fixed point:

    - Little's law on the others: others x (output - 1) x TPOT / latency of them are decoding, and
      they start others x prompt / latency prompt tokens a second;
    - TPOT: the mean step while it decodes, a share s of steps carrying a prompt chunk c (a whole
      prompt when it fits the budget left by the decodes, more when prompts queue), s = min(1, p / c)
      with p the prompt tokens per step: chunks are lumpy, so the mean of the two step times, not
      the step at the mean chunk (which would hide a chunk's compute under a memory-bound step);
    - TTFT: half the step in flight when it arrives (if the engine is busy), the wait for prompts
      ahead of it (M/D/1), then its prompt in chunks of min(prompt, budget - decodes) tokens beside
      the decodes and the others' chunks.
    If the prompts' demand exceeds the budget, the step runs the budget full (decodes D with
    D + prompt x D / (output - 1) = budget) and the rest wait: TTFT follows from Little's law.
    Errs low on TTFT at saturation (the queue beyond the running batch is a mean, with no variance)."""
    prompt, decode_steps, budget = e.prompt, e.output - 1, e.budget
    others = max(0.0, others)
    tpot = e.step(running, 0)
    ttft = e.step(0, min(prompt, budget)) * prompt / min(prompt, budget)
    decoding = 0.0
    for _ in range(500):
        latency = ttft + decode_steps * tpot
        decoding = others * decode_steps * tpot / latency
        batch = 1 + decoding
        prefill = others * prompt / latency * tpot
        room = max(1.0, budget - batch)
        chunk = min(room, max(min(prompt, room), prefill))
        share = min(1.0, prefill / chunk)
        new_tpot = share * e.step(batch, chunk) + (1 - share) * e.step(batch, 0)
        room_first = max(1.0, budget - decoding)
        own = min(prompt, room_first)
        tokens = min(room_first, own + prefill)
        service = prompt / own * e.step(decoding, tokens)  # its prompt's chunks
        # Prompts arriving while another's chunks run wait for them: the mean wait of an M/D/1 queue
        # (Pollaczek-Khinchine), rho S / (2 (1 - rho)), rho the others' prefill load. Poisson arrivals:
        # a closed loop's are smoother, so this errs high for few clients.
        load = min(0.95, others / latency * service)
        new_ttft = min(1.0, others) * new_tpot / 2 + load * service / (2 * (1 - load)) + service
        done = abs(new_tpot - tpot) <= 1e-12 * tpot and abs(new_ttft - ttft) <= 1e-12 * ttft
        tpot, ttft = new_tpot, new_ttft
        if done:
            break
    latency = ttft + decode_steps * tpot
    decoding_all = running * decode_steps * tpot / latency
    state = Steady(running=running, ttft=ttft, tpot=tpot, step=e.step(1 + decoding, 0), decodes=decoding_all,
                   prefill=running * prompt / latency * tpot, budget_bound=False)
    # The budget's most: every step full, decodes D with D + prompt x D / (output - 1) = budget.
    full = budget * decode_steps / (prompt + decode_steps)
    step_full = e.step(full, budget - full)
    most = full / (decode_steps * step_full)  # requests per second
    if running / latency > most:
        ttft = running / most - decode_steps * step_full
        state = Steady(running=running, ttft=ttft, tpot=step_full, step=e.step(full, 0), decodes=full,
                       prefill=budget - full, budget_bound=True)
    return state


def _rps(s: Steady, decode_steps: int) -> float:
    return s.running / (s.ttft + decode_steps * s.tpot)


def continuous_batching(e: Engine, concurrency, rate, max_batch: int, max_num_seqs: int) -> ContinuousReport:
    """Continuous batching (Orca's iteration-level scheduling, Yu et al. 2022) at each concurrency
    (closed loop: a client sends its next request when one ends) and each rate (Poisson arrivals);
    the engine runs at most min(KV capacity, max_num_seqs) sequences, the rest queue. For a rate, the
    concurrency is the fixed point of Little's law, C = rate x latency(C) (found by bisection, the
    throughput C / latency(C) rising with C); past the most the replica sustains it saturates."""
    if e.output < 2:
        raise UserError("continuous batching needs a decode phase: at least 2 output tokens", field="output",
                        fix="give --output 2 or more")
    limit = min(max_batch, max_num_seqs)
    limited_by = "kv_cache" if max_batch <= max_num_seqs else "max_num_seqs"
    if limit < 1:
        raise UserError(f"the KV cache holds no sequence of {e.prompt + e.output:,} tokens", field="concurrency",
                        fix="use more GPUs (--tp), a smaller --dtype or --kv-dtype, or shorter requests")
    decode_steps = e.output - 1
    closed_full = steady_state(e, limit, limit - 1)
    open_full = steady_state(e, limit, limit)
    most = _rps(open_full, decode_steps)
    points = []
    for c in _values(concurrency, "concurrency", parse_positive_int):
        running = min(c, limit)
        s = steady_state(e, running, running - 1) if running < limit else closed_full
        rps = _rps(s, decode_steps)
        ttft = c / rps - decode_steps * s.tpot  # Little's law: the queue beyond the limit adds to the TTFT
        capped = limited_by if c > limit else ("token_budget" if s.budget_bound else None)
        points.append(_point(s, c, None, False, rps, ttft, capped, e.output))
    for r in _values(rate, "rate", parse_positive):
        if r >= most:
            points.append(_point(open_full, limit, r, True, most, None, limited_by if not open_full.budget_bound
                                 else "token_budget", e.output))
            continue
        low, high = 0.0, float(limit)
        for _ in range(100):
            mid = (low + high) / 2
            if _rps(steady_state(e, mid, mid), decode_steps) < r:
                low = mid
            else:
                high = mid
        s = steady_state(e, high, high)
        rps = _rps(s, decode_steps)
        points.append(_point(s, r * (s.ttft + decode_steps * s.tpot), r, False, rps, s.ttft,
                             "token_budget" if s.budget_bound else None, e.output))
    return ContinuousReport(max_batched_tokens=e.budget, max_num_seqs=max_num_seqs, max_running=limit,
                            max_requests_per_second=most, max_tokens_per_second=most * e.output, points=points)


def _values(given, field: str, parse) -> list:
    if given is None:
        return []
    if isinstance(given, str):
        return parse_list(given, parse, field=field)
    return [parse(v, field=field) for v in (given if isinstance(given, (list, tuple)) else [given])]


def _point(s: Steady, concurrency: float, rate: float | None, saturated: bool, rps: float, ttft: float | None,
           limited_by: str | None, output: int) -> ContinuousPoint:
    return ContinuousPoint(concurrency=float(concurrency), offered_rate=rate, saturated=saturated,
                           running=float(s.running), limited_by=limited_by, decode_batch=s.decodes,
                           prefill_tokens_per_step=s.prefill, step_seconds=s.step, requests_per_second=rps,
                           tokens_per_second=rps * output, ttft_seconds=ttft, tpot_seconds=s.tpot,
                           request_seconds=None if ttft is None else ttft + (output - 1) * s.tpot)


def _continuous_notes(c: ContinuousReport, budget: int, seqs: int, prompt: int, output: int, draft: bool,
                      pp: int) -> list[str]:
    notes = [f"continuous batching (Orca, Yu et al. 2022) with chunked prefill (Sarathi-Serve, Agrawal et al. 2024; "
             f"vLLM's scheduler): each step runs every decoding sequence and prompt chunks up to {budget:,} tokens; "
             "TPOT is the mean step over a request's decode, prompt chunks interleaved; TTFT the wait for the step "
             "in flight, for the prompts ahead (M/D/1) and the prompt's chunks; a fluid steady state of means "
             "(the queue beyond the running batch has no variance: errs low on TTFT past saturation)",
             f"at most {c.max_running:,} sequences run at once (the KV cache holds "
             f"{'that many' if c.max_running < seqs else 'more'} of {prompt + output:,} tokens; max_num_seqs "
             f"{seqs:,}); the replica sustains at most {c.max_requests_per_second:,.2f} requests/s "
             f"({c.max_tokens_per_second:,.0f} output tokens/s). Sequences are counted at their full length, as "
             "if the cache were reserved up front: vLLM allocates blocks as tokens arrive and runs a few more "
             "(errs low on the running batch)"]
    for p in c.points:
        if p.saturated:
            notes.append(f"{p.offered_rate:g} requests/s exceeds the {c.max_requests_per_second:,.2f} the replica "
                         "sustains: it saturates, the queue and the latency grow without bound")
        elif p.limited_by in ("kv_cache", "max_num_seqs") and p.offered_rate is None:
            notes.append(f"concurrency {p.concurrency:,.0f} exceeds the {c.max_running:,} sequences the "
                         f"{'KV cache holds' if p.limited_by == 'kv_cache' else 'scheduler runs'}: the rest wait "
                         "in the queue, in the TTFT")
    if draft:
        notes.append("continuous batching is modelled with plain decoding (the draft only takes its memory)")
    if pp > 1:
        notes.append("continuous batching runs the stages in turn, one batch in flight: errs low on throughput "
                     "(vLLM keeps pp batches in flight)")
    return notes
