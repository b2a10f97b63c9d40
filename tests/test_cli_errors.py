"""Bad input exits 2 with one clear message naming the file, line or field,
never a traceback (CONTRACT.md, exit codes)."""

from __future__ import annotations

import pytest

from cli import assert_user_error, run


def test_missing_file(tmp_path):
    assert_user_error(run("count", tmp_path / "nope.json"), "nope.json", "no such file")


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "model_type": "llama",\n  "hidden_size": 4096,,\n}')
    assert_user_error(run("count", path), "config.json:3:")


def test_yaml_python_tags_are_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"vocab_size: !!python/object/apply:os.system ['touch {marker}']\n")
    assert_user_error(run("count", path), "evil.yaml:1:", "tag")
    assert not marker.exists()


def test_yaml_typo_names_the_field_and_its_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("vocab_size: 100\nhidden_size: 64\nintermediate_size: 128\nnum_hidden_layers: 2\n"
                    "num_attention_heads: 4\nnum_kv_heads: 2\n")
    assert_user_error(run("count", path), "spec.yaml:6:", "num_kv_heads")


def test_heads_that_do_not_divide_the_hidden_size(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("vocab_size: 100\nhidden_size: 100\nintermediate_size: 128\nnum_hidden_layers: 2\n"
                    "num_attention_heads: 3\n")
    assert_user_error(run("count", path), "does not divide hidden_size")


def test_kv_heads_that_do_not_divide_the_heads(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_attention_heads": 32, '
                    '"num_key_value_heads": 5}')
    assert_user_error(run("count", path), "num_key_value_heads (5) does not divide")


@pytest.mark.parametrize("text", ["[]", "null", "3"])
def test_a_top_level_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    assert_user_error(run("count", path), "not a mapping")


def test_unknown_model_type_lists_the_supported_ones(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama9", "architectures": ["Llama9ForCausalLM"]}')
    assert_user_error(run("count", path), "llama9", "supported:", "qwen3_moe", "deepseek_v3")


def test_a_multimodal_wrapper_points_at_its_text_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], '
                    '"text_config": {"model_type": "gemma3_text"}, "vision_config": {}}')
    assert_user_error(run("count", path), "config.json: model_type:", "'gemma3_text' language model",
                      "save the 'text_config' object as its own config.json")


def test_an_untied_bart_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "bart", "architectures": ["BartForConditionalGeneration"], '
                    '"tie_word_embeddings": false}')
    assert_user_error(run("count", path), "config.json: tie_word_embeddings:", "a token table of their own")


def test_unknown_preset_suggests_the_closest_name():
    assert_user_error(run("count", "llama-3.1-40b"), "did you mean", "llama-3.1-405b")


def test_negative_and_zero_sizes_name_the_field(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("vocab_size: 100\nhidden_size: -64\nintermediate_size: 128\nnum_hidden_layers: 2\n"
                    "num_attention_heads: 4\n")
    assert_user_error(run("count", path), "hidden_size", "spec.yaml:2:")


@pytest.mark.parametrize("flag,value", [("--seq-len", "0"), ("--batch", "-1"), ("--seq-len", "abc")])
def test_non_positive_shapes(flag, value):
    assert_user_error(run("flops", "gpt2", flag, value), flag)
