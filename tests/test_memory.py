"""Memory: model states by precision, optimizer and ZeRO stage against the
ZeRO paper and DeepSpeed's estimator; the KV cache exactly; parallelism and
recomputation in the directions the papers give."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import run
from paramcalc.analysis.memory import estimate_memory

GB = 10**9


@pytest.mark.parametrize("stage,gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure_1_from_a_bare_count(stage, gb):
    """Rajbhandari et al. 2020, figure 1: 7.5B parameters, 64-way data parallel, mixed-precision Adam."""
    m = estimate_memory("7.5B", zero=stage, dp=64).memory
    assert m.model_states_per_gpu / GB == pytest.approx(gb, abs=0.05)
    assert m.activations is None and m.kv_cache is None and m.total_per_gpu is None


def test_deepspeed_zero3_estimator_on_one_gpu():
    """DeepSpeed's estimate_zero3_model_states_mem_needs_all_live for bigscience/T0_3B on one GPU
    (transformers' DeepSpeed guide): 46.91 GB (GiB) per GPU with no offload = 18 bytes x 2783M
    parameters + 4 bytes x its 65M-parameter largest layer. DeepSpeed keeps fp32 gradients, which is
    --precision megatron (2 + 4 + 12 bytes)."""
    m = estimate_memory("2783M", zero=3, dp=1, precision="megatron").memory
    largest_layer = 4 * 65_000_000
    assert (m.model_states_per_gpu + largest_layer) / 2**30 == pytest.approx(46.91, rel=0.005)


@pytest.mark.parametrize("precision,optimizer,per_param", [
    ("mixed", "adamw", 16), ("fp32", "adamw", 16), ("megatron", "adam", 18), ("mixed", "sgd", 8),
    ("mixed", "sgd-momentum", 12), ("mixed", "lion", 12), ("mixed", "adam-8bit", 10), ("amp", "adamw", 16),
])
def test_bytes_per_parameter_by_recipe(precision, optimizer, per_param):
    m = estimate_memory("1B", precision=precision, optimizer=optimizer).memory
    assert m.model_states_per_gpu == per_param * 10**9


def test_kv_cache_is_exact_for_gqa_mha_and_mla():
    # docs/contract.md: 2 x layers x kv_heads x head_dim x tokens x batch x bytes
    assert estimate_memory("llama-3.1-8b", mode="infer", seq_len=8192, batch=2, kv_dtype="bf16").memory.kv_cache == \
        2 * 32 * 8 * 128 * 8192 * 2 * 2
    assert estimate_memory("llama-2-7b", mode="infer", seq_len=4096, batch=1, kv_dtype="fp8").memory.kv_cache == \
        2 * 32 * 32 * 128 * 4096 * 1
    # DeepSeek-V3 caches the 512-dim latent plus the 64-dim rotary key per token and layer
    assert estimate_memory("deepseek-v3", mode="infer", seq_len=4096, batch=1).memory.kv_cache == \
        61 * (512 + 64) * 4096 * 2


def test_sliding_window_layers_hold_at_most_their_window():
    full = estimate_memory("mistral-7b", mode="infer", seq_len=4096, batch=1).memory.kv_cache
    long = estimate_memory("mistral-7b", mode="infer", seq_len=16384, batch=1).memory.kv_cache
    assert full == long == 2 * 32 * 8 * 128 * 4096 * 2
    gemma = estimate_memory("gemma-2-9b", mode="infer", seq_len=8192, batch=1).memory.kv_cache
    assert gemma == 2 * 8 * 256 * 2 * (21 * 4096 + 21 * 8192)  # alternating local (4096) and global layers


def test_inference_weights_by_dtype_with_int4_group_scales():
    n = 8_030_261_248
    assert estimate_memory("llama-3.1-8b", mode="infer", dtype="bf16").memory.weights == 2 * n
    assert estimate_memory("llama-3.1-8b", mode="infer", dtype="fp8").memory.weights == n
    assert estimate_memory("llama-3.1-8b", mode="infer", dtype="int4").memory.weights == n // 2 + 2 * (-(-n // 128))


def test_recomputation_and_flash_attention_shrink_activations_in_order():
    base = dict(seq_len=4096, attention="eager")
    eager = estimate_memory("llama-3.1-8b", **base).memory.activations
    flash = estimate_memory("llama-3.1-8b", seq_len=4096, attention="flash").memory.activations
    selective = estimate_memory("llama-3.1-8b", recompute="selective", **base).memory.activations
    full = estimate_memory("llama-3.1-8b", recompute="full", **base).memory.activations
    assert full < flash < eager and full < selective < eager
    # selective recomputation removes exactly the s x s attention core (softmax fp32 + probs): 6 b n s^2 per layer
    assert eager - selective == 32 * 6 * 32 * 4096**2


GPT3 = str(Path(__file__).parent / "data" / "specs" / "gpt3-175b.yaml")


def _layer_bytes(**kw) -> int:
    r = estimate_memory(GPT3, seq_len=2048, batch=1, attention="eager", profile="megatron", **kw)
    return sum(v for k, v in r.breakdown.items() if k.startswith("layers/"))


@pytest.mark.parametrize("kw,per_layer", [
    # Korthikanti et al. 2022, table 2 (16-bit tensors, 1-byte dropout masks), per layer, in units of s b h
    ({}, lambda t, r: 34 + 5 * r),
    ({"tp": 8}, lambda t, r: 10 + 24 / t + 5 * r / t),
    ({"tp": 8, "sequence_parallel": True}, lambda t, r: 34 / t + 5 * r / t),
    ({"tp": 8, "recompute": "selective"}, lambda t, r: 10 + 24 / t),
    ({"tp": 8, "sequence_parallel": True, "recompute": "selective"}, lambda t, r: 34 / t),
])
def test_megatron_activations_equal_korthikanti_table_2_for_gpt3_175b(kw, per_layer):
    s, b, h, a, L = 2048, 1, 12288, 96, 96
    t = kw.get("tp", 1)
    assert _layer_bytes(**kw) == s * b * h * L * per_layer(t, a * s / h)


def test_full_recomputation_keeps_each_layers_input_and_one_layer_rebuilt():
    s, b, h, a, L = 2048, 1, 12288, 96, 96
    one_layer = s * b * h * (34 + 5 * a * s / h)
    assert _layer_bytes(recompute="full") == 2 * s * b * h * L + one_layer  # 2sbhL (section 5)
    # with sequence parallelism each TP rank keeps 1/t of the checkpointed inputs (Megatron's SP checkpoints)
    sp = _layer_bytes(recompute="full", tp=8, sequence_parallel=True)
    assert sp == 2 * s * b * h * L // 8 + one_layer // 8


def test_llama_70b_tp8_sp_full_recompute_checkpoints_split_over_tp():
    """The issue's case: 2 s b h L / t = 20 GiB of checkpointed inputs, not 160 GiB."""
    r = estimate_memory("llama-3.1-70b", seq_len=8192, batch=16, zero=3, dp=32, tp=8, sequence_parallel=True,
                        recompute="full")
    assert r.breakdown["layers/checkpointed_inputs"] == 2 * 8192 * 16 * 8192 * 80 // 8 == 20 * 2**30


def test_tensor_and_sequence_parallelism_split_activations():
    one = estimate_memory("llama-3.1-70b", tp=1, profile="megatron").memory
    tp8 = estimate_memory("llama-3.1-70b", tp=8).memory
    sp8 = estimate_memory("llama-3.1-70b", tp=8, sequence_parallel=True).memory
    assert tp8.weights == -(-one.weights // 8)
    assert sp8.activations < tp8.activations < one.activations
    assert sp8.activations == pytest.approx(one.activations / 8, rel=1e-6)  # SP splits every tensor over TP


def test_context_parallel_splits_each_sequence_and_zero_shards_over_dp_times_cp():
    one = estimate_memory("llama-3.1-8b", zero=3, dp=8, profile="megatron")
    cp2 = estimate_memory("llama-3.1-8b", zero=3, dp=4, cp=2)
    assert cp2.memory.activations == pytest.approx(one.memory.activations / 2, rel=0.01)
    assert cp2.memory.weights == one.memory.weights  # ZeRO shards over dp x cp = 8 in both
    assert cp2.settings.world == 8


def test_expert_parallel_divides_the_routed_experts_only():
    full = estimate_memory("mixtral-8x7b", dp=8).memory.weights
    ep8 = estimate_memory("mixtral-8x7b", dp=8, ep=8).memory.weights
    experts = 32 * 8 * 3 * 4096 * 14336  # 32 layers x 8 experts x (gate, up, down) of 4096 x 14336
    assert full - ep8 == 2 * (experts - experts // 8)
    bad = run("memory", "mixtral-8x7b", "--dp", "6", "--ep", "4")
    assert bad.code == 2 and "--ep" in bad.err


def test_pipeline_stages_split_the_parameters_and_sum_back():
    from paramcalc.analysis.memory import stage_loads
    from paramcalc.analysis.settings import make_pass
    from paramcalc.network import lower
    from paramcalc.results.memory import Setup

    net = lower("llama-3.1-8b")
    first, last = stage_loads(net, make_pass(net, 2048, 1), Setup(pp=4, micro_batches=4, profile="megatron"))
    layers = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096)  # q,o; GQA k,v; SwiGLU; norms
    per_layer = layers // 32
    # the head (128256 x 4096, 2.4 layers' worth) runs on the last stage, which takes fewer layers:
    # 9 + 9 + 9 + 5, the busiest stage 9 layers against 5 + 2.4 (Megatron's uneven split)
    assert first.params - 128256 * 4096 == 9 * per_layer
    assert last.params - 128256 * 4096 - 4096 == 5 * per_layer
    assert first.params + last.params + 2 * 9 * per_layer == 8_030_261_248


def test_the_pipeline_split_evens_the_busiest_stage():
    from paramcalc.analysis.memory import pipeline_split

    assert pipeline_split(32, 4, 2.4) == (9, 5)
    assert pipeline_split(32, 4, 0.0) == (8, 8)
    assert pipeline_split(126, 16, 1.0) == (8, 6)  # Llama 3 405B: stages of 8 layers, the last lighter
    assert pipeline_split(32, 1, 5.0) == (32, 32)


@pytest.mark.parametrize("micro_batches,vpp,share", [(1, 1, 1 / 4), (2, 1, 2 / 4), (8, 1, 1), (8, 2, 1 + 3 / 8)])
def test_pipeline_first_stage_holds_the_micro_batches_in_flight(micro_batches, vpp, share):
    """1F1B: the first stage holds min(m, p) micro-batches of its L/p layers; interleaving with v virtual
    stages holds L (1 + (p - 1) / (p v)) layers' worth (Korthikanti et al. 2022, section 4.2.3)."""
    one = _layer_bytes()
    four = estimate_memory(GPT3, seq_len=2048, attention="eager", profile="megatron", pp=4, vpp=vpp,
                           micro_batches=micro_batches)
    got = sum(v for k, v in four.breakdown.items() if k.startswith("layers/"))
    assert got == pytest.approx(one * share, rel=1e-6)


def test_memory_cli_fits_verdict_and_bad_flags():
    r = run("memory", "llama-3.1-8b", "--mode", "infer", "--gpu", "h100", "--json")
    assert r.code == 0 and r.json["fits"]["fits"] is True and r.json["fits"]["gpu"] == "h100-sxm"
    assert run("memory", "llama-3.1-405b", "--gpu", "h100-sxm", "--json").json["fits"]["fits"] is False
    for flag, value in (("--zero", "4"), ("--optimizer", "adamx"), ("--dtype", "fp12"), ("--mode", "serve")):
        bad = run("memory", "gpt2", flag, value)
        assert bad.code == 2 and flag in bad.err and "Traceback" not in bad.err


@pytest.mark.parametrize("mode,seq", [("train", 1024), ("infer", 8192)])
def test_the_largest_batch_that_fits_is_the_boundary(mode, seq):
    kw = dict(mode=mode, seq_len=seq, zero=3, dp=8, attention="flash")
    b = estimate_memory("llama-3.1-8b", gpu="h100-sxm", **kw).fits.max_batch
    assert b >= 2
    at = lambda n: estimate_memory("llama-3.1-8b", batch=n, **kw)  # noqa: E731
    assert at(b).memory.total_per_gpu <= 85_899_345_920 < at(b + 1).memory.total_per_gpu


def test_encoders_keep_no_kv_cache_and_heads_size_the_logits_gradient():
    assert estimate_memory("bert-base-uncased", mode="infer", seq_len=512).memory.kv_cache == 0
    assert estimate_memory("vit-b-16", mode="infer").memory.kv_cache == 0
    # T5: only the decoder's causal self-attention caches (12 layers x 12 heads x 64, K and V, bf16)
    assert estimate_memory("t5-base", mode="infer", seq_len=512).memory.kv_cache == 2 * 12 * 12 * 64 * 512 * 2
    from paramcalc.analysis.memory import CUDA_CONTEXT, FRAGMENTATION

    m = estimate_memory("llama-2-7b", seq_len=2048).memory
    tensors = m.model_states_per_gpu + m.activations
    # CUDA context + allocator slack + the two fp32 gradients of the upcast tokens x vocab logits that
    # transformers' loss backward holds beside the saved log-probabilities (12 bytes a logit at its peak)
    assert m.overhead == CUDA_CONTEXT + int(FRAGMENTATION * tensors) + 8 * 2048 * 32000


def test_overheads_are_named_terms_and_calibratable():
    m = estimate_memory("llama-3.1-70b", zero=3, dp=16, seq_len=2048)
    terms = {k.split("/", 1)[1]: v for k, v in m.breakdown.items() if k.startswith("overhead/")}
    assert sum(terms.values()) == m.memory.overhead
    # ZeRO-3 gathers the largest parameter-owning module (the 128256 x 8192 token table) and prefetches
    # the next: 16-bit weights twice and gradients once (DeepSpeed's estimator keeps 4 bytes, one layer)
    assert terms["zero3_gathered"] == 3 * 2 * 128256 * 8192
    assert terms["nccl_buffers"] > 0 and terms["logits_gradient"] == 8 * 2048 * 128256
    lean = estimate_memory("llama-3.1-70b", zero=3, dp=16, seq_len=2048, context_bytes=0, fragmentation=0)
    assert m.memory.total_per_gpu - lean.memory.total_per_gpu == terms["cuda_context"] + terms["fragmentation"]


@pytest.mark.parametrize("flags,named", [(["--vpp", "2"], "--vpp"), (["--cp", "3"], "--cp"),
                                         (["--cp", "2", "--attention", "eager"], "--attention"),
                                         (["--profile", "deepspeed"], "--profile")])
def test_plan_flags_of_memory_refuse_what_cannot_split(flags, named):
    r = run("memory", "llama-3.1-8b", "--seq-len", "4096", *flags)
    assert r.code == 2 and named in r.err and "Traceback" not in r.err


def test_memory_defaults_to_the_pre_training_context_and_flash():
    doc = run("memory", "llama-3.1-8b", "--json").json
    assert doc["seq_len"] == 8192 and doc["settings"]["attention"] == "flash"
    assert doc["settings"]["profile"] == "transformers"  # one GPU: transformers' (SDPA) tensors
    assert run("memory", "llama-3.1-8b", "--tp", "2", "--json").json["settings"]["profile"] == "megatron"


ENCODER_DECODERS = ["t5-base", str(Path(__file__).parent / "data/hf-configs-slow/whisper-tiny.json")]


@pytest.mark.parametrize("model", ENCODER_DECODERS)
def test_recomputation_lowers_an_encoder_decoders_activations(model):
    """Layer stages named with a slash (`encoder/layers`) are layers too: recomputation replaces
    their saved tensors instead of adding checkpoints on top of them."""
    act = {r: estimate_memory(model, recompute=r, attention="eager").memory.activations
           for r in ("none", "selective", "op", "full")}
    assert act["none"] > act["selective"] >= act["full"]
    assert act["none"] > act["op"] > act["full"]


@pytest.mark.parametrize("model", ENCODER_DECODERS)
def test_a_pipeline_splits_an_encoder_decoders_layers(model):
    whole = estimate_memory(model).memory.weights
    half = estimate_memory(model, pp=2).memory.weights
    assert whole / 2 <= half < whole


def test_the_step_model_counts_an_encoder_decoders_layers():
    from paramcalc.analysis.step import Work
    from paramcalc.network import lower

    net = lower("t5-base")
    work = Work.of(net, 512)
    embedding = net.embedding_params()
    assert work.layer_params == net.total_params - embedding - 2 * 768  # all but the table and the final norms
