"""Hugging Face `config.json` -> TransformerSpec.

One small function per model_type reads the fields that family really uses;
a field the config omits takes transformers' default for that model_type
(the `<Family>Config.__init__` defaults of transformers 5.24.0, the
reference version). `architectures[0]` picks the head: *ForCausalLM,
*ForConditionalGeneration and MarianMTModel have an LM head (an encoder
family's causal-LM class keeps its MLM head), *Model none (BERT's a pooler),
*ForMaskedLM the MLM head, *ForSequenceClassification a classifier,
*ForTokenClassification and *ForQuestionAnswering a linear layer per token.
Where a family's code ignores a config field (OLMo's mlp_bias, StableLM's
head_dim), so does its converter: the count is the instantiated model's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from paramcalc.errors import UserError
from paramcalc.inputs.files import load_mapping, validate
from paramcalc.inputs.spec import TransformerSpec

Config = dict[str, Any]


NULLABLE = {"num_key_value_heads", "head_dim", "q_lora_rank", "sliding_window", "layer_types", "n_inner",
            "ffn_hidden_size", "word_embed_proj_dim", "num_decoder_layers", "num_kv_heads", "moe_intermediate_size",
            "attn_logit_softcapping", "final_logit_softcapping", "rope_parameters", "rope_scaling", "activation"}


class _Fields:
    """Reads one config with its family's defaults; a bad type is the user's error."""

    def __init__(self, cfg: Config, defaults: Config):
        self.cfg, self.defaults = cfg, defaults

    def __call__(self, *names: str) -> Any:
        """The first of `names` the config sets, else the family default of the
        first name. An explicit null means "derive it" for the fields where
        transformers derives one (NULLABLE: K/V heads, head_dim, windows, ...);
        elsewhere it falls back to the default, as the config classes do."""
        for name in names:
            if name in self.cfg and (self.cfg[name] is not None or name in NULLABLE):
                return self.cfg[name]
        return self.defaults.get(names[0])


def _head(arch: str, *, encoder: bool = False) -> dict:
    if arch.endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel", "MTModel")):  # MarianMTModel
        # an encoder family's causal-LM class (BertLMHeadModel, RobertaForCausalLM)
        # keeps the MLM head: transform + LayerNorm + tied decoder
        return {"head": "mlm" if encoder else "lm"}
    if arch.endswith("ForMaskedLM"):
        return {"head": "mlm"}
    if arch.endswith(("ForSequenceClassification", "ForImageClassification")):
        return {"head": "classifier"}
    if arch.endswith("ForTokenClassification"):
        return {"head": "token-classifier"}
    if arch.endswith("ForQuestionAnswering"):
        return {"head": "qa"}
    if arch.endswith("Model"):
        return {"head": "pooler" if encoder else "none"}
    raise UserError(f"unsupported architecture {arch!r}", field="architectures[0]",
                    fix="use a *ForCausalLM, *Model, *ForMaskedLM, *ForSequenceClassification, "
                        "*ForTokenClassification or *ForQuestionAnswering class")


def _llama_like(f: _Fields) -> dict:
    return {
        "vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
        "num_attention_heads": f("num_attention_heads"), "num_key_value_heads": f("num_key_value_heads"),
        "head_dim": f("head_dim"), "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"),
        "max_position_embeddings": f("max_position_embeddings"), "tie_word_embeddings": f("tie_word_embeddings"),
    }


def _sliding(f: _Fields, layers: int, *, enabled: bool = True, first_full: int = 0) -> dict:
    """Sliding-window layers as transformers lays them out (layer_types wins)."""
    window = f("sliding_window")
    if not enabled or not window:
        return {}
    types = f("layer_types")
    if types is None:
        types = ["full_attention" if i < first_full else "sliding_attention" for i in range(layers)]
    return {"sliding_window": window, "layer_types": tuple(types)}


# --- one converter per model_type -------------------------------------------------

LLAMA = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
             num_attention_heads=32, hidden_act="silu", max_position_embeddings=2048, tie_word_embeddings=False,
             attention_bias=False, mlp_bias=False)


def llama(f: _Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**_llama_like(f), "qkv_bias": bias, "o_bias": bias, "mlp_bias": bool(f("mlp_bias"))}


MISTRAL = dict(LLAMA, intermediate_size=14336, num_key_value_heads=8, max_position_embeddings=4096 * 32,
               sliding_window=4096)


def mistral(f: _Fields) -> dict:
    return {**_llama_like(f), **_sliding(f, f("num_hidden_layers"))}


MIXTRAL = dict(MISTRAL, sliding_window=None, num_local_experts=8, num_experts_per_tok=2)


def mixtral(f: _Fields) -> dict:
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**mistral(f), "moe": moe}


QWEN2 = dict(LLAMA, vocab_size=151936, intermediate_size=22016, num_key_value_heads=32, max_position_embeddings=32768,
             use_sliding_window=False, sliding_window=4096, max_window_layers=28)


def qwen2(f: _Fields) -> dict:
    # Qwen2 puts biases on q, k and v only (modeling_qwen2: o_proj bias=False).
    layers = f("num_hidden_layers")
    window = _sliding(f, layers, enabled=bool(f("use_sliding_window")), first_full=f("max_window_layers"))
    return {**_llama_like(f), "qkv_bias": True, **window}


QWEN2_MOE = dict(QWEN2, hidden_size=2048, intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16, decoder_sparse_step=1, moe_intermediate_size=1408,
                 shared_expert_intermediate_size=5632, num_experts_per_tok=4, num_experts=60, mlp_only_layers=[])


def qwen2_moe(f: _Fields) -> dict:
    moe = {"num_experts": f("num_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("shared_expert_intermediate_size"), "shared_expert_gate": True,
           "decoder_sparse_step": f("decoder_sparse_step"), "mlp_only_layers": tuple(f("mlp_only_layers"))}
    return {**qwen2(f), "qkv_bias": bool(f("qkv_bias") if f("qkv_bias") is not None else True), "moe": moe}


QWEN3 = dict(QWEN2, head_dim=128, attention_bias=False)


def qwen3(f: _Fields) -> dict:
    bias = bool(f("attention_bias"))
    layers = f("num_hidden_layers")
    window = _sliding(f, layers, enabled=bool(f("use_sliding_window")), first_full=f("max_window_layers"))
    return {**_llama_like(f), "qkv_bias": bias, "o_bias": bias, "qk_norm": True, **window}


QWEN3_MOE = dict(QWEN3, head_dim=None, hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=4, decoder_sparse_step=1, moe_intermediate_size=768, num_experts_per_tok=8,
                 num_experts=128, mlp_only_layers=[])


def qwen3_moe(f: _Fields) -> dict:
    moe = {"num_experts": f("num_experts", "num_local_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "moe_intermediate_size": f("moe_intermediate_size"), "decoder_sparse_step": f("decoder_sparse_step"),
           "mlp_only_layers": tuple(f("mlp_only_layers"))}
    return {**qwen3(f), "moe": moe}


MINISTRAL = dict(MISTRAL)

SMOLLM3 = dict(LLAMA, vocab_size=128256, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
               num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=32768, use_sliding_window=False,
               no_rope_layer_interval=4, tie_word_embeddings=True)


def smollm3(f: _Fields) -> dict:
    # SmolLM3: Llama's shapes; every no_rope_layer_interval-th layer skips rotary,
    # and with use_sliding_window those layers are the sliding ones (configuration_smollm3).
    layers = f("num_hidden_layers")
    if f("layer_types") is None and f("use_sliding_window") and f("sliding_window"):
        no_rope = f("no_rope_layers") or [int((i + 1) % f("no_rope_layer_interval") != 0) for i in range(layers)]
        f.defaults["layer_types"] = ["full_attention" if has_rope else "sliding_attention" for has_rope in no_rope]
    return {**llama(f), **_sliding(f, layers, enabled=bool(f("use_sliding_window")))}


GLM = dict(LLAMA, vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
           num_attention_heads=32, num_key_value_heads=2, head_dim=128, max_position_embeddings=131072,
           attention_bias=True, partial_rotary_factor=0.5)


def glm(f: _Fields) -> dict:
    # GLM-4 (modeling_glm): biases on q, k and v only, a fused gate_up_proj (the
    # same weights as gate and up), rotary on half of each head.
    return {**_llama_like(f), "qkv_bias": bool(f("attention_bias")), "rotary_pct": _rotary_pct(f)}


def glm4(f: _Fields) -> dict:
    # GLM-4-0414 (modeling_glm4): GLM plus a norm after attention and after the MLP (four per layer).
    return {**glm(f), "layout": "sandwich"}


COHERE = dict(LLAMA, vocab_size=256000, hidden_size=8192, intermediate_size=22528, num_hidden_layers=40,
              num_attention_heads=64, max_position_embeddings=8192, tie_word_embeddings=True, use_qk_norm=False)


def cohere(f: _Fields) -> dict:
    # Command-R (modeling_cohere): one bias-free LayerNorm (fp32) feeds attention and
    # MLP in parallel; use_qk_norm adds LayerNorms with a weight per head and dim.
    bias = bool(f("attention_bias"))
    return {**_llama_like(f), "qkv_bias": bias, "o_bias": bias, "norm": "layernorm", "norm_bias": False,
            "layernorm_style": "cohere", "layout": "parallel-shared", "qk_norm": bool(f("use_qk_norm")),
            "qk_norm_over": "projection"}


NEMOTRON = dict(LLAMA, vocab_size=256000, hidden_size=6144, intermediate_size=24576, num_hidden_layers=32,
                num_attention_heads=48, hidden_act="relu2", max_position_embeddings=4096, partial_rotary_factor=0.5)


def nemotron(f: _Fields) -> dict:
    # Nemotron (modeling_nemotron): LayerNorm1P (weight and bias), a plain squared-ReLU MLP, partial rotary.
    bias = bool(f("attention_bias"))
    return {**_llama_like(f), "mlp": "plain", "mlp_bias": bool(f("mlp_bias")), "qkv_bias": bias, "o_bias": bias,
            "norm": "layernorm", "rotary_pct": _rotary_pct(f)}


STABLELM = dict(LLAMA, vocab_size=50304, intermediate_size=6912, hidden_size=2560, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, use_qkv_bias=False,
                qk_layernorm=False, use_parallel_residual=False, hidden_dropout=0.0, attention_dropout=0.0,
                partial_rotary_factor=0.25)


def stablelm(f: _Fields) -> dict:
    # StableLM (modeling_stablelm): LayerNorm, partial rotary, optional q/k/v biases;
    # qk_layernorm is one bias-free LayerNorm per head; use_parallel_residual feeds
    # attention and MLP from one norm.
    # modeling_stablelm sizes heads as hidden / heads whatever head_dim says
    return {**_llama_like(f), "head_dim": None, "qkv_bias": bool(f("use_qkv_bias")), "norm": "layernorm",
            "rotary_pct": _rotary_pct(f),
            "layout": "parallel-shared" if f("use_parallel_residual") else "pre", "qk_norm": bool(f("qk_layernorm")),
            "qk_norm_over": "projection", "qk_norm_bias": False, "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("hidden_dropout"), "attention_output_dropout": False}  # only the MLP output is dropped


GEMMA = dict(LLAMA, vocab_size=256000, hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
             num_attention_heads=16, num_key_value_heads=16, head_dim=256, hidden_act="gelu_pytorch_tanh",
             max_position_embeddings=8192, tie_word_embeddings=True)


def gemma(f: _Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**_llama_like(f), "hidden_act": f("hidden_activation", "hidden_act"), "qkv_bias": bias, "o_bias": bias,
            "rmsnorm_style": "gemma"}


GEMMA2 = dict(GEMMA, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
              num_key_value_heads=4, sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0)


def gemma2(f: _Fields) -> dict:
    layers = f("num_hidden_layers")
    if f("layer_types") is None:  # Gemma 2 alternates: even layers slide, odd layers see everything
        f.defaults["layer_types"] = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    return {**gemma(f), "layout": "sandwich", **_sliding(f, layers),
            "attn_logit_softcapping": f("attn_logit_softcapping"), "final_logit_softcapping": f("final_logit_softcapping")}


GEMMA3_TEXT = dict(GEMMA2, vocab_size=262208, max_position_embeddings=131072, attn_logit_softcapping=None,
                   final_logit_softcapping=None, sliding_window_pattern=6)


def gemma3_text(f: _Fields) -> dict:
    # Gemma 3's text model: Gemma 2's sandwich norms plus q/k RMSNorms over
    # head_dim; five sliding layers to one global unless layer_types says otherwise.
    layers, pattern = f("num_hidden_layers"), f("sliding_window_pattern")
    if f("layer_types") is None:
        f.defaults["layer_types"] = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(layers)]
    return {**gemma2(f), "qk_norm": True}


PHI3 = dict(LLAMA, vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
            num_attention_heads=32, max_position_embeddings=4096, sliding_window=None)


def phi3(f: _Fields) -> dict:
    # Fused qkv_proj and gate_up_proj: the same weights as separate q/k/v and gate/up;
    # Phi-4-mini rotates 3/4 of each head (partial_rotary_factor).
    return {**_llama_like(f), **_sliding(f, f("num_hidden_layers")), "rotary_pct": _rotary_pct(f)}


GRANITE = dict(LLAMA)


def granite(f: _Fields) -> dict:
    # Llama's shapes; the embedding, residual, attention and logit multipliers carry no parameters.
    return llama(f)


GRANITEMOE = dict(LLAMA, num_local_experts=8, num_experts_per_tok=2, attention_dropout=0.0)


def granitemoe(f: _Fields) -> dict:
    # Granite MoE (modeling_granitemoe): Granite's attention over intermediate_size-wide
    # routed experts in every layer (no dense MLP, no shared expert).
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**llama(f), "mlp_bias": False, "moe": moe, "attention_dropout": f("attention_dropout")}


OLMO = dict(LLAMA, vocab_size=50304, pad_token_id=1, attention_dropout=0.0)


def olmo(f: _Fields) -> dict:
    # OLMo (modeling_olmo): LayerNorm with neither weight nor bias, computed in fp32; bias-free MLP.
    return {**llama(f), "mlp_bias": False, "norm": "layernorm", "norm_affine": False, "layernorm_style": "fp32",
            "attention_dropout": f("attention_dropout")}


OLMO2 = OLMO


def olmo2(f: _Fields) -> dict:
    # OLMo 2 (OLMo et al. 2024, sec. 3.2): RMSNorm on each sublayer's output
    # before the residual add, and on the whole q and k projections.
    return {**llama(f), "mlp_bias": False, "layout": "reordered", "qk_norm": True, "qk_norm_over": "projection",
            "rmsnorm_style": "olmo2", "attention_dropout": f("attention_dropout")}


STARCODER2 = dict(LLAMA, vocab_size=49152, hidden_size=3072, intermediate_size=12288, num_hidden_layers=30,
                  num_attention_heads=24, num_key_value_heads=2, hidden_act="gelu_pytorch_tanh",
                  max_position_embeddings=4096, sliding_window=None, use_bias=True, tie_word_embeddings=True,
                  attention_dropout=0.0, residual_dropout=0.0, embedding_dropout=0.0)


def starcoder2(f: _Fields) -> dict:
    # StarCoder2 (modeling_starcoder2): LayerNorm, a plain GELU MLP (c_fc, c_proj), use_bias on every linear.
    bias = bool(f("use_bias"))
    return {**_llama_like(f), "mlp": "plain", "mlp_bias": bias, "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            **_sliding(f, f("num_hidden_layers")), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("residual_dropout"), "embedding_dropout": f("embedding_dropout")}


GPT2 = dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, activation_function="gelu_new",
            tie_word_embeddings=True, resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)


def gpt2(f: _Fields) -> dict:
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


def gpt_bigcode(f: _Fields) -> dict:
    # GPTBigCode (StarCoder, SantaCoder; modeling_gpt_bigcode): GPT-2 with one
    # shared K/V head when multi_query; c_attn is h -> h + 2 * head_dim then.
    mqa = bool(f("multi_query"))
    return {**gpt2(f), "num_key_value_heads": 1 if mqa else None, "softmax_fp32": True}


MPT = dict(d_model=2048, n_heads=16, n_layers=24, max_seq_len=2048, vocab_size=50368, no_bias=True,
           attn_config={}, tie_word_embeddings=True)


def mpt(f: _Fields) -> dict:
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


def _rotary_pct(f: _Fields) -> float:
    """The rotated share of head_dim: rope_parameters' partial_rotary_factor in
    newer configs, else a top-level partial_rotary_factor (Phi) or rotary_pct
    (GPT-NeoX), else the family's default."""
    rope = f("rope_parameters") or {}
    if isinstance(rope, dict) and rope.get("partial_rotary_factor"):
        return rope["partial_rotary_factor"]
    return f("partial_rotary_factor", "rotary_pct") or 1.0


