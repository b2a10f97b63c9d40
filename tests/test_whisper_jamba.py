"""Whisper and Jamba (issue #18) against transformers itself: parameters and forward
FLOPs exact (FlopCounterMode on the eager path), backward FLOPs exact up to what
FlopCounterMode itself does differently, saved bytes within a stated tolerance,
and the analyses on the published configs either running or exiting 2.

Whisper's encoder runs on its fixed max_source_positions (3000 log-mel frames ->
1500 positions at full size) whatever the decoder's length; Jamba interleaves
attention and Mamba layers, dense and MoE feed-forward blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers
from cli import run
from hf_reference import hf_flops, hf_model, hf_params, hf_saved_bytes
from saved_bytes import saved_bytes
from test_blocks import counted_flops, module_params
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.analysis.memory import estimate_memory, kv_cache_bytes
from paramcalc.blocks.audio import AudioFrontEnd
from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.ssm import Mamba
from paramcalc.errors import UserError
from paramcalc.inputs.hf import from_config
from paramcalc.network import lower

DATA = Path(__file__).parent / "data" / "hf-configs-slow"  # not golden-file entries (tests/data/hf-configs/)

WHISPER_SMALL = dict(vocab_size=101, d_model=64, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96, num_mel_bins=8,
                     max_source_positions=16, max_target_positions=24, pad_token_id=0, bos_token_id=0,
                     eos_token_id=0, decoder_start_token_id=1)
JAMBA_SMALL = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, attn_layer_period=2,
                   attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=0, mamba_d_state=8)

CASES = [
    ("whisper", "WhisperForConditionalGeneration", {}),
    ("whisper", "WhisperForConditionalGeneration", dict(tie_word_embeddings=False, decoder_layers=1)),
    ("whisper", "WhisperModel", {}),
    ("jamba", "JambaForCausalLM", {}),
    ("jamba", "JambaForCausalLM", dict(num_experts=1, tie_word_embeddings=True, mamba_proj_bias=True,
                                       mamba_conv_bias=False, mamba_dt_rank=6)),
    ("jamba", "JambaForCausalLM", dict(num_hidden_layers=8, attn_layer_period=8, attn_layer_offset=4,
                                       expert_layer_period=2, expert_layer_offset=1, mamba_expand=3)),
]


def config(model_type: str, arch: str, overrides: dict) -> dict:
    small = WHISPER_SMALL if model_type == "whisper" else JAMBA_SMALL
    return {"model_type": model_type, "architectures": [arch], **small, **overrides}


def _id(case) -> str:
    return f"{case[1]}-{'-'.join(f'{k}={v}' for k, v in case[2].items())}"


def whisper_flops(cfg: dict, seq: int, batch: int, device: str = "cpu") -> tuple[int, int]:
    """(forward, backward) FlopCounterMode FLOPs of a Whisper model on its mel frames (2 S of them)."""
    model = hf_model(cfg, device=device)
    model.train()
    frames = 2 * cfg.get("max_source_positions", 1500)
    make = torch.randn if device != "meta" else torch.zeros
    features = make(batch, cfg.get("num_mel_bins", 80), frames, device=device)
    ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as fwd:
        out = model(input_features=features, decoder_input_ids=ids)
    outputs = [v for v in out.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    with FlopCounterMode(display=False) as bwd:
        sum(v.float().sum() for v in outputs).backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


def whisper_saved_bytes(cfg: dict, seq: int, batch: int) -> int:
    """docs/contract.md's truth for Whisper: one bf16 training forward with labels on the meta device."""
    model = hf_model(cfg, dtype=torch.bfloat16, experts=None)
    model.train()
    frames = torch.zeros(batch, cfg["num_mel_bins"], 2 * cfg["max_source_positions"], dtype=torch.bfloat16,
                         device="meta")
    labels = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    return saved_bytes(model, buffers=True, input_features=frames, labels=labels)


def _depthwise_overcount(net, b: int, s: int) -> int:
    """FlopCounterMode counts a grouped conv's weight gradient as a dense conv's (tests/test_ssm.py)."""
    return sum(stage.count * 2 * b * m.inner * m.conv_kernel * (s + m.conv_kernel - 1) * (m.inner - 1)
               for stage in net.layers if isinstance(m := stage.block.attention, Mamba))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_count_equals_transformers_instantiation(case):
    cfg = config(*case)
    assert sum(lower(from_config(cfg)).params().values()) == hf_params(cfg)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_forward_flops_equal_flop_counter_and_backward_its_own_rules(case):
    """Whisper: backward is 2 x forward less conv1's input gradient (the mel frames need none).
    Jamba: 2 x forward plus FlopCounterMode's dense count of the depthwise conv's weight gradient."""
    cfg = config(*case)
    net = lower(from_config(cfg))
    b, s = 2, 12
    ours = sum(net.flops(Pass(b, s, "dense")).values())
    if case[0] == "whisper":
        forward, backward = whisper_flops(cfg, s, b)
        assert ours == forward
        assert 2 * ours - net.stages[0].block.data_input_flops(Pass(b, s)) == backward
    else:
        forward, backward = hf_flops(cfg, s, b, device="cpu")
        assert ours == forward
        assert 2 * ours + _depthwise_overcount(net, b, s) == backward


@pytest.mark.parametrize("seq,batch", [(16, 1), (12, 2), (24, 1)])
def test_whisper_saved_bytes_are_transformers_to_a_thousandth(seq, batch):
    cfg = config("whisper", "WhisperForConditionalGeneration", {})
    predicted = estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                                attention="eager", recompute="none").memory.activations
    assert predicted == pytest.approx(whisper_saved_bytes(cfg, seq, batch), rel=0.001)


