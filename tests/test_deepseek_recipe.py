"""DeepSeek-V3's memory recipe as settings any plan can ask for (DeepSeek-V3 report,
arXiv 2412.19437): `--recompute deepseek` (section 3.2.3: RMSNorm outputs and MLA's
up-projections rerun; section 3.3.3: the MoE SwiGLU's output rerun), `--fp8-activations`
(section 3.3.3: the Linears' inputs cached in fp8, the attention output in E5M6) and
`--optimizer adamw-bf16` (section 3.3.3: bf16 first and second moments). Bytes are pinned
in closed form on small MLA and MoE blocks, Megatron profile."""

from __future__ import annotations

import pytest
from cli import assert_user_error, run

from paramcalc.analysis.flops import count_flops
from paramcalc.analysis.memory import estimate_memory, model_states
from paramcalc.analysis.settings import RECOMPUTE_MODULES
from paramcalc.analysis.settings import optimizer_step_bytes
from paramcalc.blocks.attention import Attention
from paramcalc.blocks.base import Activations, Pass
from paramcalc.blocks.disentangled import DisentangledAttention
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.mlp import MLP
from paramcalc.blocks.moe import MoE
from paramcalc.blocks.norm import Norm
from paramcalc.results.memory import Setup

# a small MLA: hidden 256, 4 heads, q latent 64, kv latent 32, 16 rope + 32 nope dims, 32 value dims
MLA = LatentAttention(hidden=256, heads=4, q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=32,
                      qk_rope_head_dim=16, v_head_dim=32)
# a small MoE: 8 experts of ffn 128, top-2, one shared expert of ffn 128
MOE = MoE(hidden=256, experts=8, top_k=2, expert=MLP(256, 128), shared=MLP(256, 128))
P = Pass(2, 128)  # T = 256 tokens
T, X = 256, 2
MEGATRON = Activations(attention="flash", profile="megatron", mask_bytes=1)
DEEPSEEK = Activations(attention="flash", profile="megatron", mask_bytes=1,
                       recompute_modules=RECOMPUTE_MODULES["deepseek"])
FP8 = Activations(attention="flash", profile="megatron", mask_bytes=1, fp8_cache=True)


def fp8(elements: int, bits: int = 8) -> int:
    """fp8 (or E5M6) bytes plus one fp32 scale per 1 x 128 tile (report, section 3.3.2)."""
    return bits * elements // 8 + 4 * elements // 128


def test_mla_keeps_q_k_v_and_latents_without_recomputation():
    assert MLA.saved(P, MEGATRON) == {
        "input": X * T * 256, "q_latent": 2 * X * T * 64, "kv_latent": 2 * X * T * 32,
        "qkv": X * T * 4 * (2 * 48 + 32), "logsumexp": 4 * T * 4, "o_proj_input": X * T * 4 * 32}


def test_mla_up_projection_recomputation_keeps_the_latents_and_the_rope_key_only():
    # section 3.2.3: q, k, v are rerun from the pre-norm latents; the shared rope key is rotated again
    assert MLA.saved(P, DEEPSEEK) == {
        "input": X * T * 256, "q_latent": X * T * 64, "kv_latent": X * T * 32 + X * T * 16,
        "qkv": 0, "logsumexp": 4 * T * 4, "o_proj_input": X * T * 4 * 32}


def test_mla_fp8_caching_stores_the_linears_inputs_in_fp8_and_the_attention_output_in_e5m6():
    # section 3.3.3 (1): o_proj's input in 12-bit E5M6; q, k, v and the latents (norm inputs) stay bf16
    assert MLA.saved(P, FP8) == {
        "input": fp8(T * 256), "q_latent": X * T * 64 + fp8(T * 64), "kv_latent": X * T * 32 + fp8(T * 32),
        "qkv": X * T * 4 * (2 * 48 + 32), "logsumexp": 4 * T * 4, "o_proj_input": fp8(T * 4 * 32, bits=12)}


# a small standard attention: hidden 256, 4 query heads of 64, 2 K/V heads (GQA)
GQA = Attention(hidden=256, heads=4, kv_heads=2, head_dim=64)
EAGER_MEGATRON = Activations(attention="eager", profile="megatron", mask_bytes=1)


