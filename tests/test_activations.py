"""Activation memory against what autograd really saves in transformers'
eager training forward with the loss (docs/contract.md's definition, measured with
saved_tensors_hooks on the meta device in bf16): every supported dense
model_type within 2% at small sizes (the contract allows 10%); MoE within the
contract's 10% (transformers' DeepSeek-V3 router keeps a few kB more or less
depending on which models ran before it in the same process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_reference import hf_saved_bytes
from paramcalc.inputs.hf import from_config
from paramcalc.analysis.memory import estimate_memory
from test_hf_parity import CASES, case_config

DATA = Path(__file__).parent / "data" / "hf-configs"
# DeepSeek-V2's complex-number rotary keeps fp32 copies of q_pe and k_pe that are not modelled (errs low, 4-8%).
MOE = {"mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3", "deepseek_v2", "gpt_oss", "glm4_moe", "olmoe", "granitemoe"}
# Language-modelling heads; classification/QA heads' inputs and losses are a few T x h bytes, not modelled.
# PhiMoE's sparsemixer router samples while training, so on the meta reference the tokens each expert
# gets, and the bytes kept, change from run to run (its count and FLOPs are exact in test_hf_parity.py).
TRAINABLE = [c for c in CASES if not c[1].endswith(("Model", "ForSequenceClassification", "ForTokenClassification",
                                                     "ForQuestionAnswering")) and c[0] != "phimoe"]


def predicted(cfg: dict, seq: int, batch: int) -> int:
    return estimate_memory(from_config(cfg), mode="train", seq_len=seq, batch=batch, dtype="bf16",
                           attention="eager", recompute="none").memory.activations


@pytest.mark.parametrize("seq,batch", [(16, 1), (12, 2)])
@pytest.mark.parametrize("case", TRAINABLE, ids=lambda c: f"{c[1]}-{len(c[2])}")
def test_saved_bytes_match_transformers_eager(case, seq, batch):
    cfg = case_config(*case)
    measured = hf_saved_bytes(cfg, seq, batch)
    tolerance = 0.10 if case[0] in MOE else 0.02
    assert predicted(cfg, seq, batch) == pytest.approx(measured, rel=tolerance)


def test_llama_2_7b_matches_the_published_measurement_to_the_byte():
    # expected.json: 38,314,483,724 bytes at seq 2048, batch 1 (transformers 5.24.0, meta, bf16).
    want = json.loads((DATA / "expected.json").read_text())["llama-2-7b"]["train_activation_bytes_bf16_eager"]
    assert predicted(json.loads((DATA / "llama-2-7b.json").read_text()), 2048, 1) == want


@pytest.mark.slow
@pytest.mark.parametrize("name,seq", [("gpt2", 1024), ("bert-base-uncased", 512), ("t5-base", 512),
                                      ("qwen2.5-14b", 1024)])
def test_full_size_reference_configs_within_two_percent(name, seq):
    cfg = json.loads((DATA / f"{name}.json").read_text())
    assert predicted(cfg, seq, 1) == pytest.approx(hf_saved_bytes(cfg, seq, 1), rel=0.02)


def test_korthikanti_sbh_34_5as_h_is_low_for_llama_style_models():
    """The field's formula (Korthikanti et al. 2022, eq. 2: s*b*h*(34 + 5*a*s/h)
    per layer) predates SwiGLU and fp32 softmax: it is ~20% low for Llama 2 7B."""
    cfg = json.loads((DATA / "llama-2-7b.json").read_text())
    s, b, h, a, L = 2048, 1, 4096, 32, 32
    korthikanti = L * s * b * h * (34 + 5 * a * s / h)
    assert 0.70 < korthikanti / predicted(cfg, s, b) < 0.85
