"""`paramcalc size`: Llama-style architectures within a tolerance of a target
count, every count exact (the closed form is pinned to the built network)."""

from __future__ import annotations

import math
import random

import pytest
from cli import run

from paramcalc.analysis.count import count_params
from paramcalc.analysis.sizing import compute_optimal_params, llama_params, propose_architectures, shape_score
from paramcalc.results.size import Candidate
from paramcalc.errors import UserError
from paramcalc.network import lower as build
from paramcalc.inputs.spec import TransformerSpec
from paramcalc.inputs.target import load_spec


def candidate_spec(c: Candidate) -> TransformerSpec:
    """A candidate as a paramcalc spec (Llama-style defaults: gated SiLU MLP, RMSNorm, RoPE)."""
    return TransformerSpec(
        name=f"llama-style-{c.hidden_size}x{c.num_hidden_layers}", vocab_size=c.vocab_size,
        hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, num_key_value_heads=c.num_key_value_heads,
        head_dim=c.head_dim, intermediate_size=c.intermediate_size, mlp="gated", hidden_act="silu",
        norm="rmsnorm", tie_word_embeddings=c.tie_word_embeddings)


def built_count(c: Candidate) -> int:
    return sum(build(candidate_spec(c)).params().values())


def assert_constraints(c: Candidate, *, kv=(8, 4, 2, "mha")) -> None:
    """The rules the search promises, restated independently of it."""
    h, L, n, g, f, d = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
                        c.intermediate_size, c.head_dim)
    assert d in (64, 128)
    assert h % 128 == 0 and n * d == h
    assert n % g == 0 and (g in kv or ("mha" in kv and g == n))
    assert f % 256 == 0 and 2.5 * h <= f <= 4 * h
    assert 32 <= h / L <= 200


@pytest.mark.parametrize("h, L, d, g, f, V, tied", [
    (4096, 32, 128, 32, 11008, 32000, False),  # Llama-2-7B
    (4096, 32, 128, 8, 14336, 128256, False),  # Llama-3.1-8B
    (896, 24, 64, 2, 4864, 151936, True),  # Qwen2.5-0.5B's shape (tied)
    (128, 1, 128, 1, 256, 7, False),
    (384, 3, 64, 6, 1024, 1000, True),
])
def test_the_closed_form_equals_the_built_network_for_published_and_edge_shapes(h, L, d, g, f, V, tied):
    spec = TransformerSpec(vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=h // d,
                           num_key_value_heads=g, head_dim=d, intermediate_size=f, tie_word_embeddings=tied)
    assert llama_params(h, L, d, g, f, V, tied) == sum(build(spec).params().values())


def test_the_closed_form_equals_the_built_network_on_random_shapes():
    rng = random.Random(9)
    for _ in range(200):
        d = rng.choice((64, 128))
        h = d * rng.randint(1, 64)
        n = h // d
        g = rng.choice([k for k in range(1, n + 1) if n % k == 0])
        L, f, V, tied = rng.randint(1, 90), rng.randint(1, 80) * 64, rng.randint(1, 300_000), rng.random() < 0.5
        spec = TransformerSpec(vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=n,
                               num_key_value_heads=g, head_dim=d, intermediate_size=f, tie_word_embeddings=tied)
        assert llama_params(h, L, d, g, f, V, tied) == count_params(spec).params.total


def test_every_candidate_at_1b_counts_exactly_what_its_spec_builds_and_obeys_the_constraints():
    report = propose_architectures("1B", max_candidates=0)
    assert report.matches == len(report.candidates) > 100
    for c in report.candidates:
        assert c.params_total == built_count(c)
        assert abs(c.params_total - report.target) <= 0.02 * report.target
        assert_constraints(c)


@pytest.mark.parametrize("target, vocab, tied", [("7B", 128256, False), ("7e9", 32000, True), ("405B", 128256, False)])
def test_the_top_candidates_are_exact_within_tolerance_sorted_and_constrained(target, vocab, tied):
    report = propose_architectures(target, vocab_size=vocab, tied=tied, max_candidates=25)
    assert report.target == int(float(target.replace("B", "e9")))
    assert len(report.candidates) == 25 and report.matches >= 25
    ranks = [(c.score, abs(c.params_total - report.target)) for c in report.candidates]
    assert ranks == sorted(ranks)  # lowest score first, ties to the closest count
    for c in report.candidates:
        assert c.params_total == built_count(c)
        assert abs(c.params_total - report.target) <= 0.02 * report.target
        assert c.deviation == (c.params_total - report.target) / report.target
        assert c.vocab_size == vocab and c.tie_word_embeddings is tied
        assert_constraints(c)


