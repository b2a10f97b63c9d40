"""`paramcalc checkpoint`: bytes on disk of weights-only exports, resumable
checkpoints, ZeRO/FSDP shards and K kept checkpoints, as exact integers."""

from __future__ import annotations

import pytest
from cli import run

from paramcalc.analysis.checkpoint import checkpoint_sizes
from paramcalc.analysis.memory import estimate_memory
from paramcalc.errors import UserError

N_8B = 8_030_261_248  # llama-3.1-8b, meta-llama/Llama-3.1-8B config.json (count pinned in test_presets)
N_BLOOM = 176_247_271_424  # bigscience/bloom


def test_llama_3_1_8b_weights_in_bf16_are_two_bytes_per_parameter():
    assert checkpoint_sizes("llama-3.1-8b").checkpoint.weights == 2 * N_8B == 16_060_522_496


def test_mixed_precision_adam_resumes_from_14_bytes_per_parameter():
    # Rajbhandari et al. 2020 (ZeRO, arXiv:1910.02054) sec. 3.1: mixed-precision Adam keeps 2 (fp16 weights)
    # + 2 (fp16 gradients) + 12 (fp32 weights, momentum, variance) bytes; gradients are not checkpointed.
    report = checkpoint_sizes("llama-3.1-8b", dtype="bf16", precision="mixed", optimizer="adamw")
    c = report.checkpoint
    assert (c.training_weights, c.master_weights, c.optimizer_state) == (2 * N_8B, 4 * N_8B, 8 * N_8B)
    assert c.resumable == 14 * N_8B == 112_423_657_472
    assert report.bytes_per_param == 14


@pytest.mark.parametrize("precision, optimizer, per_param", [
    ("fp32", "adamw", 12),  # fp32 weights + momentum + variance, no master copy
    ("amp", "adamw", 12),  # fp32 weights (FSDP's sharded fp32 params with bf16 compute store the same)
    ("megatron", "adam", 14),  # fp32 main gradients are not saved: as mixed on disk
    ("mixed", "adam-8bit", 8),  # 2 + 4 + 2 (Dettmers et al. 2022)
    ("mixed", "sgd", 6),
    ("fp32", "sgd-momentum", 8),
    ("mixed", "lion", 10),
])
def test_bytes_per_parameter_follow_the_precision_and_optimizer_tables(precision, optimizer, per_param):
    c = checkpoint_sizes("7B", precision=precision, optimizer=optimizer).checkpoint
    assert c.resumable == per_param * 7 * 10**9


@pytest.mark.parametrize("precision, optimizer", [("mixed", "adamw"), ("fp32", "adamw"), ("megatron", "adam"),
                                                  ("mixed", "adafactor")])
def test_resumable_is_the_memory_model_states_less_the_gradients(precision, optimizer):
    m = estimate_memory("gpt2", mode="train", precision=precision, optimizer=optimizer, seq_len=8).memory
    c = checkpoint_sizes("gpt2", precision=precision, optimizer=optimizer).checkpoint
    assert c.resumable == m.weights + m.optimizer == m.model_states_per_gpu - m.gradients


def test_bloom_sizes_match_what_bigscience_reported():
    # BigScience's BLOOM training page (bigscience.notion.site, "BigScience 176B Model"): "only the bf16 weights
    # are 329GB, the full checkpoint with optimizer states is 2.3TB" (binary units, as `du -h` prints).
    # Tolerance 5%: the page rounds, and Megatron-DeepSpeed adds padding and RNG/scheduler state.
    c = checkpoint_sizes("bloom-176b").checkpoint
    assert c.weights == 2 * N_BLOOM and abs(c.weights / 2**30 / 329 - 1) < 0.05
    assert c.resumable == 14 * N_BLOOM and abs(c.resumable / 2**40 / 2.3 - 1) < 0.05


