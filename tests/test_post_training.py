"""Post-training as practitioners run it (issue #20): QLoRA's real layout, LoRA's
backward FLOPs, a shared reference base, adapter-only checkpoints, PPO generation
from the decode roofline and fine-tuning step time from the step-time model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli import assert_user_error, run
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.analysis.checkpoint import checkpoint_sizes
from paramcalc.analysis.flops import backward_flops, forward_flops
from paramcalc.analysis.memory import estimate_memory, nf4_base, nf4_bytes
from paramcalc.analysis.plan import plan_pipeline
from paramcalc.analysis.serve import estimate_serving
from paramcalc.analysis.settings import with_lora_flags
from paramcalc.blocks.base import Pass
from paramcalc.network import lower

ALL_LINEARS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
A100_BF16 = 312e12
# LLaMA 33B and 65B (Touvron et al. 2023, table 2; huggyllama/llama-30b and -65b config.json)
LLAMA_33B = dict(name="llama-33b", vocab_size=32000, hidden_size=6656, intermediate_size=17920,
                 num_hidden_layers=60, num_attention_heads=52, max_position_embeddings=2048)
LLAMA_65B = dict(name="llama-65b", vocab_size=32000, hidden_size=8192, intermediate_size=22016,
                 num_hidden_layers=80, num_attention_heads=64, max_position_embeddings=2048)


def spec(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def pipeline(tmp_path: Path, *stages: dict, **top) -> object:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", **top, "stages": list(stages)}))
    return plan_pipeline(path)


# ---------------------------------------------------------------- QLoRA's layout


def test_an_nf4_tensor_is_half_a_byte_a_weight_plus_double_quantized_block_scales():
    """bitsandbytes' NF4 with compress_statistics: 4-bit codes; a uint8 absmax per 64 weights;
    an fp32 absmax per 256 of those; one fp32 offset per tensor."""
    n = 4096 * 11008
    assert nf4_bytes(n) == n // 2 + n // 64 + 4 * (n // 64 // 256) + 4
    assert nf4_bytes(100) == 50 + 2 + 4 + 4  # partial blocks round up
    # QLoRA section 3, "Double Quantization": constants cost 8/64 + 32/(64 x 256) = 0.127 bits a parameter
    assert (8 * nf4_bytes(n) / n - 4) == pytest.approx(8 / 64 + 32 / (64 * 256), abs=1e-4)
    assert 8 / 64 + 32 / (64 * 256) == pytest.approx(0.127, abs=5e-4)


def test_qlora_quantizes_the_layer_linears_and_keeps_embeddings_head_and_norms_in_bf16():
    net = with_lora_flags(lower("llama-2-7b"), 8, None)
    quantized, nbytes = nf4_base(net)
    h, f, L, V = 4096, 11008, 32, 32000
    assert quantized == L * (4 * h * h + 3 * h * f)
    assert nbytes == L * (4 * nf4_bytes(h * h) + 3 * nf4_bytes(h * f))
    m = estimate_memory("llama-2-7b", seq_len=256, dtype="int4", lora_rank=8).memory
    trainable = 4_194_304
    sixteen_bit = 2 * V * h + L * 2 * h + h  # embedding, lm_head, norms
    assert m.weights == nbytes + 2 * sixteen_bit + 2 * trainable
    assert m.gradients == 2 * trainable  # bf16 adapter gradients
    assert m.optimizer == 8 * trainable  # paged_adamw_32bit: no fp32 master copy of bf16 adapters


def test_nf4_without_double_quantization_keeps_an_fp32_absmax_per_block_of_64():
    """bitsandbytes' quantize_4bit with compress_statistics=False: 4-bit codes and one fp32 absmax per 64 weights,
    4.5 bits a weight (transformers' bnb_4bit_use_double_quant=False, LitGPT's bnb.nf4)."""
    n = 4096 * 11008
    assert nf4_bytes(n, double_quant=False) == n // 2 + 4 * (n // 64)
    assert nf4_bytes(100, double_quant=False) == 50 + 4 * 2
    assert 8 * nf4_bytes(n, double_quant=False) / n == 4.5


SPECS = Path(__file__).parent / "data" / "specs"


@pytest.mark.parametrize("model, tokens, nf4, nf4_dq", [
    (SPECS / "phi-1.5.yaml", 1044, 3.78, 3.72),
    (SPECS / "stablelm-base-alpha-3b.yaml", 1034, 6.35, 6.19),
    ("llama-2-7b", 1304, 14.14, 13.84),
    ("llama-2-13b", 1304, 23.14, 22.55),
])
def test_double_quantization_saves_what_litgpt_measured(model, tokens, nf4, nf4_dq):
    """LitGPT's resource tables (tutorials/resource-tables.md, 10/20/2023, A100-40GB): max_memory_allocated of
    finetune/lora.py under --quantize bnb.nf4 and bnb.nf4-dq, the only difference being the block scales'
    double quantization. Lightning's plugin quantizes the LM head too (trainer litgpt). Each figure is rounded
    to 0.01 GB, so their difference is known to 0.01 GB."""
    kw = dict(seq_len=tokens, dtype="int4", lora_rank=8, lora_targets="q_proj,v_proj", precision="bf16",
              optimizer="paged-adamw", bnb_legacy=True, trainer="litgpt")
    saved = (estimate_memory(model, double_quant=False, **kw).memory.weights
             - estimate_memory(model, double_quant=True, **kw).memory.weights) / 1e9
    assert saved == pytest.approx(nf4 - nf4_dq, abs=0.01)


def test_each_4_bit_matmul_dequantizes_its_weight_whole_at_the_peak():
    """bitsandbytes' MatMul4Bit: linear(A, dequantize_4bit(B).to(A.dtype).t()). The largest 4-bit weight of
    Llama-2-7b is an MLP matrix (the head stays bf16): 2 bytes a weight where the weight was quantized in bf16
    (bitsandbytes 0.43 on), 4 where it was quantized from fp16 (bitsandbytes up to 0.42: an fp16 copy and its
    bf16 cast at once); Lightning's plugin quantizes the head too, from fp16."""
    h, f, V = 4096, 11008, 32000
    kw = dict(seq_len=512, dtype="int4", lora_rank=8)

    def dequantized(**extra) -> int:
        return estimate_memory("llama-2-7b", **kw, **extra).breakdown["overhead/dequantized_weight"]

    assert dequantized() == 2 * f * h
    assert dequantized(bnb_legacy=True) == 4 * f * h
    assert dequantized(trainer="litgpt") == 4 * V * h
    assert "overhead/dequantized_weight" not in estimate_memory("llama-2-7b", seq_len=512, lora_rank=8).breakdown
    # an adapter on the head (LitGPT's lora_head) leaves its base a plain nn.Linear, which Lightning quantizes too
    head = dict(kw, lora_targets="q_proj,v_proj,decoder", trainer="litgpt")
    assert estimate_memory("llama-2-7b", **head).breakdown["overhead/dequantized_weight"] == 4 * V * h
    # the adapter on the head leaves transformers' upcast loss as it is: 8 bytes a logit in backward
    hf_head = estimate_memory("llama-2-7b", **(head | {"trainer": "hf"})).breakdown
    assert hf_head["overhead/logits_gradient"] == 8 * 512 * V
    # Lightning's plugin stores the head in NF4 where transformers' integration keeps it in bf16
    litgpt = estimate_memory("llama-2-7b", **kw, trainer="litgpt").memory.weights
    assert litgpt - estimate_memory("llama-2-7b", **kw).memory.weights == nf4_bytes(V * h) - 2 * V * h
    # a MoE layer's experts are each their own nn.Linear: one expert's matrix at a time (Mixtral: 14336 x 4096)
    moe = estimate_memory("mixtral-8x7b", **kw).breakdown["overhead/dequantized_weight"]
    assert moe == 2 * 14336 * 4096


