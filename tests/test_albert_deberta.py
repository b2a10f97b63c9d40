"""ALBERT and DeBERTa-v2/v3 (issue #18): their blocks against their own modules, and
the published configs against transformers 5.24.0 built on the meta device.

albert-base-v2 and albert-xxlarge-v2 (hub config.json; Lan et al. 2020, table 1:
12M and 235M with their heads as published), microsoft/deberta-v3-base and -large
(hub config.json; He et al. 2023: 86M and 304M backbone parameters plus a 98M and
131M token table of 128,100 rows)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from hf_reference import hf_flops, hf_params, hf_saved_bytes
from paramcalc.analysis.count import count_params
from paramcalc.analysis.memory import estimate_memory
from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.disentangled import ConvLayer, DisentangledAttention, RelativeTable
from paramcalc.blocks.norm import Norm
from paramcalc.inputs.hf import from_config
from paramcalc.network import lower
from test_blocks import counted_flops, module_params

DATA = Path(__file__).parent / "data" / "hf-configs"
H = 48

ATTENTIONS = [
    DisentangledAttention(H, 4, 4, 12, True, True, causal=False, span=8),  # v3: shared keys, c2p and p2c
    DisentangledAttention(H, 4, 4, 12, True, True, causal=False, span=5, share_keys=False),  # v2: own projections
    DisentangledAttention(H, 4, 4, 12, True, True, causal=False, span=5, p2c=False, share_keys=False),
    DisentangledAttention(H, 6, 6, 10, True, True, causal=False, span=3, c2p=False),  # head_dim != h/n
]
TABLES = [RelativeTable(16, H, Norm(H, "layernorm")), RelativeTable(16, H)]
CONVS = [ConvLayer(H, 3, norm=Norm(H, "layernorm")), ConvLayer(H, 4, groups=2, norm=Norm(H, "layernorm"))]


@pytest.mark.parametrize("block", [*ATTENTIONS, *TABLES, *CONVS], ids=lambda b: re.sub(r"\s+", "", repr(b))[:90])
def test_params_equal_the_modules_named_parameters(block):
    assert module_params(block.module()) == block.params()


@pytest.mark.parametrize("block", [*ATTENTIONS, *CONVS], ids=lambda b: re.sub(r"\s+", "", repr(b))[:90])
def test_forward_flops_equal_flop_counter_on_the_module(block):
    torch.manual_seed(0)
    b, s = 2, 7
    assert counted_flops(block.module(), torch.randn(b, s, H)) == sum(block.flops(Pass(b, s, "dense")).values())


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("block", ATTENTIONS, ids=lambda b: re.sub(r"\s+", "", repr(b))[:90])
def test_attention_saved_bytes_are_what_autograd_keeps_running_its_module(block, dropout):
    """Eager bf16 on meta. With dropout the table each layer projects is its own dropped
    copy (counted by the attention); without, it is the encoder's normalised table, one
    storage for every layer (RelativeTable's), here a buffer: nothing to count."""
    from saved_bytes import saved_bytes

    a = Activations(dtype_bytes=2, mask_bytes=2, softmax_fp32=False, attention_dropout=dropout,
                    hidden_dropout=dropout)
    b, s = 2, 7
    with torch.device("meta"):
        module = block.module(a).to(torch.bfloat16)
        x = torch.randn(b, s, H, dtype=torch.bfloat16, requires_grad=True)
    assert saved_bytes(module, x) == sum(block.saved(Pass(b, s), a).values())


def test_albert_counts_a_shared_layer_once_and_runs_it_every_step():
    cfg = {"model_type": "albert", "architectures": ["AlbertModel"], "vocab_size": 101, "hidden_size": 64,
           "embedding_size": 32, "intermediate_size": 96, "num_attention_heads": 4, "num_hidden_layers": 6,
           "num_hidden_groups": 2, "inner_group_num": 2, "max_position_embeddings": 34}
    net = lower(from_config(cfg))
    layers = next(s for s in net.stages if s.name == "layers")
    assert (layers.count, layers.copies) == (12, 4)  # 6 steps x 2 layers run; 2 groups x 2 layers held
    per_layer = sum(layers.block.params().values())
    assert sum(v for k, v in net.params().items() if k.startswith("layers/")) == 4 * per_layer
    assert sum(v for k, v in net.flops(Pass(1, 8)).items() if k.startswith("layers/")) == \
        12 * sum(layers.block.flops(Pass(1, 8)).values())
    rows = [r for r in count_params(net).breakdown if r.stage == "layers"]
    assert {r.count for r in rows} == {4} and sum(r.total for r in rows) == 4 * per_layer


# (config, class) -> parameters of transformers 5.24.0's instantiation; forward FLOPs at batch 1 x 512
# for the MLM classes (FlopCounterMode on the eager forward; backward is 2x)
REAL = {
    ("albert-base-v2", "AlbertModel"): 11_683_584,
    ("albert-base-v2", "AlbertForMaskedLM"): 11_221_680,
    ("albert-base-v2", "AlbertForSequenceClassification"): 11_685_122,
    ("albert-xxlarge-v2", "AlbertModel"): 222_595_584,
    ("albert-xxlarge-v2", "AlbertForMaskedLM"): 206_368_944,
    ("deberta-v3-base", "DebertaV2Model"): 183_831_552,
    ("deberta-v3-base", "DebertaV2ForMaskedLM"): 184_551_780,
    ("deberta-v3-base", "DebertaV2ForSequenceClassification"): 184_423_682,
    ("deberta-v3-large", "DebertaV2Model"): 434_012_160,
    ("deberta-v3-large", "DebertaV2ForMaskedLM"): 435_191_908,
}
FLOPS_512 = {"albert-base-v2": 100_770_250_752, "albert-xxlarge-v2": 2_530_446_671_872,
             "deberta-v3-base": 222_141_874_176, "deberta-v3-large": 547_713_187_840}


def _config(name: str, arch: str) -> dict:
    cfg = {**json.loads((DATA / f"{name}.json").read_text()), "architectures": [arch]}
    if cfg["model_type"] == "deberta-v2":
        cfg["pad_token_id"] = None  # keeps transformers' padding check (an .item()) off the meta device
    return cfg


@pytest.mark.parametrize("name,arch", list(REAL), ids=lambda v: v)
def test_published_configs_count_what_transformers_instantiates(name, arch):
    assert sum(lower(from_config(_config(name, arch))).params().values()) == REAL[name, arch]


@pytest.mark.parametrize("name", list(FLOPS_512))
def test_published_configs_forward_flops_at_512_tokens(name):
    arch = "AlbertForMaskedLM" if name.startswith("albert") else "DebertaV2ForMaskedLM"
    assert sum(lower(from_config(_config(name, arch))).flops(Pass(1, 512, "dense")).values()) == FLOPS_512[name]


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", list(REAL), ids=lambda v: v)
def test_published_configs_equal_transformers_on_meta(name, arch):
    cfg = _config(name, arch)
    assert hf_params(cfg) == REAL[name, arch]
    if arch.endswith("MaskedLM"):
        forward, backward = hf_flops(cfg, 512, 1)
        assert (forward, backward) == (FLOPS_512[name], 2 * FLOPS_512[name])


@pytest.mark.slow
@pytest.mark.parametrize("name,arch", [("albert-base-v2", "AlbertForMaskedLM"),
                                       ("deberta-v3-base", "DebertaV2ForMaskedLM")])
def test_published_configs_saved_bytes_within_a_tenth_of_a_percent(name, arch):
    cfg = _config(name, arch)
    predicted = estimate_memory(from_config(cfg), mode="train", seq_len=512, batch=1, dtype="bf16",
                                attention="eager", recompute="none").memory.activations
    assert predicted == pytest.approx(hf_saved_bytes(cfg, 512, 1), rel=0.001)
