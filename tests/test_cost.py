"""Training cost: GPU-hours = model FLOPs / (dense peak x MFU), checked against
published runs. Tolerance: 25% at MFU 0.40 (a published run's MFU is 0.3-0.45,
and its GPU-hours also hold restarts, evaluation and ablations, or not)."""

import pytest
from cli import run

from paramcalc.catalog import load_gpu, price
from paramcalc.analysis.cost import estimate_cost, implied_mfu
from paramcalc.errors import UserError

H100_BF16 = 989.4e12  # NVIDIA H100 SXM5 dense BF16 (whitepaper 2022; the datasheet's 1,979 TFLOPS is 2:4 sparse)
A100_BF16 = 312e12  # NVIDIA A100 datasheet, dense BF16

# (preset, tokens, seq_len, gpu, published GPU-hours, citation)
PUBLISHED = {
    # Touvron et al. 2023, "Llama 2", arXiv:2307.09288, table 1 (2.0T tokens, 4k context) and table 2
    # (A100-80GB GPU hours); the same figures are in the meta-llama/Llama-2-*-hf model cards.
    "llama-2-7b": ("2.0T", 4096, "a100-80gb", 184_320),
    "llama-2-13b": ("2.0T", 4096, "a100-80gb", 368_640),
    "llama-2-70b": ("2.0T", 4096, "a100-80gb", 1_720_320),
    # Llama Team 2024, "The Llama 3 Herd of Models", arXiv:2407.21783, sec. 3.1 (15.6T tokens) and
    # sec. 3.4.1 (8K context in pre-training); meta-llama/Llama-3.1-405B model card: 30.84M H100-80GB hours.
    "llama-3.1-405b": ("15.6T", 8192, "h100-sxm", 30_840_000),
    # DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", arXiv:2412.19437, table 1 (2,664K H800 hours of
    # pre-training) and sec. 4.2 (14.8T tokens, sequence length 4K).
    "deepseek-v3": ("14.8T", 4096, "h800", 2_664_000),
    # BigScience 2022, "BLOOM", arXiv:2211.05100, and the bigscience/bloom model card (366B tokens, 2048
    # context); Luccioni et al. 2022, arXiv:2211.02001, table 1: 1,082,990 A100 GPU hours.
    "bloom-176b": ("366B", 2048, "a100-80gb", 1_082_990),
}


def _estimate(name, **kw):
    tokens, seq, gpu, _ = PUBLISHED[name]
    return estimate_cost(name, tokens=tokens, gpu=gpu, seq_len=seq, **kw)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_estimate_at_mfu_040_is_within_25_percent_of_the_published_gpu_hours(name):
    hours = _estimate(name, mfu=0.4).cost.gpu_hours
    assert hours == pytest.approx(PUBLISHED[name][3], rel=0.25)


def test_llama_3_1_405b_training_flops_match_the_papers_3_8e25_within_25_percent():
    # arXiv:2407.21783, sec. 1 and 3.2.1: "3.8 x 10^25 FLOPs" (6ND with N = 405B; ours adds attention, +8%)
    assert _estimate("llama-3.1-405b").cost.training_flops == pytest.approx(3.8e25, rel=0.25)


# The MFU each run implies under paramcalc's convention (model FLOPs, dense attention, dense BF16 peak).
IMPLIED = {
    "llama-2-7b": (0.35, 0.50), "llama-2-13b": (0.35, 0.50), "llama-2-70b": (0.38, 0.52),
    # arXiv:2407.21783 table 4 reports 38-43% BF16 MFU for the 405B run
    "llama-3.1-405b": (0.33, 0.43),
    "deepseek-v3": (0.38, 0.50),  # trained in FP8: against the FP8 peak this halves
    "bloom-176b": (0.28, 0.38),
}


@pytest.mark.parametrize("name", list(IMPLIED))
def test_each_published_run_implies_a_plausible_mfu(name):
    report = _estimate(name)
    mfu = implied_mfu(report.cost.training_flops, PUBLISHED[name][3], report.cost.peak_flops_per_gpu)
    lo, hi = IMPLIED[name]
    assert lo <= mfu <= hi


