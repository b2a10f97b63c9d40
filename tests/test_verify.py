"""`paramcalc verify`: analytic parameters and FLOPs against real modules,
counted by sum(p.numel()), FlopCounterMode and fvcore, component by component.
Everything runs on the meta device, so even the largest presets take seconds."""

from __future__ import annotations

import json

import pytest

from cli import run
from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import count_flops
from paramcalc.torchref.verify import run_verify

PRESETS = ["gpt2", "llama-3.1-8b", "llama-3.1-405b", "qwen3-8b", "gemma-2-9b", "mistral-7b", "mixtral-8x7b",
           "bert-base-uncased", "t5-base", "bloom-176b", "orion-14b"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_component_of_the_preset_matches_its_modules(name):
    report = run_verify(name, seq_len=32)
    assert report.passed, [c for c in report.components if not c.exact]
    assert report.params.counted == count_params(name).params.total
    assert report.totals.analytic_forward == count_flops(name, seq_len=32).flops.forward
    for c in report.components:
        assert c.fvcore_forward == c.analytic_forward == c.flop_counter_forward  # fvcore's MACs, doubled
        assert c.flop_counter_backward == 2 * c.analytic_forward


def test_an_encoder_decoder_with_a_position_table_per_stack_verifies(tmp_path):
    # BART: the decoder's own positions and embedding norm are a stage of their own
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bart", "architectures": ["BartForConditionalGeneration"],
                                "vocab_size": 101, "d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
                                "encoder_ffn_dim": 96, "decoder_ffn_dim": 96, "encoder_attention_heads": 4,
                                "decoder_attention_heads": 4, "max_position_embeddings": 32}))
    report = run_verify(str(path), seq_len=16)
    assert report.passed, [c for c in report.components if not c.exact]
    assert report.params.counted == count_params(str(path)).params.total
    assert "decoder/embedding" in {c.stage for c in report.components}


def test_one_layer_per_kind_is_built_and_scaled_by_its_count():
    report = run_verify("gemma-2-9b", seq_len=16)
    layers = [c for c in report.components if c.kind == "layer"]
    assert len(layers) == 2  # sliding-window and global layers
    assert {c.instantiated for c in layers} == {1} and sum(c.count for c in layers) == 42


def test_more_layers_per_stage_chain_into_each_other():
    one, three = run_verify("llama-3.1-8b", seq_len=16), run_verify("llama-3.1-8b", seq_len=16, layers=3)
    layer = {c.kind: c for c in one.components}["layer"]
    layer3 = {c.kind: c for c in three.components}["layer"]
    assert layer3.instantiated == 3 and layer3.flop_counter_forward == 3 * layer.flop_counter_forward
    assert three.passed and three.totals == one.totals


def test_deepseek_v3_with_mla_and_256_experts_verifies_on_meta():
    report = run_verify("deepseek-v3", seq_len=16)
    assert report.passed
    assert report.params.counted == 671_026_419_200  # docs/contract.md's fixed meaning
    assert [c.stage for c in report.components if c.kind == "layer"] == ["layers (dense)", "layers (moe)"]


def test_a_wrong_formula_is_caught(monkeypatch):
    from paramcalc.blocks.mlp import MLP

    right = MLP.flops
    monkeypatch.setattr(MLP, "flops", lambda self, p: {**right(self, p), "extra": 2})
    report = run_verify("llama-3.1-8b", seq_len=16)
    layer = {c.kind: c for c in report.components}["layer"]
    assert not layer.exact and not report.passed and not report.totals.exact
    assert layer.analytic_forward - layer.flop_counter_forward == 2


def test_a_wrong_parameter_count_is_caught(monkeypatch):
    from paramcalc.blocks.norm import Norm

    right = Norm.params
    monkeypatch.setattr(Norm, "params", lambda self: {**right(self), "extra": 1})
    report = run_verify("gpt2", seq_len=16)
    assert not report.params.exact and not report.passed


def test_yaml_spec_target(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("vocab_size: 100\nhidden_size: 32\nintermediate_size: 64\nnum_hidden_layers: 3\n"
                    "num_attention_heads: 4\nnum_key_value_heads: 2\nqkv_bias: true\n")
    report = run_verify(str(path), seq_len=8, batch=2)
    assert report.passed and report.batch == 2


def test_json_is_one_document_and_human_output_has_the_verdicts():
    r = run("verify", "llama-3.1-405b", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["command"] == "verify" and doc["passed"] is True and doc["seq_len"] == 128
    assert doc["params"]["counted"] == doc["params"]["analytic"] == 405_853_388_800
    assert {c["stage"] for c in doc["components"]} == {"embedding", "layers", "final_norm", "head"}
    human = run("verify", "gpt2", "--seq-len", "16")
    assert human.code == 0 and "verified" in human.out and "fvcore" in human.out


@pytest.mark.parametrize("args,fragment", [(["7B"], "bare parameter count"), (["gpt2", "--seq-len", "4096"], "1024"),
                                           (["gpt2", "--layers", "0"], "--layers")])
def test_bad_verify_input_exits_2(args, fragment):
    r = run("verify", *args)
    assert r.code == 2 and fragment in r.err and "Traceback" not in r.err


def _preset(name: str):
    from paramcalc.catalog import preset_path

    if preset_path(name) is None:
        pytest.skip(f"no {name} preset")
    return name


def test_vit_counts_its_patch_projection_and_class_token_head():
    report = run_verify(_preset("vit-b-16"))
    assert report.passed and report.seq_len == 197  # (224/16)^2 patches + the class token
    embedding = report.components[0]
    assert embedding.flop_counter_backward == embedding.analytic_forward  # images need no gradient


def test_a_cnn_has_its_parameters_and_flops_checked_against_flop_counter_and_fvcore():
    report = run_verify(_preset("resnet-50"))
    assert report.params.exact and report.params.counted == 25_557_032
    assert report.passed and report.totals.exact and report.totals.counted_forward == 8_178_368_512
    for c in report.components:
        assert c.fvcore_forward == c.analytic_forward == c.flop_counter_forward
    assert report.components[0].flop_counter_backward == report.components[0].analytic_forward  # reads images


def test_verify_steps_real_torch_optimizers_and_matches_the_state_bytes():
    from paramcalc.torchref.verify import run_verify

    report = run_verify("qwen2.5-7b", seq_len=16)
    names = {o.optimizer: o for o in report.optimizer}
    assert set(names) == {"adamw", "adam", "sgd-momentum", "sgd"}
    assert all(o.exact for o in report.optimizer)
    assert names["adamw"].measured == 8 * names["adamw"].params  # fp32 momentum and variance