def test_litgpts_loop_carries_the_last_steps_4_bit_inputs_into_the_next_forward():
    """LitGPT's finetune/lora.py rebinds `logits` and `loss` only once the next forward and loss exist, and
    bitsandbytes up to 0.43.1 keeps each 4-bit linear's input in ctx.tensors, which backward does not free. On
    Llama-2-7b with flash attention those are, a layer: the q/k/v input (h), o_proj's (the attention output, h),
    the gate/up input (h) and down_proj's (f). The next forward peaks at the head's last call, with the old
    logits and the dequantized head, before its loss saves anything."""
    h, f, L, V, T = 4096, 11008, 32, 32000, 1304
    kw = dict(seq_len=T, dtype="int4", lora_rank=8, precision="bf16", optimizer="paged-adamw", trainer="litgpt")
    b = estimate_memory("llama-2-7b", bnb_legacy=True, **kw).breakdown
    inputs = L * 2 * T * (3 * h + f)
    forward = inputs + 2 * T * V + b["overhead/dequantized_weight"] - b["head/loss"]
    assert b["overhead/previous_step"] == forward - b["overhead/logits_gradient"] - b["overhead/dequantized_weight"]
    # under full recomputation the checkpointed forward runs without a graph, so MatMul4Bit keeps nothing; a
    # selective one still runs the linears with their graph
    full = estimate_memory("llama-2-7b", bnb_legacy=True, recompute="full", **kw).breakdown
    assert "overhead/previous_step" not in full
    selective = estimate_memory("llama-2-7b", bnb_legacy=True, recompute="selective", **kw).breakdown
    assert selective["overhead/previous_step"] == b["overhead/previous_step"]


