"""GPT-2's lineage and the other classic decoders: LayerNorm layers with a plain
MLP and learned, rotary or ALiBi positions (GPT-2, GPTBigCode, MPT, GPT-NeoX,
Phi, GPT-Neo, GPT-J, Falcon, OPT, BLOOM).
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields, llama_like, rotary_pct
from paramcalc.inputs.hf.llama import LLAMA

GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, activation_function="gelu_new",
            tie_word_embeddings=True, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)


def gpt2(f: Fields) -> dict:
    h = f("n_embd", "hidden_size")
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layer", "num_hidden_layers"),
            "num_attention_heads": f("n_head", "num_attention_heads"), "intermediate_size": f("n_inner") or 4 * h,
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "qkv_bias": True, "o_bias": True,
            "norm": "layernorm", "position_embedding": "learned",
            "max_position_embeddings": f("n_positions", "max_position_embeddings"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attn_pdrop"),
            "hidden_dropout": f("resid_pdrop"), "embedding_dropout": f("embd_pdrop"), "softmax_fp32": False,
            "fused_qkv": True}


GPT_BIGCODE = dict(GPT2, activation_function="gelu_pytorch_tanh", multi_query=True)


def gpt_bigcode(f: Fields) -> dict:
    # GPTBigCode (StarCoder, SantaCoder; modeling_gpt_bigcode): GPT-2 with one
    # shared K/V head when multi_query; c_attn is h -> h + 2 * head_dim then.
    mqa = bool(f("multi_query"))
    return {**gpt2(f), "num_key_value_heads": 1 if mqa else None, "softmax_fp32": True}


MPT = dict(d_model=2048, n_heads=16, n_layers=24, max_seq_len=2048, vocab_size=50368, no_bias=True,
           attn_config={}, tie_word_embeddings=True)


def mpt(f: Fields) -> dict:
    # MPT (modeling_mpt): ALiBi, fused Wqkv, a 4x GELU MLP (transformers fixes the
    # ratio at 4), no bias anywhere (transformers drops the LayerNorm biases whatever
    # no_bias says); attn_pdrop drops the probabilities and both sublayer outputs.
    h = f("d_model", "hidden_size")
    attn = f("attn_config") or {}
    p = attn.get("attn_pdrop", 0.0) if isinstance(attn, dict) else 0.0
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layers", "num_hidden_layers"),
            "num_attention_heads": f("n_heads", "num_attention_heads"), "intermediate_size": 4 * h,
            "hidden_act": "gelu", "mlp": "plain", "mlp_bias": False, "norm": "layernorm", "norm_bias": False,
            # q, k and v stay views of Wqkv's output and q k^T reads them in place: the
            # same bytes as three projections, so no fused_qkv
            "position_embedding": "alibi", "tie_word_embeddings": f("tie_word_embeddings"),
            "attention_dropout": p, "hidden_dropout": p}


GPT_NEOX = dict(vocab_size=50432, hidden_size=6144, num_hidden_layers=44, num_attention_heads=64,
                intermediate_size=24576, hidden_act="gelu", max_position_embeddings=2048, use_parallel_residual=True,
                attention_bias=True, tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0,
                partial_rotary_factor=0.25)


def gpt_neox(f: Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**llama_like(f), "num_key_value_heads": None, "head_dim": None, "mlp": "plain", "mlp_bias": True,
            "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            "layout": "parallel" if f("use_parallel_residual") else "pre", "rotary_pct": rotary_pct(f),
            "attention_dropout": f("attention_dropout"), "hidden_dropout": f("hidden_dropout"),
            "embedding_dropout": f("hidden_dropout")}


PHI = dict(LLAMA, vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
           num_attention_heads=32, hidden_act="gelu_new", tie_word_embeddings=False, qk_layernorm=False,
           resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, partial_rotary_factor=0.5)


def phi(f: Fields) -> dict:
    # Phi-1/1.5/2 (modeling_phi): one LayerNorm feeds attention and MLP in parallel
    # (GPT-J's layout), biases everywhere including the LM head, partial rotary;
    # qk_layernorm adds a LayerNorm over head_dim on queries and keys.
    return {**llama_like(f), "mlp": "plain", "mlp_bias": True, "qkv_bias": True, "o_bias": True,
            "norm": "layernorm", "layout": "parallel-shared", "lm_head_bias": True, "qk_norm": bool(f("qk_layernorm")),
            "rotary_pct": rotary_pct(f), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("resid_pdrop"), "embedding_dropout": f("embd_pdrop")}


GPT_NEO = dict(vocab_size=50257, max_position_embeddings=2048, hidden_size=2048, num_layers=24, num_heads=16,
               attention_types=[[["global", "local"], 12]], window_size=256, activation_function="gelu_new",
               resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0, tie_word_embeddings=True)


def gpt_neo(f: Fields) -> dict:
    # GPT-Neo (modeling_gpt_neo): GPT-2's learned positions and plain MLP; q/k/v
    # without bias, out_proj with; scores in fp32; attention_types alternates
    # global and local (window_size) layers.
    h = f("hidden_size")
    kinds = [kind for group, repeat in f("attention_types") for _ in range(repeat) for kind in group]
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("num_layers", "num_hidden_layers"),
            "num_attention_heads": f("num_heads", "num_attention_heads"),
            "intermediate_size": f("intermediate_size") or 4 * h,
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "o_bias": True,
            "norm": "layernorm", "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"),
            "sliding_window": f("window_size") if "local" in kinds else None,
            "layer_types": tuple("sliding_attention" if k == "local" else "full_attention" for k in kinds)
            if "local" in kinds else None,
            "scores_fp32": True, "tie_word_embeddings": f("tie_word_embeddings"),
            "attention_dropout": f("attention_dropout"), "hidden_dropout": f("resid_dropout"),
            "embedding_dropout": f("embed_dropout")}


GPTJ = dict(vocab_size=50400, n_positions=2048, n_embd=4096, n_layer=28, n_head=16, rotary_dim=64,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)


def gptj(f: Fields) -> dict:
    # GPT-J (modeling_gptj): ln_1 feeds attention and MLP in parallel; q/k/v/out
    # have no bias, fc_in/fc_out and the LM head do; rotary on rotary_dim dims.
    h, n = f("n_embd", "hidden_size"), f("n_head", "num_attention_heads")
    rotary = f("rotary_dim")
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layer", "num_hidden_layers"),
            "num_attention_heads": n, "intermediate_size": f("n_inner") or 4 * h,
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "norm": "layernorm",
            "layout": "parallel-shared", "lm_head_bias": True,
            "rotary_pct": min(1.0, rotary / (h // n)) if rotary else 1.0,
            "scores_fp32": True,
            "max_position_embeddings": f("n_positions", "max_position_embeddings"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attn_pdrop"),
            "hidden_dropout": f("resid_pdrop"), "embedding_dropout": f("embd_pdrop")}


FALCON = dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
              new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=False, alibi=False,
              tie_word_embeddings=True, max_position_embeddings=2048, attention_dropout=0.0, hidden_dropout=0.0)


def falcon(f: Fields) -> dict:
    h, n = f("n_embed", "hidden_size"), f("num_attention_heads")  # FalconConfig: a legacy n_embed wins
    new = bool(f("new_decoder_architecture"))
    if new:
        kv = f("num_kv_heads") or n
    else:
        kv = 1 if f("multi_query") else n
    if new:  # Falcon-40B/180B: ln_attn + ln_mlp (or one norm when num_ln_in_parallel_attn == 1)
        layout = "parallel-shared" if f("num_ln_in_parallel_attn") == 1 else "parallel"
    else:  # Falcon-7B: one input_layernorm feeds both branches
        layout = "parallel-shared" if f("parallel_attn") else "pre"
    bias = bool(f("bias"))
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("num_hidden_layers"),
            "num_attention_heads": n, "num_key_value_heads": kv, "head_dim": f("head_dim"),
            "intermediate_size": f("ffn_hidden_size") or 4 * h, "hidden_act": f("activation") or "gelu",
            "mlp": "plain", "mlp_bias": bias, "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            "layout": layout, "position_embedding": "alibi" if f("alibi") else "rope",
            "fused_qkv": bool(f("alibi")),  # without rotary, q and k stay views of query_key_value's output
            "max_position_embeddings": f("max_position_embeddings"), "tie_word_embeddings": f("tie_word_embeddings"),
            # modeling_falcon drops attention probabilities on its ALiBi path only
            "attention_dropout": f("attention_dropout") if f("alibi") else 0.0,
            "hidden_dropout": f("hidden_dropout"), "softmax_fp32": False,
            # modeling_falcon drops the MLP output (or the parallel sum) with hidden_dropout, and a
            # sequential attention output with attention_dropout
            "attention_output_dropout": layout == "pre" and bool(f("attention_dropout"))}


OPT = dict(vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072, max_position_embeddings=2048,
           do_layer_norm_before=True, _remove_final_layer_norm=False, word_embed_proj_dim=None, dropout=0.1,
           attention_dropout=0.0, num_attention_heads=12, activation_function="relu", enable_bias=True,
           layer_norm_elementwise_affine=True, tie_word_embeddings=True)


def opt(f: Fields) -> dict:
    bias, pre = bool(f("enable_bias")), bool(f("do_layer_norm_before"))
    return {"vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
            "num_attention_heads": f("num_attention_heads"), "intermediate_size": f("ffn_dim"),
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": bias, "qkv_bias": bias, "o_bias": bias,
            "norm": "layernorm", "layout": "pre" if pre else "post",
            "final_norm": pre and not f("_remove_final_layer_norm"),
            "norm_affine": bool(f("layer_norm_elementwise_affine")),
            "position_embedding": "learned", "max_position_embeddings": f("max_position_embeddings"),
            "position_offset": 2, "word_embed_proj_dim": f("word_embed_proj_dim"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("dropout")}


BLOOM = dict(vocab_size=250880, hidden_size=64, n_layer=2, n_head=8, tie_word_embeddings=True,
             hidden_dropout=0.0, attention_dropout=0.0)


def bloom(f: Fields) -> dict:
    h = f("n_embed", "hidden_size")  # BloomConfig: a legacy n_embed wins
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layer", "num_hidden_layers"),
            "num_attention_heads": f("n_head", "num_attention_heads"), "intermediate_size": 4 * h,
            "hidden_act": "gelu", "mlp": "plain", "mlp_bias": True, "qkv_bias": True, "o_bias": True,
            "norm": "layernorm", "embedding_norm": True, "position_embedding": "alibi", "fused_qkv": True,
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("hidden_dropout")}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "gpt2": (gpt2, GPT2), "gpt_bigcode": (gpt_bigcode, GPT_BIGCODE), "mpt": (mpt, MPT),
    "gpt_neox": (gpt_neox, GPT_NEOX), "phi": (phi, PHI), "gpt_neo": (gpt_neo, GPT_NEO), "gptj": (gptj, GPTJ),
    "falcon": (falcon, FALCON), "opt": (opt, OPT), "bloom": (bloom, BLOOM),
}
