"""What every family's converter reads a config.json with: `Fields` (a field
or its family default), and the shapes several families share (a Llama-style
decoder's core fields, its sliding-window layers, its rotated share of head_dim).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Config = dict[str, Any]


NULLABLE = {"num_key_value_heads", "head_dim", "q_lora_rank", "sliding_window", "layer_types", "n_inner",
            "ffn_hidden_size", "word_embed_proj_dim", "num_decoder_layers", "num_kv_heads", "moe_intermediate_size",
            "attn_logit_softcapping", "final_logit_softcapping", "rope_parameters", "rope_scaling", "activation"}


class Fields:
    """Reads one config with its family's defaults; a bad type is the user's error.
    `defaulted` records each field read from the defaults, with the value it took."""

    def __init__(self, cfg: Config, defaults: Config):
        self.cfg, self.defaults = cfg, defaults
        self.defaulted: dict[str, Any] = {}

    def __call__(self, *names: str) -> Any:
        """The first of `names` the config sets, else the family default of the
        first name. An explicit null means "derive it" for the fields where
        transformers derives one (NULLABLE: K/V heads, head_dim, windows, ...);
        elsewhere it falls back to the default, as the config classes do."""
        for name in names:
            if name in self.cfg and (self.cfg[name] is not None or name in NULLABLE):
                return self.cfg[name]
        value = self.defaults.get(names[0])
        if value is not None:
            self.defaulted.setdefault(names[0], value)
        return value

    def defaulted_sizes(self) -> dict[str, int]:
        """The sizes (whole numbers: widths, depths, head and expert counts, vocabulary, positions)
        the config left to its family's defaults. Not listed: flags, activations, epsilons, and
        the attention layout read whether or not it is switched on (LAYOUT)."""
        return {k: v for k, v in self.defaulted.items()
                if isinstance(v, int) and not isinstance(v, bool) and k not in LAYOUT}


# Whole-number fields that size no tensor and that converters read before knowing whether
# they apply (Qwen's windows when use_sliding_window is off): never reported as defaulted sizes.
LAYOUT = {"sliding_window", "max_window_layers", "sliding_window_pattern", "window_size", "pad_token_id",
          "no_rope_layer_interval", "vision_feature_layer"}


Converter = Callable[[Fields], dict]  # one per model_type: config fields -> TransformerSpec fields


def llama_like(f: Fields) -> dict:
    return {
        "vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
        "num_attention_heads": f("num_attention_heads"), "num_key_value_heads": f("num_key_value_heads"),
        "head_dim": f("head_dim"), "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"),
        "max_position_embeddings": f("max_position_embeddings"), "tie_word_embeddings": f("tie_word_embeddings"),
    }


def sliding(f: Fields, layers: int, *, enabled: bool = True, first_full: int = 0) -> dict:
    """Sliding-window layers as transformers lays them out (layer_types wins)."""
    window = f("sliding_window")
    if not enabled or not window:
        return {}
    types = f("layer_types")
    if types is None:
        types = ["full_attention" if i < first_full else "sliding_attention" for i in range(layers)]
    return {"sliding_window": window, "layer_types": tuple(types)}


def rotary_pct(f: Fields) -> float:
    """The rotated share of head_dim: rope_parameters' partial_rotary_factor in
    newer configs, else a top-level partial_rotary_factor (Phi) or rotary_pct
    (GPT-NeoX), else the family's default."""
    rope = f("rope_parameters") or {}
    if isinstance(rope, dict) and rope.get("partial_rotary_factor"):
        return rope["partial_rotary_factor"]
    return f("partial_rotary_factor", "rotary_pct") or 1.0