# One layer's saved bytes of LitGPT's own model (litgpt 0.3.1, the April 2024 code the LitGPT rows ran; torch
# 2.13 on CPU, bf16), printed by benchmarks/litgpt_saved_bytes.py: a 256-wide Llama layer, 4 heads of 64,
# (micro-batch, tokens, LoRA targets, lora_dropout, K/V groups) -> bytes
LITGPT_LAYER = {(1, 256, "qv", 0.05, 4): 2_910_208, (1, 256, "qv", 0.05, 2): 2_581_504,
                (1, 256, "qv", 0.05, 1): 2_613_760, (1, 256, "all", 0.05, 4): 4_155_392,
                (2, 128, "qv", 0.0, 2): 2_450_432, (1, 256, "qk", 0.05, 2): 2_581_504,
                (1, 256, "k", 0.0, 2): 2_313_216}


@pytest.mark.parametrize("case", LITGPT_LAYER)
def test_litgpts_layers_keep_what_litgpt_measured_to_the_byte(tmp_path, case):
    """trainer="litgpt": rope's new q and k beside the fused qkv storage (MHA, MQA) or k and v copied to every
    head (GQA), one lora_dropout for q, k and v, and zero_pad's kept source where not all three are adapted."""
    batch, tokens, targets, dropout, groups = case
    every = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,decoder"

    def activations(layers: int) -> int:
        cfg = dict(name=f"probe{layers}", vocab_size=1024, hidden_size=256, num_hidden_layers=layers,
                   num_attention_heads=4, num_key_value_heads=groups, intermediate_size=688,
                   max_position_embeddings=512, tie_word_embeddings=False)
        report = estimate_memory(spec(tmp_path, cfg), seq_len=tokens, batch=batch, trainer="litgpt",
                                 precision="bf16", lora_rank=8, lora_dropout=dropout or None,
                                 lora_targets=every if targets == "all" else ",".join(f"{t}_proj" for t in targets))
        assert report.memory.activations is not None
        return report.memory.activations

    assert activations(3) - activations(2) == LITGPT_LAYER[case]


def test_trainer_litgpt_takes_litgpts_models_and_stages_only(tmp_path):
    assert_user_error(run("memory", "t5-base", "--trainer", "litgpt"), "--trainer", "decoder-only")
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [
        {"name": "dpo", "kind": "dpo", "samples": 1000, "seq_len": 512, "global_batch": 8, "trainer": "litgpt"}]}))
    assert_user_error(run("plan", str(path)), "stages[0]", "trainer litgpt", "sft")


