"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision"; transformers' modeling_clip) and LLaVA (Liu et al. 2023, "Visual Instruction
Tuning" and "Improved Baselines with Visual Instruction Tuning"; modeling_llava).

CLIPModel: a text tower (token and learned position tables, pre-norm LayerNorm layers with
biased q/k/v/out and a quick_gelu MLP, a causal mask, a final LayerNorm) beside a vision
tower (spec `vision:`, blocks/vit.py), each pooled token projected without bias to
projection_dim, and the logit_scale scalar. CLIPTextModel is the text tower alone,
CLIPVisionModel the vision tower alone (a `vit`). LLaVA: a CLIP vision tower, the
multi-modal projector (linear_1, act, linear_2) and the language model of text_config,
read by that family's own importer.
"""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.inputs.hf.encoders import _square
from paramcalc.inputs.hf.fields import Config, Converter, Fields

# CLIPTextConfig's and CLIPVisionConfig's defaults (openai/clip-vit-base-patch32's shape, transformers 5.24.0)
CLIP_TEXT = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                 num_attention_heads=8, max_position_embeddings=77, hidden_act="quick_gelu", attention_dropout=0.0)
CLIP_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", attention_dropout=0.0)
CLIP = dict(projection_dim=512)
# LlavaConfig's defaults; its vision_config defaults to CLIP ViT-L/14 at 336 px (sub_configs_defaults)
LLAVA = dict(projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
             multimodal_projector_bias=True, tie_word_embeddings=False)
LLAVA_VISION = dict(CLIP_VISION, hidden_size=1024, intermediate_size=4096, patch_size=14, image_size=336,
                    num_hidden_layers=24, num_attention_heads=16)

ARCHITECTURES = {"clip": ("CLIPModel", "CLIPTextModel", "CLIPVisionModel"), "clip_text_model": ("CLIPTextModel",),
                 "clip_vision_model": ("CLIPVisionModel",), "llava": ("LlavaForConditionalGeneration",)}


def analytic(cfg: Config) -> bool:
    """Whether these importers model the config (its class, and LLaVA's towers); the rest is
    counted by transformers on the meta device (meta_fallback.py)."""
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or [ARCHITECTURES.get(str(model_type), ("",))[0]]
    if not isinstance(archs, list) or archs[0] not in ARCHITECTURES.get(str(model_type), ()):
        return False
    if model_type == "llava":
        from paramcalc.inputs.hf import FAMILIES

        vision, text = cfg.get("vision_config") or {}, cfg.get("text_config") or {}
        return (isinstance(vision, dict) and vision.get("model_type", "clip_vision_model") == "clip_vision_model"
                and isinstance(text, dict) and text.get("model_type", "llama") in FAMILIES
                and text.get("model_type", "llama") not in ARCHITECTURES)
    return True


def _sub(f: Fields, key: str, defaults: Config) -> Fields:
    """A nested config (text_config, vision_config) with its class's defaults; the sizes it
    leaves to them are reported under its key (text_config.hidden_size)."""
    cfg = f(f"{key}_dict") or f(key) or {}  # CLIPConfig: an old text_config_dict wins over text_config
    if not isinstance(cfg, dict):
        raise UserError(f"{key} is not an object", field=key, fix="compare with the model's config.json")
    sub = Fields(cfg, dict(defaults))
    sub.defaulted = _Prefixed(f, key)
    return sub


class _Prefixed(dict):
    """Records a nested config's defaulted fields in its parent's, under `key.`."""

    def __init__(self, parent: Fields, key: str):
        super().__init__()
        self.parent, self.key = parent, key

    def setdefault(self, name, value=None):
        return self.parent.defaulted.setdefault(f"{self.key}.{name}", value)


def text_tower(f: Fields) -> dict:
    """CLIPTextTransformer: a causal pre-norm encoder over token + learned position tables."""
    return {"architecture": "clip", "vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"),
            "num_hidden_layers": f("num_hidden_layers"), "num_attention_heads": f("num_attention_heads"),
            "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"), "mlp": "plain",
            "mlp_bias": True, "qkv_bias": True, "o_bias": True, "norm": "layernorm", "layout": "pre",
            "final_norm": True, "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"), "tie_word_embeddings": False,
            "attention_dropout": f("attention_dropout"), "softmax_fp32": True, "head": "none"}


def vision_tower(f: Fields) -> dict:
    """CLIPVisionTransformer's sizes (spec `vision:`)."""
    return {"image_size": _square(f("image_size"), "image_size"), "patch_size": _square(f("patch_size"), "patch_size"),
            "num_channels": f("num_channels"), "hidden_size": f("hidden_size"),
            "num_hidden_layers": f("num_hidden_layers"), "num_attention_heads": f("num_attention_heads"),
            "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"),
            "attention_dropout": f("attention_dropout")}


def vision_model(f: Fields) -> dict:
    """CLIPVisionModel alone: a vit with a bias-free patch conv and pre_layrnorm."""
    v = vision_tower(f)
    return {"architecture": "vit", **v, "patch_bias": False, "mlp": "plain", "mlp_bias": True, "qkv_bias": True,
            "o_bias": True, "norm": "layernorm", "embedding_norm": True, "final_norm": True,
            "position_embedding": "none", "softmax_fp32": True, "head": "none"}


def clip(f: Fields) -> dict:
    arch = (f("architectures") or ["CLIPModel"])[0]
    text, vision = _sub(f, "text_config", CLIP_TEXT), _sub(f, "vision_config", CLIP_VISION)
    if arch == "CLIPTextModel":
        return text_tower(text)
    if arch == "CLIPVisionModel":
        return vision_model(vision)
    dim = f("projection_dim")
    return {**text_tower(text), "head": "contrastive", "projection_dim": dim,
            "vision": {**vision_tower(vision), "projection_dim": dim}}


def llava(f: Fields) -> dict:
    from paramcalc.inputs.hf import FAMILIES

    text_cfg = f("text_config") or {}
    model_type = text_cfg.get("model_type", "llama") if isinstance(text_cfg, dict) else "llama"
    convert, defaults = FAMILIES[model_type]
    lm = convert(_sub(f, "text_config", defaults))
    layer = f("vision_feature_layer")
    layers = len(layer) if isinstance(layer, list) else 1
    strategy = f("vision_feature_select_strategy")
    if strategy not in ("default", "full"):
        raise UserError(f"vision_feature_select_strategy {strategy!r} is not default or full",
                        field="vision_feature_select_strategy", fix="default drops the class token; full keeps it")
    vision = {**vision_tower(_sub(f, "vision_config", LLAVA_VISION)), "projector_hidden_act": f("projector_hidden_act"),
              "projector_bias": bool(f("multimodal_projector_bias")), "feature_layers": layers,
              "keep_class_token": strategy == "full"}
    # LlavaConfig: the top-level tie_word_embeddings, else text_config's (LlavaConfig.__post_init__)
    tied = bool(f("tie_word_embeddings")) or bool(lm.get("tie_word_embeddings"))
    return {**lm, "tie_word_embeddings": tied, "vision": vision}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "clip": (clip, CLIP), "clip_text_model": (text_tower, CLIP_TEXT), "clip_vision_model": (vision_model, CLIP_VISION),
    "llava": (llava, LLAVA),
}