GPT_NEOX = dict(vocab_size=50432, hidden_size=6144, num_hidden_layers=44, num_attention_heads=64,
                intermediate_size=24576, hidden_act="gelu", max_position_embeddings=2048, use_parallel_residual=True,
                attention_bias=True, tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0,
                partial_rotary_factor=0.25)


def gpt_neox(f: _Fields) -> dict:
    bias = bool(f("attention_bias"))
    return {**_llama_like(f), "num_key_value_heads": None, "head_dim": None, "mlp": "plain", "mlp_bias": True,
            "qkv_bias": bias, "o_bias": bias, "norm": "layernorm",
            "layout": "parallel" if f("use_parallel_residual") else "pre", "rotary_pct": _rotary_pct(f),
            "attention_dropout": f("attention_dropout"), "hidden_dropout": f("hidden_dropout"),
            "embedding_dropout": f("hidden_dropout")}


PHI = dict(LLAMA, vocab_size=51200, hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
           num_attention_heads=32, hidden_act="gelu_new", tie_word_embeddings=False, qk_layernorm=False,
           resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, partial_rotary_factor=0.5)


def phi(f: _Fields) -> dict:
    # Phi-1/1.5/2 (modeling_phi): one LayerNorm feeds attention and MLP in parallel
    # (GPT-J's layout), biases everywhere including the LM head, partial rotary;
    # qk_layernorm adds a LayerNorm over head_dim on queries and keys.
    return {**_llama_like(f), "mlp": "plain", "mlp_bias": True, "qkv_bias": True, "o_bias": True,
            "norm": "layernorm", "layout": "parallel-shared", "lm_head_bias": True, "qk_norm": bool(f("qk_layernorm")),
            "rotary_pct": _rotary_pct(f), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("resid_pdrop"), "embedding_dropout": f("embd_pdrop")}