def test_the_longest_batch_first_meets_no_leftovers():
    """lit-gpt 2023's get_batch ran the longest sample first, so the previous step's 4-bit inputs only ever
    meet shorter batches (longest_first)."""
    kw = dict(seq_len=1304, dtype="int4", lora_rank=8, precision="bf16", optimizer="paged-adamw", trainer="litgpt",
              bnb_legacy=True)
    held = estimate_memory("llama-2-7b", **kw)
    first = estimate_memory("llama-2-7b", longest_first=True, **kw)
    assert held.memory.total_per_gpu - first.memory.total_per_gpu == held.breakdown["overhead/previous_step"] > 0


def test_a_ctx_attribute_outlives_backward_while_the_loop_holds_the_loss():
    """The torch behaviour the previous_step term rests on: backward frees what a Function saved with
    save_for_backward, not a plain ctx attribute (bitsandbytes 0.42's `ctx.tensors = (A, B)`), which lives as
    long as the graph, and a loop that keeps `loss` keeps the graph."""
    import gc
    import weakref

    class Kept(torch.autograd.Function):  # MatMul4Bit's bookkeeping: the input as a ctx attribute
        @staticmethod
        def forward(ctx, a, w):
            ctx.tensors = (a, w)
            return a @ w.t()

        @staticmethod
        def backward(ctx, grad):
            return grad @ ctx.tensors[1], None

    class Saved(torch.autograd.Function):  # the same product, its input saved for backward
        @staticmethod
        def forward(ctx, a, w):
            ctx.save_for_backward(a, w)
            return a @ w.t()

        @staticmethod
        def backward(ctx, grad):
            return grad @ ctx.saved_tensors[1], None

    w = torch.randn(8, 8)
    for fn, outlives in ((Kept, True), (Saved, False)):
        x = torch.randn(4, 8, requires_grad=True)
        a = x * 2  # an intermediate: only the graph can keep it
        probe = weakref.ref(a)
        loss = fn.apply(a, w).sum()
        del a
        loss.backward()
        gc.collect()
        assert (probe() is not None) is outlives, fn.__name__  # the loop still holds `loss`
        del loss
        gc.collect()
        assert probe() is None  # rebinding `loss` frees the graph and what it kept


def test_bitsandbytes_pages_only_the_state_of_tensors_of_100k_elements_or_more():
    """Optimizer8bit.get_state_buffer: a paged optimizer's state goes to CUDA managed memory only for tensors of
    1e5 elements or more. r = 8 on Llama-2-7b: A is 8 x 4096 and B 4096 x 8, 32,768 elements each, so nothing
    pages; r = 64: 262,144 each, so everything does."""
    kw = dict(seq_len=256, dtype="int4", optimizer="paged-adamw", gpu="a100-40gb")
    small = estimate_memory("llama-2-7b", lora_rank=8, **kw).memory
    assert small.optimizer == 8 * 4_194_304 and small.optimizer_paged == 0
    large = estimate_memory("llama-2-7b", lora_rank=64, **kw).memory
    assert large.optimizer_paged == large.optimizer == 8 * 8 * 4_194_304
    assert estimate_memory("llama-2-7b", lora_rank=64, **(kw | {"optimizer": "adamw"})).memory.optimizer_paged == 0


def test_bitsandbytes_32_bit_state_stays_fp32_under_pure_bf16():
    """bitsandbytes' Optimizer2State allocates its 32-bit state in float32 whatever the parameter's dtype;
    torch.optim's AdamW allocates it like the parameter (bf16 under pure bf16)."""
    kw = dict(seq_len=256, dtype="int4", lora_rank=8, precision="bf16")
    trainable = 4_194_304
    assert estimate_memory("llama-2-7b", optimizer="paged-adamw", **kw).memory.optimizer == 8 * trainable
    assert estimate_memory("llama-2-7b", seq_len=256, lora_rank=8, precision="bf16").memory.optimizer == 4 * trainable


