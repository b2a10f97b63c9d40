"""Frozen parts and LoRA adapters (Hu et al. 2021): counts against PEFT's
published figure, adapted blocks against their modules, backward FLOPs of
frozen weights against FlopCounterMode, and model states on trainable
parameters only (QLoRA: a 4-bit frozen base)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli import run
from test_blocks import module_params
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.analysis.count import count_params
from paramcalc.analysis.flops import backward_flops, count_flops
from paramcalc.analysis.memory import estimate_memory
from paramcalc.blocks.base import Pass
from paramcalc.inputs.spec import TransformerSpec
from paramcalc.network import Network, Stage
from paramcalc.network import lower as build

DATA = Path(__file__).parent / "data" / "hf-configs"
TINY = dict(vocab_size=101, hidden_size=48, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


def test_llama_2_7b_with_rank_8_on_q_and_v_matches_peft():
    """PEFT's print_trainable_parameters for Llama-2-7b, r=8, target_modules q_proj, v_proj:
    'trainable params: 4,194,304 || all params: 6,742,609,920' (32 layers x 2 x 8 x (4096 + 4096))."""
    p = count_params("llama-2-7b", lora_rank=8, lora_targets="q_proj,v_proj").params
    assert (p.trainable, p.total, p.frozen) == (4_194_304, 6_742_609_920, 6_738_415_616)


def test_lora_flags_work_on_a_hugging_face_config():
    r = run("count", DATA / "llama-2-7b.json", "--lora-rank", "8", "--json")
    assert r.code == 0, r.err
    assert r.json["params"]["trainable"] == 4_194_304 and r.json["params"]["frozen"] == 6_738_415_616


def test_each_adapted_linear_adds_rank_times_in_plus_out():
    spec = TransformerSpec(**TINY, lora={"rank": 4, "target_modules": ["q_proj", "k_proj", "down_proj"]})
    h, kv, f = 48, 2 * 12, 40
    per_layer = 4 * ((h + h) + (h + kv) + (f + h))
    assert sum(build(spec).trainable_params().values()) == 2 * per_layer


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ("o_proj", "gate_proj", "up_proj", "down_proj")])
def test_an_adapted_layer_matches_its_module_in_parameters_and_flops(targets):
    spec = TransformerSpec(**TINY, lora={"rank": 4, "target_modules": targets})
    block = build(spec).layers[0].block
    module = block.module()
    assert module_params(module) == block.params()
    with FlopCounterMode(display=False) as counter:
        module(torch.randn(2, 7, 48))
    assert counter.get_total_flops() == sum(block.flops(Pass(2, 7)).values())


@pytest.mark.parametrize("freeze,train", [(("*",), ("*/lora_A", "*/lora_B")), (("layers/mlp",), ())])
def test_frozen_weights_skip_their_weight_gradient_in_backward(freeze, train):
    spec = TransformerSpec(**TINY, lora={"rank": 4} if train else None)
    block = build(spec).layers[0].block
    net = Network("tiny", (Stage("layers", block),), freeze=freeze, train=train)
    module = block.module()
    for name, param in module.named_parameters():
        param.requires_grad_(not net.is_frozen("layers/" + name.replace(".", "/")))
    x = torch.randn(2, 7, 48, requires_grad=True)  # a layer inside a network: its input carries a gradient
    out = module(x)
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    assert counter.get_total_flops() == backward_flops(net, Pass(2, 7))
    assert backward_flops(net, Pass(2, 7)) < 2 * sum(net.flops(Pass(2, 7)).values())


def test_memory_keeps_gradients_and_optimizer_state_for_trainable_parameters_only():
    m = estimate_memory("llama-2-7b", seq_len=256, lora_rank=8).memory
    total, trainable = 6_742_609_920, 4_194_304
    assert m.weights == 2 * total
    assert m.gradients == 2 * trainable
    assert m.optimizer == 12 * trainable  # fp32 master, momentum, variance (ZeRO's mixed recipe)


def test_qlora_stores_the_frozen_base_in_4_bits_and_the_adapters_in_bf16():
    m = estimate_memory("llama-2-7b", seq_len=256, dtype="int4", lora_rank=8).memory
    frozen, trainable = 6_738_415_616, 4_194_304
    sixteen_bit = 2 * 32000 * 4096 + 65 * 4096  # embedding, lm_head and norms stay bf16 (bitsandbytes, PEFT)
    # NF4 layer linears: 4 bits a weight + 0.127 bits of double-quantized block constants (tests/test_post_training)
    assert (frozen - sixteen_bit) // 2 < m.weights - 2 * sixteen_bit - 2 * trainable < (frozen - sixteen_bit) * 0.52
    assert m.gradients == 2 * trainable
    bf16 = estimate_memory("llama-2-7b", seq_len=256, dtype="bf16", lora_rank=8).memory
    assert m.activations == bf16.activations  # QLoRA computes in bf16; 4-bit linears keep no input (test_lora_memory)


def test_full_training_in_int4_is_still_refused():
    r = run("memory", "llama-2-7b", "--dtype", "int4", "--seq-len", "256")
    assert r.code == 2 and "int4" in r.err


def test_freeze_patterns_in_a_spec_freeze_matching_keys(tmp_path):
    path = tmp_path / "frozen.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()) + "freeze: [embedding, 'layers/*/q_proj']\n")
    p = count_params(str(path)).params
    q = 2 * 48 * 48
    assert p.frozen == 101 * 48 + q and p.trainable == p.total - p.frozen
    f = count_flops(str(path), seq_len=8).flops
    assert f.backward == 2 * f.forward - 2 * 8 * 48 * 48 * 2  # two layers' q_proj: input gradient only


def test_a_freeze_pattern_that_matches_nothing_names_the_field_and_line(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()) + "freeze: [embeddings]\n")
    r = run("count", path)
    assert r.code == 2 and "typo.yaml:7:" in r.err and "freeze" in r.err and "embeddings" in r.err


def test_lora_in_a_spec_with_modules_to_save_trains_the_head_too(tmp_path):
    path = tmp_path / "lora.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items())
                    + "lora: {rank: 2, target_modules: [v_proj], modules_to_save: [head]}\n")
    p = count_params(str(path)).params
    assert p.trainable == 2 * 2 * (48 + 24) + 48 * 101


@pytest.mark.parametrize("args,fragment", [
    (("count", "llama-2-7b", "--lora-targets", "q_proj"), "--lora-rank"),
    (("count", "llama-2-7b", "--lora-rank", "8", "--lora-targets", "qkv"), "qkv"),
    (("count", "resnet-50", "--lora-rank", "8"), "transformer"),
])
def test_lora_flag_mistakes_exit_2_naming_the_flag(args, fragment):
    r = run(*args)
    assert r.code == 2 and fragment in r.err and "Traceback" not in r.err