GPT_NEO = dict(vocab_size=50257, max_position_embeddings=2048, hidden_size=2048, num_layers=24, num_heads=16,
               attention_types=[[["global", "local"], 12]], window_size=256, activation_function="gelu_new",
               resid_dropout=0.0, embed_dropout=0.0, attention_dropout=0.0, tie_word_embeddings=True)


def gpt_neo(f: _Fields) -> dict:
    # GPT-Neo (modeling_gpt_neo): GPT-2's learned positions and plain MLP; q/k/v
    # without bias, out_proj with; scores in fp32; attention_types alternates
    # global and local (window_size) layers.
    h = f("hidden_size")
    kinds = [kind for group, repeat in f("attention_types") for _ in range(repeat) for kind in group]
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("num_layers", "num_hidden_layers"),
            "num_attention_heads": f("num_heads", "num_attention_heads"), "intermediate_size": f("intermediate_size") or 4 * h,
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "o_bias": True,
            "norm": "layernorm", "position_embedding": "learned", "max_position_embeddings": f("max_position_embeddings"),
            "sliding_window": f("window_size") if "local" in kinds else None,
            "layer_types": tuple("sliding_attention" if k == "local" else "full_attention" for k in kinds)
            if "local" in kinds else None,
            "scores_fp32": True, "tie_word_embeddings": f("tie_word_embeddings"),
            "attention_dropout": f("attention_dropout"), "hidden_dropout": f("resid_dropout"),
            "embedding_dropout": f("embed_dropout")}


