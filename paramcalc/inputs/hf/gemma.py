"""Gemma 1, 2 and 3 (text): Llama's decoder with Gemma's (1 + weight) RMSNorm;
Gemma 2 adds sandwich norms, alternating sliding layers and logit soft-capping,
Gemma 3 q/k norms and five sliding layers to one global.
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields, llama_like, sliding
from paramcalc.inputs.hf.llama import LLAMA

GEMMA = dict(LLAMA, vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
             num_attention_heads=16, num_key_value_heads=16, head_dim=256, hidden_act="gelu_pytorch_tanh",
             max_position_embeddings=8192, tie_word_embeddings=True)


def gemma(f: Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "hidden_act": f("hidden_activation", "hidden_act"), "qkv_bias": bias, "o_bias": bias,
            "rmsnorm_style": "gemma"}


GEMMA2 = dict(GEMMA, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
              num_key_value_heads=4, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)


def gemma2(f: Fields) -> dict:
    layers = f("num_hidden_layers")
    if f("layer_types") is None:  # Gemma 2 alternates: even layers slide, odd layers see everything
        f.defaults["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    return {**gemma(f), "layout": "sandwich", **sliding(f, layers),
            "attn_logit_softcapping": f("attn_logit_softcapping"),
            "final_logit_softcapping": f("final_logit_softcapping")}


GEMMA3_TEXT = dict(GEMMA2, vocab_size=262208, max_position_embeddings=131072, attn_logit_softcapping=None,
                   final_logit_softcapping=None, sliding_window_pattern=6)


def gemma3_text(f: Fields) -> dict:
    # Gemma 3's text model: Gemma 2's sandwich norms plus q/k RMSNorms over
    # head_dim; five sliding layers to one global unless layer_types says otherwise.
    layers, pattern = f("num_hidden_layers"), f("sliding_window_pattern")
    if f("layer_types") is None:
        f.defaults["layer_types"] = ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                     for i in range(layers)]
    return {**gemma2(f), "qk_norm": True}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "gemma": (gemma, GEMMA), "gemma2": (gemma2, GEMMA2), "gemma3_text": (gemma3_text, GEMMA3_TEXT),
}