def test_zero_1_and_2_shard_master_and_optimizer_state_while_rank_0_writes_the_weights():
    for stage in (1, 2):
        c = checkpoint_sizes("llama-3.1-8b", zero=stage, dp=8).checkpoint
        assert c.per_other_rank == 12 * N_8B // 8
        assert c.per_rank == 2 * N_8B + 12 * N_8B // 8
        assert c.per_rank + 7 * c.per_other_rank == c.resumable


def test_zero_3_shards_everything_evenly():
    c = checkpoint_sizes("llama-3.1-8b", zero=3, dp=8).checkpoint
    assert c.per_rank == c.per_other_rank == 14 * N_8B // 8
    assert 8 * c.per_rank == c.resumable


def test_shards_round_up_so_no_byte_is_lost():
    c = checkpoint_sizes("1000003", zero=3, dp=7).checkpoint
    assert 7 * c.per_rank >= c.resumable > 7 * (c.per_rank - 2)


def test_without_zero_rank_0_writes_the_whole_checkpoint_and_the_replicas_nothing():
    c = checkpoint_sizes("llama-3.1-8b", zero=0, dp=64).checkpoint
    assert (c.per_rank, c.per_other_rank) == (c.resumable, 0)


def test_keeping_k_checkpoints_takes_k_times_the_disk_and_one_more_while_rotating():
    c = checkpoint_sizes("llama-3.1-8b", keep=5).checkpoint
    assert c.kept == 5 * 14 * N_8B and c.rotation_peak == 6 * 14 * N_8B


def test_int4_weights_carry_a_16_bit_scale_per_128_weights():
    report = checkpoint_sizes("7B", dtype="int4", train_dtype="bf16")
    assert report.checkpoint.weights == 3_500_000_000 + 2 * 54_687_500  # 7e9 / 2 bytes + 2 bytes x 7e9 / 128 groups
    assert report.checkpoint.resumable == 14 * 7 * 10**9 and report.train_dtype == "bf16"


def test_fp32_weights_default_to_the_fp32_recipe_as_memory_does():
    report = checkpoint_sizes("7B", dtype="fp32")
    assert report.precision == "fp32" and report.checkpoint.resumable == 12 * 7 * 10**9


def test_json_has_exact_integers_and_the_schema_version():
    r = run("checkpoint", "llama-3.1-8b", "--zero", "3", "--dp", "8", "--keep", "2", "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert (doc["schema_version"], doc["command"], doc["params"]) == (1, "checkpoint", N_8B)
    assert all(type(v) is int for v in doc["checkpoint"].values())
    assert doc["checkpoint"]["resumable"] == 14 * N_8B and doc["checkpoint"]["kept"] == 28 * N_8B


def test_the_table_shows_bytes_and_gib():
    r = run("checkpoint", "llama-3.1-8b")
    assert r.code == 0, r.err
    assert "112,423,657,472" in r.out and "104.70 GiB" in r.out and "14.96 GiB" in r.out


@pytest.mark.parametrize("args, fragment", [
    (("7B", "--zero", "4"), "--zero"), (("7B", "--dp", "0"), "--dp"), (("7B", "--keep", "0"), "--keep"),
    (("7B", "--optimizer", "adamax"), "--optimizer"), (("7B", "--dtype", "fp32", "--precision", "mixed"), "16-bit"),
    (("7B", "--dtype", "int4"), "--train-dtype"), (("7B", "--dtype", "fp7"), "--dtype"),
    (("7B", "--optimizer", "adafactor"), "bare count"), (("nonsense-model",), "not a file"),
])
def test_bad_input_exits_2_with_a_clear_message(args, fragment):
    r = run("checkpoint", *args)
    assert r.code == 2, (r.out, r.err)
    assert fragment in r.err and "Traceback" not in r.err


def test_the_library_raises_user_errors():
    with pytest.raises(UserError, match="ZeRO stage"):
        checkpoint_sizes("7B", zero="1.5")
