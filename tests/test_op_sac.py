"""torchtitan's op-level selective activation checkpointing (`--recompute op`): the bytes a layer
keeps, measured on a real torch layer under torch.utils.checkpoint with the same policy, and the
FLOPs and time its backward reruns."""

from __future__ import annotations

import gc
from collections import defaultdict

import pytest

from paramcalc.analysis.estimate import estimate
from paramcalc.analysis.memory import estimate_memory
from paramcalc.analysis.op_checkpoint import layer_checkpoint, mm_sequence
from paramcalc.analysis.step import Plan, Work, op_rerun_flops, step_time
from paramcalc.blocks.attention import Attention
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.norm import Norm
from paramcalc.catalog import load_gpu
from paramcalc.network import lower

H, N, G, D, F = 64, 4, 2, 16, 176  # hidden, heads, kv heads, head dim, SwiGLU width
LAYER = TransformerLayer(attention=Attention(hidden=H, heads=N, kv_heads=G, head_dim=D), mlp=MLP(hidden=H, ffn=F),
                         norm=Norm(H))
# Qwen2: biased q, k, v (each an aten.addmm, outside the save list and the mm counter)
QWEN2 = TransformerLayer(attention=Attention(hidden=H, heads=N, kv_heads=G, head_dim=D, qkv_bias=True),
                         mlp=MLP(hidden=H, ffn=F), norm=Norm(H))


def test_a_llama_layer_issues_its_seven_matmuls_in_torchtitans_order():
    names = [name for name, _ in mm_sequence(LAYER)]
    assert names == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # wq..wo, w1 w3 w2


def test_the_policy_keeps_the_input_every_odd_matmul_and_the_attention_output():
    """Closed form: input h, wq n d, wv g d, w1 f, w2 h, SDPA's n d output (bf16) and n fp32 logsumexps a token."""
    tokens = 2 * 32
    got = layer_checkpoint(LAYER, tokens, x=2)
    assert got.saved_bytes == 2 * tokens * (H + N * D + G * D + F + H + N * D) + 4 * tokens * N
    # wk (h x g d), wo (n d x h), w3 (h x f) rerun: 2 FLOPs a multiply-add
    assert got.recomputed_flops == 2 * tokens * (H * G * D + N * D * H + H * F)


def test_fp8_linears_are_not_aten_mm_so_every_matmul_reruns():
    tokens = 64
    got = layer_checkpoint(LAYER, tokens, x=2, fp8=True)
    assert got.saved_bytes == 2 * tokens * (H + N * D) + 4 * tokens * N
    assert got.recomputed_flops == 2 * tokens * (H * (N * D + 2 * G * D) + N * D * H + 3 * H * F)


def test_tensor_parallel_keeps_row_parallel_partial_sums_whole_and_the_reduce_scatter_outputs():
    tokens, tp = 64, 4
    got = layer_checkpoint(LAYER, tokens, x=2, tp=tp)
    # column-parallel wq, wv, w1 outputs and SDPA's are 1/tp; w2's partial sums are h wide for every token
    kept = tokens * (H + N * D + G * D + F + N * D) // tp + tokens * H + 2 * tokens * H // tp
    assert got.saved_bytes == 2 * kept + 4 * tokens * N // tp


def test_biased_linears_are_addmm_so_always_rerun_and_not_counted():
    """Qwen2's biased wq, wk, wv rerun; the bias-free wo, w1, w3, w2 alternate among themselves: wo and
    w3 kept, w1 and w2 rerun."""
    tokens = 64
    got = layer_checkpoint(QWEN2, tokens, x=2)
    assert got.saved_bytes == 2 * tokens * (H + H + F + N * D) + 4 * tokens * N
    assert got.recomputed_flops == 2 * tokens * (H * (N * D + 2 * G * D) + H * F + F * H)


def test_tensor_parallel_without_sequence_parallel_keeps_the_whole_input_and_no_reduce_scatter():
    """Without SP the block's input is whole on each rank and the partial sums meet in an all-reduce,
    which torchtitan's save list leaves out (rerun in backward)."""
    tokens, tp = 64, 4
    got = layer_checkpoint(LAYER, tokens, x=2, tp=tp, sequence_parallel=False)
    kept = tokens * H + tokens * (N * D + G * D + F + N * D) // tp + tokens * H
    assert got.saved_bytes == 2 * kept + 4 * tokens * N // tp
    assert got.saved_bytes > layer_checkpoint(LAYER, tokens, x=2, tp=tp).saved_bytes