@pytest.mark.parametrize("seq,batch", [(12, 2), (64, 1)])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] == "jamba"], ids=_id)
def test_jamba_saved_bytes_are_within_two_percent_of_transformers_slow_path(case, seq, batch):
    """Exact at batch 2 for the dense layers; at batch 1 x_proj reads the transposed SiLU output as
    a view where blocks/ssm.py counts Mamba's contiguous copy (d_inner a token): about 1% high."""
    cfg = config(*case)
    predicted = estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                                attention="eager", recompute="none").memory.activations
    assert predicted == pytest.approx(hf_saved_bytes(cfg, seq, batch), rel=0.02)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_the_jamba_mixer_module_keeps_what_transformers_keeps_and_the_formula_says(dtype):
    cfg = transformers.JambaConfig(hidden_size=16, mamba_expand=2, mamba_d_state=4, mamba_dt_rank=3, mamba_d_conv=4,
                                   num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
    block = Mamba(16, 32, 4, 4, 3, bcdt_norm=True, bcdt_norm_weight=True)
    with torch.device("meta"):
        reference = transformers.models.jamba.modeling_jamba.JambaMambaMixer(cfg, 0).to(dtype)
        ours = block.module().to(dtype)
        x = torch.randn(2, 5, 16, dtype=dtype, requires_grad=True)
    assert {n.replace(".", "/"): p.numel() for n, p in reference.named_parameters()} == block.params()
    assert saved_bytes(ours, x) == saved_bytes(reference, x)
    assert sum(block.saved(Pass(2, 5), Activations(dtype_bytes=dtype.itemsize)).values()) == saved_bytes(ours, x)


@pytest.mark.parametrize("block", [Mamba(48, 96, 8, 4, 3, bcdt_norm=True, bcdt_norm_weight=True),
                                   AudioFrontEnd(8, 48, 16)], ids=repr)
def test_a_blocks_params_and_forward_flops_are_its_modules(block):
    assert module_params(block.module()) == block.params()
    b = 2
    x = torch.randn(b, 7, 48) if isinstance(block, Mamba) else torch.randn(b, 8, 32)
    p = Pass(b, 7) if isinstance(block, Mamba) else Pass(b, 16)
    assert counted_flops(block.module(), x) == sum(block.flops(p).values())


# ------------------------------------------------------------ the published configs

COUNTS = {"whisper-tiny": 37_760_640, "whisper-base": 72_593_920, "whisper-small": 241_734_912,
          "whisper-large-v3": 1_543_490_560, "jamba-v0.1": 51_570_323_328}


def _net(name: str):
    return lower(from_config(json.loads((DATA / f"{name}.json").read_text())))


@pytest.mark.parametrize("name", COUNTS)
def test_published_configs_count_exactly_as_transformers_builds_them(name):
    cfg = json.loads((DATA / f"{name}.json").read_text())
    assert _net(name).total_params == COUNTS[name] == hf_params(cfg)


def test_jamba_v01_has_12b_active_of_52b():
    # Lieber et al. 2024, section 3.2: "12B active parameters ... 52B total available parameters"
    assert sum(_net("jamba-v0.1").active_params().values()) == 12_110_311_296


def test_whisper_tiny_forward_flops_at_the_decoders_full_length():
    # FlopCounterMode on transformers (meta device): 71,082,196,992 at batch 1 x 448 decoder tokens
    assert sum(_net("whisper-tiny").flops(Pass(1, 448, "dense")).values()) == 71_082_196_992


@pytest.mark.slow
@pytest.mark.parametrize("name,forward", [("whisper-tiny", 71_082_196_992), ("whisper-large-v3", 3_448_479_088_640)])
def test_whisper_forward_flops_equal_transformers_at_full_size(name, forward):
    cfg = json.loads((DATA / f"{name}.json").read_text())
    assert sum(_net(name).flops(Pass(1, 448, "dense")).values()) == forward == whisper_flops(cfg, 448, 1, "meta")[0]


def test_a_whisper_decode_step_runs_no_encoder_and_caches_the_encoder_keys():
    net = _net("whisper-tiny")
    step = net.flops(Pass(1, 1, "causal", context=449))
    assert not any(k.startswith("encoder/") for k in step)
    assert step["decoder/layers/cross_attention/k_proj"] == 0
    L, h = 4, 384
    assert kv_cache_bytes(net, 448, 1, "bf16") == L * 2 * h * (448 + 1500) * 2


@pytest.mark.parametrize("name", ["whisper-tiny", "jamba-v0.1"])
@pytest.mark.parametrize("command", ["count", "flops", "memory", "estimate"])
def test_the_analyses_run_on_the_published_configs(name, command):
    r = run(command, str(DATA / f"{name}.json"), "--json")
    assert r.code == 0, r.out + r.err


@pytest.mark.parametrize("name,words", [("whisper-tiny", "speech encoder-decoder"), ("jamba-v0.1", "state-space")])
def test_serve_refuses_what_it_does_not_model_with_exit_2(name, words):
    r = run("serve", str(DATA / f"{name}.json"))
    assert r.code == 2, r.out + r.err
    assert words in r.out + r.err


def test_whisper_decoder_alone_is_refused():
    cfg = config("whisper", "WhisperForCausalLM", {})
    with pytest.raises(UserError, match="decoder alone"):
        from_config(cfg)