GPTJ = dict(vocab_size=50400, n_positions=2048, n_embd=4096, n_layer=28, n_head=16, rotary_dim=64,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False)


def gptj(f: _Fields) -> dict:
    # GPT-J (modeling_gptj): ln_1 feeds attention and MLP in parallel; q/k/v/out
    # have no bias, fc_in/fc_out and the LM head do; rotary on rotary_dim dims.
    h, n = f("n_embd", "hidden_size"), f("n_head", "num_attention_heads")
    rotary = f("rotary_dim")
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layer", "num_hidden_layers"),
            "num_attention_heads": n, "intermediate_size": f("n_inner") or 4 * h,
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "norm": "layernorm",
            "layout": "parallel-shared", "lm_head_bias": True, "rotary_pct": min(1.0, rotary / (h // n)) if rotary else 1.0,
            "scores_fp32": True,
            "max_position_embeddings": f("n_positions", "max_position_embeddings"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attn_pdrop"),
            "hidden_dropout": f("resid_pdrop"), "embedding_dropout": f("embd_pdrop")}


FALCON = dict(vocab_size=65024, hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
              new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=False, alibi=False,
              tie_word_embeddings=True, max_position_embeddings=2048, attention_dropout=0.0, hidden_dropout=0.0)


def falcon(f: _Fields) -> dict:
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


def opt(f: _Fields) -> dict:
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


def bloom(f: _Fields) -> dict:
    h = f("n_embed", "hidden_size")  # BloomConfig: a legacy n_embed wins
    return {"vocab_size": f("vocab_size"), "hidden_size": h, "num_hidden_layers": f("n_layer", "num_hidden_layers"),
            "num_attention_heads": f("n_head", "num_attention_heads"), "intermediate_size": 4 * h,
            "hidden_act": "gelu", "mlp": "plain", "mlp_bias": True, "qkv_bias": True, "o_bias": True,
            "norm": "layernorm", "embedding_norm": True, "position_embedding": "alibi", "fused_qkv": True,
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("hidden_dropout")}


BERT = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, tie_word_embeddings=True,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def bert(f: _Fields) -> dict:
    return {"architecture": "encoder", "vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"),
            "num_hidden_layers": f("num_hidden_layers"), "num_attention_heads": f("num_attention_heads"),
            "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"), "mlp": "plain",
            "mlp_bias": True, "qkv_bias": True, "o_bias": True, "norm": "layernorm", "layout": "post",
            "final_norm": False, "embedding_norm": True, "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"), "type_vocab_size": f("type_vocab_size"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attention_probs_dropout_prob"),
            "hidden_dropout": f("hidden_dropout_prob"), "embedding_dropout": f("hidden_dropout_prob"),
            "softmax_fp32": False}