def test_memory_passes_sequence_parallel_to_op_recomputation():
    kwargs = dict(seq_len=4096, batch=1, tp=4, recompute="op", profile="megatron")
    off = estimate_memory("llama-3.1-8b", **kwargs).breakdown["layers/op_checkpointed"]
    on = estimate_memory("llama-3.1-8b", sequence_parallel=True, **kwargs).breakdown["layers/op_checkpointed"]
    h, tokens = 4096, 4096
    # SP off: the input whole instead of 1/4, and no reduce-scatter outputs (2 of h a token, 1/4 each)
    assert off - on == 32 * 2 * tokens * (h - h // 4 - 2 * h // 4)


def _torch_layer(torch, bias: bool = False):
    """A torchtitan-style Llama layer: RMSNorm, wq wk wv, GQA by repeat_interleave, SDPA, wo; RMSNorm,
    w2(silu(w1 x) * w3 x); residuals. `bias`: Qwen2's biased wq, wk, wv."""
    nn, fn = torch.nn, torch.nn.functional

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.wq, self.wk = nn.Linear(H, N * D, bias=bias), nn.Linear(H, G * D, bias=bias)
            self.wv, self.wo = nn.Linear(H, G * D, bias=bias), nn.Linear(N * D, H, bias=False)
            self.w1, self.w3, self.w2 = nn.Linear(H, F, bias=False), nn.Linear(H, F, bias=False), nn.Linear(F, H,
                                                                                                             bias=False)
            self.attention_norm, self.ffn_norm = nn.RMSNorm(H), nn.RMSNorm(H)

        def forward(self, x):
            b, t, _ = x.shape
            y = self.attention_norm(x)
            q = self.wq(y).view(b, t, N, D).transpose(1, 2)
            k = self.wk(y).view(b, t, G, D).transpose(1, 2).repeat_interleave(N // G, dim=1)
            v = self.wv(y).view(b, t, G, D).transpose(1, 2).repeat_interleave(N // G, dim=1)
            o = fn.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.wo(o.transpose(1, 2).reshape(b, t, N * D))
            z = self.ffn_norm(x)
            return x + self.w2(fn.silu(self.w1(z)) * self.w3(z))

    return Layer()


@pytest.mark.parametrize(("bias", "model"), [(False, LAYER), (True, QWEN2)], ids=["llama", "qwen2-qkv-bias"])
def test_the_saved_bytes_equal_what_torch_keeps_under_the_selective_policy(bias, model):
    """torch.utils.checkpoint with create_selective_checkpoint_contexts and torchtitan's rule (save the
    outputs of mm and SDPA, except every second mm), on CPU in bf16: the storages still alive after the
    forward, less the parameters and the output, plus the layer input the checkpoint holds, equal the
    model's bytes exactly; with Qwen2's biased wq, wk, wv, which torch runs as aten.addmm (neither saved
    nor counted), too. CPU runs SDPA's flash kernel as `_scaled_dot_product_flash_attention_for_cpu`
    (the same output and logsumexp), which stands in the save list for the CUDA ops."""
    torch = pytest.importorskip("torch")
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

    aten = torch.ops.aten
    save = {aten.mm.default, aten._scaled_dot_product_flash_attention.default,
            aten._scaled_dot_product_efficient_attention.default,
            aten._scaled_dot_product_flash_attention_for_cpu.default}

    def context():
        count: dict[str, int] = defaultdict(int)

        def policy(ctx, func, *args, **kwargs):
            mode = "recompute" if ctx.is_recompute else "forward"
            if func == aten.mm.default:
                count[mode] += 1
            keep = func in save and not (func == aten.mm.default and count[mode] % 2 == 0)
            return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

        return create_selective_checkpoint_contexts(policy)

    class Storages(TorchDispatchMode):
        """Every storage an op of the forward produced, weakly held, with its bytes."""

        def __init__(self):
            super().__init__()
            self.made: dict[int, tuple[StorageWeakRef, int]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    st = t.untyped_storage()
                    self.made.setdefault(st._cdata, (StorageWeakRef(st), st.nbytes()))
            return out

    torch.manual_seed(0)
    layer = _torch_layer(torch, bias).to(torch.bfloat16)
    b, t = 2, 32
    x = torch.randn(b, t, H, dtype=torch.bfloat16, requires_grad=True)
    seen = Storages()
    with seen:
        y = checkpoint(layer, x, use_reentrant=False, context_fn=context)
    gc.collect()
    skip = {p.untyped_storage()._cdata for p in layer.parameters()} | {y.untyped_storage()._cdata}
    alive = sum(n for key, (ref, n) in seen.made.items() if key not in skip and not ref.expired())
    kept = alive + x.untyped_storage().nbytes()  # the checkpoint holds the region's input
    assert kept == layer_checkpoint(model, b * t, x=2).saved_bytes
    y.float().sum().backward()  # the policy is a working one: backward runs from what was kept
    assert layer.wk.weight.grad is not None


def test_op_recomputation_costs_less_time_than_full_and_more_than_none():
    net, card = lower("llama-3.1-8b"), load_gpu("h100-sxm")
    work = Work.of(net, 8192)
    t = {r: step_time(net, work, Plan(dp=8, global_batch=16, micro_batch=2, zero=3, recompute=r), card)
         for r in ("none", "op", "full")}
    assert t["none"].seconds < t["op"].seconds < t["full"].seconds
    # HFU counts the rerun matmuls: wk, wo and w3 of each of the 32 layers, per sequence
    h, kv, f = 4096, 1024, 14336
    per_sequence = 32 * 2 * 8192 * (h * kv + h * h + h * f)
    assert op_rerun_flops(net, work, False) == per_sequence
    assert t["op"].hardware_flops == t["op"].model_flops + 16 * per_sequence


def test_op_recomputation_keeps_far_less_than_none_and_more_than_full():
    kwargs = dict(seq_len=8192, batch=2, zero=3, dp=8, profile="megatron")
    total = {r: estimate_memory("llama-3.1-8b", recompute=r, **kwargs).memory.activations for r in
             ("none", "op", "full")}
    assert total["full"] < total["op"] < total["none"]
    op = estimate_memory("llama-3.1-8b", recompute="op", **kwargs).breakdown
    # Llama 3.1 8B: input, wq, wv, w1, w2 and the attention output at 2 bytes, 32 fp32 logsumexps, per token
    per_token = 2 * (4096 + 4096 + 1024 + 14336 + 4096 + 4096) + 4 * 32
    assert op["layers/op_checkpointed"] == 32 * 2 * 8192 * per_token


def test_estimate_takes_op_recomputation_and_names_it_in_the_plan():
    r = estimate("llama-3.1-8b", gpus=8, zero=3, tp=1, global_batch=16, micro_batch=2, recompute="op",
                 tokens=10**9)
    assert r.plan.recompute == "op"
