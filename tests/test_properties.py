"""Property-based tests over the spec space (hypothesis): the analytic count
equals the instantiated network for any valid spec; bigger never costs less;
results round-trip through JSON."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramcalc.blocks.base import Pass
from paramcalc.analysis.cost import estimate_cost
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.network import lower as build
from paramcalc.results.count import CountReport
from paramcalc.results.flops import FlopsReport
from paramcalc.results.memory import MemoryReport
from paramcalc.inputs.spec import TransformerSpec

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def specs(draw, **fixed) -> TransformerSpec:
    kv = draw(st.sampled_from([1, 2, 4]))
    heads = kv * draw(st.sampled_from([1, 2, 3]))
    head_dim = draw(st.sampled_from([4, 8, 12]))
    explicit_head_dim = draw(st.booleans())
    hidden = heads * head_dim if not explicit_head_dim else draw(st.sampled_from([16, 24, 48]))
    arch = draw(st.sampled_from(["decoder", "decoder", "encoder", "encoder-decoder"]))
    fields = dict(
        architecture=arch, vocab_size=draw(st.integers(5, 300)), hidden_size=hidden,
        num_hidden_layers=draw(st.integers(1, 3)), num_attention_heads=heads,
        num_key_value_heads=kv if arch == "decoder" else None, head_dim=head_dim if explicit_head_dim else None,
        intermediate_size=draw(st.integers(1, 64)), mlp=draw(st.sampled_from(["gated", "plain"])),
        mlp_bias=draw(st.booleans()), qkv_bias=draw(st.booleans()), o_bias=draw(st.booleans()),
        qk_norm=draw(st.booleans()), qk_norm_over=draw(st.sampled_from(["head", "projection"])),
        norm=draw(st.sampled_from(["rmsnorm", "layernorm"])), norm_bias=draw(st.booleans()),
        layout=draw(st.sampled_from(["pre", "post", "sandwich", "parallel", "parallel-shared", "reordered"])),
        tie_word_embeddings=draw(st.booleans()), lm_head_bias=draw(st.booleans()), embedding_norm=draw(st.booleans()),
        position_embedding=draw(st.sampled_from(["rope", "learned", "alibi"])), max_position_embeddings=64,
        head=draw(st.sampled_from(["lm", "none"] + (["mlm", "pooler", "classifier"] if arch == "encoder" else []))),
    )
    if arch == "decoder" and draw(st.booleans()):
        experts = draw(st.integers(1, 4))
        fields["moe"] = dict(num_experts=experts, num_experts_per_tok=draw(st.integers(1, experts)),
                             moe_intermediate_size=draw(st.integers(1, 32)),
                             shared_expert_intermediate_size=draw(st.sampled_from([0, 16])),
                             shared_expert_gate=draw(st.booleans()), first_k_dense_replace=draw(st.integers(0, 1)))
    if arch == "encoder-decoder":
        fields.update(position_embedding="relative", num_decoder_layers=draw(st.integers(1, 3)))
    fields.update(fixed)
    return TransformerSpec.model_validate(fields)


@FAST
@given(specs())
def test_analytic_count_equals_the_instantiated_network(spec):
    net = build(spec)
    with torch.device("meta"):
        module = net.module()
    assert sum(p.numel() for p in module.parameters()) == sum(net.params().values())


@FAST
@given(specs(), st.integers(1, 3), st.integers(1, 40))
def test_more_layers_never_lower_params_flops_or_memory(spec, extra, seq):
    bigger = spec.model_copy(update={"num_hidden_layers": spec.num_hidden_layers + extra})
    small, large = build(spec), build(bigger)
    assert sum(large.params().values()) >= sum(small.params().values())
    p = Pass(2, seq)
    assert sum(large.flops(p).values()) >= sum(small.flops(p).values())
    a = estimate_memory(spec, seq_len=seq, batch=2).memory
    b = estimate_memory(bigger, seq_len=seq, batch=2).memory
    assert b.total_per_gpu >= a.total_per_gpu and b.activations >= a.activations


@FAST
@given(specs(position_embedding="rope"), st.integers(1, 200), st.integers(1, 200))
def test_longer_sequences_and_more_tokens_never_cost_less(spec, seq, more):
    assert count_flops(spec, seq_len=seq + more).flops.forward >= count_flops(spec, seq_len=seq).flops.forward
    assert estimate_memory(spec, seq_len=seq + more).memory.activations >= \
        estimate_memory(spec, seq_len=seq).memory.activations
    a = estimate_cost(spec, tokens=10**9, gpu="h100-sxm", seq_len=seq).cost.gpu_hours
    b = estimate_cost(spec, tokens=10**9 + more * 10**6, gpu="h100-sxm", seq_len=seq).cost.gpu_hours
    assert b >= a


@FAST
@given(specs(), st.integers(1, 32))
def test_causal_attention_never_counts_more_than_dense(spec, seq):
    dense = count_flops(spec, seq_len=seq, attention="dense").flops.forward
    assert count_flops(spec, seq_len=seq, attention="causal").flops.forward <= dense


@FAST
@given(specs(), st.integers(1, 32))
def test_json_output_round_trips_through_the_result_models(spec, seq):
    for report, model in ((count_params(spec), CountReport), (count_flops(spec, seq_len=seq), FlopsReport),
                          (estimate_memory(spec, seq_len=seq), MemoryReport)):
        text = report.model_dump_json()
        again = model.model_validate_json(text)
        assert again == report and again.model_dump_json() == text


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["llama", "qwen2", "qwen3", "gemma", "mistral", "phi3"]), st.sampled_from([1, 2, 4]),
       st.sampled_from([1, 2]), st.sampled_from([8, 16]), st.integers(1, 3), st.integers(8, 80), st.booleans())
def test_random_hf_configs_count_like_transformers(model_type, kv, group, head_dim, layers, ffn, tie):
    from hf_reference import hf_params
    from paramcalc.inputs.hf import from_config

    heads = kv * group
    cfg = {"model_type": model_type, "architectures": ["ForCausalLM"], "vocab_size": 97, "hidden_size": heads * head_dim,
           "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim, "num_hidden_layers": layers,
           "intermediate_size": ffn, "tie_word_embeddings": tie, "pad_token_id": 0, "bos_token_id": 1,
           "eos_token_id": 2}
    arch = {"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3", "gemma": "Gemma", "mistral": "Mistral",
            "phi3": "Phi3"}[model_type] + "ForCausalLM"
    cfg["architectures"] = [arch]
    assert sum(build(from_config(cfg)).params().values()) == hf_params(cfg)