def test_max_keeps_the_closest_prefix_of_the_full_ranking():
    full = propose_architectures("3B", max_candidates=0)
    top = propose_architectures("3B", max_candidates=7)
    assert top.candidates == full.candidates[:7] and top.matches == full.matches


def test_ties_in_count_go_to_eight_kv_heads_before_other_groupings():
    # 8 x 64 and 4 x 128 K/V widths count the same: 8 K/V heads ranks before the other grouping of that count
    report = propose_architectures("7B", max_candidates=0, vocab_size=32000)
    by_count = {}
    for c in report.candidates:
        by_count.setdefault(c.params_total, []).append(c)
    ties = [group for group in by_count.values()
            if len({c.hidden_size for c in group}) == 1 and len({c.num_hidden_layers for c in group}) == 1
            and len({c.intermediate_size for c in group}) == 1 and len(group) > 1
            and any(c.num_key_value_heads == 8 for c in group) and any(c.num_key_value_heads == 4 for c in group)]
    assert ties
    for group in ties:
        assert group[0].num_key_value_heads == 8


def test_llama_2_7b_is_proposed_for_6_74b_with_its_vocabulary_and_mha():
    # Touvron et al. 2023 (arXiv:2307.09288); meta-llama/Llama-2-7b-hf config.json: 6,738,415,616 parameters
    r = run("size", "--target", "6.74B", "--vocab", "32000", "--kv-heads", "8,mha", "--max", "0", "--json")
    assert r.code == 0, r.err
    shapes = [(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["num_key_value_heads"],
               c["intermediate_size"], c["params_total"]) for c in r.json["candidates"]]
    assert (4096, 32, 32, 32, 11008, 6_738_415_616) in shapes


@pytest.mark.parametrize("preset, kv", [("llama-2-7b", "mha"), ("llama-2-13b", "mha"), ("llama-2-70b", "8"),
                                        ("llama-3.1-8b", "8"), ("llama-3.1-70b", "8"), ("llama-3.1-405b", "8"),
                                        ("mistral-7b", "8")])
def test_published_llama_style_models_are_found_at_their_own_count(preset, kv):
    """The constraints admit the models they were drawn from, with deviation 0."""
    spec = load_spec(preset)
    report = propose_architectures(spec.expected_params, vocab_size=spec.vocab_size, tolerance=0, kv_heads=kv,
                                   max_candidates=0)
    shapes = {(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
               c.intermediate_size) for c in report.candidates}
    assert (spec.hidden_size, spec.num_hidden_layers, spec.num_attention_heads, spec.kv_heads,
            spec.intermediate_size) in shapes
    assert all(c.params_total == spec.expected_params and c.deviation == 0 for c in report.candidates)