@pytest.mark.parametrize("name,hours,lo,hi", [
    # meta-llama/Llama-3.1-8B and -70B model cards: 1.46M and 7.0M H100-80GB hours on ~15T tokens
    # (arXiv:2407.21783, 8K context); the small models ran far below the 405B's MFU.
    ("llama-3.1-8b", 1_460_000, 0.10, 0.20),
    ("llama-3.1-70b", 7_000_000, 0.18, 0.32),
])
def test_llama_3_1_8b_and_70b_cards_imply_a_much_lower_mfu_than_405b(name, hours, lo, hi):
    report = estimate_cost(name, tokens="15T", gpu="h100-sxm", seq_len=8192)
    mfu = implied_mfu(report.cost.training_flops, hours, report.cost.peak_flops_per_gpu)
    assert lo <= mfu <= hi
    big = _estimate("llama-3.1-405b")
    assert mfu < implied_mfu(big.cost.training_flops, PUBLISHED["llama-3.1-405b"][3], big.cost.peak_flops_per_gpu)


def test_a_bare_count_costs_6_n_d_over_peak_times_mfu_exactly():
    c = estimate_cost("7.5B", tokens=10**12, gpu="h100-sxm", mfu=0.5).cost
    assert c.peak_flops_per_gpu == 989_400_000_000_000
    assert c.training_flops == 6 * 7_500_000_000 * 10**12
    assert c.gpu_hours == 6 * 7.5e9 * 1e12 / (989.4e12 * 0.5) / 3600


def test_a_bare_count_says_it_used_6n():
    assert any("6 x N x tokens" in n for n in estimate_cost("7.5B", tokens="1T", gpu="h100").notes)


@pytest.mark.parametrize("tokens", ["15e12", "1.5e+13", "15T", "15000B", 15 * 10**12])
def test_tokens_follow_the_number_grammar(tokens):
    assert estimate_cost("7B", tokens=tokens, gpu="h100-sxm").tokens == 15 * 10**12


def test_tokens_with_a_fraction_parse_exactly():
    assert estimate_cost("7B", tokens="1.56e+13", gpu="h100-sxm").tokens == 15_600_000_000_000


def test_training_flops_are_one_step_scaled_to_the_token_budget():
    from paramcalc.analysis.flops import count_flops

    step = count_flops("llama-2-7b", seq_len=4096).flops.train_step
    assert _estimate("llama-2-7b").cost.training_flops == step * 2 * 10**12 // 4096
    assert _estimate("llama-2-7b", batch=4).cost.training_flops == step * 2 * 10**12 // 4096


def test_wall_clock_is_gpu_hours_over_gpus_with_nothing_added():
    one = estimate_cost("llama-2-7b", tokens="2T", gpu="a100", seq_len=4096)
    many = estimate_cost("llama-2-7b", tokens="2T", gpu="a100", seq_len=4096, gpus="1K")
    assert many.cost.gpu_hours == one.cost.gpu_hours
    assert many.cost.wall_clock_hours == one.cost.gpu_hours / 1000


def test_recomputation_is_reported_as_hardware_flops_and_leaves_gpu_hours_alone():
    plain = _estimate("llama-2-7b")
    full = _estimate("llama-2-7b", recompute="full")
    assert full.cost.gpu_hours == plain.cost.gpu_hours
    assert any("HFU" in n for n in full.notes) and not any("HFU" in n for n in plain.notes)


def test_op_recomputation_is_costed_as_hardware_flops_between_none_and_full():
    from paramcalc.analysis.cost import training_flops
    from paramcalc.analysis.settings import make_pass
    from paramcalc.network import lower

    net = lower("llama-2-7b")
    p = make_pass(net, 4096, 1)
    model, _, _ = training_flops(net, p, 10**12)
    hardware = {r: training_flops(net, p, 10**12, r)[1] for r in ("op", "full")}
    assert model < hardware["op"] < hardware["full"]
    plain, op = _estimate("llama-2-7b"), _estimate("llama-2-7b", recompute="op")
    assert op.cost.gpu_hours == plain.cost.gpu_hours
    assert any(n.startswith("op recomputation: hardware FLOPs") for n in op.notes)
    r = run("cost", "llama-2-7b", "--tokens", "1T", "--recompute", "op", "--json")
    assert r.code == 0 and any(n.startswith("op recomputation") for n in r.json["notes"]), r.err


def test_price_comes_from_the_argument_else_the_table_else_is_unknown(tmp_path):
    c = estimate_cost("7B", tokens="1T", gpu="h100-sxm").cost
    assert c.usd == pytest.approx(c.gpu_hours * price("h100-sxm"))
    assert estimate_cost("7B", tokens="1T", gpu="h100-sxm", usd_per_hour="2").cost.usd == pytest.approx(2 * c.gpu_hours)
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\nmemory_bytes: 80e9\nmemory_bandwidth: 2T\npeak_flops_dense: {bf16: 500T}\n")
    mine = estimate_cost("7B", tokens="1T", gpu=str(own)).cost
    assert mine.usd is None and mine.usd_per_gpu_hour is None
    assert mine.energy_kwh is None  # no TDP in the file


