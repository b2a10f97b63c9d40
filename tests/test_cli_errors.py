"""Bad input exits 2 with one clear message naming the file, line or field,
never a traceback (docs/contract.md, exit codes)."""

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


def test_a_multimodal_wrapper_without_transformers_points_at_its_text_config(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # with it, the meta fallback counts every tower
    path = tmp_path / "config.json"
    path.write_text('{"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], '
                    '"text_config": {"model_type": "gemma3_text"}, "vision_config": {}}')
    assert_user_error(run("count", path), "config.json: model_type:", "'gemma3_text' language model",
                      "pip install 'paramcalc[torch]' transformers",
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


# ---------------------------------------------------------------- what the redesign refuses (#14)

SPEC = "vocab_size: 100\nhidden_size: 64\nintermediate_size: 128\nnum_hidden_layers: 2\nnum_attention_heads: 4\n"


def test_a_bool_is_not_a_layer_count(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.replace("num_hidden_layers: 2", "num_hidden_layers: true"))
    assert_user_error(run("count", path), "spec.yaml:4:", "num_hidden_layers", "expected a number, got True")


def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + "hidden_size: 128\n")
    assert_user_error(run("count", path), "spec.yaml:6:", "'hidden_size' is written twice, at lines 2 and 6")


def test_a_byte_order_mark_is_read_as_editors_write_it(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC.encode())
    r = run("count", path, "--json")
    assert r.code == 0, r.err
    assert r.json["params"]["total"] == 100 * 64 * 2 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64


@pytest.mark.parametrize("args,fragments", [
    (["memory", "llama-3.1-8b", "--tp", "3"], ["--tp", "does not divide the 32 attention heads",
                                                "32 query heads, 8 K/V heads", "1, 2, 4, 8"]),
    (["memory", "llama-3.1-8b", "--tp", "16"], ["--tp", "8 K/V heads"]),
    (["cost", "llama-3.1-8b", "--gpu", "h100-sxm", "--tokens", "1e400"], ["--tokens", "'1e400' is too large"]),
    (["memory", "gpt2", "--seq-len", "4096"], ["--seq-len", "1024 learned positions"]),
    (["count", "gpt2", "--lora-targets", "q_proj"], ["--lora-targets", "give --lora-rank too"]),
    (["flops", "gpt2", "--attention", "ring"], ["--attention", "eager", "flash"]),
])
def test_errors_name_the_flag_that_gave_the_setting(args, fragments):
    assert_user_error(run(*args), *fragments)


def test_the_attention_aliases_of_the_contract_are_the_two_kernels():
    flops = {a: run("flops", "llama-3.1-8b", "--attention", a, "--json").json["flops"]["forward"]
             for a in ("eager", "dense", "flash", "causal", "sdpa")}
    assert flops["eager"] == flops["dense"] > flops["flash"] == flops["causal"] == flops["sdpa"]


def test_a_gpu_file_with_a_misspelt_key_is_refused(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("name: card\nmemory_bytes: 80GiB\nmemory_bandwidth: 2T\npeak_flops_dense: {bf16: 500T}\n"
                    "tdp_wats: 700\n")
    assert_user_error(run("cost", "7B", "--tokens", "1T", "--gpu", path), "card.yaml:5:", "tdp_wats",
                      "did you mean tdp_watts")


def test_a_bug_exits_3_with_one_line_and_debug_shows_the_traceback(monkeypatch):
    import paramcalc.analysis.count

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(paramcalc.analysis.count, "count_params", broken)
    r = run("count", "gpt2")
    assert r.code == 3 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    assert "internal error" in r.err and "not your input" in r.err and "--debug" in r.err
    with pytest.raises(ZeroDivisionError):
        run("count", "gpt2", "--debug")


def test_a_target_too_long_for_a_file_name_is_bad_input_not_a_crash():
    """The file system refuses names over 255 bytes (ENAMETOOLONG): exit 2, naming TARGET."""
    from cli import run_process

    r = run_process("count", "a" * 300, "--json")
    assert_user_error(r, "TARGET", "300 characters", "File name too long")
