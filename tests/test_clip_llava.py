"""CLIP and LLaVA (issue #18) against transformers 5.24 itself: parameters exact
(sum(p.numel()) on meta), forward FLOPs exact (FlopCounterMode, eager attention), saved
bytes within 1% (the contract's truth: one bf16 training forward with the loss), and the
analyses on the published configs running or exiting 2.

CLIP's FLOPs are per sample: one image through the vision tower and one text of seq_len
tokens (default 77, the text tower's positions) through the text tower, plus the batch x
batch similarities. LLaVA's are one image per sample (its vision tower runs every layer,
as transformers 5.24 does whatever vision_feature_layer selects) and the language model's
sequence, the image tokens (576 at 336 px / 14) included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli import run
from hf_reference import hf_model, hf_params
from saved_bytes import saved_bytes
from test_blocks import module_params
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.analysis.memory import estimate_memory, kv_cache_bytes
from paramcalc.blocks.base import Pass
from paramcalc.blocks.clip import ContrastiveHead
from paramcalc.blocks.projector import Projector
from paramcalc.inputs.hf import analytic, from_config
from paramcalc.network import lower

DATA = Path(__file__).parent / "data" / "hf-configs-slow"  # not golden-file entries (tests/data/hf-configs/)

CLIP_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=100,
                 max_position_embeddings=16, bos_token_id=0, eos_token_id=2, pad_token_id=1)
CLIP_VISION = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                   patch_size=8)
LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=1000)
LLAVA_VISION = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=2, image_size=56, patch_size=14)


def clip_config(arch: str = "CLIPModel", **overrides) -> dict:
    if arch == "CLIPTextModel":
        return {"model_type": "clip_text_model", "architectures": [arch], **CLIP_TEXT, **overrides}
    if arch == "CLIPVisionModel":
        return {"model_type": "clip_vision_model", "architectures": [arch], **CLIP_VISION, **overrides}
    return {"model_type": "clip", "architectures": [arch], "text_config": CLIP_TEXT, "vision_config": CLIP_VISION,
            "projection_dim": 24, **overrides}


def llava_config(**overrides) -> dict:
    return {"model_type": "llava", "architectures": ["LlavaForConditionalGeneration"], "text_config": LLAMA,
            "vision_config": LLAVA_VISION, "image_token_index": 999, **overrides}


def clip_inputs(cfg: dict, batch: int, seq: int, dtype=torch.float32, device: str = "meta") -> dict:
    vision = cfg.get("vision_config", cfg)
    side = vision.get("image_size", 224)
    pixels = torch.zeros(batch, 3, side, side, dtype=dtype, device=device)
    ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
    arch = cfg["architectures"][0]
    return {"pixel_values": pixels} if arch == "CLIPVisionModel" else {"input_ids": ids} \
        if arch == "CLIPTextModel" else {"input_ids": ids, "pixel_values": pixels}


def llava_inputs(cfg: dict, batch: int, seq: int, dtype=torch.float32) -> dict:
    """CPU tensors: LLaVA's placeholder check reads a value (.item()), which meta tensors lack."""
    v = {**LLAVA_VISION, **cfg["vision_config"]}
    tokens = (v["image_size"] // v["patch_size"]) ** 2 + (cfg.get("vision_feature_select_strategy") == "full")
    ids = torch.zeros(batch, seq, dtype=torch.long)
    ids[:, :tokens] = cfg["image_token_index"]
    return {"input_ids": ids, "pixel_values": torch.randn(batch, 3, v["image_size"], v["image_size"]).to(dtype)}


MODEL_TYPES = {"clip", "clip_text_model", "clip_vision_model", "llava"}  # every one has a case below
CLIP_CASES = [("CLIPModel", {}), ("CLIPModel", {"projection_dim": 40}), ("CLIPTextModel", {}),
              ("CLIPVisionModel", {}), ("CLIPVisionModel", {"hidden_act": "gelu"})]
LLAVA_CASES = [{}, {"vision_feature_layer": -1}, {"vision_feature_select_strategy": "full"},
               {"vision_feature_layer": [-2, -3]}, {"multimodal_projector_bias": False, "projector_hidden_act": "silu"},
               {"text_config": {**LLAMA, "tie_word_embeddings": True}}]


def _id(case) -> str:
    return "-".join(f"{k}={v}" for k, v in (case[1] if isinstance(case, tuple) else case).items()) or "defaults"


@pytest.mark.parametrize("arch,overrides", CLIP_CASES, ids=[f"{a}-{_id(c)}" for a, c in CLIP_CASES])
def test_clip_counts_and_forward_flops_equal_transformers(arch, overrides):
    cfg = clip_config(arch, **overrides)
    net = lower(from_config(cfg))
    assert net.total_params == hf_params(cfg)
    b, s = 3, 16
    with FlopCounterMode(display=False) as counter:
        hf_model(cfg)(**clip_inputs(cfg, b, s))
    # a CLIPVisionModel is a vit: its sequence is the image's positions, whatever is asked
    assert sum(net.flops(Pass(b, net.seq_len(s))).values()) == counter.get_total_flops()


@pytest.mark.parametrize("overrides", LLAVA_CASES, ids=[_id(c) for c in LLAVA_CASES])
def test_llava_counts_and_forward_flops_equal_transformers(overrides):
    cfg = llava_config(**overrides)
    net = lower(from_config(cfg))
    assert net.total_params == hf_params(cfg)
    b, s = 2, 24
    model = hf_model(cfg, device="cpu")
    with FlopCounterMode(display=False) as counter:
        model(**llava_inputs(cfg, b, s))
    assert sum(net.flops(Pass(b, s)).values()) == counter.get_total_flops()


@pytest.mark.parametrize("batch,seq", [(1, 16), (4, 16), (2, 8)])
def test_clip_saved_bytes_are_transformers_to_one_percent(batch, seq):
    """Measured 0.05-0.14% apart: what is left is the contrastive loss's small tensors."""
    cfg = clip_config()
    model = hf_model(cfg, dtype=torch.bfloat16)
    model.train()
    measured = saved_bytes(model, buffers=True, return_loss=True, **clip_inputs(cfg, batch, seq, torch.bfloat16))
    predicted = estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                                attention="eager", recompute="none").memory.activations
    assert predicted == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize("batch,seq", [(1, 20), (2, 40)])