def test_standard_attention_keeps_16_bit_input_and_output_without_fp8_caching():
    assert GQA.saved(P, MEGATRON) == {"input": X * T * 256, "qkv": X * (T * 4 * 64 + 2 * T * 2 * 64),
                                      "logsumexp": 4 * T * 4, "o_proj_input": X * T * 4 * 64}


def test_standard_attention_fp8_caching_stores_the_qkv_input_in_fp8_and_the_output_in_e5m6():
    # section 3.3.3: q/k/v's shared input in fp8 with 1 x 128 scales; o_proj's input (the flash output,
    # which the attention backward reads too: one tensor) in E5M6; q, k, v stay 16-bit (section 3.3.1)
    assert GQA.saved(P, FP8) == {"input": fp8(T * 256), "qkv": X * (T * 4 * 64 + 2 * T * 2 * 64),
                                 "logsumexp": 4 * T * 4, "o_proj_input": fp8(T * 4 * 64, bits=12)}
    eager = GQA.saved(P, EAGER_MEGATRON)
    eager_fp8 = GQA.saved(P, Activations(attention="eager", profile="megatron", mask_bytes=1, fp8_cache=True))
    assert eager_fp8 == eager | {"input": fp8(T * 256), "o_proj_input": fp8(T * 4 * 64, bits=12)}


def test_deberta_attention_under_megatron_caches_in_fp8_as_the_plain_layer_does():
    deberta = DisentangledAttention(256, 4, 4, 64, True, True, causal=False, span=8)
    plain = Attention(256, 4, 4, 64, True, True, causal=False)
    assert deberta.saved(P, FP8) == plain.saved(P, FP8)
    assert deberta.saved(P, FP8)["o_proj_input"] == fp8(T * 4 * 64, bits=12)


def test_fp8_caching_lowers_a_dense_models_activations():
    def activations(**kw) -> int:
        r = estimate_memory("llama-3.1-8b", seq_len=4096, dtype="fp8", profile="megatron", **kw)
        return r.memory.activations

    assert activations(fp8_activations=True) < activations()


def test_moe_recipe_drops_the_swiglu_output_and_caches_dispatched_tokens_and_swiglu_input_in_fp8():
    S, f, h = T * 2, 128, 256
    routing = 4 * T * 8 + 12 * S
    shared = X * T * 2 * f + X * T * f  # fc1 output (SwiGLU input) and down input, the input shared
    assert MOE.saved(P, MEGATRON) == {"input": X * T * h, "routing": routing,
                                      "experts": X * S * h + X * S * 3 * f, "shared_expert": shared}
    assert MOE.saved(P, DEEPSEEK)["experts"] == X * S * h + X * S * 2 * f  # moe_act: fc2's input rerun
    both = Activations(attention="flash", profile="megatron", mask_bytes=1, fp8_cache=True,
                       recompute_modules=RECOMPUTE_MODULES["deepseek"])
    assert MOE.saved(P, both) == {"input": X * T * h,  # the router's input: gating stays bf16 (section 3.3.1)
                                  "routing": routing, "experts": fp8(S * h) + fp8(S * 2 * f),
                                  "shared_expert": X * T * 2 * f + fp8(T * f)}


def test_layernorm_recomputation_drops_the_sublayers_normed_inputs_and_keeps_the_norms_inputs():
    layer = TransformerLayer(attention=MLA, mlp=MOE, norm=Norm(256))
    kept, rerun = layer.saved(P, MEGATRON), layer.saved(P, DEEPSEEK)
    assert (rerun["attention/input"], rerun["moe/input"]) == (0, 0)
    assert rerun["norm/input_layernorm"] == kept["norm/input_layernorm"] == X * T * 256
    assert rerun["norm/post_attention_layernorm"] == X * T * 256


def test_deepseek_recomputation_saves_between_none_and_full():
    def activations(recompute: str) -> int:
        r = estimate_memory("deepseek-v3", seq_len=4096, dtype="fp8", dp=128, pp=16, ep=64, zero=1,
                            schedule="dualpipe", recompute=recompute, micro_batches=32)
        return r.memory.activations

    none, deepseek, full = activations("none"), activations("deepseek"), activations("full")
    assert none > deepseek > full


