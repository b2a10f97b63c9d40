"""Every supported model_type against transformers itself: the analytic count
equals sum(p.numel()) of the real model class, and the analytic forward and
backward matmul FLOPs equal FlopCounterMode's count on its eager path, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_reference import hf_flops, hf_params
from test_clip_llava import MODEL_TYPES as CLIP_LLAVA_TYPES
from test_ssm import CASES as SSM_CASES
from test_whisper_jamba import CASES as WHISPER_JAMBA_CASES
from paramcalc.blocks.base import Pass
from paramcalc.inputs.hf import FAMILIES, from_config
from paramcalc.network import lower as build

DATA = Path(__file__).parent / "data" / "hf-configs"
EXPECTED = json.loads((DATA / "expected.json").read_text())

SMALL = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
MOE_SMALL = dict(SMALL, num_key_value_heads=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40)
MLA_SMALL = dict(SMALL, moe_intermediate_size=40, n_routed_experts=4, num_experts_per_tok=2, kv_lora_rank=8,
                 qk_rope_head_dim=4, qk_nope_head_dim=8, v_head_dim=8)
T5_SMALL = dict(vocab_size=101, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4, decoder_start_token_id=0,
                pad_token_id=0)
BART_SMALL = dict(vocab_size=101, d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=96, decoder_ffn_dim=96,
                  encoder_attention_heads=4, decoder_attention_heads=4, max_position_embeddings=32)
ELECTRA_SMALL = dict(SMALL, embedding_size=32, max_position_embeddings=34)
DISTIL_SMALL = dict(vocab_size=101, dim=64, hidden_dim=96, n_layers=2, n_heads=4, max_position_embeddings=34)
ALBERT_SMALL = dict(SMALL, embedding_size=32, max_position_embeddings=34)
# DeBERTa-v3's shape (no absolute positions, 2 x 8 shared relative rows); pad_token_id null keeps
# transformers' padding check (an .item()) off the meta device the saved-bytes reference runs on
DEBERTA_SMALL = dict(SMALL, max_position_embeddings=34, relative_attention=True, position_buckets=8,
                     pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
                     position_biased_input=False, pad_token_id=None)
NEO_SMALL = dict(vocab_size=101, hidden_size=64, num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
                 window_size=4, max_position_embeddings=32)

# (model_type, architecture, overrides): the variants each family's fields allow.
CASES = [
    ("llama", "LlamaForCausalLM", {}),
    ("llama", "LlamaForCausalLM", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    ("llama", "LlamaForCausalLM", dict(num_key_value_heads=1, tie_word_embeddings=True)),
    ("llama", "LlamaForCausalLM", dict(head_dim=32)),
    ("llama", "LlamaModel", {}),
    ("llama", "LlamaForSequenceClassification", dict(num_labels=3, pad_token_id=0)),
    ("mistral", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=4)),
    ("mixtral", "MixtralForCausalLM", dict(SMALL, num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2)),
    ("qwen2", "Qwen2ForCausalLM", dict(num_key_value_heads=2)),
    ("qwen2", "Qwen2ForCausalLM", dict(num_key_value_heads=4, tie_word_embeddings=True, use_sliding_window=True, sliding_window=4,
                                       max_window_layers=1)),
    ("qwen2_moe", "Qwen2MoeForCausalLM", dict(MOE_SMALL, shared_expert_intermediate_size=48)),
    ("qwen2_moe", "Qwen2MoeForCausalLM", dict(MOE_SMALL, shared_expert_intermediate_size=48, num_hidden_layers=4,
                                              decoder_sparse_step=2, mlp_only_layers=[1])),
    ("qwen3", "Qwen3ForCausalLM", dict(head_dim=32, num_key_value_heads=2)),
    ("qwen3_moe", "Qwen3MoeForCausalLM", dict(MOE_SMALL, head_dim=16, num_key_value_heads=2, mlp_only_layers=[0])),
    ("gemma", "GemmaForCausalLM", dict(head_dim=32, num_key_value_heads=1)),
    ("gemma2", "Gemma2ForCausalLM", dict(head_dim=32, num_key_value_heads=2, sliding_window=4)),
    ("phi3", "Phi3ForCausalLM", dict(num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    ("phi3", "Phi3ForCausalLM", dict(num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     partial_rotary_factor=0.75, tie_word_embeddings=True)),
    ("gpt2", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, n_positions=32)),
    ("gpt2", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, n_positions=32, n_inner=80,
                                     tie_word_embeddings=False)),
    ("gpt2", "GPT2Model", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, n_positions=32)),
    ("gpt_neox", "GPTNeoXForCausalLM", dict(SMALL, rotary_pct=0.25)),
    ("gpt_neox", "GPTNeoXForCausalLM", dict(SMALL, use_parallel_residual=False, attention_bias=False)),
    ("falcon", "FalconForCausalLM", dict(SMALL)),
    ("falcon", "FalconForCausalLM", dict(SMALL, multi_query=False, parallel_attn=False, bias=True)),
    ("falcon", "FalconForCausalLM", dict(SMALL, new_decoder_architecture=True, num_kv_heads=2)),
    ("falcon", "FalconForCausalLM", dict(SMALL, new_decoder_architecture=True, num_kv_heads=2,
                                         num_ln_in_parallel_attn=1, ffn_hidden_size=80)),
    ("falcon", "FalconForCausalLM", dict(SMALL, alibi=True, multi_query=False)),
    ("opt", "OPTForCausalLM", dict(hidden_size=64, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=101, max_position_embeddings=32)),
    ("opt", "OPTForCausalLM", dict(hidden_size=64, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=101, max_position_embeddings=32, word_embed_proj_dim=32,
                                   do_layer_norm_before=False)),
    ("opt", "OPTForCausalLM", dict(hidden_size=64, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
                                   vocab_size=101, max_position_embeddings=32, enable_bias=False,
                                   layer_norm_elementwise_affine=False)),
    ("bloom", "BloomForCausalLM", dict(hidden_size=64, n_layer=2, n_head=4, vocab_size=101)),
    ("bert", "BertForMaskedLM", dict(SMALL, max_position_embeddings=32)),
    ("bert", "BertModel", dict(SMALL, max_position_embeddings=32)),
    ("bert", "BertForSequenceClassification", dict(SMALL, max_position_embeddings=32, num_labels=3)),
    ("t5", "T5ForConditionalGeneration", dict(vocab_size=101, d_model=64, d_kv=8, d_ff=96, num_layers=2, num_heads=4,
                                              decoder_start_token_id=0, pad_token_id=0)),
    ("t5", "T5ForConditionalGeneration", dict(vocab_size=101, d_model=64, d_kv=16, d_ff=96, num_layers=2,
                                              decoder_start_token_id=0, pad_token_id=0,
                                              num_decoder_layers=3, num_heads=4, feed_forward_proj="gated-gelu",
                                              tie_word_embeddings=False)),
    ("t5", "T5EncoderModel", dict(vocab_size=101, d_model=64, d_kv=8, d_ff=96, num_layers=2, num_heads=4)),
    ("llama", "LlamaForTokenClassification", dict(num_labels=5, pad_token_id=0)),
    ("qwen2", "Qwen2ForQuestionAnswering", dict(num_key_value_heads=2)),
    ("bert", "BertForTokenClassification", dict(SMALL, max_position_embeddings=32, num_labels=7)),
    ("bert", "BertForQuestionAnswering", dict(SMALL, max_position_embeddings=32)),
    # explicit nulls, as real configs carry them
    ("gemma", "GemmaForCausalLM", dict(head_dim=32, num_key_value_heads=1, hidden_activation=None, hidden_act="gelu")),
    ("mistral", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=None, head_dim=None)),
    ("llama", "LlamaForCausalLM", dict(num_key_value_heads=None, rope_scaling=None)),
    # attribute_map aliases and legacy keys, as transformers reads them
    ("mixtral", "MixtralForCausalLM", dict(SMALL, num_experts=6, num_experts_per_tok=2, num_key_value_heads=2)),
    ("qwen3_moe", "Qwen3MoeForCausalLM", {**{k: v for k, v in MOE_SMALL.items() if k != "num_experts"},
                                          "num_local_experts": 6}),
    ("falcon", "FalconForCausalLM", dict(SMALL, n_embed=48)),
    ("bloom", "BloomForCausalLM", dict(hidden_size=64, n_embed=48, n_layer=2, n_head=4, vocab_size=101)),
    ("gpt2", "GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, max_position_embeddings=40)),
    ("t5", "T5ForConditionalGeneration", dict(vocab_size=101, d_model=64, head_dim=8, d_ff=96, num_layers=2,
                                              num_heads=4, decoder_start_token_id=0, pad_token_id=0)),
    ("deepseek_v3", "DeepseekV3ForCausalLM", dict(SMALL, moe_intermediate_size=40, num_local_experts=6,
                                                  num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
                                                  q_lora_rank=16, kv_lora_rank=8, qk_rope_head_dim=4,
                                                  qk_nope_head_dim=8, v_head_dim=8, n_group=1, topk_group=1,
                                                  num_key_value_heads=4)),
    ("deepseek_v3", "DeepseekV3ForCausalLM", dict(SMALL, moe_intermediate_size=40, n_routed_experts=4,
                                                  num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
                                                  q_lora_rank=16, kv_lora_rank=8, qk_rope_head_dim=4,
                                                  qk_nope_head_dim=8, v_head_dim=8, n_group=1, topk_group=1,
                                                  num_key_value_heads=4)),
    ("deepseek_v3", "DeepseekV3ForCausalLM", dict(SMALL, moe_intermediate_size=40, n_routed_experts=4,
                                                  num_experts_per_tok=2, n_shared_experts=2, first_k_dense_replace=0,
                                                  q_lora_rank=None, kv_lora_rank=8, qk_rope_head_dim=4,
                                                  qk_nope_head_dim=8, v_head_dim=12, n_group=1, topk_group=1,
                                                  num_key_value_heads=4)),
    ("deepseek_v2", "DeepseekV2ForCausalLM", dict(MLA_SMALL, q_lora_rank=16, n_shared_experts=1, first_k_dense_replace=1)),
    ("deepseek_v2", "DeepseekV2ForCausalLM", dict(MLA_SMALL, q_lora_rank=None, n_shared_experts=2, v_head_dim=12)),
    # encoders beyond BERT
    ("roberta", "RobertaForMaskedLM", dict(SMALL, max_position_embeddings=34)),
    ("roberta", "RobertaModel", dict(SMALL, max_position_embeddings=34)),
    ("roberta", "RobertaForSequenceClassification", dict(SMALL, max_position_embeddings=34, num_labels=3)),
    ("xlm-roberta", "XLMRobertaForMaskedLM", dict(SMALL, max_position_embeddings=34, type_vocab_size=1)),
    ("distilbert", "DistilBertForMaskedLM", DISTIL_SMALL),
    ("distilbert", "DistilBertForMaskedLM", dict(DISTIL_SMALL, dropout=0.0, attention_dropout=0.0)),
    ("distilbert", "DistilBertModel", DISTIL_SMALL),
    ("distilbert", "DistilBertForSequenceClassification", dict(DISTIL_SMALL, num_labels=4)),
    ("distilbert", "DistilBertForQuestionAnswering", DISTIL_SMALL),
    ("electra", "ElectraForPreTraining", dict(ELECTRA_SMALL)),
    ("electra", "ElectraForPreTraining", dict(ELECTRA_SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)),
    ("electra", "ElectraForMaskedLM", dict(ELECTRA_SMALL)),
    ("electra", "ElectraForMaskedLM", dict(ELECTRA_SMALL, embedding_size=64)),
    ("electra", "ElectraModel", dict(ELECTRA_SMALL)),
    ("electra", "ElectraForSequenceClassification", dict(ELECTRA_SMALL, num_labels=3)),
    ("mt5", "MT5ForConditionalGeneration", dict(vocab_size=101, d_model=64, d_kv=16, d_ff=96, num_layers=2, num_heads=4,
                                                tie_word_embeddings=False)),
    # decoders: parallel blocks, biased heads, other norms
    ("phi", "PhiForCausalLM", {}),
    ("phi", "PhiForCausalLM", dict(qk_layernorm=True, num_key_value_heads=2, partial_rotary_factor=0.4)),
    ("phi", "PhiForCausalLM", dict(resid_pdrop=0.1, embd_pdrop=0.1, attention_dropout=0.1)),
    ("gptj", "GPTJForCausalLM", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, rotary_dim=8)),
    ("gptj", "GPTJForCausalLM", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, rotary_dim=8, n_inner=80,
                                     resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1)),
    ("gpt_neo", "GPTNeoForCausalLM", dict(NEO_SMALL)),
    ("gpt_neo", "GPTNeoForCausalLM", dict(NEO_SMALL, intermediate_size=80, resid_dropout=0.1, embed_dropout=0.1,
                                          attention_dropout=0.1)),
    ("starcoder2", "Starcoder2ForCausalLM", dict(num_key_value_heads=2)),
    ("starcoder2", "Starcoder2ForCausalLM", dict(num_key_value_heads=2, use_bias=False, sliding_window=4,
                                                 residual_dropout=0.1, embedding_dropout=0.1, attention_dropout=0.1)),
    ("gemma3_text", "Gemma3ForCausalLM", dict(num_key_value_heads=2, head_dim=32, sliding_window=4, num_hidden_layers=7)),
    ("olmo", "OlmoForCausalLM", dict(num_key_value_heads=2)),
    ("olmo2", "Olmo2ForCausalLM", dict(num_key_value_heads=2)),
    ("granite", "GraniteForCausalLM", dict(num_key_value_heads=2, embedding_multiplier=12.0, residual_multiplier=0.22,
                                           logits_scaling=8.0, attention_multiplier=0.0078)),
    ("falcon", "FalconForCausalLM", dict(SMALL, hidden_dropout=0.1, attention_dropout=0.1)),
    ("falcon", "FalconForCausalLM", dict(SMALL, hidden_dropout=0.1, attention_dropout=0.1, parallel_attn=False,
                                         multi_query=False)),
    ("falcon", "FalconForCausalLM", dict(SMALL, hidden_dropout=0.1, attention_dropout=0.1, alibi=True, multi_query=False)),
    ("gpt_bigcode", "GPTBigCodeForCausalLM", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, n_positions=32)),
    ("gpt_bigcode", "GPTBigCodeForCausalLM", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=101, n_positions=32,
                                                  multi_query=False, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)),
    ("mpt", "MptForCausalLM", dict(d_model=64, n_layers=2, n_heads=4, vocab_size=101)),
    ("mpt", "MptForCausalLM", dict(d_model=64, n_layers=2, n_heads=4, vocab_size=101, no_bias=False, expansion_ratio=2,
                                   tie_word_embeddings=False)),
    ("gpt_oss", "GptOssForCausalLM", dict(num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2, head_dim=16,
                                          sliding_window=4)),
    ("glm4_moe", "Glm4MoeForCausalLM", dict(num_key_value_heads=2, head_dim=16, moe_intermediate_size=40, n_routed_experts=4,
                                            num_experts_per_tok=2, pad_token_id=0)),
    ("glm4_moe", "Glm4MoeForCausalLM", dict(num_key_value_heads=2, head_dim=16, moe_intermediate_size=40, n_routed_experts=4,
                                            num_experts_per_tok=2, pad_token_id=0, use_qk_norm=True, attention_bias=True,
                                            n_shared_experts=2, first_k_dense_replace=0)),
    ("granitemoe", "GraniteMoeForCausalLM", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)),
    ("granitemoe", "GraniteMoeForCausalLM", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                                 attention_bias=True, tie_word_embeddings=True, embedding_multiplier=12.0)),
    ("olmoe", "OlmoeForCausalLM", dict(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2)),
    ("phimoe", "PhimoeForCausalLM", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)),
    ("phimoe", "PhimoeForCausalLM", dict(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                                         attention_bias=True, lm_head_bias=True, sliding_window=4)),
    ("ministral", "MinistralForCausalLM", dict(num_key_value_heads=2, head_dim=16, sliding_window=4,
                                               layer_types=["sliding_attention", "full_attention"])),
    ("smollm3", "SmolLM3ForCausalLM", dict(num_key_value_heads=2, pad_token_id=0, num_hidden_layers=4,
                                           use_sliding_window=True, sliding_window=4)),
    ("glm", "GlmForCausalLM", dict(num_key_value_heads=2, head_dim=16, pad_token_id=0)),
    ("glm4", "Glm4ForCausalLM", dict(num_key_value_heads=2, head_dim=16, pad_token_id=0)),
    ("cohere", "CohereForCausalLM", dict(num_key_value_heads=2)),
    ("cohere", "CohereForCausalLM", dict(num_key_value_heads=2, use_qk_norm=True)),
    ("nemotron", "NemotronForCausalLM", dict(num_key_value_heads=2)),
    ("stablelm", "StableLmForCausalLM", dict(num_key_value_heads=2)),
    ("stablelm", "StableLmForCausalLM", dict(num_key_value_heads=2, use_qkv_bias=True, qk_layernorm=True,
                                             use_parallel_residual=True, hidden_dropout=0.1)),
    # T5-family heads: encoder-only classes, classification and QA on the whole model
    ("mt5", "MT5EncoderModel", dict(T5_SMALL)),
    ("mt5", "MT5ForTokenClassification", dict(T5_SMALL, num_labels=3)),
    ("t5", "T5ForTokenClassification", dict(T5_SMALL, num_labels=3)),
    ("mt5", "MT5ForQuestionAnswering", dict(T5_SMALL)),
    # BART and mBART: learned positions per stack, post- and pre-norm
    ("bart", "BartForConditionalGeneration", dict(BART_SMALL)),
    ("bart", "BartForConditionalGeneration", dict(BART_SMALL, dropout=0.0, decoder_layers=3)),
    ("bart", "BartModel", dict(BART_SMALL)),
    ("bart", "BartForQuestionAnswering", dict(BART_SMALL)),
    ("mbart", "MBartForConditionalGeneration", dict(BART_SMALL)),
    ("pegasus", "PegasusForConditionalGeneration", dict(BART_SMALL, pad_token_id=0, decoder_start_token_id=0)),
    ("pegasus", "PegasusModel", dict(BART_SMALL, pad_token_id=0, decoder_start_token_id=0)),
    ("marian", "MarianMTModel", dict(BART_SMALL, pad_token_id=0, decoder_start_token_id=0)),
    ("marian", "MarianMTModel", dict(BART_SMALL, pad_token_id=0, decoder_start_token_id=0, dropout=0.0)),
    # fields a family's code ignores, and attribute_map aliases
    ("deepseek_v2", "DeepseekV2ForCausalLM", {**{k: v for k, v in MLA_SMALL.items() if k != "n_routed_experts"},
                                              "num_experts": 6, "q_lora_rank": None}),
    ("olmo", "OlmoForCausalLM", dict(mlp_bias=True)),
    ("olmo2", "Olmo2ForCausalLM", dict(mlp_bias=True)),
    # an encoder family's causal-LM class keeps its MLM head
    ("bert", "BertLMHeadModel", dict(SMALL, max_position_embeddings=32, is_decoder=True)),
    # ALBERT: factorised embeddings, layers shared across groups (counted once, run every step)
    ("albert", "AlbertForMaskedLM", dict(ALBERT_SMALL)),
    ("albert", "AlbertForMaskedLM", dict(ALBERT_SMALL, num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2,
                                         hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)),
    ("albert", "AlbertModel", dict(ALBERT_SMALL, num_hidden_layers=3, inner_group_num=2)),
    ("albert", "AlbertForSequenceClassification", dict(ALBERT_SMALL, num_hidden_layers=4, num_hidden_groups=2,
                                                       num_labels=3)),
    # DeBERTa-v2/v3: disentangled attention, shared or own position projections, v2's conv layer
    ("deberta-v2", "DebertaV2ForMaskedLM", dict(DEBERTA_SMALL)),
    ("deberta-v2", "DebertaV2ForMaskedLM", dict(DEBERTA_SMALL, legacy=False, hidden_dropout_prob=0.0,
                                                attention_probs_dropout_prob=0.0)),
    ("deberta-v2", "DebertaV2ForMaskedLM", dict(DEBERTA_SMALL, pos_att_type=["c2p"], share_att_key=False,
                                                norm_rel_ebd="none", position_buckets=-1, max_relative_positions=6,
                                                conv_kernel_size=3, position_biased_input=True, type_vocab_size=2)),
    ("deberta-v2", "DebertaV2ForMaskedLM", dict(DEBERTA_SMALL, share_att_key=False, relative_attention=False)),
    ("deberta-v2", "DebertaV2Model", dict(DEBERTA_SMALL, share_att_key=False)),
    ("deberta-v2", "DebertaV2ForSequenceClassification", dict(DEBERTA_SMALL, num_labels=3)),
    ("deberta-v2", "DebertaV2ForTokenClassification", dict(DEBERTA_SMALL, num_labels=5)),
]


def case_config(model_type: str, arch: str, overrides: dict) -> dict:
    base = {} if model_type in ("gpt2", "opt", "bloom", "t5", "mt5", "gptj", "gpt_neo", "distilbert", "gpt_bigcode",
                                "mpt", "bart", "mbart", "pegasus", "marian") else SMALL
    return {"model_type": model_type, "architectures": [arch], **base, **overrides}


def _id(case) -> str:
    return f"{case[1]}-{'-'.join(f'{k}={v}' for k, v in case[2].items() if k not in SMALL and k not in MOE_SMALL)}"


def test_every_supported_model_type_has_a_parity_case():
    # llama4_text has its own test below (transformers computes every expert on every token);
    # vit reads pixels, not token ids: tests/test_vit.py; state-space models: tests/test_ssm.py
    # (FlopCounterMode over-counts their depthwise conv's weight gradient); Whisper reads mel frames
    # and Jamba's Mamba layers share that over-count: tests/test_whisper_jamba.py; CLIP and LLaVA
    # read images (and LLaVA's image tokens): tests/test_clip_llava.py
    assert {c[0] for c in CASES} | {"llama4_text", "vit"} | {c[0] for c in SSM_CASES} \
        | {c[0] for c in WHISPER_JAMBA_CASES} | CLIP_LLAVA_TYPES == set(FAMILIES)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_count_equals_transformers_instantiation(case):
    cfg = case_config(*case)
    ours = sum(build(from_config(cfg)).params().values())
    assert ours == hf_params(cfg)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_flops_equal_flop_counter_on_transformers_eager(case):
    cfg = case_config(*case)
    net = build(from_config(cfg))
    seq, batch = 12, 2
    forward, backward = hf_flops(cfg, seq, batch, device="cpu")
    ours = sum(net.flops(Pass(batch, seq, "dense")).values())
    assert ours == forward
    assert 2 * ours == backward


@pytest.mark.parametrize("model_type,arch,small", [("t5", "T5ForSequenceClassification", T5_SMALL),
                                                   ("mt5", "MT5ForSequenceClassification", T5_SMALL),
                                                   ("bart", "BartForSequenceClassification", BART_SMALL)])
def test_encoder_decoder_sequence_classification_counts_the_whole_model_and_its_head(model_type, arch, small):
    # (its forward needs an <eos> in every example, so it has no FLOPs case)
    cfg = {"model_type": model_type, "architectures": [arch], **small, "num_labels": 3}
    assert sum(build(from_config(cfg)).params().values()) == hf_params(cfg)


@pytest.mark.parametrize("step,layers", [(1, 2), (2, 4)])
def test_llama4_counts_exactly_and_its_flops_route_top_k(step, layers):
    """Parameters equal transformers'; transformers' Llama4TextMoe runs all E
    experts on every token (the unrouted ones zero-weighted), so FlopCounterMode
    counts exactly E - k experts' SwiGLU matmuls more per MoE layer than the
    routed model paramcalc counts."""
    E, k, f, h, seq, batch = 4, 1, 40, 64, 12, 2
    cfg = {"model_type": "llama4_text", "architectures": ["Llama4ForCausalLM"], **SMALL, "num_key_value_heads": 2,
           "head_dim": 16, "intermediate_size": f, "intermediate_size_mlp": 96, "num_local_experts": E,
           "num_experts_per_tok": k, "interleave_moe_layer_step": step, "num_hidden_layers": layers}
    net = build(from_config(cfg))
    assert sum(net.params().values()) == hf_params(cfg)
    forward, _ = hf_flops(cfg, seq, batch, device="cpu")
    moe_layers = layers // step
    unrouted = moe_layers * (E - k) * 3 * 2 * batch * seq * h * f
    assert forward - sum(net.flops(Pass(batch, seq, "dense")).values()) == unrouted


@pytest.mark.parametrize("name", [k for k in EXPECTED if not k.startswith("_")])
def test_reference_configs_match_published_counts_and_flops(name):
    exp = EXPECTED[name]
    net = build(from_config(json.loads((DATA / f"{name}.json").read_text())))
    assert sum(net.params().values()) == exp["total_params"]
    if "forward_matmul_flops" in exp:
        forward = sum(net.flops(Pass(exp["batch"], exp["seq_len"], "dense")).values())
        assert forward == exp["forward_matmul_flops"]
        assert 2 * forward == exp["backward_matmul_flops"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama-2-7b", "gpt2", "bert-base-uncased", "t5-base", "mixtral-8x7b"])
def test_reference_configs_equal_transformers_at_full_size(name):
    cfg = json.loads((DATA / f"{name}.json").read_text())
    assert sum(build(from_config(cfg)).params().values()) == hf_params(cfg)
