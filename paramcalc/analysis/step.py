"""Time of one training step of a parallel plan, from the work each GPU does and
the rates its kernels and links sustain; the MFU that time implies.

One micro-batch on one pipeline stage (Narayanan et al. 2021, "Efficient
Large-Scale Language Model Training on GPU Clusters", section 2):
- matmuls (the layers' linears, the head) at the card's dense peak x its GEMM
  efficiency (`efficiency.gemm_bf16`, or `gemm_fp8` for FP8 training, whose
  LM head stays bf16 as Transformer Engine and torchao leave it); the
  efficiency falls for thin shapes as d / (d + 128) of the smallest GEMM
  dimension (tokens per GPU, or hidden / tp): a fit to cuBLAS on H100 (errs
  either way by a few percent); a routed expert's GEMM has the tokens routed
  to it, tokens x top-k / experts per GPU, times ep when expert parallelism
  gathers them from ep ranks (why MoE training runs EP);
- the attention core (QK^T and PV) at the bf16 peak x `efficiency.attention`:
  flash kernels compute the causal half, and their backward reruns the
  scores: 5 matmuls against the forward's 2, so 2.5 x the forward (Dao 2023,
  FlashAttention-2, section 3.1.2); eager attention computes every pair, and
  its score-sized kernels (the matmuls' reads and writes of the s x s scores,
  softmax, mask, dropout) move `eager_score_bytes` a score at HBM bandwidth:
  with a head dimension of 64 to 128 they are memory-bound, and for small
  models and long sequences they outweigh the GEMMs. The plan's `kernels` say
  whose: Megatron-LM's fused scale-mask-softmax, or transformers' op by op
  (fp32 softmax; OPT and LLaMA ran only this before SDPA and FlashAttention
  reached transformers);
- elementwise kernels (norms, activations, residuals, rotary, dropout) moving
  about the bytes a layer keeps for backward, once in forward and twice in
  backward, at HBM bandwidth x `efficiency.memory`: a proxy (errs high for
  fused kernels, low for unfused ones);
- recomputation reruns the forward (full) or the attention core (selective)
  in backward (Korthikanti et al. 2022, section 5), or, under torchtitan's
  op-level policy (op), every second matmul and every elementwise kernel
  (analysis/op_checkpoint.py): hardware FLOPs, never model FLOPs;
- tensor parallelism: 4 all-reduces of the micro-batch's b x s x h activations
  per layer (2 forward, 2 backward; all-gather + reduce-scatter with sequence
  parallelism, the same bytes), 2 more under full recomputation, on the
  critical path (Shoeybi et al. 2019; Korthikanti et al. 2022, section 4.2.2);
- context parallelism: a ring passes each rank's K and V chunk cp - 1 times
  in forward, twice as much in backward, overlapped with the attention core
  (Liu et al. 2023, Ring Attention; Megatron-Core's context parallelism);
- expert parallelism: a dispatch and a combine all-to-all of the top-k routed
  tokens per MoE layer in forward, two more in backward (Lepikhin et al.
  2021, GShard), two more again when full recomputation reruns the layer, on
  the critical path (1F1B) or behind another micro-batch's compute (DualPipe);
- pipeline: an activation send forward and a gradient send back per virtual
  stage.

A step runs m micro-batches through the pipeline: 1F1B takes (m + (p - 1) / v)
micro-batch times of the busiest stage (the interleaved schedule's bubble,
Narayanan et al. 2021, section 2.2). DualPipe (DeepSeek-AI 2024, DeepSeek-V3
technical report, section 3.2.1 and table 2) feeds micro-batches from both ends:
each rank holds two stages, pairs one micro-batch's forward chunk with another's
backward chunk so that the expert all-to-alls and pipeline sends run behind the
pair's compute, and drains with a bubble of (p/2 - 1)(F&B + B - 3W) chunk
times. Data parallelism and ZeRO/FSDP
(Rajbhandari et al. 2020) shard over dp x cp: gradients reduce-scattered in
the plan's `grad_reduce` precision and 16-bit weights all-gathered, hidden
behind the micro-batch they overlap (FSDP's prefetch; Megatron's
--overlap-grad-reduce and --overlap-param-gather). Then the optimizer step
reads and writes its fp32 state at HBM bandwidth.

Links: ranks are laid out as Megatron-LM orders them (tp fastest, then cp,
then dp, pipeline stages outermost). A group that fits in one node
(`gpus_per_node`) uses the scale-up link (NVLink), else the scale-out network
per GPU (InfiniBand), each at `efficiency.link` of its bandwidth per
direction, plus a fixed latency per collective. Ring collectives move
2 (n - 1) / n (all-reduce) or (n - 1) / n (all-gather, reduce-scatter,
all-to-all) of the buffer per rank (Patarasuk & Yuan 2009). A ring across
nodes whose group holds g ranks in each node crosses over those g NICs
together (NCCL rings pass through a node's ranks over NVLink first), so it
runs at min(g x the network, NVLink) per rank; all-to-alls get one NIC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from paramcalc.analysis.flops import backward_flops, forward_flops, recompute_flops
from paramcalc.analysis.memory import (
    SCHEDULES,
    _layer_share,
    activation_precision,
    head_layers,
    kv_cache_bytes,
    pipeline_split,
    recipe_activations,
)
from paramcalc.analysis.op_checkpoint import op_checkpoint
from paramcalc.analysis.settings import DTYPE_BYTES, optimizer_step_bytes
from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.moe import MoE
from paramcalc.inputs.gpu_file import Gpu
from paramcalc.network import Network, stage_of, transformer_layer
from paramcalc.results.memory import Setup

# Fixed time of one collective: NCCL's small-message all-reduce latency is ~10 us across the
# 8 NVLink-connected GPUs of an H100 node and ~20-30 us across InfiniBand nodes (nccl-tests
# all_reduce_perf at 8 B). It only matters for many small collectives (thin TP, PP sends).
LATENCY_SCALE_UP = 10e-6
LATENCY_SCALE_OUT = 25e-6

# The GEMM-shape knee: cuBLAS sustains d / (d + GEMM_KNEE) of its large-shape rate when the
# smallest GEMM dimension is d (a fit to H100 bf16 GEMM sweeps: 4096 x 4096 x 1024 runs ~0.8-0.9 of
# 8192^3's rate). Errs either way by a few percent.
GEMM_KNEE = 128

# FlashAttention's backward reruns QK^T and computes dV, dP, dQ, dK: 5 matmuls against the
# forward's 2 (Dao 2023, FlashAttention-2, section 3.1.2).
FLASH_BACKWARD = 2.5

# FP8 recipes quantize each GEMM input (and output gradient): 2 bytes read and 1 written per
# element of a 16-bit tensor, about the tensors a layer keeps: 1.5 x the elementwise traffic
# proxy (Transformer Engine's per-tensor casts; fused into norms where it can, so errs slow).
FP8_CAST = 1.5

# DualPipe's overlap is not free: DeepSeek's all-to-all kernels run on 20 of the H800's 132 SMs
# while the paired chunks compute on the rest (DeepSeek-V3 report, section 3.2.2), so a pair's
# compute runs at 112/132 of its rate whenever expert all-to-alls run beside it.
DUALPIPE_COMM_SMS = 20 / 132

GRAD_REDUCE = ("fp32", "bf16")


KERNELS = ("megatron", "transformers")


def eager_score_bytes(x: int, softmax_fp32: bool, dropout: bool, kernels: str = "transformers") -> tuple[float, float]:
    """(forward, backward) bytes a score element moves through eager attention's kernels, each
    reading its inputs from HBM and writing its outputs.

    transformers (modeling_llama's eager_attention_forward; OPT's and LLaMA's 2023 attention ran the
    same ops): forward, QK^T writes the scores (x), the scaling multiply and the mask add each read
    and write them (2x, 2x; the broadcast mask left out: it is 1/heads of the scores and stays in
    cache, errs fast), the upcast to fp32 (x + 4), softmax (4 + 4), the cast back (4 + x), PV reads
    the probabilities (x): 8x + 16. Backward: PV's two matmuls write the probabilities' gradient and
    read the probabilities, QK^T's two read the scores' gradient (4x), the casts' gradients (x + 4,
    4 + x), softmax's backward reads its output and gradient and writes one (12), the scaling's
    gradient (2x): 8x + 20. Without the fp32 upcast (GPT-2, BERT, Falcon) softmax runs in x: 8x, 9x.
    tests/test_eager_scores.py counts these bytes on transformers' attention with a TorchDispatchMode.

    megatron (Megatron-LM's core attention: baddbmm with the scale folded in, then its fused
    scale-mask-softmax kernel, scaled_upper_triang_masked_softmax, 16-bit in and out): forward, the
    scores written (x), softmax reads and writes them (2x), PV reads the probabilities (x): 4x.
    Backward: PV's matmuls (2x), the fused softmax backward reads the gradient and the output and
    writes one (3x), QK^T's matmuls read the scores' gradient (2x): 7x.

    Dropout on the probabilities adds CUDA's native_dropout: x read, x and a 1-byte mask written,
    and the same back."""
    if kernels == "megatron":
        forward, backward = 4.0 * x, 7.0 * x
    elif softmax_fp32:
        forward, backward = 8 * x + 16.0, 8 * x + 20.0
    else:
        forward, backward = 8.0 * x, 9.0 * x
    if dropout:
        forward, backward = forward + 2 * x + 1, backward + 2 * x + 1
    return forward, backward


@dataclass(frozen=True)
class Plan:
    """How one optimizer step is spread over GPUs (Megatron-LM's vocabulary)."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    dp: int = 1
    vpp: int = 1
    micro_batch: int = 1  # sequences per micro-batch per data-parallel rank
    global_batch: int = 1  # sequences per optimizer step
    zero: int = 1
    recompute: str = "none"
    sp: bool = False
    attention: str = "flash"
    dtype: str = "bf16"  # bf16 | fp8 (Transformer Engine's recipe)
    reshard: bool = True
    schedule: str = "1f1b"  # 1f1b (interleaved with vpp > 1) | dualpipe
    # Gradients accumulated and reduced in fp32 (Megatron-LM's default for bf16,
    # --accumulate-allreduce-grads-in-fp32; torchtitan's FSDP2 reduce_dtype float32; Llama 3,
    # section 3.3.2, "numerical stability") or in bf16 (NeMo's performance recipes: grad_reduce_in_fp32 = False)
    grad_reduce: str = "fp32"
    # AdamW's moments: fp32 (adamw) or bf16 (adamw-bf16, DeepSeek-V3 report, section 3.3.3)
    optimizer: str = "adamw"
    # fp8 training that caches the Linears' inputs in fp8 (DeepSeek-V3 report, section 3.3.3): memory only
    fp8_activations: bool = False
    # whose kernels eager attention runs (eager_score_bytes): Megatron-LM's fused softmax, or transformers'
    # op by op (what post-training stacks run: TRL, DeepSpeed-Chat, OpenRLHF load transformers models)
    kernels: str = "megatron"

    def __post_init__(self) -> None:
        if self.kernels not in KERNELS:
            raise ValueError(f"Plan.kernels must be one of {KERNELS}, not {self.kernels!r}")

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    @property
    def micro_batches(self) -> int:
        """Micro-batches per step on each pipeline (gradient accumulation)."""
        return self.global_batch // (self.dp * self.micro_batch)

    def setup(self) -> Setup:
        """The memory model's view of this plan. Gradient bytes follow `grad_reduce`, as the time
        prices them: Megatron's DDP and distributed optimizer (ZeRO 0-2 here) keep a 4-byte
        main_grad buffer for every local parameter under fp32 reduction (the `megatron` recipe:
        2 + 4 + 4 + 8 bytes, 6 + 12/d with the distributed optimizer, Megatron-LM's
        docs/source/api-guide/dist_optimizer.md), a 2-byte one in bf16; FSDP2 (ZeRO-3)
        keeps fp32 sharded parameters that are the master copy and fp32 sharded gradients,
        (4 + 4 + 8) / d bytes: the same total as the mixed recipe's (2 + 2 + 12) / d. A plan's ZeRO-3
        is FSDP2 as torchtitan runs it (`fsdp2`: memory.torchtitan)."""
        precision = "megatron" if self.grad_reduce == "fp32" and self.zero <= 2 else "mixed"
        return Setup(mode="train", dtype=self.dtype, precision=precision, zero=self.zero, dp=self.dp, tp=self.tp,
                     pp=self.pp, cp=self.cp, ep=self.ep, vpp=self.vpp, micro_batches=self.micro_batches,
                     sequence_parallel=self.sp, recompute=self.recompute, attention=self.attention,
                     reshard=self.reshard, profile="megatron", schedule=self.schedule, optimizer=self.optimizer,
                     fp8_activations=self.fp8_activations, grad_reduce=self.grad_reduce,
                     fsdp2=self.zero >= 3 and self.schedule == "1f1b")


@dataclass(frozen=True)
class Work:
    """The FLOPs and bytes of one sequence through the network, split the way the rates
    differ; computed once per network and sequence length, then scaled per plan."""

    seq: int
    layers: int
    width: int
    kv_width: int  # K plus V features per token (all heads)
    gemm: float  # the layers' linear FLOPs, forward, per sequence (the routed experts' included)
    expert_gemm: float  # the routed experts' share of `gemm`
    experts: int  # routed experts per MoE layer
    core_causal: float  # QK^T and PV, the unmasked pairs (what flash computes)
    core_dense: float  # every pair (eager; the MFU convention)
    head: float  # the LM head's forward FLOPs
    model: float  # model FLOPs of one sequence's training step: forward + backward, dense (PaLM, appendix B)
    moe_layers: int
    top_k: int
    dense_params: int  # parameters outside the routed experts
    expert_params: int  # the routed experts'
    layer_params: int  # all layers' (dense and experts)
    head_layers: float = 0.0  # the LM head's work in layers' worth (Megatron's uneven pipeline split)
    # LoRA's frozen base (flops.backward_flops): the share of the layers' GEMM FLOPs whose weights train (their
    # weight-gradient GEMMs run; 1 when every weight trains), whether the head's do, and the trained parameters
    # whose gradients are reduced and stepped (None: all of dense_params / expert_params)
    weight_grads: float = 1.0
    head_grads: float = 1.0
    trained_dense: float | None = None
    trained_expert: float | None = None
    forward: float = 0.0  # model FLOPs of one sequence's forward, dense
    traffic: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # memo of _layer_traffic

    @classmethod
    def of(cls, net: Network, seq: int) -> Work:
        causal, dense = net.flops(Pass(1, seq, "causal")), net.flops(Pass(1, seq, "dense"))
        names = {s.name for s in net.layers}

        def core(parts: dict[str, int]) -> float:
            return float(sum(v for k, v in parts.items() if k.rsplit("/", 1)[-1] in ("scores", "values")))

        in_layers = {k: v for k, v in causal.items() if stage_of(k, names)}
        moe = [(s.count, m) for s in net.layers if isinstance(m := transformer_layer(s).mlp, MoE)]
        params = net.params()
        expert = sum(v for k, v in params.items() if "/moe/experts/" in k)
        width = net.width or 0
        L = sum(s.count for s in net.layers)
        # K and V features a token keeps per layer: what the KV cache holds (GQA, MLA, head_dim as configured)
        kv_width = kv_cache_bytes(net, 1, 1, "bf16") // (2 * L) if L else 0
        # model FLOPs: forward + backward as `count_flops` and `cost` take them (3 x forward, less the input
        # gradient a first layer reading pixels or features does not need)
        forward = float(forward_flops(net, Pass(1, seq, "dense")))
        backward = float(backward_flops(net, Pass(1, seq, "dense")))
        model = forward + backward
        work = cls(seq=seq, forward=forward, layers=L, width=width, kv_width=kv_width, head_layers=head_layers(net),
                   gemm=float(sum(in_layers.values())) - core(in_layers),
                   expert_gemm=float(sum(v for k, v in in_layers.items() if k.endswith("/moe/experts"))),
                   experts=moe[0][1].experts if moe else 0, core_causal=core(causal),
                   core_dense=core(dense),
                   head=float(sum(v for k, v in causal.items() if not stage_of(k, names))),
                   model=model, moe_layers=sum(n for n, _ in moe),
                   top_k=moe[0][1].top_k if moe else 0, dense_params=sum(params.values()) - expert,
                   expert_params=expert,
                   layer_params=sum(v for k, v in params.items() if stage_of(k, names)))
        if net.freeze:
            # frozen weights (LoRA's base) compute no weight gradient (flops.backward_flops): backward - forward
            # is the trained weights' gradient GEMMs plus the attention core's second matmul; only the trained
            # parameters' gradients are reduced and stepped, while ZeRO-3 still gathers every weight
            head_stage = {k for k in params if not stage_of(k, names) and not k.startswith("embedding")}
            head_trains = any(not net.is_frozen(k) for k in head_stage)
            trained = net.trainable_params()
            weight = backward - forward - work.core_dense - (work.head if head_trains else 0.0)
            work = replace(work, weight_grads=max(0.0, weight) / work.gemm if work.gemm else 1.0,
                           head_grads=1.0 if head_trains else 0.0,
                           trained_expert=float(sum(v for k, v in trained.items() if "/moe/experts/" in k)),
                           trained_dense=float(sum(v for k, v in trained.items() if "/moe/experts/" not in k)))
        return work


@dataclass(frozen=True)
class StepTime:
    """One optimizer step of a plan, in seconds, by where the time goes."""

    seconds: float
    compute: float  # the busiest stage's kernels over all micro-batches
    bubble: float  # the pipeline's fill and drain
    exposed_comm: float  # communication on the critical path or not hidden behind compute
    optimizer: float
    model_flops: float  # of the whole step, all GPUs
    hardware_flops: float  # model FLOPs + recomputation, all GPUs
    collectives: tuple[tuple[str, int, float, bool], ...]  # (name, bytes per GPU per step, seconds, hidden)


def link(card: Gpu, span: int) -> tuple[float, float]:
    """(bytes/s, latency) of a collective whose ranks span `span` consecutive GPUs."""
    e = card.efficiency.link
    inside = span <= card.gpus_per_node
    chosen = card.interconnect if inside or card.network is None else card.network
    bandwidth = chosen.bandwidth if chosen is not None else card.memory_bandwidth
    return float(bandwidth) * e, LATENCY_SCALE_UP if inside else LATENCY_SCALE_OUT


def ring(kind: str, n: int, size: float) -> float:
    """Bytes one rank sends in a ring collective of `size` bytes over n ranks."""
    if n <= 1:
        return 0.0
    return (2 if kind == "all-reduce" else 1) * (n - 1) * size / n


def _moved(card: Gpu, span: int, kind: str, n: int, size: float, times: float = 1.0) -> tuple[float, float]:
    """(bytes, seconds) of `times` ring collectives of `size` bytes over n ranks."""
    if n <= 1 or size <= 0:
        return 0.0, 0.0
    bw, latency = link(card, span)
    sent = ring(kind, n, size)
    if kind != "all-to-all" and span > card.gpus_per_node and card.network is not None \
            and card.interconnect is not None:
        # NCCL's rings pass through every rank of the group inside a node over NVLink before they cross
        # to the next node, one ring per NIC (NCCL's topology search; rail-optimized networks): the
        # node's g ranks of the group cross together, each ring step's inter-node bytes over g NICs
        # at once, so a ring runs at min(g x the network, NVLink) per rank. g = 1 (TP filling a node,
        # one rank of the DP group per node) is the network alone. All-to-alls send each rank's bytes
        # to the other nodes over its own NIC: no sharing (errs fast where NICs are fewer than GPUs).
        stride = span / n  # consecutive GPUs between two ranks of the group
        per_node = max(1, min(n, int(card.gpus_per_node // stride)))
        bw = min(bw * per_node, float(card.interconnect.bandwidth) * card.efficiency.link)
    return sent * times, times * (sent / bw + latency)


def step_time(net: Network, work: Work, plan: Plan, card: Gpu) -> StepTime:
    """Seconds of one optimizer step of `plan` on `card`s."""
    eff = card.efficiency
    fp8 = plan.dtype == "fp8"
    bf16_peak = card.peak("bf16")
    gemm_rate = (card.peak("fp8") * eff.gemm_fp8) if fp8 else bf16_peak * eff.gemm_bf16
    head_rate = bf16_peak * eff.gemm_bf16
    mb, seq, L = plan.micro_batch, work.seq, max(work.layers, 1)
    tokens = mb * seq / plan.cp  # tokens of one micro-batch on one GPU
    # a layers network (CNN, RNN) has no one width: its convolutions are implicit GEMMs over
    # batch x pixels, left at the large-shape rate (errs fast for small images and batches)
    thin = min(tokens, work.width / plan.tp) if work.width else float("inf")
    shape = 1.0 if thin == float("inf") else thin / (thin + GEMM_KNEE)
    split = plan.tp * plan.cp

    # one layer, one micro-batch, on one GPU: matmuls, attention core, elementwise traffic
    gemm = (work.gemm - work.expert_gemm) / L * mb / split / (gemm_rate * shape)
    if work.expert_gemm:  # each GPU's experts see the tokens routed to them from its ep ranks
        routed = tokens * work.top_k * plan.ep / work.experts
        thin_e = min(routed, work.width / plan.tp)
        gemm += work.expert_gemm / L * mb / split / (gemm_rate * thin_e / (thin_e + GEMM_KNEE))
    core_flops = work.core_causal if plan.attention == "flash" else work.core_dense
    core = core_flops / L * mb / split / (bf16_peak * eff.attention)
    core_bwd = FLASH_BACKWARD if plan.attention == "flash" else 2.0
    # elementwise kernels run whatever is kept: the traffic of a plan without recomputation, the
    # s x s tensors of eager attention apart (their own kernels' bytes: eager_score_bytes); selective
    # recomputation reruns the attention core's elementwise work (softmax, dropout) in backward
    hbm = card.memory_bandwidth * eff.memory
    kept = plan if plan.attention == "flash" else replace(plan, attention="flash")
    moved = _traffic(net, work, kept, "none") / L
    rerun = moved - _traffic(net, work, kept, "selective") / L
    scores_f, scores_b = (s / L / hbm for s in _score_traffic(net, work, plan))
    if fp8:  # casts: every 16-bit GEMM input (about the saved tensors) read and written again as fp8
        moved *= 1 + FP8_CAST
    elementwise = moved / hbm
    forward = gemm + core + elementwise + scores_f
    # backward: the input-gradient GEMMs, and the weight-gradient ones of the weights that train
    layer = forward + (1 + work.weight_grads) * gemm + core_bwd * core + 2 * elementwise + scores_b
    if plan.recompute == "full":
        layer += forward
    elif plan.recompute == "selective":
        layer += core + scores_f + rerun * (1 + FP8_CAST if fp8 else 1) / hbm
    elif plan.recompute == "op":  # every second matmul (all of them in fp8) and every elementwise kernel, once more
        layer += op_rerun_flops(net, work, fp8) / L * mb / split / (gemm_rate * shape) + elementwise + scores_f
    elif plan.recompute == "deepseek":
        # DeepSeek-V3 (report, section 3.2.3): MLA's up-projection GEMMs once more, and the elementwise kernels
        # that remake what the mode drops (norm outputs, q/k/v with rotary, the SwiGLU output) at HBM bandwidth:
        # the dropped bytes stand for their traffic (errs slow: q, k, v come out of the GEMMs, counted twice)
        dropped = _rerun_traffic(net, work, plan) / L
        layer += (module_rerun_flops(net, work) / L * mb / split / (gemm_rate * shape)
                  + dropped * (1 + FP8_CAST if fp8 else 1) / (card.memory_bandwidth * eff.memory))

    collectives: list[tuple[str, int, float, bool]] = []
    x = 2  # 16-bit activations on the wire (FP8 recipes communicate bf16 too)
    per_layer_comm = 0.0
    if plan.tp > 1:
        n = 6 if plan.recompute == "full" else 4
        b, t = _moved(card, plan.tp, "all-reduce", plan.tp, tokens * work.width * x, n)
        collectives.append((f"tensor-parallel all-reduces ({n} per layer)", int(b * L * plan.micro_batches / plan.pp),
                            t * L * plan.micro_batches / plan.pp, False))
        per_layer_comm += t
    if plan.cp > 1:
        chunk = tokens * work.kv_width / plan.tp * x  # this rank's K and V
        bw, latency = link(card, plan.tp * plan.cp)
        sent = 3 * (plan.cp - 1) * chunk  # forward once, backward twice (K, V and their gradients)
        t = sent / bw + 3 * (plan.cp - 1) * latency
        exposed = max(0.0, t - (1 + core_bwd) * core)  # the ring overlaps the attention core
        collectives.append(("context-parallel K/V ring", int(sent * L * plan.micro_batches / plan.pp),
                            t * L * plan.micro_batches / plan.pp, exposed == 0.0))
        per_layer_comm += exposed
    moe_share = work.moe_layers / L
    dual = plan.schedule == "dualpipe" and plan.pp > 1
    ep_comm = 0.0  # per layer, averaged over all layers: behind the paired chunk's compute under DualPipe
    if plan.ep > 1 and work.moe_layers:
        routed = tokens / (plan.tp if plan.sp else 1) * work.top_k * work.width * x
        # full recomputation reruns the layer's forward, its dispatch and combine included (Megatron's
        # checkpointed TransformerLayer holds the token dispatcher)
        n = 6 if plan.recompute == "full" else 4
        # Megatron-Core orders expert ranks tp-ep-dp-pp: an EP group spans tp x ep consecutive GPUs
        b, t = _moved(card, plan.tp * plan.ep, "all-to-all", plan.ep, routed, n)
        collectives.append((f"expert-parallel all-to-all ({n} per MoE layer)",
                            int(b * work.moe_layers * plan.micro_batches / plan.pp),
                            t * work.moe_layers * plan.micro_batches / plan.pp, dual))
        ep_comm = t * moe_share
    head = (2 + work.head_grads) * work.head * mb / split / (head_rate * shape)
    # the busiest stage: a first one with `most` layers, or the last with `fewest` and the head
    # (Megatron's uneven split, the same the memory model holds: analysis/memory.py pipeline_split)
    most, fewest = pipeline_split(L, plan.pp, work.head_layers)
    # (kernels, exposed communication, communication DualPipe can hide) of one micro-batch on the busiest GPU
    if plan.pp == 1:
        kernels, talk, hideable = L * layer + head, L * per_layer_comm, L * ep_comm
    elif dual:  # rank 0 holds the first and the last stage, each run by half the micro-batches; others two of `most`
        ends = (most + fewest) / 2
        kernels, talk, hideable = max(((most + fewest) * layer / 2 + head / 2, ends * per_layer_comm, ends * ep_comm),
                                      (most * layer, most * per_layer_comm, most * ep_comm), key=sum)
    else:
        kernels, talk, hideable = max((most * layer, most * per_layer_comm, most * ep_comm),
                                      (fewest * layer + head, fewest * per_layer_comm, fewest * ep_comm), key=sum)
    sends = 0.0
    if plan.pp > 1:
        boundary = tokens * work.width * x / (plan.tp if plan.sp else 1)
        bw, latency = link(card, plan.tp * plan.cp * plan.dp + 1)
        sends = 2 * plan.vpp * (boundary / bw + latency)  # activation forward, its gradient back
        collectives.append(("pipeline sends (activations and gradients)",
                            int(2 * plan.vpp * boundary * plan.micro_batches), sends * plan.micro_batches, dual))
    m = plan.micro_batches
    if dual:
        # one micro-batch's forward chunk beside another's backward chunk (F&B): the all-to-alls and sends
        # run on their own SMs, so the pair takes the longer of its compute, on the SMs left, and that traffic
        comm = hideable + sends
        pair = max(kernels / (1 - DUALPIPE_COMM_SMS) if hideable else kernels, comm)
        stage = pair + talk
        # the drain: (p/2 - 1)(F&B + B - 3W) (DeepSeek-V3 report, table 2), B a backward chunk with its own
        # traffic exposed (errs slow), W its weight-gradient GEMMs (one of a linear's two backward GEMMs)
        backward = (kernels + talk) * (1 - forward / layer) + comm / 2
        bubble = (plan.pp / 2 - 1) * max(0.0, stage + backward - 3 * kernels * gemm * work.weight_grads / layer)
        talk += pair - kernels  # what the pair waits beyond its compute counts as exposed communication
    else:
        talk += hideable + sends
        stage = kernels + talk
        bubble = (plan.pp - 1) / plan.vpp * stage

    # data parallel / ZeRO: dense parameters over dp x cp ranks, routed experts over the expert-data-
    # parallel group of dp x cp / ep ranks (Megatron-Core), each GPU's share of the busiest stage
    shards = plan.dp * plan.cp
    # DualPipe keeps two stages' parameters on every rank (DeepSeek-V3 report, table 2: 2x)
    stage_share = (2 * most if dual else most) / L if plan.pp > 1 else 1.0
    # (weights, trained parameters) on this GPU before ZeRO, the ranks they shard over, the span of those ranks
    dense_trained = work.dense_params if work.trained_dense is None else work.trained_dense
    expert_trained = work.expert_params if work.trained_expert is None else work.trained_expert
    groups = [(work.dense_params / plan.tp * stage_share, dense_trained / plan.tp * stage_share, shards,
               plan.tp * plan.cp * plan.dp),
              (work.expert_params / (plan.tp * plan.ep) * stage_share,
               expert_trained / (plan.tp * plan.ep) * stage_share, max(1, shards // plan.ep),
               plan.tp * plan.cp * plan.dp)]
    exposed = 0.0
    moved_b, moved_t, per_micro, once = 0.0, 0.0, 0.0, 0.0
    for local, trained, n, span in groups:
        if n <= 1 or local <= 0:
            continue
        grads, weights = (4 if plan.grad_reduce == "fp32" else 2) * trained, 2 * local
        if plan.zero >= 3 and plan.reshard:  # FSDP: gathers in forward and backward, a reduce-scatter, per micro
            b1, t1 = _moved(card, span, "all-gather", n, weights, 2)
            b2, t2 = _moved(card, span, "reduce-scatter", n, grads)
            per_micro += t1 + t2
            moved_b, moved_t = moved_b + m * (b1 + b2), moved_t + m * (t1 + t2)
        elif plan.zero >= 3:  # without resharding (with a pipeline): gathered once, reduced once per step
            b1, t1 = _moved(card, span, "all-gather", n, weights)
            b2, t2 = _moved(card, span, "reduce-scatter", n, grads)
            once += max(0.0, t1 - stage / 3) + max(0.0, t2 - 2 / 3 * stage)
            moved_b, moved_t = moved_b + b1 + b2, moved_t + t1 + t2
        elif plan.zero == 0:
            b, t = _moved(card, span, "all-reduce", n, grads)
            once += max(0.0, t - 2 / 3 * stage)  # behind the last micro-batch's backward
            moved_b, moved_t = moved_b + b, moved_t + t
        else:  # ZeRO-1/2: gradients reduce-scattered behind the last backward, weights gathered behind the next
            b1, t1 = _moved(card, span, "reduce-scatter", n, grads)
            b2, t2 = _moved(card, span, "all-gather", n, weights)
            once += max(0.0, t1 - 2 / 3 * stage) + max(0.0, t2 - stage / 3)
            moved_b, moved_t = moved_b + b1 + b2, moved_t + t1 + t2
    if per_micro:
        exposed += m * max(0.0, per_micro - stage) + per_micro / max(most, 1)  # the first layer's gather waits
    exposed += once
    if moved_b:
        name = {0: "gradient all-reduce", 1: "gradient reduce-scatter and weight all-gather",
                2: "gradient reduce-scatter and weight all-gather"}.get(plan.zero, "FSDP weight all-gathers and "
                                                                                  "gradient reduce-scatters")
        collectives.append((name, int(moved_b), moved_t, True))
    held = sum(trained / (n if plan.zero >= 1 else 1) for _, trained, n, _ in groups)
    optimizer = optimizer_step_bytes(plan.optimizer) * held / (card.memory_bandwidth * eff.memory)
    seconds = m * stage + bubble + exposed + optimizer
    model = work.model * plan.global_batch
    # full recomputation reruns the layers' forward, not the LM head's (it lies outside the checkpointed layers)
    recomputed = {"none": 0.0, "selective": work.core_dense, "full": work.forward - work.head,
                  "op": op_rerun_flops(net, work, fp8), "deepseek": module_rerun_flops(net, work)}[plan.recompute]
    return StepTime(seconds=seconds, compute=m * kernels, bubble=bubble, exposed_comm=m * talk + exposed,
                    optimizer=optimizer, model_flops=model,
                    hardware_flops=model + recomputed * plan.global_batch, collectives=tuple(collectives))


def op_rerun_flops(net: Network, work: Work, fp8: bool) -> float:
    """Matmul FLOPs one sequence's backward reruns under torchtitan's op-level SAC, all layers
    (analysis/op_checkpoint.py): the even matmuls of each layer, the routed experts, every fp8 GEMM."""
    key = ("op", fp8)
    if key not in work.traffic:
        work.traffic[key] = float(sum(n * layer.recomputed_flops
                                      for n, layer in op_checkpoint(net, 1, work.seq, fp8=fp8)))
    return work.traffic[key]


def module_rerun_flops(net: Network, work: Work) -> float:
    """Matmul FLOPs one sequence's backward reruns under `deepseek` recomputation, all layers: MLA's
    up-projections (analysis/flops.py recompute_flops)."""
    key = ("deepseek",)
    if key not in work.traffic:
        work.traffic[key] = float(recompute_flops(net, Pass(1, work.seq), "deepseek"))
    return work.traffic[key]


def _traffic(net: Network, work: Work, plan: Plan, recompute: str) -> float:
    """The elementwise traffic proxy of one micro-batch, all layers (the network's own saved tensors).
    fp8 activation caching changes the bytes kept, not the kernels that produce them: not counted."""
    key = (plan.micro_batch, plan.cp, plan.tp, plan.sp, recompute, plan.attention, plan.dtype)
    if key not in work.traffic:
        setup = replace(plan, recompute=recompute, fp8_activations=False).setup()
        work.traffic[key] = _layer_traffic(net, Pass(plan.micro_batch, work.seq // plan.cp), setup)
    return work.traffic[key]


def _score_traffic(net: Network, work: Work, plan: Plan) -> tuple[float, float]:
    """(forward, backward) bytes eager attention's score-sized kernels move in one micro-batch on one
    GPU, all layers (eager_score_bytes); nothing under flash, whose scores never leave the chip."""
    if plan.attention == "flash":
        return 0.0, 0.0
    key = ("scores", plan.micro_batch, plan.cp, plan.tp, plan.kernels)
    if key not in work.traffic:
        a = net.activations(2, "eager")
        per = eager_score_bytes(2, a.softmax_fp32, a.attention_dropout, plan.kernels)
        # this GPU's 1/cp of the queries against every key (a ring passes the keys round); eager computes (and
        # masks) the full rectangle; cross-attention's keys are its memory's
        queries, whole = work.seq // plan.cp, Pass(plan.micro_batch, work.seq)
        pairs = 0
        for stage in net.layers:
            layer = transformer_layer(stage)
            for mixer in (layer.attention, layer.cross_attention):
                if isinstance(mixer, (Attention, LatentAttention)):
                    keys = mixer._keys(whole).keys if isinstance(mixer, Attention) else work.seq
                    pairs += stage.count * plan.micro_batch * mixer.heads // plan.tp * queries * keys
        work.traffic[key] = (pairs * per[0], pairs * per[1])
    return work.traffic[key]


def _rerun_traffic(net: Network, work: Work, plan: Plan) -> float:
    """The 16-bit bytes `deepseek` recomputation drops from one micro-batch's layers (Megatron's
    tensors, as the memory model keeps them): what its elementwise reruns write again."""
    key = ("rerun", plan.micro_batch, plan.cp, plan.tp, plan.sp, plan.attention, plan.dtype)
    if key not in work.traffic:
        p = Pass(plan.micro_batch, work.seq // plan.cp)
        kept = [_layer_traffic(net, p, s, recipe_activations(net, s))
                for s in (replace(plan, recompute=r, fp8_activations=False).setup() for r in ("none", "deepseek"))]
        work.traffic[key] = kept[0] - kept[1]
    return work.traffic[key]


def _layer_traffic(net: Network, p: Pass, s: Setup, a: Activations | None = None) -> float:
    """Bytes the layers keep for backward at the plan's splits, all layers of one micro-batch:
    the elementwise kernels' traffic proxy (module docstring)."""
    names = {st.name for st in net.layers}
    # the kernels run whatever a frozen base keeps: LoRA's layers compute what trained ones do (blocks/lora.py)
    a = replace(a or net.activations(activation_precision(s), s.attention), frozen_base=False)
    saved = net.saved(p, a)
    return float(sum(_layer_share(k, v, s) for k, v in saved.items() if stage_of(k, names)))


def mfu(t: StepTime, plan: Plan, card: Gpu, dtype: str | None = None) -> float:
    """Model FLOPs of the step / (GPUs x the dense peak of the training dtype x seconds)."""
    return t.model_flops / (plan.gpus * card.peak(dtype or plan.dtype) * t.seconds)


__all__ = ["Plan", "StepTime", "Work", "step_time", "mfu", "link", "ring", "op_rerun_flops", "DTYPE_BYTES",
           "SCHEDULES", "GRAD_REDUCE", "KERNELS", "eager_score_bytes"]