DISTILBERT = dict(vocab_size=30522, max_position_embeddings=512, n_layers=6, n_heads=12, dim=768, hidden_dim=3072,
                  activation="gelu", dropout=0.1, attention_dropout=0.1, tie_word_embeddings=True)


def distilbert(f: _Fields) -> dict:
    # DistilBERT (Sanh et al. 2019): BERT's post-norm layers without token types;
    # *Model has no pooler, the classifier's pre_classifier + classifier match BERT's
    # pooler + classifier. Sinusoidal positions are still an (untrained) table.
    fields = {**bert(f), "hidden_size": f("dim", "hidden_size"), "num_hidden_layers": f("n_layers", "num_hidden_layers"),
              "num_attention_heads": f("n_heads", "num_attention_heads"), "intermediate_size": f("hidden_dim"),
              "hidden_act": f("activation"), "type_vocab_size": 0, "attention_dropout": f("attention_dropout"),
              "attention_output_dropout": False,
              "hidden_dropout": f("dropout"), "embedding_dropout": f("dropout")}
    return fields


ELECTRA = dict(BERT, embedding_size=128, hidden_size=256, num_attention_heads=4, intermediate_size=1024)


def electra(f: _Fields) -> dict:
    # ELECTRA (Clark et al. 2020; modeling_electra): BERT's layers over embeddings
    # of embedding_size projected (with a bias) to hidden_size; *Model has no
    # pooler; *ForPreTraining is the replaced-token discriminator; *ForMaskedLM the
    # generator, whose MLM head transforms down to embedding_size.
    return {**bert(f), "embedding_size": f("embedding_size")}


ROBERTA = dict(BERT, vocab_size=50265)
XLM_ROBERTA = dict(BERT, vocab_size=30522)


def roberta(f: _Fields) -> dict:
    # BERT's layers and heads. Positions start at pad_token_id + 1 but the table
    # keeps max_position_embeddings rows (514 in roberta-base's config), so the
    # count needs nothing new; the classification head (dense + out_proj on <s>)
    # has the same shapes as BERT's pooler + classifier.
    return bert(f)


T5 = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
          relative_attention_num_buckets=32, feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.1)


def t5(f: _Fields) -> dict:
    proj = f("feed_forward_proj")
    gated = proj.startswith("gated-")
    act = "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")  # T5Config's backward-compatible mapping
    return {"architecture": "encoder-decoder", "vocab_size": f("vocab_size"), "hidden_size": f("d_model", "hidden_size"),
            "num_hidden_layers": f("num_layers", "num_hidden_layers"), "num_decoder_layers": f("num_decoder_layers"),
            "num_attention_heads": f("num_heads", "num_attention_heads"), "head_dim": f("d_kv", "head_dim"),
            "intermediate_size": f("d_ff"), "hidden_act": act, "mlp": "gated" if gated else "plain",
            "norm": "rmsnorm", "rmsnorm_style": "t5", "position_embedding": "relative",
            "relative_attention_num_buckets": f("relative_attention_num_buckets"),
            # transformers 5 always ties T5's head to `shared` (T5Config forces
            # tie_word_embeddings=True; a False only turns off the output rescaling).
            "tie_word_embeddings": True, "attention_dropout": f("dropout_rate"), "hidden_dropout": f("dropout_rate"),
            "embedding_dropout": f("dropout_rate"), "mlp_inner_dropout": True, "softmax_fp32": False}


VIT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_size=224, patch_size=16, num_channels=3,
           qkv_bias=True)


def _square(size, field: str) -> int:
    """ViTConfig takes a size or a (height, width) pair; paramcalc models square ones."""
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise UserError(f"{field} {list(size)} is not square", field=field,
                            fix="paramcalc models square images and patches")
        return size[0]
    return size