def test_energy_is_gpu_hours_times_tdp():
    c = estimate_cost("7B", tokens="1T", gpu="a100-80gb").cost
    assert c.energy_kwh == pytest.approx(c.gpu_hours * load_gpu("a100-80gb").tdp_watts / 1000)


def test_chinchilla_tokens_are_20_per_parameter():
    # Hoffmann et al. 2022, arXiv:2203.15556, table 3: ~20 tokens per parameter
    assert estimate_cost("7B", tokens="1T", gpu="h100").chinchilla_tokens == 140 * 10**9
    assert _estimate("llama-2-7b").chinchilla_tokens == 20 * 6_738_415_616


def test_the_peak_follows_the_dtype():
    bf16 = estimate_cost("7B", tokens="1T", gpu="h100-sxm").cost
    fp8 = estimate_cost("7B", tokens="1T", gpu="h100-sxm", dtype="fp8").cost
    assert fp8.peak_flops_per_gpu == load_gpu("h100-sxm").peak("fp8") == 1_978_900_000_000_000
    assert fp8.gpu_hours == pytest.approx(bf16.gpu_hours / 2, rel=1e-3)


@pytest.mark.parametrize("kw,field", [
    ({"mfu": "1.5"}, "mfu"), ({"mfu": "40"}, "mfu"), ({"mfu": "0"}, "mfu"), ({"mfu": "-0.4"}, "mfu"),
    ({"tokens": "0"}, "tokens"), ({"tokens": "lots"}, "tokens"), ({"tokens": "1e400"}, "tokens"),
    ({"gpus": "0.5"}, "gpus"), ({"gpu": "h10"}, "gpu"), ({"dtype": "fp8", "gpu": "a100"}, "dtype"),
    ({"recompute": "half"}, "recompute"),
])
def test_bad_input_is_a_user_error_naming_the_setting(kw, field):
    """The library names its keyword; the command line shows it as the flag (test_cli_errors.py)."""
    args = {"tokens": "1T", "gpu": "h100-sxm"} | kw
    with pytest.raises(UserError) as error:
        estimate_cost("7B", **args)
    assert error.value.field == field and "--" not in str(error.value)


def test_unknown_gpu_exits_2_with_a_message_and_no_traceback():
    result = run("cost", "7B", "--tokens", "1T", "--gpu", "h10")
    assert result.code == 2
    assert "--gpu" in result.err and "Traceback" not in result.err and result.out == ""


def test_json_stdout_is_exactly_one_document_with_the_contract_keys():
    result = run("cost", "llama-3.1-8b", "--tokens", "15e12", "--gpu", "h100-sxm", "--gpus", "1024",
                    "--seq-len", "8192", "--json")
    assert result.code == 0, result.err
    doc = result.json  # json.loads: fails on anything beside the one document
    assert doc["schema_version"] == 1 and doc["command"] == "cost"
    c = doc["cost"]
    assert isinstance(c["training_flops"], int)
    assert c["wall_clock_hours"] == pytest.approx(c["gpu_hours"] / 1024)
    assert c["usd"] == pytest.approx(c["gpu_hours"] * price("h100-sxm"))


def test_human_output_ends_in_a_verdict_line():
    result = run("cost", "7.5B", "--tokens", "1e12", "--gpu", "h100-sxm", "--mfu", "0.5", "--gpus", "8")
    assert result.code == 0, result.err
    assert "25.3K GPU-hours on h100-sxm at MFU 0.50; 132 days on 8 GPUs; $75,551" in result.out


def test_a_bench_calibration_file_replaces_the_guessed_mfu(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"schema_version": 1, "kind": "paramcalc.calibration", "mfu": 0.52, "gpu": "h100-sxm", '
                    '"dtype": "bf16", "measured": {"model": "llama-3.1-8b", "seq_len": 4096, "date": "2026-11-27"}}')
    guessed = estimate_cost("llama-3.1-8b", tokens="1T", gpu="h100-sxm", mfu=0.4)
    measured = estimate_cost("llama-3.1-8b", tokens="1T", gpu="h100-sxm", calibration=path)
    assert measured.cost.mfu == 0.52
    assert measured.cost.gpu_hours == pytest.approx(guessed.cost.gpu_hours * 0.4 / 0.52)
    assert any("measured by paramcalc bench" in n for n in measured.notes)


def test_a_file_that_is_not_a_calibration_exits_2(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"mfu": 3}')
    r = run("cost", "gpt2", "--tokens", "1B", "--gpu", "h100-sxm", "--calibration", path)
    assert r.code == 2 and "calibration" in r.err and "Traceback" not in r.err
