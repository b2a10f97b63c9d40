"""`architecture: vit` (Dosovitskiy et al. 2021) against transformers'
ViTForImageClassification (the contract's reference implementation, eager
attention, meta device): parameters, forward FLOPs and saved activations;
and torchvision's published ViT-B/16 figures."""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from cli import run
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from saved_bytes import saved_bytes


def hf_vit(dtype=torch.float32):
    config = transformers.ViTConfig(num_labels=1000)  # google/vit-base-patch16-224's shape
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = transformers.ViTForImageClassification(config)
    model.train()
    return model.to(dtype)


def test_vit_b_16_has_torchvisions_86_567_656_parameters_as_transformers_builds_it():
    assert count_params("vit-b-16").params.total == 86_567_656
    assert sum(p.numel() for p in hf_vit().parameters()) == 86_567_656


def test_vit_b_16_forward_flops_equal_flop_counter_on_transformers():
    images = torch.zeros(2, 3, 224, 224, device="meta")
    with FlopCounterMode(display=False) as counter:
        hf_vit()(pixel_values=images)
    forward = count_flops("vit-b-16", batch=2).flops.forward
    assert forward == counter.get_total_flops()
    assert round(forward / 2 / 2e9, 2) == 17.56  # torchvision's table: 17.56 GFLOPS (multiply-adds) per image


def test_vit_b_16_backward_skips_the_pixels_gradient_like_flop_counter():
    images = torch.zeros(2, 3, 224, 224, device="meta")
    out = hf_vit()(pixel_values=images).logits
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    assert count_flops("vit-b-16", batch=2).flops.backward == counter.get_total_flops()


@pytest.mark.parametrize("batch", [1, 2])
def test_vit_b_16_train_activations_match_transformers_eager(batch):
    model = hf_vit(torch.bfloat16)
    images = torch.zeros(batch, 3, 224, 224, device="meta", dtype=torch.bfloat16)
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    measured = saved_bytes(model, images, labels=labels)
    predicted = estimate_memory("vit-b-16", batch=batch, attention="eager").memory.activations
    assert predicted == pytest.approx(measured, rel=0.01)


def test_the_token_count_comes_from_the_image_and_seq_len_is_ignored():
    r = run("flops", "vit-b-16", "--seq-len", "4096", "--json")
    assert r.code == 0, r.err
    assert r.json["seq_len"] == 197  # (224 / 16)^2 patches + the class token
    assert r.json["flops"]["forward"] == count_flops("vit-b-16").flops.forward
    assert any("asked is ignored" in n for n in r.json["notes"])
    assert run("memory", "vit-b-16", "--mode", "infer", "--json").json["memory"]["kv_cache"] == 0


def test_a_patch_size_that_does_not_divide_the_image_is_refused(tmp_path):
    path = tmp_path / "vit.yaml"
    path.write_text("architecture: vit\nimage_size: 224\npatch_size: 15\nhidden_size: 64\nnum_hidden_layers: 2\n"
                    "num_attention_heads: 4\nintermediate_size: 128\nhead: classifier\n")
    r = run("count", path)
    assert r.code == 2 and "patch_size" in r.err


VIT_SMALL = dict(model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                 image_size=32, patch_size=8)


def _hf_vit_from(cfg: dict, dtype=torch.float32):
    from hf_reference import hf_model

    model = hf_model(cfg, dtype=dtype)
    model.train()
    return model


@pytest.mark.parametrize("arch,extra", [("ViTForImageClassification", {"num_labels": 5}), ("ViTModel", {}),
                                        ("ViTForImageClassification", {"qkv_bias": False, "hidden_dropout_prob": 0.1})])
def test_a_vit_config_json_imports_exactly(tmp_path, arch, extra):
    import json

    cfg = {**VIT_SMALL, "architectures": [arch], **extra}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    model = _hf_vit_from(cfg)
    assert count_params(str(path)).params.total == sum(p.numel() for p in model.parameters())
    images = torch.zeros(2, 3, 32, 32, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = model(pixel_values=images)
    assert count_flops(str(path), batch=2).flops.forward == counter.get_total_flops()
    if arch == "ViTForImageClassification":
        bf16 = _hf_vit_from(cfg, torch.bfloat16)
        labels = torch.zeros(2, dtype=torch.long, device="meta")
        measured = saved_bytes(bf16, images.to(torch.bfloat16), labels=labels)
        assert estimate_memory(str(path), batch=2, attention="eager").memory.activations == pytest.approx(measured, rel=0.02)
    del out


def test_a_vit_config_takes_square_size_pairs_and_refuses_rectangles(tmp_path):
    import json

    square, rectangle = tmp_path / "square.json", tmp_path / "rectangle.json"
    square.write_text(json.dumps({**VIT_SMALL, "architectures": ["ViTModel"], "image_size": [32, 32], "patch_size": [8, 8]}))
    rectangle.write_text(json.dumps({**VIT_SMALL, "architectures": ["ViTModel"], "image_size": [32, 48]}))
    assert count_params(str(square)).params.total == sum(
        p.numel() for p in _hf_vit_from({**VIT_SMALL, "architectures": ["ViTModel"]}).parameters())
    r = run("count", rectangle)
    assert r.code == 2 and "image_size [32, 48] is not square" in r.err and "Traceback" not in r.err