def vit(f: _Fields) -> dict:
    # ViT (Dosovitskiy et al. 2021; modeling_vit): patches by a strided conv, a
    # class token and learned positions, pre-norm encoder layers (q/k/v biases by
    # qkv_bias, the output projection and MLP always biased), a final LayerNorm.
    image, patch = _square(f("image_size"), "image_size"), _square(f("patch_size"), "patch_size")
    return {"architecture": "vit", "image_size": image, "patch_size": patch, "num_channels": f("num_channels"),
            "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
            "num_attention_heads": f("num_attention_heads"), "intermediate_size": f("intermediate_size"),
            "hidden_act": f("hidden_act"), "mlp": "plain", "mlp_bias": True, "qkv_bias": bool(f("qkv_bias")),
            "o_bias": True, "norm": "layernorm", "position_embedding": "none",
            "attention_dropout": f("attention_probs_dropout_prob"), "hidden_dropout": f("hidden_dropout_prob"),
            "embedding_dropout": f("hidden_dropout_prob")}


BART = dict(vocab_size=50265, max_position_embeddings=1024, encoder_layers=12, encoder_ffn_dim=4096,
            encoder_attention_heads=16, decoder_layers=12, decoder_ffn_dim=4096, decoder_attention_heads=16,
            activation_function="gelu", d_model=1024, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
            tie_word_embeddings=True)


def bart(f: _Fields, *, pre_norm: bool = False, sinusoidal: bool = False) -> dict:
    # BART (Lewis et al. 2020; modeling_bart): post-norm encoder and decoder with
    # biases, a shared token table, each stack its own learned positions (2 rows
    # of offset) and embedding LayerNorm; the LM head is tied. mBART is pre-norm
    # with a final LayerNorm per stack. Pegasus and Marian keep a fixed sinusoidal
    # table per stack instead (an nn.Embedding, so parameters() counts it, with no
    # offset) and no embedding norm.
    if not f("tie_word_embeddings"):
        raise UserError("tie_word_embeddings is false: transformers then gives the shared table, each stack and "
                        "the LM head a token table of their own", field="tie_word_embeddings",
                        fix="paramcalc models these encoder-decoders with one shared token table (the published "
                            "checkpoints' setting)")
    for enc, dec in (("encoder_ffn_dim", "decoder_ffn_dim"), ("encoder_attention_heads", "decoder_attention_heads")):
        if f(enc) != f(dec):
            raise UserError(f"{enc} ({f(enc)}) differs from {dec} ({f(dec)})", field=enc,
                            fix="paramcalc models one layer shape for both stacks of an encoder-decoder")
    return {"architecture": "encoder-decoder", "vocab_size": f("vocab_size"), "hidden_size": f("d_model"),
            "num_hidden_layers": f("encoder_layers"), "num_decoder_layers": f("decoder_layers"),
            "num_attention_heads": f("encoder_attention_heads"), "intermediate_size": f("encoder_ffn_dim"),
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "qkv_bias": True,
            "o_bias": True, "norm": "layernorm", "layout": "pre" if pre_norm else "post", "final_norm": pre_norm,
            "embedding_norm": not sinusoidal, "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"), "position_offset": 0 if sinusoidal else 2,
            "tie_word_embeddings": True, "attention_dropout": f("attention_dropout"), "hidden_dropout": f("dropout"),
            "embedding_dropout": f("dropout"), "softmax_fp32": False}


def mbart(f: _Fields) -> dict:
    return bart(f, pre_norm=True)


def pegasus(f: _Fields) -> dict:
    return bart(f, pre_norm=True, sinusoidal=True)


MARIAN = dict(BART, vocab_size=58101, decoder_vocab_size=None, share_encoder_decoder_embeddings=True)


def marian(f: _Fields) -> dict:
    # MarianMT: post-norm like BART, sinusoidal tables like Pegasus
    if not f("share_encoder_decoder_embeddings") or f("decoder_vocab_size") not in (None, f("vocab_size")):
        raise UserError("this Marian model has a decoder vocabulary of its own", field="decoder_vocab_size",
                        fix="paramcalc models Marian with one token table shared by both stacks")
    return bart(f, sinusoidal=True)


# mT5 (Xue et al. 2021): T5 v1.1's layers over a 250k vocabulary; transformers 5 ties its head too.
MT5 = dict(T5, vocab_size=250112, d_ff=1024, num_layers=8, num_heads=6, feed_forward_proj="gated-gelu")


DEEPSEEK_V3 = dict(LLAMA, vocab_size=129280, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                   num_hidden_layers=61, num_attention_heads=128, num_key_value_heads=128, n_shared_experts=1,
                   n_routed_experts=256, kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128,
                   qk_nope_head_dim=128, num_experts_per_tok=8, first_k_dense_replace=3, max_position_embeddings=4096)


def deepseek_v3(f: _Fields) -> dict:
    # attribute_map aliases: num_local_experts (V3), num_experts (V2)
    moe = {"num_experts": f("n_routed_experts", "num_local_experts", "num_experts"),
           "num_experts_per_tok": f("num_experts_per_tok"), "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("moe_intermediate_size") * (f("n_shared_experts") or 0),
           # e_score_correction_bias is a buffer in transformers (not in parameters());
           # the deepseek-v3 preset counts it, as DeepSeek's 671.03B does.
           "first_k_dense_replace": f("first_k_dense_replace")}
    mla = {"q_lora_rank": f("q_lora_rank"), "kv_lora_rank": f("kv_lora_rank"), "qk_nope_head_dim": f("qk_nope_head_dim"),
           "qk_rope_head_dim": f("qk_rope_head_dim"), "v_head_dim": f("v_head_dim")}
    return {**_llama_like(f), "head_dim": None, "qkv_bias": bool(f("attention_bias")), "moe": moe, "mla": mla}


