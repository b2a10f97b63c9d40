"""Mixture-of-experts decoders built around their expert layout: DeepSeek V2
and V3 (MLA attention, shared + routed experts), GLM-4.5, OLMoE, Phi-3.5-MoE,
Llama 4's text model (interleaved MoE layers) and gpt-oss. Mixtral's, Qwen's
and Granite's MoE variants sit beside their dense families.
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields, llama_like, rotary_pct, sliding
from paramcalc.inputs.hf.llama import LLAMA

DEEPSEEK_V3 = dict(LLAMA, vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                   num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
                   n_routed_experts=256, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128,
                   qk_nope_head_dim=128, num_experts_per_tok=8, first_k_dense_replace=3, max_position_embeddings=4096)


def deepseek_v3(f: Fields) -> dict:
    # attribute_map aliases: num_local_experts (V3), num_experts (V2)
    moe = {"num_experts": f("n_routed_experts", "num_local_experts", "num_experts"),
           "num_experts_per_tok": f("num_experts_per_tok"), "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("moe_intermediate_size") * (f("n_shared_experts") or 0),
           # e_score_correction_bias is a buffer in transformers (not in parameters());
           # the deepseek-v3 preset counts it, as DeepSeek's 671.03B does.
           "first_k_dense_replace": f("first_k_dense_replace")}
    mla = {"q_lora_rank": f("q_lora_rank"), "kv_lora_rank": f("kv_lora_rank"),
           "qk_nope_head_dim": f("qk_nope_head_dim"), "qk_rope_head_dim": f("qk_rope_head_dim"),
           "v_head_dim": f("v_head_dim")}
    return {**llama_like(f), "head_dim": None, "qkv_bias": bool(f("attention_bias")), "moe": moe, "mla": mla}


DEEPSEEK_V2 = dict(LLAMA, vocab_size=102400, moe_intermediate_size=1407, n_shared_experts=2, n_routed_experts=64,
                   kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128,
                   first_k_dense_replace=0)


def deepseek_v2(f: Fields) -> dict:
    # DeepSeek-V2 (DeepSeek-AI 2024, sec. 2): V3's MLA and shared + routed experts, and a plain softmax router.
    return deepseek_v3(f)


GLM4_MOE = dict(LLAMA, vocab_size=151552, intermediate_size=10944, num_hidden_layers=46, num_attention_heads=96,
                num_key_value_heads=8, max_position_embeddings=131072, moe_intermediate_size=1408,
                num_experts_per_tok=8, n_shared_experts=1, n_routed_experts=128, first_k_dense_replace=1,
                use_qk_norm=False, partial_rotary_factor=0.5)


def glm4_moe(f: Fields) -> dict:
    # GLM-4.5 (modeling_glm4_moe): DeepSeek-V3's expert layout (dense first layers,
    # shared + routed experts, a sigmoid router whose correction bias is a buffer)
    # under GQA attention with q/k/v biases, optional q/k RMSNorms and half-rotary
    # heads; the multi-token-prediction layers are not instantiated.
    moe = {"num_experts": f("n_routed_experts", "num_local_experts", "num_experts"),
           "num_experts_per_tok": f("num_experts_per_tok"), "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("moe_intermediate_size") * (f("n_shared_experts") or 0),
           "first_k_dense_replace": f("first_k_dense_replace")}
    return {**llama_like(f), "qkv_bias": bool(f("attention_bias")), "qk_norm": bool(f("use_qk_norm")),
            "rotary_pct": rotary_pct(f), "moe": moe}


OLMOE = dict(LLAMA, vocab_size=50304, intermediate_size=2048, num_hidden_layers=16, num_attention_heads=16,
             max_position_embeddings=4096, num_experts_per_tok=8, num_experts=64, attention_dropout=0.0)


def olmoe(f: Fields) -> dict:
    # OLMoE (Muennighoff et al. 2024; modeling_olmoe): every layer routes to
    # intermediate_size-wide experts; RMSNorms over the whole q and k projections.
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_experts", "num_local_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**llama_like(f), "qkv_bias": bias, "o_bias": bias, "qk_norm": True, "qk_norm_over": "projection",
            "moe": moe, "attention_dropout": f("attention_dropout")}


PHIMOE = dict(LLAMA, vocab_size=32064, intermediate_size=6400, num_key_value_heads=8, max_position_embeddings=4096 * 32,
              sliding_window=None, num_experts_per_tok=2, num_local_experts=16, lm_head_bias=False,
              attention_dropout=0.0)


def phimoe(f: Fields) -> dict:
    # Phi-3.5-MoE (modeling_phimoe): Mixtral's experts under LayerNorms with biases;
    # attention_bias on all four projections, an optional LM-head bias.
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**llama_like(f), "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            "lm_head_bias": bool(f("lm_head_bias")), **sliding(f, f("num_hidden_layers")), "moe": moe,
            "attention_dropout": f("attention_dropout")}


LLAMA4_TEXT = dict(LLAMA, vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                   num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                   max_position_embeddings=4096 * 32, num_experts_per_tok=1, num_local_experts=16, moe_layers=None,
                   interleave_moe_layer_step=1, attention_dropout=0.0)


def llama4_text(f: Fields) -> dict:
    # Llama 4's language model (modeling_llama4): MoE layers (every
    # interleave_moe_layer_step-th, or moe_layers) route to intermediate_size-wide
    # experts beside a shared expert of the same width; the other layers keep a
    # dense MLP of intermediate_size_mlp. The q/k L2 norm has no weights.
    # FLOPs are the routed model's (top-k experts per token); transformers' eager
    # Llama4TextMoe runs every expert on every token (zero-weighted), so its
    # FlopCounterMode count is higher by the unrouted experts' matmuls.
    layers, step = f("num_hidden_layers"), f("interleave_moe_layer_step")
    moe_layers = f("moe_layers")
    if moe_layers is None:
        moe_layers = list(range(step - 1, layers, step))
    width = f("intermediate_size")
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "moe_intermediate_size": width, "shared_expert_intermediate_size": width,
           "mlp_only_layers": tuple(i for i in range(layers) if i not in set(moe_layers))}
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "intermediate_size": f("intermediate_size_mlp"), "qkv_bias": bias, "o_bias": bias,
            "moe": moe, "attention_dropout": f("attention_dropout")}


GPT_OSS = dict(LLAMA, num_hidden_layers=36, num_local_experts=128, vocab_size=201088, hidden_size=2880,
               intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
               max_position_embeddings=131072, num_experts_per_tok=4, attention_bias=True, attention_dropout=0.0)


def gpt_oss(f: Fields) -> dict:
    # gpt-oss (OpenAI 2025 model card; modeling_gpt_oss): every layer routes to
    # biased SwiGLU experts through a biased router; attention has q/k/v/o biases,
    # a learned sink per head, and alternates sliding (128) and full layers.
    layers = f("num_hidden_layers")
    if f("layer_types") is None:
        f.defaults["layer_types"] = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "router_bias": True}
    return {**llama_like(f), "hidden_act": "swiglu_clamp", "qkv_bias": bias, "o_bias": bias, "mlp_bias": True,
            "attention_sinks": True, "moe": moe, **sliding(f, layers), "attention_dropout": f("attention_dropout"),
            "rmsnorm_style": "olmo2", "softmax_fp32": False}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "deepseek_v3": (deepseek_v3, DEEPSEEK_V3), "deepseek_v2": (deepseek_v2, DEEPSEEK_V2),
    "glm4_moe": (glm4_moe, GLM4_MOE), "olmoe": (olmoe, OLMOE), "phimoe": (phimoe, PHIMOE),
    "llama4_text": (llama4_text, LLAMA4_TEXT), "gpt_oss": (gpt_oss, GPT_OSS),
}