def test_405b_from_the_command_line_gives_exact_integers_within_tolerance():
    r = run("size", "--target", "405B", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert (doc["schema_version"], doc["command"], doc["target"], doc["tolerance"]) == (1, "size", 405 * 10**9, 0.02)
    assert len(doc["candidates"]) == 10 and doc["matches"] > 10
    for c in doc["candidates"]:
        for key in ("params_total", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "intermediate_size", "head_dim", "vocab_size"):
            assert type(c[key]) is int
        assert abs(c["params_total"] - 405 * 10**9) <= 0.02 * 405 * 10**9


def test_kv_heads_restricts_the_groupings():
    report = propose_architectures("13B", kv_heads="8", max_candidates=0)
    assert report.candidates and {c.num_key_value_heads for c in report.candidates} == {8}


@pytest.mark.parametrize("args", [("--target", "7000000001", "--tolerance", "0"),  # counts are multiples of 128
                                  ("--target", "1000"),  # below the smallest model with Llama 3's vocabulary
                                  ("--target", "7B", "--tolerance", "1e-12", "--vocab", "32001")])
def test_an_unreachable_target_gives_an_empty_list_and_says_so(args):
    r = run("size", *args, "--json")
    assert r.code == 0, r.err
    assert r.json["candidates"] == [] and r.json["matches"] == 0
    table = run("size", *args)
    assert table.code == 0 and "no Llama-style architecture" in table.out


@pytest.mark.parametrize("args, fragment", [
    (("--target", "-7B"), "--target"), (("--target", "seven"), "--target"), (("--target", "7.5"), "--target"),
    (("--target", "0"), "--target"), (("--target", "7B", "--tolerance", "-0.1"), "--tolerance"),
    (("--target", "7B", "--tolerance", "1.5"), "--tolerance"), (("--target", "7B", "--vocab", "0"), "--vocab"),
    (("--target", "7B", "--max", "-1"), "--max"), (("--target", "7B", "--kv-heads", "eight"), "--kv-heads"),
    (("--target", "7B", "--flops", "1e23"), "exactly one"), ((), "exactly one"), (("--flops", "-1e23"), "--flops"),
])
def test_bad_input_exits_2_with_a_message_naming_the_flag(args, fragment):
    r = run("size", *args)
    assert r.code == 2, (r.out, r.err)
    assert fragment in r.err and "Traceback" not in r.err


def test_chinchillas_budget_gives_chinchillas_size_and_tokens():
    # Hoffmann et al. 2022 (arXiv:2203.15556): Chinchilla, 70B parameters on 1.4T tokens, used Gopher's
    # budget of 5.76e23 FLOPs; N = sqrt(C / 120) with C = 6 N D and D = 20 N. Tolerance 2% (the paper rounds).
    c, n, d = compute_optimal_params("5.76e23")
    assert (c, n, d) == (576 * 10**21, math.isqrt(576 * 10**21 // 120), 20 * math.isqrt(576 * 10**21 // 120))
    assert abs(n / 70e9 - 1) < 0.02 and abs(d / 1.4e12 - 1) < 0.02
    r = run("size", "--flops", "5.76e23", "--json")
    assert r.code == 0, r.err
    assert (r.json["flops"], r.json["target"], r.json["tokens"]) == (c, n, d)
    assert all(abs(x["params_total"] - n) <= 0.02 * n for x in r.json["candidates"])


def test_tying_the_head_removes_one_vocabulary_table():
    untied = propose_architectures("1B", max_candidates=0)
    tied = propose_architectures("1B", tied=True, max_candidates=0)
    shapes = {(c.hidden_size, c.num_hidden_layers, c.num_key_value_heads, c.head_dim, c.intermediate_size): c
              for c in untied.candidates}
    for c in tied.candidates:
        assert c.tie_word_embeddings and c.params_total == built_count(c)
        twin = shapes.get((c.hidden_size, c.num_hidden_layers, c.num_key_value_heads, c.head_dim,
                           c.intermediate_size))
        if twin is not None:
            assert twin.params_total - c.params_total == c.vocab_size * c.hidden_size


def test_the_library_refuses_both_or_neither_target_and_flops():
    for kw in ({}, {"target": "7B", "flops": "1e23"}):
        with pytest.raises(UserError, match="exactly one"):
            propose_architectures(**kw)


def test_table_output_shows_exact_counts_and_the_match_count():
    r = run("size", "--target", "7B", "--max", "3")
    assert r.code == 0, r.err
    report = propose_architectures("7B", max_candidates=3)
    assert f"{report.matches:,} matches" in r.out
    for c in report.candidates:
        assert f"{c.params_total:,}" in r.out


def test_no_architecture_is_listed_twice():
    report = propose_architectures("2B", max_candidates=0)
    keys = [(c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.intermediate_size)
            for c in report.candidates]
    assert len(keys) == len(set(keys)) == report.matches


# ---------------------------------------------------------------- the ranking by shape (issue #19)


@pytest.mark.parametrize("target", ["7B", "8B", "14B", "70B"])
def test_the_top_candidate_has_a_published_depth_to_width_ratio_and_every_one_is_within_tolerance(target):
    report = propose_architectures(target, max_candidates=0)
    top = report.candidates[0]
    # Llama 3.1 8B 4096/32 = 128, 70B 8192/80 = 102, Qwen2.5 14B 5120/48 = 107, Mistral 7B 128, 405B 130
    assert 100 <= top.hidden_size / top.num_hidden_layers <= 132
    assert 2.5 <= top.intermediate_size / top.hidden_size <= 4.0
    assert top.num_attention_heads % 8 == 0 and top.head_dim == 128 and top.hidden_size % 256 == 0
    assert all(abs(c.params_total - report.target) <= 0.02 * report.target for c in report.candidates)
    scores = [c.score for c in report.candidates]
    assert scores == sorted(scores)


def test_the_closest_count_is_no_longer_first_at_14b():
    report = propose_architectures("14B", max_candidates=0)
    closest = min(report.candidates, key=lambda c: abs(c.params_total - report.target))
    assert (closest.hidden_size, closest.num_hidden_layers) == (3584, 99)  # 0.0001% off, 99 layers
    assert (report.candidates[0].hidden_size, report.candidates[0].num_hidden_layers) != (3584, 99)
    assert report.candidates.index(closest) > 1000
    assert any("ranked by shape" in n and "Levine" in n for n in report.notes)


@pytest.mark.parametrize("preset", ["llama-3.1-8b", "llama-3.1-70b", "mistral-7b"])
def test_published_shapes_score_zero(preset):
    spec = load_spec(preset)
    assert shape_score(spec.hidden_size, spec.num_hidden_layers, spec.num_attention_heads, spec.kv_heads,
                       spec.intermediate_size, spec.hidden_size // spec.num_attention_heads) == 0