DEEPSEEK_V2 = dict(LLAMA, vocab_size=102400, moe_intermediate_size=1407, n_shared_experts=2, n_routed_experts=64,
                   kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128,
                   first_k_dense_replace=0)


def deepseek_v2(f: _Fields) -> dict:
    # DeepSeek-V2 (DeepSeek-AI 2024, sec. 2): V3's MLA and shared + routed experts, and a plain softmax router.
    return deepseek_v3(f)


GLM4_MOE = dict(LLAMA, vocab_size=151552, intermediate_size=10944, num_hidden_layers=46, num_attention_heads=96,
                num_key_value_heads=8, max_position_embeddings=131072, moe_intermediate_size=1408,
                num_experts_per_tok=8, n_shared_experts=1, n_routed_experts=128, first_k_dense_replace=1,
                use_qk_norm=False, partial_rotary_factor=0.5)


def glm4_moe(f: _Fields) -> dict:
    # GLM-4.5 (modeling_glm4_moe): DeepSeek-V3's expert layout (dense first layers,
    # shared + routed experts, a sigmoid router whose correction bias is a buffer)
    # under GQA attention with q/k/v biases, optional q/k RMSNorms and half-rotary
    # heads; the multi-token-prediction layers are not instantiated.
    moe = {"num_experts": f("n_routed_experts", "num_local_experts", "num_experts"),
           "num_experts_per_tok": f("num_experts_per_tok"), "moe_intermediate_size": f("moe_intermediate_size"),
           "shared_expert_intermediate_size": f("moe_intermediate_size") * (f("n_shared_experts") or 0),
           "first_k_dense_replace": f("first_k_dense_replace")}
    return {**_llama_like(f), "qkv_bias": bool(f("attention_bias")), "qk_norm": bool(f("use_qk_norm")),
            "rotary_pct": _rotary_pct(f), "moe": moe}


OLMOE = dict(LLAMA, vocab_size=50304, intermediate_size=2048, num_hidden_layers=16, num_attention_heads=16,
             max_position_embeddings=4096, num_experts_per_tok=8, num_experts=64, attention_dropout=0.0)


def olmoe(f: _Fields) -> dict:
    # OLMoE (Muennighoff et al. 2024; modeling_olmoe): every layer routes to
    # intermediate_size-wide experts; RMSNorms over the whole q and k projections.
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_experts", "num_local_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**_llama_like(f), "qkv_bias": bias, "o_bias": bias, "qk_norm": True, "qk_norm_over": "projection",
            "moe": moe, "attention_dropout": f("attention_dropout")}


PHIMOE = dict(LLAMA, vocab_size=32064, intermediate_size=6400, num_key_value_heads=8, max_position_embeddings=4096 * 32,
              sliding_window=None, num_experts_per_tok=2, num_local_experts=16, lm_head_bias=False,
              attention_dropout=0.0)


def phimoe(f: _Fields) -> dict:
    # Phi-3.5-MoE (modeling_phimoe): Mixtral's experts under LayerNorms with biases;
    # attention_bias on all four projections, an optional LM-head bias.
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok")}
    return {**_llama_like(f), "qkv_bias": bias, "o_bias": bias, "norm": "layernorm", "lm_head_bias": bool(f("lm_head_bias")),
            **_sliding(f, f("num_hidden_layers")), "moe": moe, "attention_dropout": f("attention_dropout")}


LLAMA4_TEXT = dict(LLAMA, vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                   num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128,
                   max_position_embeddings=4096 * 32, num_experts_per_tok=1, num_local_experts=16, moe_layers=None,
                   interleave_moe_layer_step=1, attention_dropout=0.0)


def llama4_text(f: _Fields) -> dict:
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
    return {**_llama_like(f), "intermediate_size": f("intermediate_size_mlp"), "qkv_bias": bias, "o_bias": bias,
            "moe": moe, "attention_dropout": f("attention_dropout")}


GPT_OSS = dict(LLAMA, num_hidden_layers=36, num_local_experts=128, vocab_size=201088, hidden_size=2880,
               intermediate_size=2880, head_dim=64, num_attention_heads=64, num_key_value_heads=8, sliding_window=128,
               max_position_embeddings=131072, num_experts_per_tok=4, attention_bias=True, attention_dropout=0.0)


def gpt_oss(f: _Fields) -> dict:
    # gpt-oss (OpenAI 2025 model card; modeling_gpt_oss): every layer routes to
    # biased SwiGLU experts through a biased router; attention has q/k/v/o biases,
    # a learned sink per head, and alternates sliding (128) and full layers.
    layers = f("num_hidden_layers")
    if f("layer_types") is None:
        f.defaults["layer_types"] = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)]
    bias = bool(f("attention_bias"))
    moe = {"num_experts": f("num_local_experts", "num_experts"), "num_experts_per_tok": f("num_experts_per_tok"),
           "router_bias": True}
    return {**_llama_like(f), "hidden_act": "swiglu_clamp", "qkv_bias": bias, "o_bias": bias, "mlp_bias": True,
            "attention_sinks": True, "moe": moe, **_sliding(f, layers), "attention_dropout": f("attention_dropout"),
            "rmsnorm_style": "olmo2", "softmax_fp32": False}


