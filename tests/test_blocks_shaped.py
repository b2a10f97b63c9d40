"""Shaped blocks (convolutions, norms over feature maps, pooling, recurrent
layers, residual blocks, ViT ends, LoRA), block by block: `params()` equals the
module's named parameters key by key (and `buffers()` its named buffers), the
output shape equals what the module returns, `flops()` equals FlopCounterMode
on one forward, and `saved()` equals what autograd keeps (saved_tensors_hooks,
meta device, bf16, each storage once), exactly."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.channelnorm import BatchNorm, GroupNorm
from paramcalc.blocks.conv import Conv
from paramcalc.blocks.lastaxis import LastAxis
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.lora import LoRA
from paramcalc.blocks.norm import Norm
from paramcalc.blocks.pointwise import Activation, Dropout, Flatten
from paramcalc.blocks.pool import AdaptiveAvgPool, Pool
from paramcalc.blocks.recurrent import Recurrent
from paramcalc.blocks.residual import basic, bottleneck, chain
from paramcalc.blocks.vit import ClassTokenHead, PatchEmbeddings
from saved_bytes import saved_bytes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # oneDNN notices about LSTM projections and TF32
B, T = 2, 5
BF16 = Activations(dtype_bytes=2, mask_bytes=2)

IMAGE_BLOCKS = [
    Conv((3, 17), 8, (3,), (2,), (1,), (1,), 1, True),  # conv1d
    Conv((4, 13, 11), 6, (3, 5), (2, 1), (1, 2), (1, 2), 2, False),  # conv2d: per-axis, dilation, groups
    Conv((4, 9, 9), 4, (3, 3), (1, 1), "same", (2, 2), 4, True),  # depthwise, 'same' padding
    Conv((2, 6, 7, 8), 5, (3, 3, 3), (1, 2, 2), (1, 1, 1), (1, 1, 1), 1, True),  # conv3d
    BatchNorm((6,)), BatchNorm((6, 9)), BatchNorm((6, 5, 5)), BatchNorm((3, 4, 4, 4)),
    BatchNorm((6, 5, 5), affine=False), BatchNorm((6, 5, 5), track_running_stats=False),
    GroupNorm((6, 5, 5), 3), GroupNorm((6, 7), 2, affine=False),
    Activation((6, 5, 5), "relu"), Activation((6, 5, 5), "gelu"), Activation((7,), "tanh"), Activation((7,), "silu"),
    Pool((4, 9, 9), "max", (3, 3), (2, 2), (1, 1)), Pool((4, 8, 8), "avg", (2, 2), (2, 2), (0, 0)),
    Pool((3, 10), "max", (2,), (2,), (0,)),
    AdaptiveAvgPool((6, 5, 5), (1, 1)), Flatten((6, 2, 2)), Dropout((6, 4, 4), 0.5),
    LastAxis((12,), Linear(12, 7, True)), LastAxis((3, 12), Linear(12, 7)), LastAxis((12,), Norm(12, "layernorm")),
    bottleneck((16, 8, 8), 4), bottleneck((8, 8, 8), 4, stride=2), bottleneck((16, 8, 8), 8, groups=2, base_width=8),
    basic((8, 8, 8), 8), basic((8, 8, 8), 16, stride=2),
    chain((3, 12, 12), [("conv", lambda s: Conv(s, 8, (3, 3), (1, 1), (1, 1), (1, 1))),
                        ("bn", BatchNorm), ("relu", lambda s: Activation(s, "relu")),
                        ("pool", lambda s: Pool(s, "max", (2, 2), (2, 2), (0, 0))),
                        ("flatten", Flatten), ("fc", lambda s: LastAxis(s, Linear(s[-1], 10, True)))]),
]
RECURRENT = [
    Recurrent((7,), "lstm", 11), Recurrent((7,), "lstm", 11, 2, True), Recurrent((7,), "lstm", 11, 2, False, False),
    Recurrent((7,), "lstm", 11, 2, True, True, proj=3), Recurrent((7,), "gru", 11), Recurrent((7,), "gru", 9, 3, True),
    Recurrent((7,), "lstm", 11, 3, dropout=0.5),
]
EMBEDDINGS = [LastAxis((), Embedding(50, 12))]
ALL = IMAGE_BLOCKS + RECURRENT + EMBEDDINGS


def ident(block) -> str:
    return re.sub(r"\s+", "", repr(block))[:80]


def named(pairs) -> dict[str, int]:
    return {name.replace(".", "/"): t.numel() for name, t in pairs}


def sample(block, device="cpu", dtype=torch.float32):
    """A batch of inputs: images (b, *shape); time steps (b, T, *shape); token ids (b, T)."""
    if block in EMBEDDINGS:
        return torch.zeros(B, T, dtype=torch.long, device=device), Pass(B, T)
    if block in RECURRENT:
        return torch.randn(B, T, *block.in_shape, device=device, dtype=dtype), Pass(B, T)
    return torch.randn(B, *block.in_shape, device=device, dtype=dtype), Pass(B, 1)


@pytest.mark.parametrize("block", ALL, ids=ident)
def test_params_and_buffers_equal_the_modules_named_tensors(block):
    module = block.module()
    assert named(module.named_parameters()) == block.params()
    assert named(module.named_buffers()) == block.buffers()


@pytest.mark.parametrize("block", ALL, ids=ident)
def test_output_shape_equals_the_modules_output(block):
    x, p = sample(block)
    lead = (B,) if p.seq == 1 else (B, T)
    assert tuple(block.module()(x).shape) == (*lead, *block.out_shape)


@pytest.mark.parametrize("block", ALL, ids=ident)
def test_forward_flops_equal_flop_counter(block):
    torch.manual_seed(0)
    x, p = sample(block)
    module = block.module()
    with torch.backends.mkldnn.flags(enabled=False):  # oneDNN's fused LSTM hides its matmuls from the counter
        with FlopCounterMode(display=False) as counter:
            module(x)
    assert counter.get_total_flops() == sum(block.flops(p).values())


@pytest.mark.parametrize("block", ALL, ids=ident)
def test_saved_bytes_equal_what_autograd_keeps(block):
    with torch.device("meta"):
        x, p = sample(block, "meta", torch.bfloat16)
        if x.is_floating_point():
            x.requires_grad_(True)  # inside a network every block's input carries a gradient
        module = block.module().to(torch.bfloat16)
        module.train()
        assert saved_bytes(module, x) == sum(block.saved(p, BF16).values())


@pytest.mark.parametrize("length,kernel,stride,padding,dilation", [
    (n, k, s, p, d) for n in (7, 8, 31) for k in (1, 2, 3, 7) for s in (1, 2, 3) for p in (0, 1, 3) for d in (1, 2)
    if 2 * p <= k * d and n + 2 * p >= d * (k - 1) + 1])
def test_conv_output_size_follows_the_pytorch_formula(length, kernel, stride, padding, dilation):
    conv = Conv((1, length), 1, (kernel,), (stride,), (padding,), (dilation,))
    with torch.device("meta"):
        out = conv.module()(torch.zeros(1, 1, length))
    assert conv.out_shape == (1, out.shape[-1])


def test_conv_flops_are_two_times_out_elements_times_in_per_group_times_kernel_volume():
    conv = Conv((32, 56, 56), 64, (3, 3), (1, 1), (1, 1), (1, 1), groups=4)
    assert sum(conv.flops(Pass(1, 1)).values()) == 2 * (64 * 56 * 56) * (32 // 4) * 9


@pytest.mark.parametrize("cell,gates", [("lstm", 4), ("gru", 3)])
def test_recurrent_params_follow_the_pytorch_layout(cell, gates):
    """Per layer and direction: G*H x in + G*H x H weights and two G*H bias vectors (b_ih, b_hh)."""
    I, H = 10, 20
    block = Recurrent((I,), cell, H, 2, True)
    layer0 = gates * H * (I + H) + 2 * gates * H
    layer1 = gates * H * (2 * H + H) + 2 * gates * H
    assert sum(block.params().values()) == 2 * (layer0 + layer1)


def test_lstm_projection_adds_a_p_by_h_matrix_and_shrinks_the_recurrent_input():
    I, H, P = 10, 20, 5
    block = Recurrent((I,), "lstm", H, 1, proj=P)
    assert sum(block.params().values()) == 4 * H * I + 4 * H * P + 8 * H + P * H


def test_patch_embeddings_and_class_token_head_match_their_modules():
    embed, head = PatchEmbeddings(3, (32, 32), 8, 24), ClassTokenHead(24, 10)
    assert named(embed.module().named_parameters()) == embed.params()
    assert embed.seq == 17  # (32/8)^2 patches + the class token
    images = torch.randn(B, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        out = embed.module()(images)
    assert out.shape == (B, 17, 24)
    assert counter.get_total_flops() == sum(embed.flops(Pass(B, 17)).values())
    assert named(head.module().named_parameters()) == head.params()


def test_lora_adds_rank_times_in_plus_out_parameters_and_their_matmuls():
    lora = LoRA(48, 20, 4)
    assert sum(lora.params().values()) == 4 * (48 + 20)
    assert named(lora.module().named_parameters()) == lora.params()
    with FlopCounterMode(display=False) as counter:
        lora.module()(torch.randn(B, T, 48))
    assert counter.get_total_flops() == sum(lora.flops(Pass(B, T)).values())
