"""Qwen 2 and Qwen 3: Llama's decoder with q/k/v biases (Qwen 2) or q/k
RMSNorms (Qwen 3), sliding windows above max_window_layers, and their MoE
variants.
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields, llama_like, sliding
from paramcalc.inputs.hf.llama import LLAMA

QWEN2 = dict(LLAMA, vocab_size=151936, intermediate_size=22016, num_key_value_heads=32, max_position_embeddings=32768,
             use_sliding_window=False, sliding_window=4096, max_window_layers=28)


def qwen2(f: Fields) -> dict:
    # Qwen2 puts biases on q, k and v only (modeling_qwen2: o_proj bias=False).
    layers = f("num_hidden_layers")
    window = sliding(f, layers, enabled=bool(f("use_sliding_window")), first_full=f("max_window_layers"))
    return {**llama_like(f), "qkv_bias": True, **window}


QWEN2_MOE = dict(QWEN2, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, decoder_sparse_step=1, moe_intermediate_size=1408,
                 shared_expert_intermediate_size=5632, num_experts_per_tok=4, num_experts=60, mlp_only_layers=[])


def qwen2_moe(f: Fields) -> dict:
    moe = {"num_experts": f("num_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("shared_expert_intermediate_size"), "shared_expert_gate": True,
           "decoder_sparse_step": f("decoder_sparse_step"), "mlp_only_layers": tuple(f("mlp_only_layers"))}
    return {**qwen2(f), "qkv_bias": bool(f("qkv_bias") if f("qkv_bias") is not None else True), "moe": moe}


QWEN3 = dict(QWEN2, head_dim=128, attention_bias=False)


def qwen3(f: Fields) -> dict:
    bias = bool(f("attention_bias"))
    layers = f("num_hidden_layers")
    window = sliding(f, layers, enabled=bool(f("use_sliding_window")), first_full=f("max_window_layers"))
    return {**llama_like(f), "qkv_bias": bias, "o_bias": bias, "qk_norm": True, **window}


QWEN3_MOE = dict(QWEN3, head_dim=None, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                 num_attention_heads=32, num_key_value_heads=4, decoder_sparse_step=1, moe_intermediate_size=768,
                 num_experts_per_tok=8, num_experts=128, mlp_only_layers=[])


def qwen3_moe(f: Fields) -> dict:
    moe = {"num_experts": f("num_experts", "num_local_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "moe_intermediate_size": f("moe_intermediate_size"), "decoder_sparse_step": f("decoder_sparse_step"),
           "mlp_only_layers": tuple(f("mlp_only_layers"))}
    return {**qwen3(f), "moe": moe}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "qwen2": (qwen2, QWEN2), "qwen2_moe": (qwen2_moe, QWEN2_MOE), "qwen3": (qwen3, QWEN3),
    "qwen3_moe": (qwen3_moe, QWEN3_MOE),
}