def test_fp8_caching_and_bf16_moments_each_lower_the_deepseek_row():
    def total(**kw) -> int:
        r = estimate_memory("deepseek-v3", seq_len=4096, dtype="fp8", dp=128, pp=16, ep=64, zero=1,
                            schedule="dualpipe", recompute="deepseek", micro_batches=32, **kw)
        return r.memory.total_per_gpu

    assert total() > total(fp8_activations=True) > total(fp8_activations=True, optimizer="adamw-bf16")


def test_bf16_moments_keep_4_bytes_a_parameter_beside_the_fp32_master():
    w, g, o = model_states(1000, Setup(precision="megatron", optimizer="adamw-bf16", dtype="fp8"))
    assert (w, g, o) == (2000, 4000, 8000)  # bf16 weights, fp32 gradients, fp32 master + 2 x bf16 moments
    assert model_states(1000, Setup(precision="bf16", optimizer="adamw-bf16"))[2] == 4000  # already bf16
    assert (optimizer_step_bytes("adamw"), optimizer_step_bytes("adamw-bf16")) == (30, 22)


def test_deepseek_recomputation_reruns_only_the_mla_up_projections_matmuls():
    f = count_flops("deepseek-v3", seq_len=4096, attention="flash", recompute="deepseek").flops
    # per token and layer: q_b (1536 -> 128 x 192) and kv_b (512 -> 128 x 256), 2 FLOPs a multiply-add
    assert f.recompute == 61 * 4096 * 2 * (1536 * 128 * 192 + 512 * 128 * 256)


def test_the_recipe_is_reported_in_the_estimate_plan():
    from paramcalc.analysis.estimate import estimate

    r = estimate("deepseek-v3", gpu="h800", gpus=2048, tp=1, pp=16, cp=1, ep=64, zero=1, global_batch=15360,
                 seq_len=4096, dtype="fp8", schedule="dualpipe", recompute="deepseek", fp8_activations=True,
                 optimizer="adamw-bf16", tokens=10**12)
    assert (r.plan.recompute, r.plan.fp8_activations, r.plan.optimizer) == ("deepseek", True, "adamw-bf16")
    assert r.memory.fits  # the report trained this plan on 80 GB H800s


@pytest.mark.parametrize("args, words", [
    (("memory", "deepseek-v3", "--fp8-activations"), ("--fp8-activations", "--dtype fp8")),
    (("memory", "deepseek-v3", "--recompute", "deepsek"), ("--recompute", "deepseek")),
    (("memory", "deepseek-v3", "--dtype", "fp8", "--fp8-activations", "--profile", "transformers"),
     ("--profile", "megatron")),
    (("estimate", "deepseek-v3", "--gpus", "2048", "--optimizer", "adafactor"), ("--optimizer", "adamw-bf16")),
    (("estimate", "deepseek-v3", "--gpus", "2048", "--fp8-activations"), ("--fp8-activations", "--dtype fp8")),
])
def test_bad_recipe_settings_exit_2_naming_the_flag_and_the_fix(args, words):
    assert_user_error(run(*args), *words)


# ---------------------------------------------------------------- inference, notes and input files


@pytest.mark.parametrize("flags", [("--fp8-activations",), ("--recompute", "deepseek"), ("--recompute", "full"),
                                   ("--recompute", "op", "--fp8-activations")])
def test_training_only_recipe_flags_in_infer_mode_are_reset_with_a_note(flags):
    plain = run("memory", "deepseek-v3", "--dtype", "fp8", "--mode", "infer", "--json")
    r = run("memory", "deepseek-v3", "--dtype", "fp8", "--mode", "infer", *flags, "--json")
    assert r.code == 0, r.err
    doc = r.json
    assert (doc["settings"]["fp8_activations"], doc["settings"]["recompute"]) == (False, "none")
    assert doc["memory"] == plain.json["memory"]
    note = next(n for n in doc["notes"] if "ignored: training only" in n)
    assert ("fp8 activations" in note) == ("--fp8-activations" in flags)
    assert ("recompute" in note) == ("--recompute" in flags)


