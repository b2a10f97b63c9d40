"""State-space language models: Mamba (Gu & Dao 2023), Falcon-Mamba and Mamba-2
(Dao & Gu 2024). Each layer is x + mixer(RMSNorm(x)) with no attention and no
feed-forward block (transformers' MambaBlock, Mamba2Block); a final norm_f and
an LM head (tied by default for Mamba, untied for Mamba-2 and Falcon-Mamba).
The mixer is `ssm:` in the spec (blocks/ssm.py); num_attention_heads is 1 and
unused (no layer attends).
"""

from __future__ import annotations

import math

from paramcalc.errors import UserError
from paramcalc.inputs.hf.fields import Config, Converter, Fields

MAMBA = dict(vocab_size=50280, hidden_size=768, state_size=16, num_hidden_layers=32, expand=2, conv_kernel=4,
             use_bias=False, use_conv_bias=True, hidden_act="silu", time_step_rank="auto", tie_word_embeddings=True)


def _stack(f: Fields, inner: int) -> dict:
    return {"vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
            "num_attention_heads": 1, "intermediate_size": inner, "hidden_act": f("hidden_act"),
            "tie_word_embeddings": f("tie_word_embeddings"), "position_embedding": "none", "softmax_fp32": False}


def mamba(f: Fields) -> dict:
    # configuration_mamba: intermediate_size = expand x hidden unless the config names it (a
    # kwarg set after __post_init__); time_step_rank "auto" = ceil(hidden / 16)
    h = f("hidden_size")
    inner = f("intermediate_size") or int(f("expand") * h)
    rank = f("time_step_rank")
    rank = math.ceil(h / 16) if rank == "auto" else rank
    ssm = {"version": 1, "intermediate_size": inner, "state_size": f("state_size"), "conv_kernel": f("conv_kernel"),
           "time_step_rank": rank, "use_bias": bool(f("use_bias")), "use_conv_bias": bool(f("use_conv_bias"))}
    return {**_stack(f, inner), "ssm": ssm}


FALCON_MAMBA = dict(MAMBA, mixer_rms_eps=1e-6)


def falcon_mamba(f: Fields) -> dict:
    # modeling_falcon_mamba: Mamba plus FalconMambaWeightlessRMSNorm on dt, B and C (no parameters:
    # each holds a non-persistent buffer of ones the torch path never reads)
    out = mamba(f)
    out["ssm"]["bcdt_norm"] = True
    return out


MAMBA2 = dict(vocab_size=32768, hidden_size=4096, state_size=128, num_hidden_layers=64, expand=2, conv_kernel=4,
              num_heads=128, head_dim=64, n_groups=8, chunk_size=256, use_bias=False, use_conv_bias=True,
              hidden_act="silu", tie_word_embeddings=False)


def mamba2(f: Fields) -> dict:
    # modeling_mamba2.Mamba2Mixer: d_inner = expand x hidden (the config's intermediate_size is not
    # read), which configuration_mamba2 requires to equal num_heads x head_dim
    h, heads, head_dim = f("hidden_size"), f("num_heads"), f("head_dim")
    inner = int(f("expand") * h)
    if inner != heads * head_dim:
        raise UserError(f"hidden_size x expand ({inner}) is not num_heads x head_dim ({heads} x {head_dim})",
                        field="num_heads", fix="give num_heads and head_dim whose product is hidden_size x expand")
    ssm = {"version": 2, "intermediate_size": inner, "state_size": f("state_size"), "conv_kernel": f("conv_kernel"),
           "num_heads": heads, "n_groups": f("n_groups"), "chunk_size": f("chunk_size"),
           "use_bias": bool(f("use_bias")), "use_conv_bias": bool(f("use_conv_bias"))}
    return {**_stack(f, inner), "ssm": ssm}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "mamba": (mamba, MAMBA), "falcon_mamba": (falcon_mamba, FALCON_MAMBA), "mamba2": (mamba2, MAMBA2),
}
