"""The settings every analysis shares, parsed and checked once: dtypes and
their bytes, training recipes, optimizers, the attention vocabulary, the
shape of a pass, and LoRA given as flags.

Errors name the setting by the library's keyword (`seq_len`, `attention`);
the command line shows it as its flag, a budget or pipeline file as its key.
"""

from __future__ import annotations

from paramcalc.blocks.base import Pass
from paramcalc.blocks.mla import LatentAttention
from paramcalc.blocks.moe import MoE
from paramcalc.errors import UserError
from paramcalc.network import Network, transformer_layer
from paramcalc.units import parse_number, parse_positive, parse_positive_int

DTYPE_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5}

# Optimizer state in bytes per trainable parameter, master weights excluded.
OPTIMIZER_STATE = {
    "adamw": 8, "adam": 8,  # fp32 momentum + variance (Kingma & Ba 2015)
    "adam-8bit": 2,  # 8-bit momentum + variance (Dettmers et al. 2022), block-wise scales left out (<1%)
    "adamw-8bit": 2,  # bitsandbytes' AdamW8bit: the same two 8-bit states
    # bitsandbytes' paged optimizers (PagedAdamW, PagedAdamW8bit; QLoRA's paged_adamw_32bit): the same
    # state, in CUDA unified memory that pages to CPU under pressure; counted on the GPU (errs high)
    "paged-adamw": 8, "paged-adamw-8bit": 2,
    "sgd": 0,  # plain SGD keeps nothing
    "sgd-momentum": 4,  # one fp32 momentum buffer
    "lion": 4,  # one fp32 momentum buffer (Chen et al. 2023)
    # AdamW with bf16 first and second moments (DeepSeek-V3 report, section 3.3.3, "Low-Precision Optimizer
    # States"; DeepSpeed's bf16_optimizer_states): 2 + 2 bytes; the fp32 master copy comes with the precision
    "adamw-bf16": 4,
    "adafactor": None,  # factored second moment: rows + cols per matrix (Shazeer & Stern 2018), see memory.py
}

def optimizer_step_bytes(optimizer: str) -> int:
    """Bytes per parameter `optimizer`'s step moves: the fp32 master and the state read and written
    (2 x (4 + state)), the fp32 gradient read (4), the 16-bit weight written (2): adamw 30,
    adamw-bf16 (DeepSeek-V3's bf16 moments, report section 3.3.3) 22."""
    state = OPTIMIZER_STATE[optimizer]
    return 2 * (4 + (8 if state is None else state)) + 4 + 2


def check_fp8_activations(on: bool, dtype: str) -> None:
    """DeepSeek-V3's fp8 activation caching (report, section 3.3.3) belongs to fp8 training."""
    if on and dtype != "fp8":
        raise UserError(f"fp8 activation caching is part of fp8 training, not {dtype}", field="fp8_activations",
                        fix="give {dtype} fp8, or drop the option")


# Adam's step: its fp32 master weight, momentum and variance read and written (24), the fp32 gradient
# read (4), the 16-bit weight written (2)
OPTIMIZER_BYTES = optimizer_step_bytes("adamw")


# Training recipes: bytes per parameter of (weights, gradients, master copy); None: the --dtype's.
PRECISION = {
    "mixed": (None, None, 4),  # ZeRO's recipe: 16-bit weights and gradients (--dtype), fp32 master
    "fp32": (4, 4, 0),  # everything fp32
    "amp": (4, 4, 0),  # PyTorch AMP: fp32 weights and gradients, 16-bit activations
    "megatron": (None, 4, 4),  # Megatron-LM: 16-bit weights, fp32 main gradients, fp32 master
    # pure bf16 (torchtune's full fine-tunes at dtype bf16, LitGPT's bf16-true): bf16 weights and
    # gradients, no fp32 master, and the optimizer's state in the parameters' dtype (torch.optim
    # allocates it like the parameter): Adam 2 + 2 + 4 = 8 bytes a parameter (torchtune's
    # full_finetune recipes with `dtype: bf16`; Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep
    # Learning Training", on training in bf16). Errs neither way in bytes; it may cost accuracy.
    "bf16": (2, 2, 0),
}