FAMILIES: dict[str, tuple[Callable[[_Fields], dict], Config]] = {
    "llama": (llama, LLAMA), "mistral": (mistral, MISTRAL), "ministral": (mistral, MINISTRAL),
    "smollm3": (smollm3, SMOLLM3), "glm": (glm, GLM), "glm4": (glm4, GLM), "cohere": (cohere, COHERE),
    "nemotron": (nemotron, NEMOTRON), "stablelm": (stablelm, STABLELM), "mixtral": (mixtral, MIXTRAL), "qwen2": (qwen2, QWEN2),
    "qwen2_moe": (qwen2_moe, QWEN2_MOE), "qwen3": (qwen3, QWEN3), "qwen3_moe": (qwen3_moe, QWEN3_MOE),
    "gemma": (gemma, GEMMA), "gemma2": (gemma2, GEMMA2), "gemma3_text": (gemma3_text, GEMMA3_TEXT), "phi3": (phi3, PHI3), "phi": (phi, PHI), "granite": (granite, GRANITE), "granitemoe": (granitemoe, GRANITEMOE), "olmo": (olmo, OLMO), "olmo2": (olmo2, OLMO2),
    "starcoder2": (starcoder2, STARCODER2), "gptj": (gptj, GPTJ), "gpt_neo": (gpt_neo, GPT_NEO), "gpt2": (gpt2, GPT2), "gpt_bigcode": (gpt_bigcode, GPT_BIGCODE), "mpt": (mpt, MPT),
    "gpt_neox": (gpt_neox, GPT_NEOX), "falcon": (falcon, FALCON), "opt": (opt, OPT), "bloom": (bloom, BLOOM),
    "bert": (bert, BERT), "roberta": (roberta, ROBERTA), "distilbert": (distilbert, DISTILBERT),
    "electra": (electra, ELECTRA),
    "xlm-roberta": (roberta, XLM_ROBERTA), "t5": (t5, T5), "mt5": (t5, MT5), "vit": (vit, VIT), "bart": (bart, BART), "mbart": (mbart, BART),
    "pegasus": (pegasus, BART), "marian": (marian, MARIAN), "deepseek_v3": (deepseek_v3, DEEPSEEK_V3),
    "deepseek_v2": (deepseek_v2, DEEPSEEK_V2), "gpt_oss": (gpt_oss, GPT_OSS),
    "glm4_moe": (glm4_moe, GLM4_MOE), "llama4_text": (llama4_text, LLAMA4_TEXT), "olmoe": (olmoe, OLMOE), "phimoe": (phimoe, PHIMOE),
}


def from_config(cfg: Config, where: str = "config.json", name: str | None = None) -> TransformerSpec:
    """A spec for the class named in `architectures[0]` of a config.json mapping."""
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str):
        model_type = repr(model_type)  # named in the error below
    text = cfg.get("text_config")
    if model_type not in FAMILIES and isinstance(text, dict) and str(text.get("model_type")) in FAMILIES:
        raise UserError(f"model_type {model_type!r} wraps a {text['model_type']!r} language model with other towers "
                        "(vision, audio) that paramcalc does not model", where=where, field="model_type",
                        fix="to count the language model alone, save the 'text_config' object as its own "
                            "config.json (paramcalc reads its model_type)")
    if model_type not in FAMILIES:
        raise UserError(f"unsupported model_type {model_type!r}", where=where, field="model_type",
                        fix=f"supported: {', '.join(sorted(FAMILIES))}")
    convert, defaults = FAMILIES[model_type]
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else "ForCausalLM"
    try:
        fields = convert(_Fields(cfg, dict(defaults)))
        if model_type == "electra" and arch.endswith("ForPreTraining"):
            fields["head"] = "discriminator"  # ELECTRA's pre-training class is its replaced-token detector
        else:
            fields.update(_head(arch, encoder=fields.get("architecture") in ("encoder", "vit")))
    except UserError as e:
        raise e.placed(where, e.field) from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"a field has the wrong type ({e})", where=where,
                        fix="compare with the model's config.json on the Hugging Face hub") from None
    if model_type in ("distilbert", "electra") and fields["head"] == "pooler":
        fields["head"] = "none"  # DistilBertModel and ElectraModel end at the last layer
    if fields.get("architecture") == "encoder-decoder" and (arch.endswith("EncoderModel")
                                                            or fields["head"] == "token-classifier"):
        # (M)T5EncoderModel, and *ForTokenClassification built on it: the encoder stack alone
        fields.update(architecture="encoder", num_decoder_layers=None)
        if arch.endswith("EncoderModel"):
            fields["head"] = "none"
    if fields["head"] in ("classifier", "token-classifier", "qa"):
        labels = cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 2
        fields["num_labels"] = labels
    fields = {k: v for k, v in fields.items() if v is not None}
    return validate(TransformerSpec, {"name": name, "family": model_type, "source": where, **fields}, where=where)


def from_config_file(path: Path) -> TransformerSpec:
    # a snapshot's config.json is named after its folder (Llama-3.1-8B/config.json: Llama-3.1-8B)
    name = path.parent.resolve().name if path.stem == "config" and path.parent.resolve().name else path.stem
    return from_config(load_mapping(path), str(path), name=name)
