"""Eager attention's score-sized kernels (analysis/step.py eager_score_bytes): the bytes each s x s
element moves, counted on transformers' own attention modules with a TorchDispatchMode (every
aten op one kernel reading its inputs and writing its outputs), and what they add to a step."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

from paramcalc.analysis.step import Plan, Work, eager_score_bytes, step_time  # noqa: E402
from paramcalc.catalog import load_gpu  # noqa: E402
from paramcalc.network import lower  # noqa: E402

B, S, H, N = 2, 96, 128, 4  # batch, tokens, hidden, heads: S differs from every other dimension


class ScoreBytes(TorchDispatchMode):
    """Bytes of the (b, n, S, S) tensors (or their (b n, S, S) matmul views) each op reads or writes;
    views and allocations move nothing."""

    FREE = {"view", "_unsafe_view", "t", "transpose", "expand", "unsqueeze", "squeeze", "slice", "select",
            "permute", "alias", "detach", "as_strided", "empty", "empty_like", "zeros", "zeros_like", "ones_like",
            "new_empty_strided", "new_zeros", "lift_fresh", "scalar_tensor", "full", "arange"}

    def __init__(self):
        super().__init__()
        self.bytes: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in self.FREE:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            # the (b, n, S, S) scores and their kin; the (b, 1, S, S) mask broadcast over heads is left out,
            # as eager_score_bytes leaves it (1/n of the scores, served from cache)
            self.bytes[name] += sum(t.numel() * t.element_size() for t in tensors
                                    if t.shape[-2:] == (S, S) and t.numel() == B * N * S * S)
        return out


def _measure(module, dtype, zero_mask: bool = False, **kwargs) -> tuple[float, float]:
    x = torch.randn(B, S, H, dtype=dtype, requires_grad=True)
    mask = torch.full((S, S), torch.finfo(dtype).min, dtype=dtype).triu(1)[None, None].expand(B, 1, S, S)
    if zero_mask:  # encoders (BERT) and GPT-2's own causal masking take an additive padding mask
        mask = torch.zeros(B, 1, S, S, dtype=dtype)
    with ScoreBytes() as forward:
        y = module(x, attention_mask=mask, **kwargs)[0]
    with ScoreBytes() as backward:
        y.backward(torch.ones_like(y))
    pairs = B * N * S * S
    return sum(forward.bytes.values()) / pairs, sum(backward.bytes.values()) / pairs


def test_llamas_eager_attention_moves_8x_plus_16_bytes_a_score_forward_and_8x_plus_20_backward():
    """modeling_llama's eager_attention_forward: matmul, scale, mask add, fp32 softmax and its casts."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=H, num_attention_heads=N, num_key_value_heads=N, intermediate_size=4 * H,
                         _attn_implementation="eager")
    attention = LlamaAttention(config, 0).to(torch.bfloat16)
    positions = torch.arange(S)[None].expand(B, S)
    rotary = LlamaRotaryEmbedding(config)(torch.zeros(1, dtype=torch.bfloat16), positions)
    assert _measure(attention, torch.bfloat16, position_embeddings=rotary) == eager_score_bytes(2, True, False)
    assert eager_score_bytes(2, True, False) == (32.0, 36.0)


def test_opts_eager_attention_in_fp16_moves_the_same_bytes():
    """OPT (DeepSpeed-Chat's actor) upcasts its softmax to fp32 too; its attention dropout is 0."""
    from transformers import OPTConfig
    from transformers.models.opt.modeling_opt import OPTAttention

    config = OPTConfig(hidden_size=H, num_attention_heads=N, ffn_dim=4 * H, _attn_implementation="eager")
    attention = OPTAttention(config, layer_idx=0).to(torch.float16)
    assert _measure(attention, torch.float16) == eager_score_bytes(2, True, False)


