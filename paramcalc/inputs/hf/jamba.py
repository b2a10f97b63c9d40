"""Jamba (Lieber et al. 2024, "Jamba: A Hybrid Transformer-Mamba Language Model",
section 2; transformers' modeling_jamba): every layer is x + mixer(RMSNorm(x)),
then x + FFN(RMSNorm(x)). The mixer is attention (GQA, no biases, no positional
encoding: the Mamba layers carry order) where i % attn_layer_period ==
attn_layer_offset, else a Mamba mixer (mamba_expand x hidden wide) whose dt, B
and C pass through RMSNorms with weights. The FFN routes to num_experts SwiGLU
experts (top num_experts_per_tok, a bias-free router) where i %
expert_layer_period == expert_layer_offset, else a dense SwiGLU MLP of the same
width. A final RMSNorm and an untied LM head by default.
"""

from __future__ import annotations

import math

from paramcalc.errors import UserError
from paramcalc.inputs.hf.fields import Config, Converter, Fields

# JambaConfig's defaults (Jamba-v0.1's shape, transformers 5.24.0)
JAMBA = dict(vocab_size=65536, tie_word_embeddings=False, hidden_size=4096, intermediate_size=14336,
             num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_act="silu",
             max_position_embeddings=262144, attention_dropout=0.0, num_experts_per_tok=2, num_experts=16,
             expert_layer_period=2, expert_layer_offset=1, attn_layer_period=8, attn_layer_offset=4,
             mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank="auto", mamba_conv_bias=True,
             mamba_proj_bias=False)


def jamba(f: Fields) -> dict:
    h, layers = f("hidden_size"), f("num_hidden_layers")
    for offset, period in (("attn_layer_offset", "attn_layer_period"), ("expert_layer_offset", "expert_layer_period")):
        if not 0 <= f(offset) < f(period):  # JambaConfig.validate_architecture
            raise UserError(f"{offset} ({f(offset)}) is not below {period} ({f(period)})", field=offset,
                            fix=f"give an {offset} from 0 to {period} - 1")
    rank = f("mamba_dt_rank")
    ssm = {"version": 1, "intermediate_size": f("mamba_expand") * h, "state_size": f("mamba_d_state"),
           "conv_kernel": f("mamba_d_conv"), "time_step_rank": math.ceil(h / 16) if rank == "auto" else rank,
           "use_bias": bool(f("mamba_proj_bias")), "use_conv_bias": bool(f("mamba_conv_bias")),
           "bcdt_norm": True, "bcdt_norm_weight": True, "feed_forward": True,
           "attention_layers": tuple(i for i in range(layers) if i % f("attn_layer_period") == f("attn_layer_offset"))}
    experts, period, offset = f("num_experts", "num_local_experts"), f("expert_layer_period"), f("expert_layer_offset")
    out = {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": layers,
           "num_attention_heads": f("num_attention_heads"), "num_key_value_heads": f("num_key_value_heads"),
           "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"),
           "max_position_embeddings": f("max_position_embeddings"), "tie_word_embeddings": f("tie_word_embeddings"),
           "position_embedding": "none", "attention_dropout": f("attention_dropout"), "ssm": ssm}
    if experts > 1:  # JambaConfig.layers_num_experts: 1 expert is the dense JambaMLP
        out["moe"] = {"num_experts": experts, "num_experts_per_tok": f("num_experts_per_tok"),
                      "mlp_only_layers": tuple(i for i in range(layers) if i % period != offset)}
    return out


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {"jamba": (jamba, JAMBA)}
