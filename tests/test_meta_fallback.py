"""A config.json whose model_type paramcalc has no importer for (CodeGen here)
is counted by transformers on the meta device: the count is the instantiated
module's, and forward FLOPs come from FlopCounterMode, both checked by hand."""

from __future__ import annotations

import json
import sys

import pytest
from cli import assert_user_error, run, run_process

from paramcalc.inputs.hf import FAMILIES

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# CodeGen: hidden 64, 4 heads, 2 layers, vocabulary 1000, rotary on 8 dims of each head
CODEGEN = {"model_type": "codegen", "architectures": ["CodeGenForCausalLM"], "n_layer": 2, "n_embd": 64, "n_head": 4,
           "vocab_size": 1000, "n_positions": 128, "rotary_dim": 8, "bos_token_id": 1, "eos_token_id": 2}
h, V = 64, 1000
# wte; per layer ln_1 (weight, bias), qkv_proj and out_proj (no bias), fc_in and fc_out (4h, biased);
# ln_f; lm_head (biased)
LAYER = 2 * h + h * 3 * h + h * h + (h * 4 * h + 4 * h) + (4 * h * h + h)
CODEGEN_PARAMS = V * h + 2 * LAYER + 2 * h + (h * V + V)


@pytest.fixture
def codegen(tmp_path):
    path = tmp_path / "codegen" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(CODEGEN))
    return path


def test_codegen_has_no_analytic_importer():
    assert "codegen" not in FAMILIES and "codegen" in transformers.models.auto.configuration_auto.CONFIG_MAPPING


def test_the_count_is_the_instantiated_module_and_the_hand_sum(codegen):
    config = transformers.CodeGenConfig(**{k: v for k, v in CODEGEN.items() if k not in ("model_type",
                                                                                         "architectures")})
    with torch.device("meta"):
        model = transformers.CodeGenForCausalLM(config)
    r = run("count", codegen, "--json")
    assert r.code == 0, r.err
    p = r.json["params"]
    assert p["total"] == sum(t.numel() for t in model.parameters()) == CODEGEN_PARAMS == 228_328
    assert (p["embedding"], p["non_embedding"], p["active"]) == (V * h, CODEGEN_PARAMS - V * h, None)
    assert r.json["model"] == "codegen"
    assert any("no analytic importer" in n and "CodeGenForCausalLM on the meta device" in n for n in r.json["notes"])


def test_forward_flops_are_measured_and_match_the_matmuls_by_hand(codegen):
    T = 16
    per_layer = 2 * T * (h * 3 * h + h * h + h * 4 * h + 4 * h * h) + 2 * (2 * T * T * h)  # projections, QK^T and AV
    forward = 2 * per_layer + 2 * T * h * V  # + the LM head
    r = run("flops", codegen, "--seq-len", str(T), "--json")
    assert r.code == 0, r.err
    f = r.json["flops"]
    assert f["forward"] == forward == 5_324_800
    assert (f["backward"], f["train_step"], f["six_n"]) == (2 * forward, 3 * forward, 6 * CODEGEN_PARAMS * T)
    assert any("FlopCounterMode" in n for n in r.json["notes"])


def test_cost_uses_the_measured_flops(codegen):
    r = run("cost", codegen, "--tokens", "16000", "--gpu", "h100-sxm", "--seq-len", "16", "--json")
    assert r.code == 0, r.err
    assert r.json["cost"]["training_flops"] == 3 * 5_324_800 * 1000


def test_memory_works_without_activations(codegen):
    r = run("memory", codegen, "--json")
    assert r.code == 0, r.err
    assert r.json["memory"]["activations"] is None


def test_a_forward_that_needs_more_than_input_ids_reports_no_flops(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({
        "model_type": "blenderbot-small", "architectures": ["BlenderbotSmallForConditionalGeneration"], "d_model": 32,
        "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "vocab_size": 500, "max_position_embeddings": 64}))
    r = run("flops", path, "--seq-len", "16", "--json")
    assert r.code == 0, r.err
    assert r.json["flops"]["forward"] is None and r.json["flops"]["six_n"] > 0
    assert any("FLOPs unknown" in n for n in r.json["notes"])


def test_without_transformers_the_message_names_the_extra(codegen, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert_user_error(run("count", codegen), "model_type:", "'codegen' has no analytic importer",
                      "pip install 'paramcalc[torch]' transformers")


def test_a_config_transformers_refuses_is_a_user_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CODEGEN | {"n_embd": 65}))  # 65 is not divisible by 4 heads
    r = run("count", path)
    assert r.code == 2, (r.out, r.err)
    assert "Traceback" not in r.err and str(path) in r.err


def test_counting_a_supported_model_imports_no_torch(codegen):
    code = ("import sys; from paramcalc import count_params; count_params('llama-3.1-8b'); "
            "print(sorted(m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert run_process("count", "llama-3.1-8b").code == 0
