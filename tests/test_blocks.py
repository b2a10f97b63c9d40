"""Block by block, formula and module agree: every block's `params()` equals
its PyTorch module's named parameters key by key, and its `flops()` equals
FlopCounterMode's count of one forward through that module, exactly."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.embed import Embeddings, LMHead, Pooler
from paramcalc.blocks.layer import LAYOUTS, TransformerLayer
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.norm import Norm

H = 48
ATTENTIONS = [
    Attention(H, 4, 4, 12),  # MHA
    Attention(H, 4, 2, 12, qkv_bias=True),  # GQA, Qwen2's q/k/v-only bias
    Attention(H, 6, 1, 16, qkv_bias=True, o_bias=True),  # MQA, head_dim != h/n
    Attention(H, 4, 2, 20, q_norm=Norm(20), k_norm=Norm(20), window=3),  # Qwen3 q/k norms; a sliding window
    Attention(H, 4, 2, 20, q_norm=Norm(80), k_norm=Norm(40)),  # OLMo 2: norms over the whole projections
    Attention(H, 4, 4, 12, causal=False, relative_buckets=32),  # T5's first encoder layer
]
MLAS = [LatentAttention(H, 4, 16, 8, 8, 4, 6), LatentAttention(H, 3, None, 8, 8, 4, 10, bias=True)]
MLPS = [MLP(H, 40), MLP(H, 40, gated=False, bias=True, act="gelu"), MLP(H, 40, bias=True, act="gelu")]
MOES = [
    MoE(H, 4, 2, MLP(H, 24)),  # Mixtral-style
    MoE(H, 6, 3, MLP(H, 16), shared=MLP(H, 32), shared_gate=True),  # Qwen2-MoE
    MoE(H, 5, 2, MLP(H, 16), shared=MLP(H, 32), score_correction_bias=True, router_bias=True),  # DeepSeek-V3
]
NORMS = [Norm(H), Norm(H, "layernorm"), Norm(H, "layernorm", bias=False), Norm(H, "layernorm", affine=False)]
LAYERS = [TransformerLayer(a, m, Norm(H, "layernorm"), layout) for layout in LAYOUTS
          for a, m in ((ATTENTIONS[1], MLPS[0]), (MLAS[0], MOES[2]))]
CROSS = TransformerLayer(Attention(H, 4, 4, 12, causal=True), MLPS[1], Norm(H), "pre",
                         cross_attention=Attention(H, 4, 4, 12, causal=False, cross=True))


def module_params(module) -> dict[str, int]:
    """named_parameters() keyed like params(): '/' separators, repeated experts summed."""
    out: dict[str, int] = {}
    for name, p in module.named_parameters():
        key = "/".join(part for part in name.split(".") if not part.isdigit())
        out[key] = out.get(key, 0) + p.numel()
    return out


def counted_flops(module, *inputs) -> int:
    with FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


ALL = [Linear(H, 20), Linear(H, 20, bias=True), Embedding(11, H), *NORMS, *ATTENTIONS, *MLAS, *MLPS, *MOES, *LAYERS,
       CROSS, Embeddings(101, H, positions=34, token_types=2, norm=Norm(H, "layernorm")),
       Embeddings(101, 24, positions=34, project_to=H), LMHead(H, 101), LMHead(H, 101, project_to=24),
       LMHead(H, 101, bias=True, transform_norm=Norm(H, "layernorm")), Pooler(H), Pooler(H, 3)]


@pytest.mark.parametrize("block", ALL, ids=lambda b: re.sub(r"\s+", "", repr(b))[:90])
def test_params_equal_the_modules_named_parameters(block):
    assert module_params(block.module()) == {k: v for k, v in block.params().items()}


def test_a_tied_head_owns_no_parameters_and_the_network_counts_the_table_once():
    assert LMHead(H, 101, tied=True).params() == {}
    assert LMHead(H, 101, tied=True, bias=True, transform_norm=Norm(H)).params() == \
        {"transform/weight": H * H, "transform/bias": H, "transform_norm/weight": H, "decoder/bias": 101}


@pytest.mark.parametrize("block", [*ATTENTIONS[:3], *MLAS, *MLPS, *MOES, *LAYERS], ids=repr)
def test_forward_flops_equal_flop_counter_on_the_reference_module(block):
    torch.manual_seed(0)
    b, s = 2, 7
    x = torch.randn(b, s, H)
    assert counted_flops(block.module(), x) == sum(block.flops(Pass(b, s, "dense")).values())


def test_cross_attention_projects_keys_and_values_from_the_encoder_length():
    b, s = 2, 5
    memory = torch.randn(b, s, H)
    layer = CROSS.module()
    assert counted_flops(layer, torch.randn(b, s, H), memory) == sum(CROSS.flops(Pass(b, s, "dense")).values())


def test_lm_head_and_embedding_flops():
    b, s = 2, 5
    head = LMHead(H, 101, project_to=24)
    assert counted_flops(head.module(), torch.randn(b, s, H)) == sum(head.flops(Pass(b, s)).values())
    emb = Embeddings(101, 24, positions=34, project_to=H)
    assert counted_flops(emb.module(), torch.randint(0, 101, (b, s))) == sum(emb.flops(Pass(b, s)).values())


def test_moe_active_params_count_top_k_experts_plus_everything_shared():
    moe = MOES[1]
    expert = sum(moe.expert.params().values())
    assert sum(moe.params().values()) - sum(moe.active_params().values()) == (moe.experts - moe.top_k) * expert


@pytest.mark.parametrize("seq,window,expected", [
    (4, None, 10),  # 4*5/2 unmasked pairs
    (6, 2, 1 + 2 * 5),  # the first query sees 1 key, the rest 2
    (5, 8, 15),  # a window longer than the sequence changes nothing
])
def test_causal_pairs_count_the_unmasked_part_capped_by_the_window(seq, window, expected):
    assert Pass(1, seq, "causal").attended_pairs(window) == expected
    brute = sum(min(i + 1, window or seq) for i in range(seq))
    assert brute == expected
    assert Pass(1, seq, "dense").attended_pairs(window) == seq * seq


def test_decode_pairs_attend_over_the_cache():
    assert Pass(1, 1, "causal", context=100).attended_pairs() == 100
    assert Pass(1, 1, "causal", context=100).attended_pairs(window=10) == 10
    assert Pass(1, 3, "causal", context=10).attended_pairs() == 8 + 9 + 10


# ---------------------------------------------------------------- saved bytes, block by block

STYLED_NORMS = [Norm(H, style=s) for s in ("llama", "t5", "gemma", "olmo2")] + \
    [Norm(H, "layernorm", style="native"), Norm(H, "layernorm", style="fp32", affine=False),  # OLMo: no weights
     Norm(H, "layernorm", style="cohere")]
SAVING = [*ATTENTIONS[:5], Attention(H, 4, 2, 12, softcap=True), Attention(H, 4, 4, 12, sinks=True),
          Attention(H, 4, 2, 12, causal=False), *MLAS, *MLPS, MLP(H, 40, gated=False, act="gelu_new"),
          *MOES, MoE(H, 4, 2, MLP(H, 24, gated=False, bias=True, act="gelu")), *STYLED_NORMS, *LAYERS]


def _implementations():
    for attention in ("eager", "flash"):
        for dtype, x in ((torch.float32, 4), (torch.bfloat16, 2)):
            for softmax_fp32 in (True, False):
                yield pytest.param(attention, dtype, Activations(dtype_bytes=x, mask_bytes=x, attention=attention,
                                                                 softmax_fp32=softmax_fp32),
                                   id=f"{attention}-{x * 8}bit-{'upcast' if softmax_fp32 else 'native'}")


def _routed(block) -> bool:
    return isinstance(block, MoE) or isinstance(getattr(block, "mlp", None), MoE)


def _layernorm(block) -> bool:
    norms = [block] if isinstance(block, Norm) else [getattr(block, "norm", None)]
    return any(n is not None and n.kind_ == "layernorm" and n.style not in ("fp32", "cohere") for n in norms)


@pytest.mark.parametrize("block", SAVING, ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("attention,dtype,a", list(_implementations()))
def test_saved_bytes_are_what_autograd_keeps_running_the_blocks_own_module(block, attention, dtype, a):
    """Each block proves its `saved(p, a)` with its own `module(a)`, configured for the
    implementation `a` describes (eager or SDPA attention, the softmax's dtype, the
    norm's arithmetic, MoE's grouped experts), to the byte.

    Where it runs: eager on the meta device, whose kernels keep what CUDA's keep
    (LayerNorm's statistics in fp32 for a bf16 input; the CPU kernel keeps them in
    bf16); flash on the CPU, whose fused kernel keeps q, k, v, the output and the
    logsumexp as CUDA's flash and memory-efficient kernels do (meta runs SDPA's
    math path). MoE routing needs values, so routed blocks run on the CPU."""
    from saved_bytes import saved_bytes

    device = "cpu" if attention == "flash" or _routed(block) else "meta"
    if device == "cpu" and dtype == torch.bfloat16 and (_layernorm(block) or _layernorm(getattr(block, "base", block))):
        pytest.skip("the CPU LayerNorm kernel keeps bf16 statistics where CUDA keeps fp32 (meta covers eager)")
    if attention == "flash" and getattr(block, "window", None):
        pytest.skip("a sliding window passes SDPA a mask: the CPU takes its math path, CUDA's kernels do not")
    latent = block if isinstance(block, LatentAttention) else getattr(block, "attention", None)
    if attention == "flash" and isinstance(latent, LatentAttention):
        pytest.skip("MLA's value width differs from q/k's: the CPU's flash kernel refuses it (CUDA's do not)")
    b, s = 2, 7
    torch.manual_seed(0)
    with torch.device(device):
        module = block.module(a).to(dtype)
        x = torch.randn(b, s, H, dtype=dtype, requires_grad=True)
    assert saved_bytes(module, x) == sum(block.saved(Pass(b, s), a).values())