def test_deepseek_notes_name_mla_and_moe_only_where_the_model_has_them():
    def notes(command: str, model: str) -> str:
        extra = ("--dtype", "fp8", "--fp8-activations") if command == "memory" else ()
        r = run(command, model, "--recompute", "deepseek", *extra, "--json")
        assert r.code == 0, r.err
        return " | ".join(n for n in r.json["notes"] if "deepseek" in n or "fp8 activations" in n)

    assert "reruns MLA's up-projections" in notes("flops", "deepseek-v3")
    llama = notes("flops", "llama-3.1-8b")
    assert "MLA's up-projections" not in llama and "no MLA layers, so no matmul is rerun" in llama
    assert "MoE" not in llama
    v3 = notes("memory", "deepseek-v3")
    assert "MLA's up-projections" in v3 and "SwiGLU" in v3 and "layers here" not in v3
    llama = notes("memory", "llama-3.1-8b")
    assert "MLA" not in llama.replace("no MLA or MoE layers here", "") and "SwiGLU" not in llama
    assert "no MLA or MoE layers here" in llama and "router" not in llama
    mixtral = notes("memory", "mixtral-8x7b")
    assert "no MLA layers here" in mixtral and "the routed experts' SwiGLU output" in mixtral


@pytest.mark.parametrize("recompute", ["op", "deepseek"])
def test_a_pipeline_stage_takes_op_and_deepseek_recomputation_into_its_memory(tmp_path, recompute):
    import yaml

    from paramcalc.analysis.plan import plan_pipeline

    stage = {"name": "pretrain", "kind": "pretrain", "tokens": "1e12", "seq_len": 8192, "global_batch": 512,
             "micro_batch": 1, "parallel": {"dp": 64, "zero": 3, "attention": "flash", "recompute": recompute}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "gpu": "h100-sxm", "stages": [stage]}))
    s = plan_pipeline(path).stages[0]
    m = estimate_memory("llama-3.1-8b", seq_len=8192, zero=3, dp=64, attention="flash", recompute=recompute)
    assert s.memory.peak_per_gpu == m.memory.total_per_gpu


def test_a_budget_measures_memory_with_the_recipes_settings(tmp_path):
    import yaml

    settings = {"dtype": "fp8", "tp": 2, "recompute": "deepseek", "fp8_activations": True,
                "optimizer": "adamw-bf16", "precision": "megatron"}
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump({"budgets": [{"name": "b", "model": "llama-3.1-8b", "memory": settings,
                                                 "max_memory_per_gpu": "80GiB"}]}))
    r = run("check", path, "--format", "json")
    assert r.code == 0, r.err
    actual = r.json["results"][0]["limits"][0]["actual"]
    assert actual == estimate_memory("llama-3.1-8b", **settings).memory.total_per_gpu
    assert actual < estimate_memory("llama-3.1-8b", **(settings | {"fp8_activations": False})).memory.total_per_gpu


def test_a_pipeline_stage_caches_its_activations_in_fp8_when_asked(tmp_path):
    import yaml

    from paramcalc.analysis.plan import plan_pipeline

    parallel = {"dp": 8, "tp": 2, "sequence_parallel": True, "zero": 1, "attention": "flash",
                "recompute": "deepseek", "fp8_activations": True}
    stage = {"name": "pretrain", "kind": "pretrain", "tokens": "1e11", "seq_len": 4096, "global_batch": 64,
             "micro_batch": 1, "dtype": "fp8", "parallel": parallel}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-3.1-8b", "gpu": "h100-sxm", "stages": [stage]}))
    s = plan_pipeline(path).stages[0]
    same = dict(seq_len=4096, dtype="fp8", zero=1, dp=8, tp=2, sequence_parallel=True, attention="flash",
                recompute="deepseek")
    cached = estimate_memory("llama-3.1-8b", fp8_activations=True, **same).memory.total_per_gpu
    assert s.memory.peak_per_gpu == cached
    assert cached < estimate_memory("llama-3.1-8b", **same).memory.total_per_gpu