def test_a_pipeline_stage_takes_the_trainer_and_qlora_layout_as_memory_does(tmp_path):
    stage = {"name": "sft", "kind": "sft", "dataset_tokens": "10M", "seq_len": 1024, "global_batch": 16,
             "micro_batch": 2, "dtype": "int4", "trainer": "litgpt",
             "lora": {"rank": 32, "targets": ["q_proj", "v_proj"], "dropout": 0.05, "double_quant": False,
                      "bnb_legacy": True},
             "parallel": {"precision": "bf16", "optimizer": "paged-adamw"}}
    peak = pipeline(tmp_path, stage, gpu="a10g").stages[0].memory.peak_per_gpu
    alone = estimate_memory("llama-2-7b", seq_len=1024, batch=2, dtype="int4", lora_rank=32, lora_dropout=0.05,
                            trainer="litgpt", double_quant=False, bnb_legacy=True, precision="bf16",
                            optimizer="paged-adamw")
    assert peak == alone.memory.total_per_gpu and "overhead/previous_step" in alone.breakdown
    default = pipeline(tmp_path, {**stage, "trainer": "hf", "lora": {"rank": 32, "dropout": 0.05}}, gpu="a10g")
    assert default.stages[0].memory.peak_per_gpu < peak
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a10g",
                                    "stages": [{**stage, "dtype": "bf16"}]}))
    assert_user_error(run("plan", str(path)), "stages[0].lora.", "int4")


def test_cost_prices_a_lora_run_without_the_frozen_weight_gradients():
    """cost --lora-rank: forward + backward_flops of the adapted network (frozen weights skip their weight
    gradient), at the bf16 peak for QLoRA, whose base is dequantized for each GEMM."""
    from paramcalc.analysis.cost import estimate_cost
    from paramcalc.analysis.flops import count_flops

    net = with_lora_flags(lower("llama-2-7b"), 8, None)
    f = count_flops(net, seq_len=4096, attention="eager").flops  # cost's dense convention (the MFU's)
    assert f.train_step == f.forward + f.backward and f.backward < 1.2 * f.forward  # no frozen weight gradients
    step = f.train_step
    tokens = 4096 * 1000
    lora = estimate_cost("llama-2-7b", tokens=tokens, gpu="a100-80gb", seq_len=4096, lora_rank=8).cost
    assert lora.training_flops == step * 1000
    full = estimate_cost("llama-2-7b", tokens=tokens, gpu="a100-80gb", seq_len=4096).cost
    # 2 x forward of 3 x forward for the weights; the score matmuls, which have none, still take 3 x
    assert 2 / 3 < lora.training_flops / full.training_flops < 0.75
    qlora = estimate_cost("llama-2-7b", tokens=tokens, gpu="a100-80gb", seq_len=4096, lora_rank=8, dtype="int4").cost
    assert qlora.peak_flops_per_gpu == 312e12 and qlora.gpu_hours == lora.gpu_hours
    r = run("cost", "llama-2-7b", "--tokens", "4M", "--gpu", "a100-80gb", "--seq-len", "4096", "--lora-rank", "8",
            "--json")
    assert r.code == 0 and json.loads(r.out)["cost"]["training_flops"] == step * 4_000_000 // 4096


