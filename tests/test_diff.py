"""`paramcalc diff A B`: two models side by side, each figure equal to what
the single-model commands print."""

from __future__ import annotations

from cli import run

GPT2, LLAMA_8B = 124_439_808, 8_030_261_248


def rows(doc: dict) -> dict:
    return {row["metric"]: row for row in doc["rows"]}


def test_diff_json_has_both_counts_the_delta_and_the_percentage():
    r = run("diff", "gpt2", "llama-3.1-8b", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert (doc["schema_version"], doc["command"], doc["a"], doc["b"]) == (1, "diff", "gpt2", "llama-3.1-8b")
    total = rows(doc)["params.total"]
    assert (total["a"], total["b"], total["delta"]) == (GPT2, LLAMA_8B, LLAMA_8B - GPT2)
    assert total["percent"] == 100 * (LLAMA_8B - GPT2) / GPT2
    assert rows(doc)["params.embedding"]["b"] == 128256 * 4096


def test_diff_runs_both_at_the_smaller_default_sequence_length():
    assert run("diff", "gpt2", "llama-3.1-8b", "--json").json["seq_len"] == 1024  # GPT-2's learned positions


def test_kv_cache_per_token_is_k_and_v_of_every_layer_in_bf16():
    kv = rows(run("diff", "gpt2", "llama-3.1-8b", "--json").json)["kv_cache.per_token"]
    assert kv["a"] == 2 * 12 * 12 * 64 * 2  # GPT-2: 12 layers x 12 heads x 64 dims
    assert kv["b"] == 2 * 32 * 8 * 128 * 2  # Llama 3.1 8B: 32 layers x 8 KV heads x 128 dims


def test_flops_and_memory_match_the_flops_and_memory_commands():
    got = rows(run("diff", "gpt2", "qwen2.5-7b", "--seq-len", "512", "--json").json)
    for target, side in (("gpt2", "a"), ("qwen2.5-7b", "b")):
        flops = run("flops", target, "--seq-len", "512", "--json").json["flops"]
        memory = run("memory", target, "--seq-len", "512", "--json").json["memory"]
        assert got["flops.forward_per_token"][side] == flops["forward_per_token"]
        assert got["memory.train_per_gpu"][side] == memory["total_per_gpu"]


def test_a_model_against_itself_has_zero_deltas():
    doc = run("diff", "gpt2", "gpt2", "--json").json
    assert all(row["delta"] == 0 and row["percent"] == 0 for row in doc["rows"] if row["a"] is not None)


def test_a_bare_count_leaves_architecture_figures_unknown():
    doc = run("diff", "gpt2", "7B", "--json").json
    assert rows(doc)["params.total"]["delta"] == 7_000_000_000 - GPT2
    assert rows(doc)["params.embedding"] == {**rows(doc)["params.embedding"], "b": None, "delta": None,
                                             "percent": None}


def test_diff_table_names_both_models():
    r = run("diff", "gpt2", "llama-3.1-8b")
    assert r.code == 0
    assert "gpt2" in r.out and "llama-3.1-8b" in r.out and "KV cache" in r.out and "%" in r.out


def test_diff_of_an_unknown_target_exits_2():
    r = run("diff", "gpt2", "llama-3.1-8c")
    assert r.code == 2 and "did you mean" in r.err and "Traceback" not in r.err
