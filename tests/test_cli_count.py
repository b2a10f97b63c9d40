"""`paramcalc count` and the TARGET forms of docs/contract.md, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import assert_user_error, run

DATA = Path(__file__).parent / "data" / "hf-configs"


def test_count_preset_json_has_the_contract_keys():
    r = run("count", "llama-3.1-405b", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert doc["schema_version"] == 1
    assert doc["params"]["total"] == 405_853_388_800
    assert doc["params"]["embedding"] == 128256 * 16384
    assert doc["params"]["active"] == 405_853_388_800


def test_count_table_shows_the_exact_total_and_the_breakdown():
    r = run("count", "llama-3.1-405b")
    assert r.code == 0
    assert "405,853,388,800" in r.out
    for component in ("embedding", "attention", "mlp", "norms", "head"):
        assert component in r.out


def test_count_moe_reports_active_parameters_per_token():
    doc = run("count", "mixtral-8x7b", "--json").json
    assert doc["params"]["total"] == 46_702_792_704
    assert doc["params"]["active"] == 12_879_925_248  # 2 of 8 experts: Mixtral paper's "12.9B active"


def test_count_accepts_a_config_json():
    assert run("count", DATA / "qwen2.5-14b.json", "--json").json["params"]["total"] == 14_770_033_664


def test_count_accepts_a_yaml_spec(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("vocab_size: 1000\nhidden_size: 64\nintermediate_size: 128\nnum_hidden_layers: 2\n"
                    "num_attention_heads: 4\nnum_key_value_heads: 2\n")
    # embed 64000 + head 64000 + 2 x (q 4096 + k,v 2 x 2048 + o 4096 + mlp 3 x 8192 + norms 128) + final norm 64
    assert run("count", spec, "--json").json["params"]["total"] == 64000 * 2 + 2 * (4096 * 2 + 2048 * 2 + 3 * 8192 + 128) + 64


@pytest.mark.parametrize("text,value", [("7.5B", 7_500_000_000), ("405e9", 405_000_000_000), ("1.3M", 1_300_000)])
def test_count_accepts_a_bare_count_with_unknown_architecture_fields_null(text, value):
    r = run("count", text, "--json")
    assert r.code == 0
    assert r.json["params"]["total"] == value
    assert r.json["params"]["embedding"] is None


def test_json_output_is_one_document_and_byte_identical_across_runs():
    a, b = run("count", "deepseek-v3", "--json"), run("count", "deepseek-v3", "--json")
    assert a.out == b.out and a.err == ""
    assert a.json["params"]["total"] == 671_026_419_200


def test_presets_lists_every_embedded_model_with_its_source():
    doc = run("presets", "--json").json
    names = {p["name"] for p in doc["presets"]}
    assert {"llama-2-7b", "llama-3.1-8b", "mistral-7b", "qwen2.5-7b", "llama-2-13b", "qwen2.5-14b", "orion-14b",
            "llama-3.1-405b", "mixtral-8x7b", "deepseek-v3", "gpt2", "bert-base-uncased", "t5-base"} <= names
    assert all(p["source"] and p["params"] for p in doc["presets"])


def test_the_root_still_sees_every_command():
    # `main` builds only the command it runs; the root's help and suggestions must not notice
    assert {"count", "bench-collectives", "sweep"} <= set(run("--help", "count").out.split())
    r = run("cont", "gpt2")
    assert r.code == 2 and "'count'" in r.err
    assert run("--debug", "count", "gpt2", "--json").json["params"]["total"] == 124_439_808


def test_a_folder_holding_a_config_json_is_a_target_named_after_the_folder(tmp_path):
    # a downloaded Hugging Face snapshot: Llama-3.1-8B/config.json
    folder = tmp_path / "Llama-3.1-8B"
    folder.mkdir()
    (folder / "config.json").write_text((DATA / "llama-3.1-8b.json").read_text())
    r = run("count", folder, "--json")
    assert r.code == 0, r.err
    assert (r.json["model"], r.json["params"]["total"]) == ("Llama-3.1-8B", 8_030_261_248)
    assert run("count", folder / "config.json", "--json").json["model"] == "Llama-3.1-8B"


def test_a_folder_without_a_config_json_says_so(tmp_path):
    assert_user_error(run("count", tmp_path), "has no config.json", "a folder holding one")
