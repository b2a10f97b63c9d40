"""Llama-style decoders: RMSNorm (or LayerNorm) pre-norm layers of rotary
attention and a gated (or plain) MLP, in each family's variant (sliding
windows, partial rotary, q/k norms, parallel or sandwich layouts,
Mixtral-style routed experts). Qwen's and Gemma's lineages have modules of
their own.
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields, llama_like, rotary_pct, sliding

LLAMA = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
             num_attention_heads=32, hidden_act="silu", max_position_embeddings=2048, tie_word_embeddings=False,
             attention_bias=False, mlp_bias=False)


def llama(f: Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "qkv_bias": bias, "o_bias": bias, "mlp_bias": bool(f("mlp_bias"))}


MISTRAL = dict(LLAMA, intermediate_size=14336, num_key_value_heads=8, max_position_embeddings=4096 * 32,
               sliding_window=4096)


def mistral(f: Fields) -> dict:
    return {**llama_like(f), **sliding(f, f("num_hidden_layers"))}


MINISTRAL = dict(MISTRAL)


MIXTRAL = dict(MISTRAL, sliding_window=None, num_local_experts=8, num_experts_per_tok=2)


def mixtral(f: Fields) -> dict:
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**mistral(f), "moe": moe}


SMOLLM3 = dict(LLAMA, vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
               num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=32768, use_sliding_window=False,
               no_rope_layer_interval=4, tie_word_embeddings=True)


def smollm3(f: Fields) -> dict:
    # SmolLM3: Llama's shapes; every no_rope_layer_interval-th layer skips rotary,
    # and with use_sliding_window those layers are the sliding ones (configuration_smollm3).
    layers = f("num_hidden_layers")
    if f("layer_types") is None and f("use_sliding_window") and f("sliding_window"):
        no_rope = f("no_rope_layers") or [int((i + 1) % f("no_rope_layer_interval") != 0) for i in range(layers)]
        f.defaults["layer_types"] = ["full_attention" if has_rope else "sliding_attention" for has_rope in no_rope]
    return {**llama(f), **sliding(f, layers, enabled=bool(f("use_sliding_window")))}


GLM = dict(LLAMA, vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
           num_attention_heads=32, num_key_value_heads=2, head_dim=128, max_position_embeddings=131072,
           attention_bias=True, partial_rotary_factor=0.5)


def glm(f: Fields) -> dict:
    # GLM-4 (modeling_glm): biases on q, k and v only, a fused gate_up_proj (the
    # same weights as gate and up), rotary on half of each head.
    return {**llama_like(f), "qkv_bias": bool(f("attention_bias")), "rotary_pct": rotary_pct(f)}


def glm4(f: Fields) -> dict:
    # GLM-4-0414 (modeling_glm4): GLM plus a norm after attention and after the MLP (four per layer).
    return {**glm(f), "layout": "sandwich"}


COHERE = dict(LLAMA, vocab_size=256000, hidden_size=8192, intermediate_size=22528, num_hidden_layers=40,
              num_attention_heads=64, max_position_embeddings=8192, tie_word_embeddings=True, use_qk_norm=False)


def cohere(f: Fields) -> dict:
    # Command-R (modeling_cohere): one bias-free LayerNorm (fp32) feeds attention and
    # MLP in parallel; use_qk_norm adds LayerNorms with a weight per head and dim.
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "qkv_bias": bias, "o_bias": bias, "norm": "layernorm", "norm_bias": False,
            "layernorm_style": "cohere", "layout": "parallel-shared", "qk_norm": bool(f("use_qk_norm")),
            "qk_norm_over": "projection"}


NEMOTRON = dict(LLAMA, vocab_size=256000, hidden_size=6144, intermediate_size=24576, num_hidden_layers=32,
                num_attention_heads=48, hidden_act="relu2", max_position_embeddings=4096, partial_rotary_factor=0.5)


def nemotron(f: Fields) -> dict:
    # Nemotron (modeling_nemotron): LayerNorm1P (weight and bias), a plain squared-ReLU MLP, partial rotary.
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "mlp": "plain", "mlp_bias": bool(f("mlp_bias")), "qkv_bias": bias, "o_bias": bias,
            "norm": "layernorm", "rotary_pct": rotary_pct(f)}


STABLELM = dict(LLAMA, vocab_size=50304, intermediate_size=6912, hidden_size=2560, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, use_qkv_bias=False,
                qk_layernorm=False, use_parallel_residual=False, hidden_dropout=0.0, attention_dropout=0.0,
                partial_rotary_factor=0.25)


def stablelm(f: Fields) -> dict:
    # StableLM (modeling_stablelm): LayerNorm, partial rotary, optional q/k/v biases;
    # qk_layernorm is one bias-free LayerNorm per head; use_parallel_residual feeds
    # attention and MLP from one norm.
    # modeling_stablelm sizes heads as hidden / heads whatever head_dim says
    return {**llama_like(f), "head_dim": None, "qkv_bias": bool(f("use_qkv_bias")), "norm": "layernorm",
            "rotary_pct": rotary_pct(f),
            "layout": "parallel-shared" if f("use_parallel_residual") else "pre", "qk_norm": bool(f("qk_layernorm")),
            "qk_norm_over": "projection", "qk_norm_bias": False, "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("hidden_dropout"), "attention_output_dropout": False}  # only the MLP output is dropped


PHI3 = dict(LLAMA, vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
            num_attention_heads=32, max_position_embeddings=4096, sliding_window=None)


def phi3(f: Fields) -> dict:
    # Fused qkv_proj and gate_up_proj: the same weights as separate q/k/v and gate/up;
    # Phi-4-mini rotates 3/4 of each head (partial_rotary_factor).
    return {**llama_like(f), **sliding(f, f("num_hidden_layers")), "rotary_pct": rotary_pct(f)}


GRANITE = dict(LLAMA)


def granite(f: Fields) -> dict:
    # Llama's shapes; the embedding, residual, attention and logit multipliers carry no parameters.
    return llama(f)


GRANITEMOE = dict(LLAMA, num_local_experts=8, num_experts_per_tok=2, attention_dropout=0.0)


def granitemoe(f: Fields) -> dict:
    # Granite MoE (modeling_granitemoe): Granite's attention over intermediate_size-wide
    # routed experts in every layer (no dense MLP, no shared expert).
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**llama(f), "mlp_bias": False, "moe": moe, "attention_dropout": f("attention_dropout")}


OLMO = dict(LLAMA, vocab_size=50304, pad_token_id=1, attention_dropout=0.0)


def olmo(f: Fields) -> dict:
    # OLMo (modeling_olmo): LayerNorm with neither weight nor bias, computed in fp32; bias-free MLP.
    return {**llama(f), "mlp_bias": False, "norm": "layernorm", "norm_affine": False, "layernorm_style": "fp32",
            "attention_dropout": f("attention_dropout")}


OLMO2 = OLMO


def olmo2(f: Fields) -> dict:
    # OLMo 2 (OLMo et al. 2024, sec. 3.2): RMSNorm on each sublayer's output
    # before the residual add, and on the whole q and k projections.
    return {**llama(f), "mlp_bias": False, "layout": "reordered", "qk_norm": True, "qk_norm_over": "projection",
            "rmsnorm_style": "olmo2", "attention_dropout": f("attention_dropout")}


STARCODER2 = dict(LLAMA, vocab_size=49152, hidden_size=3072, intermediate_size=12288, num_hidden_layers=30,
                  num_attention_heads=24, num_key_value_heads=2, hidden_act="gelu_pytorch_tanh",
                  max_position_embeddings=4096, sliding_window=None, use_bias=True, tie_word_embeddings=True,
                  attention_dropout=0.0, residual_dropout=0.0, embedding_dropout=0.0)


def starcoder2(f: Fields) -> dict:
    # StarCoder2 (modeling_starcoder2): LayerNorm, a plain GELU MLP (c_fc, c_proj), use_bias on every linear.
    bias = bool(f("use_bias"))
    return {**llama_like(f), "mlp": "plain", "mlp_bias": bias, "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            **sliding(f, f("num_hidden_layers")), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("residual_dropout"), "embedding_dropout": f("embedding_dropout")}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "llama": (llama, LLAMA), "mistral": (mistral, MISTRAL), "ministral": (mistral, MINISTRAL),
    "mixtral": (mixtral, MIXTRAL), "smollm3": (smollm3, SMOLLM3), "glm": (glm, GLM), "glm4": (glm4, GLM),
    "cohere": (cohere, COHERE), "nemotron": (nemotron, NEMOTRON), "stablelm": (stablelm, STABLELM),
    "phi3": (phi3, PHI3), "granite": (granite, GRANITE), "granitemoe": (granitemoe, GRANITEMOE), "olmo": (olmo, OLMO),
    "olmo2": (olmo2, OLMO2), "starcoder2": (starcoder2, STARCODER2),
}