def test_without_the_fp32_upcast_softmax_moves_16_bit_bytes():
    """GPT-2's and BERT's eager attention keep the softmax in the model dtype: 8x forward, 9x backward."""
    from transformers import BertConfig, GPT2Config
    from transformers.models.bert.modeling_bert import BertSelfAttention
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    gpt2 = GPT2Attention(GPT2Config(n_embd=H, n_head=N, attn_pdrop=0.0, _attn_implementation="eager"), layer_idx=0)
    bert = BertSelfAttention(BertConfig(hidden_size=H, num_attention_heads=N, attention_probs_dropout_prob=0.0,
                                        _attn_implementation="eager"))
    for module in (gpt2, bert):
        assert _measure(module.to(torch.bfloat16), torch.bfloat16, zero_mask=True) == eager_score_bytes(2, False, False)


def test_eager_attention_adds_its_score_traffic_to_the_step_at_hbm_bandwidth():
    """The step's eager-minus-flash time holds the score kernels' bytes over HBM bandwidth x the memory
    efficiency, once forward and once backward (and the forward again under full recomputation)."""
    net = lower("llama-2-7b")
    card = load_gpu("a100-40gb")
    seq, micro = 512, 4
    work = Work.of(net, seq)
    flash = Plan(dp=1, micro_batch=micro, global_batch=micro, zero=0)
    eager = replace(flash, attention="eager", kernels="transformers")
    hbm = card.memory_bandwidth * card.efficiency.memory
    pairs = 32 * micro * 32 * seq * seq  # layers x batch x heads x s x s
    fwd, bwd = eager_score_bytes(2, True, False)
    core = (work.core_dense - work.core_causal) * micro / (card.peak("bf16") * card.efficiency.attention)
    # eager computes every pair: the score matmuls' extra FLOPs at 1 + 2 (forward, backward), against
    # flash's causal half at 1 + 2.5 (its backward reruns the scores)
    core_delta = (1 + 2) * work.core_dense * micro - (1 + 2.5) * work.core_causal * micro
    core_delta /= card.peak("bf16") * card.efficiency.attention
    got = step_time(net, work, eager, card).seconds - step_time(net, work, flash, card).seconds
    assert got == pytest.approx(pairs * (fwd + bwd) / hbm + core_delta, rel=1e-9)
    assert core > 0
    # Megatron-LM's fused scale-mask-softmax moves 4x + 7x where transformers' ops move 8x + 16 and 8x + 20
    fused = step_time(net, work, replace(eager, kernels="megatron"), card).seconds
    mf, mb = eager_score_bytes(2, True, False, "megatron")
    assert step_time(net, work, eager, card).seconds - fused == pytest.approx(pairs * (fwd + bwd - mf - mb) / hbm,
                                                                               rel=1e-9)
    full = replace(eager, recompute="full")
    rerun = step_time(net, work, full, card).seconds - step_time(net, work, replace(flash, recompute="full"),
                                                                  card).seconds
    assert rerun - got == pytest.approx(pairs * fwd / hbm + (work.core_dense - work.core_causal) * micro
                                        / (card.peak("bf16") * card.efficiency.attention), rel=1e-9)


def test_context_parallel_ranks_each_score_their_queries_against_every_key():
    """Under context parallelism a rank holds 1/cp of the queries and sees every key as the ring passes them:
    half the score traffic of one GPU at cp = 2 (s/cp x s pairs, not (s/cp)^2)."""
    from paramcalc.analysis.step import _score_traffic

    net = lower("llama-2-7b")
    work = Work.of(net, 1024)
    one = Plan(micro_batch=1, global_batch=1, attention="eager", kernels="transformers")
    two = replace(one, cp=2)
    assert _score_traffic(net, work, two)[0] * 2 == _score_traffic(net, work, one)[0]
    assert _score_traffic(net, work, replace(one, attention="flash")) == (0.0, 0.0)
    with pytest.raises(ValueError, match="kernels"):
        Plan(kernels="cudnn")
