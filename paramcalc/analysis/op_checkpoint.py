"""torchtitan's op-level selective activation checkpointing (`--recompute op`): what one
transformer layer keeps for backward, and the matmul FLOPs its backward reruns.

torchtitan wraps each transformer block in `checkpoint_wrapper` with a selective policy
(torch.utils.checkpoint.create_selective_checkpoint_contexts; torchtitan's
parallelisms/parallelize_llama.py `_save_list` and `_custom_policy`, at the 2024-12 commit its
published benchmarks ran, 9dec370, and its later distributed/activation_checkpoint.py): inside a
block, the outputs of `aten.mm`, of SDPA's flash and memory-efficient kernels, of the
tensor-parallel reduce-scatter and of `aten.max` (fp8 scales: scalars, left out) are kept, except
every second `aten.mm` (a fresh counter per block call); everything else is recomputed in backward.
The checkpoint also keeps the block's input. So a Llama layer (wq, wk, wv, wo, w1, w3, w2 in that
order) keeps the input, wq, wv, w1 and w2's outputs and the attention output and logsumexp, and
reruns wk, wo and w3 with the norms, rotary, SiLU, products and residuals.

Only `aten.mm` is counted and kept: a biased `nn.Linear` on a (batch, tokens, features) input
dispatches `aten.addmm` (its input flattened to 2-D, the bias fused; torch 2.13 on CPU, seen with
a TorchDispatchMode: `view, t, addmm, view`), which is not in the save list and does not advance the
every-other-mm counter, so a biased projection (Qwen2's q, k, v; GPT-2's every linear) is always
rerun and the bias-free mms around it keep their alternation among themselves.

Under tensor parallelism the column-parallel matmuls' outputs are 1/tp wide; a row-parallel one
(o_proj, down_proj) outputs partial sums over the whole hidden size for every token of the
micro-batch. torchtitan's TP runs sequence parallelism: the block's input is 1/tp of the tokens and
the two reduce-scatters' outputs (`_c10d_functional.reduce_scatter_tensor`, in the save list) are
kept. Without sequence parallelism (Megatron's TP with SP off; DTensor's RowwiseParallel to a
replicated output) the block's input is whole on every rank and the partial sums meet in an
all-reduce, whose output (`_c10d_functional.all_reduce`) is not in the save list: it is rerun
(with its communication) in backward, not kept.

Not `aten.mm` and so never saved: torchao's fp8 linears (`aten._scaled_mm`) and routed experts'
grouped GEMMs (`_grouped_mm`); under fp8 training every matmul is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.linear import Linear
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.network import Network, transformer_layer

ROW_PARALLEL = ("o_proj", "down_proj")  # Megatron's and torchtitan's row-parallel linears


@dataclass(frozen=True)
class OpCheckpoint:
    """One layer of one micro-batch under op-level SAC, on one GPU."""

    saved_bytes: int  # kept from forward to backward: the input, every other mm output, SDPA's outputs
    recomputed_flops: int  # matmul FLOPs the backward reruns (the even mms, biased linears, experts, fp8 GEMMs)


def mm_sequence(layer) -> list[tuple[str, Linear]]:
    """The layer's linears in forward order (attention projections, then the MLP's, or the router and
    a shared expert's; routed experts are grouped GEMMs, not listed). A biased one dispatches
    `aten.addmm`, not `aten.mm` (module docstring)."""
    out: list[tuple[str, Linear]] = []
    attention = layer.attention
    if isinstance(attention, Attention):
        out += list(attention.projections().items())
    elif isinstance(attention, LatentAttention):
        out += [(k, v) for k, v in attention.parts().items() if isinstance(v, Linear)]
    mlp = layer.mlp
    if isinstance(mlp, MLP):
        out += list(mlp.parts().items())
    elif isinstance(mlp, MoE):
        out.append(("router", mlp.router))
        if mlp.shared is not None:
            out += list(mlp.shared.parts().items())
    return out


def op_checkpoint(net: Network, batch: int, seq: int, *, x: int = 2, tp: int = 1, cp: int = 1,
                  sequence_parallel: bool = True, fp8: bool = False) -> list[tuple[int, OpCheckpoint]]:
    """(layers, per-layer figures) for each stage of `net.layers`: `batch` sequences of `seq`
    tokens, 1/cp of them on this GPU, split over tp ranks (with sequence parallelism unless
    `sequence_parallel` is False); `x` bytes a 16-bit activation."""
    tokens = batch * seq // cp
    return [(stage.count, layer_checkpoint(transformer_layer(stage), tokens, x=x, tp=tp, fp8=fp8, width=net.width,
                                           sequence_parallel=sequence_parallel))
            for stage in net.layers]


def layer_checkpoint(layer, tokens: int, *, x: int = 2, tp: int = 1, fp8: bool = False,
                     width: int | None = None, sequence_parallel: bool = True) -> OpCheckpoint:
    """One transformer layer over `tokens` tokens on one GPU of tp. Exact for the policy: equal to the
    bytes a torch layer keeps under it (tests/test_op_sac.py measures a bias-free and a biased one)."""
    attention = layer.attention
    mixer = isinstance(attention, (Attention, LatentAttention))
    h = attention.hidden if mixer else width or 0
    sp = sequence_parallel and tp > 1
    saved = x * tokens * h // (tp if sp else 1)  # the block's input, which the checkpoint holds
    recomputed = 0
    mms = 0  # the policy's counter: aten.mm calls only
    for name, linear in mm_sequence(layer):
        flops = 2 * tokens * linear.d_in * linear.d_out // tp
        if not fp8 and not linear.bias:
            mms += 1
        if fp8 or linear.bias or mms % 2 == 0:  # fp8 GEMMs, addmm (biased) and every second mm are rerun
            recomputed += flops
            continue
        saved += x * tokens * linear.d_out // (1 if name in ROW_PARALLEL else tp)
    if sp:  # two reduce-scatters a layer, their outputs kept (an all-reduce's, without SP, are not)
        saved += 2 * x * tokens * h // tp
    if mixer:  # SDPA's (tokens, heads, v dims) output and its fp32 (heads, tokens) logsumexp
        n = attention.heads
        dv = attention.v_head_dim if isinstance(attention, LatentAttention) else attention.head_dim
        saved += x * tokens * n * dv // tp + 4 * tokens * n // tp
    if isinstance(layer.mlp, MoE):  # the routed experts' grouped GEMMs are rerun
        per_token = sum(2 * lin.d_in * lin.d_out for lin in layer.mlp.expert.parts().values())
        recomputed += tokens * layer.mlp.top_k * per_token // tp
    return OpCheckpoint(saved, recomputed)


__all__ = ["OpCheckpoint", "mm_sequence", "op_checkpoint", "layer_checkpoint", "ROW_PARALLEL"]
