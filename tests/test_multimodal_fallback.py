"""Multimodal config.json files (Qwen2-VL, Mllama, a LLaVA with a SigLIP tower) whose language
model paramcalc models are counted whole by transformers on the meta device: the vision tower
and projector too, each shown in the breakdown, the total exactly the instantiated model's.
(LLaVA with a CLIP tower has an analytic importer: tests/test_clip_llava.py.)"""

from __future__ import annotations

import json

import pytest
from cli import run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000}
CONFIGS = {
    "llava": ({"architectures": ["LlavaForConditionalGeneration"], "image_token_index": 999,
               "text_config": {"model_type": "llama", **TEXT},
               "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 56,
                                 "patch_size": 14}},
              ["model.vision_tower", "model.multi_modal_projector", "model.language_model", "lm_head"]),
    "qwen2_vl": ({"architectures": ["Qwen2VLForConditionalGeneration"],
                  "text_config": {"model_type": "qwen2_vl_text", **TEXT,
                                  "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
                  "vision_config": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2,
                                    "patch_size": 14, "spatial_merge_size": 2}},
                 ["model.visual", "model.language_model", "lm_head"]),
    "mllama": ({"architectures": ["MllamaForConditionalGeneration"],
                "text_config": {"model_type": "mllama_text_model", **TEXT, "cross_attention_layers": [1],
                                "pad_token_id": 0},
                "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                  "num_global_layers": 1, "attention_heads": 2, "image_size": 56, "patch_size": 14,
                                  "vision_output_dim": 64, "intermediate_layers_indices": [0]}},
               ["model.vision_model", "model.language_model", "model.multi_modal_projector", "lm_head"]),
}


def instantiated(model_type: str, cfg: dict):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config = CONFIG_MAPPING[model_type].from_dict(cfg)
    with torch.device("meta"):
        return getattr(transformers, cfg["architectures"][0])._from_config(config)


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_every_tower_is_counted_exactly_and_shown(tmp_path, model_type):
    cfg, parts = CONFIGS[model_type]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": model_type, **cfg}))
    r = run("count", path, "--json")
    assert r.code == 0, r.err
    model = instantiated(model_type, cfg)
    assert r.json["params"]["total"] == sum(p.numel() for p in model.parameters())
    rows = r.json["breakdown"]
    assert [row["stage"] for row in rows] == parts
    assert sum(row["total"] for row in rows) == r.json["params"]["total"]
    assert any("multimodal" in n and "vision_config" in n for n in r.json["notes"])


def test_the_language_models_flops_are_measured_and_say_the_vision_tower_is_not_in_them(tmp_path):
    cfg, _ = CONFIGS["llava"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llava", **cfg}))
    r = run("flops", path, "--seq-len", "16", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] > 0
    assert any("vision_config tower's FLOPs" in n for n in r.json["notes"])