# Optimizer state under the pure-bf16 recipe: torch.optim's fp32 moments become bf16 ones (half: they are
# zeros_like the parameter); 8-bit and bf16 states stay, and so do bitsandbytes' 32-bit paged ones, which it
# allocates in fp32 whatever the parameter's dtype (Optimizer2State.init_state: state1/state2 as float32 for
# optim_bits 32)
STATE_IN_BF16 = {name: (None if b is None else b if "8bit" in name or "bf16" in name or name.startswith("paged")
                        else b // 2)
                 for name, b in OPTIMIZER_STATE.items()}

# Whose training loop and quantization plugin (`--trainer`): hf (transformers' models and loss, PEFT, TRL, HF
# Trainer, DeepSpeed) | litgpt (LitGPT's finetune scripts on Lightning Fabric); analysis/memory.py _overheads
TRAINERS = ("hf", "litgpt")

# CPU offload of training state (`--offload`): none | optimizer (ZeRO-Offload, Ren et al. 2021: fp32
# master, optimizer state and gradients on the CPU, the step there) | params (DeepSpeed's offload_param
# under ZeRO-3: the 16-bit weight shards on the CPU, fetched per layer) | both (the two, as FSDP's
# CPUOffload(offload_params=True) runs: weights, gradients and optimizer state on the CPU).
OFFLOAD = ("none", "optimizer", "params", "both")

RECOMPUTE = ("none", "selective", "full")
# Training adds torchtitan's op-level selective checkpointing (analysis/op_checkpoint.py) and
# DeepSeek-V3's module recomputation: what `flops`, `cost`, `memory` and `estimate` accept.
TRAIN_RECOMPUTE = (*RECOMPUTE, "op", "deepseek")

# The sublayers a recomputation mode reruns in backward, in Megatron-Core's names
# (TransformerConfig.recompute_modules, granularity "selective"), which the blocks read
# (blocks/base.py, Activations). deepseek: DeepSeek-V3 report, section 3.2.3 ("Recomputation of
# RMSNorm and MLA Up-Projection": every RMSNorm's output and MLA's up-projections, rotary included)
# and section 3.3.3 ("Inputs of the SwiGLU operator in MoE": the experts' SwiGLU output); Megatron
# Bridge's DeepSeek-V3 recipe names the same three: layernorm, mla_up_proj, moe_act.
RECOMPUTE_MODULES = {"deepseek": frozenset({"layernorm", "mla_up_proj", "moe_act"})}


def recipe_layers(net: Network) -> tuple[bool, bool]:
    """(MLA layers, MoE layers) in `net`: what DeepSeek-V3's recipe reaches beyond the norms and
    the Linears (mla_up_proj reruns MLA's up-projections, moe_act the routed experts' SwiGLU). A
    dense attention model (Llama) has neither; a layers network (ResNet) no transformer layer."""
    layers = [transformer_layer(stage) for stage in net.layers]
    return (any(isinstance(layer.attention, LatentAttention) for layer in layers),
            any(isinstance(layer.mlp, MoE) for layer in layers))


# One attention vocabulary for every command. eager: what transformers' eager attention
# computes and keeps (the full s x s scores and probabilities; FLOPs count the whole
# rectangle, the PaLM / Megatron MFU convention). flash: what SDPA's flash and
# memory-efficient kernels do (the unmasked pairs only, capped by a sliding window; no
# s x s tensor kept). The older spellings stay accepted: dense and causal (flops), sdpa (bench).
ATTENTION = ("eager", "flash")
_ATTENTION_ALIASES = {"eager": "eager", "dense": "eager", "flash": "flash", "causal": "flash", "sdpa": "flash"}


def parse_attention(text: str, *, field: str = "attention") -> str:
    """eager | flash (dense, causal and sdpa accepted as their aliases)."""
    try:
        return _ATTENTION_ALIASES[str(text).lower()]
    except KeyError:
        raise UserError(f"unknown attention {text!r}", field=field,
                        fix="use eager (full s x s scores) or flash (SDPA's fused kernels); "
                            "dense, causal and sdpa are accepted as aliases") from None


def flops_convention(attention: str) -> str:
    """The Pass convention for counting score FLOPs: eager kernels compute the dense rectangle."""
    return "dense" if attention == "eager" else "causal"


def choose(value: str, choices, field: str) -> str:
    if value not in choices:
        raise UserError(f"unknown {field.replace('_', ' ')} {value!r}", field=field,
                        fix=f"use one of: {', '.join(choices)}")
    return value


def make_pass(net: Network, seq_len, batch, attention: str = "eager") -> Pass:
    """The pass the shape flags describe: batch x seq_len tokens (the architecture's
    default length, or its fixed one), FLOPs counted as the attention kernel computes."""
    asked = None if seq_len is None else parse_positive_int(seq_len, field="seq_len")
    return Pass(batch=parse_positive_int(batch, field="batch"), seq=net.seq_len(asked),
                attention=flops_convention(parse_attention(attention)))


def with_lora_flags(net: Network, rank, targets: str | None, dropout=None) -> Network:
    """The network with LoRA adapters from the `lora_rank` / `lora_targets` / `lora_dropout` settings."""
    if rank is None:
        if targets or dropout is not None:
            field = "lora_targets" if targets else "lora_dropout"
            raise UserError(f"{field.replace('_', ' ')} needs a LoRA rank", field=field, fix="give {lora_rank} too")
        return net
    from paramcalc.network.adapters import with_lora

    chosen = tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else ("q_proj", "v_proj")
    p = 0.0 if dropout is None else parse_number(dropout, field="lora_dropout")
    try:
        return with_lora(net, parse_positive_int(rank, field="lora_rank"), targets=chosen, dropout=float(p))
    except UserError as e:
        names = {"rank": "lora_rank", "target_modules": "lora_targets", "dropout": "lora_dropout"}
        raise UserError(e.message, field=names.get(e.field or "", e.field), fix=e.fix) from None


def positive_float(value, field: str) -> float:
    return float(parse_positive(value, field=field))