def test_llava_saved_bytes_are_transformers_to_one_percent(batch, seq):
    """Measured 0.07-0.5% high (CPU: the placeholder check needs values)."""
    cfg = llava_config()
    # measured in a fresh process: a CPU forward with real values, kept apart from the global torch and
    # transformers state other tests in this worker leave behind (it once read 1% off under xdist)
    script = ("import sys, torch; sys.path.insert(0, 'tests'); "
              "from test_clip_llava import llava_config, llava_inputs, hf_model, saved_bytes; "
              "cfg = llava_config(); model = hf_model(cfg, dtype=torch.bfloat16, device='cpu', experts=None); "
              f"model.train(); inputs = llava_inputs(cfg, {batch}, {seq}, torch.bfloat16); "
              "print(saved_bytes(model, buffers=True, labels=inputs['input_ids'], **inputs))")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=True)
    measured = int(proc.stdout.strip().splitlines()[-1])
    predicted = estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                                attention="eager", recompute="none").memory.activations
    assert predicted == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize("block,x", [(Projector(48, 32, "gelu"), (torch.randn(2, 5, 48),)),
                                     (ContrastiveHead(32, 48, 24), (torch.randn(3, 32), torch.randn(3, 48)))],
                         ids=["projector", "contrastive"])
def test_the_new_blocks_params_and_flops_are_their_modules(block, x):
    assert module_params(block.module()) == block.params()
    p = Pass(2, 5) if isinstance(block, Projector) else Pass(3, 1)
    with FlopCounterMode(display=False) as counter:
        block.module()(*x)
    assert counter.get_total_flops() == sum(block.flops(p).values())


def test_a_llava_with_another_tower_or_a_clip_class_not_modelled_stays_on_the_meta_path():
    assert analytic(llava_config()) and analytic(clip_config())
    assert not analytic(llava_config(vision_config={**LLAVA_VISION, "model_type": "siglip_vision_model"}))
    assert not analytic(clip_config("CLIPTextModelWithProjection"))


def test_llava_needs_room_for_its_image_tokens_and_clip_caches_nothing(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(llava_config()))
    r = run("flops", path, "--seq-len", "10")
    assert r.code == 2 and "16 tokens" in r.err
    assert kv_cache_bytes(lower(from_config(clip_config())), 16, 1, "bf16") == 0


# ------------------------------------------------------------ the published configs

COUNTS = {"clip-vit-base-patch32": 151_277_313, "clip-vit-large-patch14": 427_616_513,
          "llava-1.5-7b-hf": 7_063_427_072}
# FlopCounterMode on transformers 5.24 (meta): CLIP at batch 1, one 224 px image and 77 tokens;
# LLaVA at batch 1 x 600 tokens (576 image tokens), its image features and language model apart
FORWARD = {"clip-vit-base-patch32": (77, 14_777_164_800), "clip-vit-large-patch14": (77, 175_325_222_400),
           "llava-1.5-7b-hf": (600, 8_523_628_511_232)}


def _cfg(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


@pytest.mark.parametrize("name", COUNTS)
def test_published_configs_count_exactly_as_transformers_builds_them(name):
    assert lower(from_config(_cfg(name))).total_params == COUNTS[name] == hf_params(_cfg(name))


@pytest.mark.parametrize("name", FORWARD)
def test_published_configs_forward_flops(name):
    seq, forward = FORWARD[name]
    assert sum(lower(from_config(_cfg(name))).flops(Pass(1, seq)).values()) == forward


@pytest.mark.slow
@pytest.mark.parametrize("name", FORWARD)
def test_published_configs_forward_flops_equal_transformers_at_full_size(name):
    cfg, (seq, forward) = _cfg(name), FORWARD[name]
    model = hf_model(cfg)
    with FlopCounterMode(display=False) as counter:
        if name.startswith("llava"):  # the placeholder check reads values: image features and LM apart
            model.model.get_image_features(pixel_values=torch.zeros(1, 3, 336, 336, device="meta"))
            model(inputs_embeds=torch.zeros(1, seq, 4096, device="meta"))
        else:
            model(**clip_inputs(cfg, 1, seq))
    assert counter.get_total_flops() == forward


@pytest.mark.parametrize("name", COUNTS)
@pytest.mark.parametrize("command", ["count", "flops", "memory", "estimate"])
def test_the_analyses_run_on_the_published_configs(name, command):
    r = run(command, str(DATA / f"{name}.json"), "--json")
    assert r.code == 0, r.out + r.err


@pytest.mark.parametrize("name,words", [("clip-vit-base-patch32", "caches no keys"),
                                        ("llava-1.5-7b-hf", "vision-language model")])
def test_serve_refuses_what_it_does_not_model_with_exit_2(name, words):
    r = run("serve", str(DATA / f"{name}.json"), "--gpu", "h100")
    assert r.code == 2, r.out + r.err
    assert words in r.out + r.err