def test_estimate_plans_a_lora_run_on_a_frozen_base():
    """estimate --lora-rank: the same pinned plan steps faster (2 x forward of GEMMs, adapters' gradients only),
    holds optimizer state for the adapters only, and prices the LoRA FLOPs."""
    from paramcalc.analysis.estimate import estimate
    from paramcalc.analysis.flops import count_flops

    pinned = dict(gpus=8, tokens="100M", tp=1, pp=1, zero=1, micro_batch=1, global_batch=64, recompute="full")
    full = estimate("llama-3.1-8b", **pinned)
    lora = estimate("llama-3.1-8b", lora_rank=16, **pinned)
    # full recomputation: forward, its rerun, input gradients, and the weight gradients of the adapters only (about
    # 3 GEMM passes of 4); the attention core and the elementwise kernels cost what they did
    assert 0.75 < lora.step.seconds / full.step.seconds < 0.85
    # ZeRO-3 still gathers every weight (2 bytes, forward and backward) but reduces the adapters' gradients only
    z3 = dict(pinned, zero=3)
    [fsdp_full] = estimate("llama-3.1-8b", **z3).communication.collectives
    [fsdp_lora] = estimate("llama-3.1-8b", lora_rank=16, **z3).communication.collectives
    assert fsdp_lora.bytes_per_gpu / fsdp_full.bytes_per_gpu == pytest.approx(4 / 8, rel=0.01)
    # the search's memory bound counts no gradients or optimizer state for the frozen base: on one GPU it keeps
    # every activation (no recomputation), which fits and is faster than recomputing
    one = estimate("llama-3.1-8b", gpus=1, tokens="10M", lora_rank=16)
    assert one.memory.fits and one.plan.recompute == "none"
    assert one.step.seconds < estimate("llama-3.1-8b", gpus=1, tokens="10M", lora_rank=16,
                                       recompute="full").step.seconds
    assert lora.memory.optimizer == -(-12 * lora.params.trainable // 8)  # fp32 master + Adam, ZeRO-1 over 8
    net = with_lora_flags(lower("llama-3.1-8b"), 16, None)
    per_seq = count_flops(net, seq_len=8192, attention="eager").flops.train_step
    assert lora.cost.training_flops == per_seq * 100_000_000 // 8192
    assert lora.cost.gpu_hours == pytest.approx(100_000_000 / (64 * 8192) * lora.step.seconds * 8 / 3600, rel=1e-6)
    r = run("estimate", "llama-3.1-8b", "--gpus", "8", "--tokens", "100M", "--lora-rank", "16", "--json")
    assert r.code == 0 and json.loads(r.out)["params"]["trainable"] == lora.params.trainable


def test_trainer_and_double_quantization_options_on_the_command_line():
    r = run("memory", "llama-2-7b", "--dtype", "int4", "--lora-rank", "8", "--trainer", "litgpt",
            "--no-double-quant", "--bnb-legacy", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["settings"]["trainer"] == "litgpt" and out["settings"]["double_quant"] is False
    assert out["breakdown"]["overhead/previous_step"] > 0
    assert_user_error(run("memory", "llama-2-7b", "--trainer", "keras"), "--trainer", "hf, litgpt")
    assert_user_error(run("memory", "llama-2-7b", "--lora-rank", "8", "--no-double-quant"), "int4")


def test_qlora_fits_33b_on_24_gb_and_65b_on_48_gb_as_the_paper_says(tmp_path):
    """Dettmers et al. 2023, abstract and section 4: 65B on a single 48 GB GPU, 33B on a 24 GB consumer GPU
    (r = 64 on every linear, gradient checkpointing, paged AdamW; sequence 512 at batch 1, figure 6's setting)."""
    settings = dict(seq_len=512, dtype="int4", lora_rank=64, lora_targets=ALL_LINEARS, recompute="full",
                    optimizer="paged-adamw")
    assert estimate_memory(spec(tmp_path, LLAMA_33B), gpu="rtx-4090", **settings).fits.fits
    assert estimate_memory(spec(tmp_path, LLAMA_65B), gpu="l40s", **settings).fits.fits
    assert not estimate_memory(spec(tmp_path, LLAMA_65B), gpu="rtx-4090", **settings).fits.fits
    # bf16 LoRA of the same 33B does not fit in 24 GB: the 4-bit base is what makes it fit
    bf16 = dict(settings, dtype="bf16")
    assert not estimate_memory(spec(tmp_path, LLAMA_33B), gpu="rtx-4090", **bf16).fits.fits


# ---------------------------------------------------------------- LoRA's backward FLOPs


class PeftLinear(nn.Module):
    """PEFT's lora.Linear: a frozen base nn.Linear plus trainable A (r x in) and B (out x r)."""

    def __init__(self, d_in: int, d_out: int, r: int):
        super().__init__()
        self.base_layer = nn.Linear(d_in, d_out, bias=False).requires_grad_(False)
        self.lora_A = nn.Linear(d_in, r, bias=False)
        self.lora_B = nn.Linear(r, d_out, bias=False)

    def forward(self, x):
        return self.base_layer(x) + self.lora_B(self.lora_A(x)) * 2.0


def test_lora_backward_skips_the_frozen_weight_gradients_as_flop_counter_mode_counts():
    T, d, f, r = 14, 48, 40, 4
    net_module = nn.Sequential(PeftLinear(d, f, r), PeftLinear(f, d, r))
    x = torch.randn(2, 7, d, requires_grad=True)  # inside a network: the input carries a gradient
    with FlopCounterMode(display=False) as fwd:
        out = net_module(x)
    with FlopCounterMode(display=False) as bwd:
        out.sum().backward()
    base = 2 * T * (d * f + f * d)
    adapters = 2 * T * (r * d + f * r) + 2 * T * (r * f + d * r)
    assert fwd.get_total_flops() == base + adapters
    # frozen base: input gradient only (1 x); adapters: input and weight gradients (2 x)
    assert bwd.get_total_flops() == base + 2 * adapters
    assert fwd.get_total_flops() + bwd.get_total_flops() < 3 * fwd.get_total_flops()


def test_a_lora_sft_stage_counts_forward_plus_backward_without_frozen_weight_gradients(tmp_path):
    stage = {"name": "sft", "kind": "sft", "samples": 256, "seq_len": 512, "global_batch": 128, "micro_batch": 4,
             "parallel": {"dp": 8}, "mfu": 0.4}
    full = pipeline(tmp_path, stage).stages[0]
    lora = pipeline(tmp_path, dict(stage, lora={"rank": 16, "targets": ["q_proj", "v_proj"]})).stages[0]
    net = with_lora_flags(lower("llama-2-7b"), 16, "q_proj,v_proj")
    p = Pass(128, 512)
    assert lora.flops_breakdown["model/train"] == 2 * (forward_flops(net, p) + backward_flops(net, p))
    assert full.flops_breakdown["model/train"] == 2 * 3 * forward_flops(lower("llama-2-7b"), p)
    assert lora.flops / full.flops == pytest.approx(2 / 3, abs=0.01)  # 2 x forward, not 3 x
    assert lora.time_per_step_seconds == pytest.approx(2 / 3 * full.time_per_step_seconds, rel=0.02)


# ---------------------------------------------------------------- shared reference, adapter checkpoints


def test_a_lora_dpo_reference_shares_the_policys_base_and_holds_no_second_copy(tmp_path):
    stage = {"name": "dpo", "kind": "dpo", "samples": 128, "seq_len": 1024, "global_batch": 64, "micro_batch": 1,
             "parallel": {"dp": 8}, "mfu": 0.4}
    full = pipeline(tmp_path, stage).stages[0]
    lora = pipeline(tmp_path, dict(stage, lora={"rank": 16})).stages[0]
    assert full.memory.breakdown["reference/weights"] == 2 * 6_738_415_616
    assert "reference/weights" not in lora.memory.breakdown
    assert lora.flops_breakdown["reference/forward"] == full.flops_breakdown["reference/forward"]  # still run
    assert any("adapters disabled" in n for n in lora.notes)


def test_a_lora_checkpoint_holds_the_adapters_only():
    c = checkpoint_sizes("llama-2-7b", lora_rank=8).checkpoint
    assert c.weights == 2 * 4_194_304  # PEFT's adapter_model.safetensors in bf16: 8 MiB
    assert c.resumable == 14 * 4_194_304  # + fp32 master and Adam state of the adapters
    r = run("checkpoint", "llama-2-7b", "--lora-rank", "8", "--json")
    assert r.code == 0 and r.json["checkpoint"]["resumable"] == 58_720_256


# ---------------------------------------------------------------- PPO generation from the decode roofline

PPO = {"name": "ppo", "kind": "ppo", "iterations": 1, "rollout_batch": 8, "prompt_tokens": 256,
       "response_tokens": 256, "micro_batch": 1, "parallel": {"dp": 8}, "mfu": 0.4}


def test_ppo_decode_time_is_the_serving_roofline_tpot_at_the_batch_each_replica_runs(tmp_path):
    """8 prompts on 8 one-GPU replicas: each decodes one sequence; R - 1 steps of serve's TPOT."""
    s = pipeline(tmp_path, PPO).stages[0]
    tpot = estimate_serving("llama-2-7b", gpu="a100-80gb", prompt=256, output=256, batches=(1,)).points[0]
    decode = s.flops_breakdown["generation/decode"]
    # the plan's time for the pass: FLOPs / (GPUs x peak x implied MFU) == 255 x TPOT
    seconds = s.gpu_hours * 3600 / 8 - _other_seconds(s)
    assert decode > 0
    assert seconds == pytest.approx(255 * tpot.tpot_seconds + tpot.ttft_seconds, rel=1e-6)


def _other_seconds(s) -> float:
    """Seconds of the scoring and training passes, at MFU 0.4 on 8 A100s."""
    other = sum(v for k, v in s.flops_breakdown.items() if not k.startswith("generation/"))
    return other / (8 * A100_BF16 * 0.4)


def test_hf_generate_is_slower_than_a_vllm_style_engine_and_generation_mfu_still_overrides(tmp_path):
    vllm = pipeline(tmp_path, PPO).stages[0]
    hf = pipeline(tmp_path, dict(PPO, generation={"engine": "hf"})).stages[0]
    fixed = pipeline(tmp_path, dict(PPO, generation_mfu=0.1)).stages[0]
    assert hf.wall_clock_hours > vllm.wall_clock_hours
    gen = sum(v for k, v in fixed.flops_breakdown.items() if k.startswith("generation/"))
    assert fixed.gpu_hours * 3600 == pytest.approx(_other_seconds(fixed) * 8 + gen / (A100_BF16 * 0.1), rel=1e-9)
    # eager generate: at least 1 ms a layer a step (32 layers)
    assert (hf.gpu_hours * 3600 / 8 - _other_seconds(hf)) >= 255 * 32e-3


def test_bad_generation_and_lora_settings_exit_2_naming_the_key(tmp_path):
    for stage, key in ((dict(PPO, generation={"tp": 3}), "stages[0].generation.tp"),
                       (dict(PPO, generation={"engine": "trt"}), "stages[0].generation.engine"),
                       (dict(PPO, lora={"rank": 0}), "stages[0].lora.rank"),
                       (dict(PPO, lora={"rank": 8, "targets": ["qkv"]}), "stages[0].lora.targets")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"model": "llama-2-7b", "gpu": "a100-80gb", "stages": [stage]}))
        assert_user_error(run("plan", path), key)


# ---------------------------------------------------------------- fine-tuning step time


def test_without_an_mfu_a_stage_is_timed_by_the_step_time_model_and_lora_steps_faster(tmp_path):
    stage = {"name": "sft", "kind": "sft", "samples": 52_000, "epochs": 3, "seq_len": 512, "global_batch": 128,
             "micro_batch": 4, "parallel": {"dp": 8, "zero": 3}}
    full = pipeline(tmp_path, stage).stages[0]
    lora = pipeline(tmp_path, dict(stage, lora={"rank": 16})).stages[0]
    mfu_full = full.flops_breakdown["model/train"] / full.steps / (8 * A100_BF16 * full.time_per_step_seconds)
    assert 0.3 < mfu_full < 0.8  # a real GEMM-shape model, not the flat 0.4 default
    assert mfu_full != pytest.approx(0.4, abs=1e-3)
    assert lora.time_per_step_seconds < full.time_per_step_seconds
