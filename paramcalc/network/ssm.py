"""A spec's state-space mixer (`ssm:`) as its block: Mamba or Mamba-2 (blocks/ssm.py)."""

from __future__ import annotations

from paramcalc.blocks.ssm import Mamba, Mamba2
from paramcalc.inputs.spec import SSMSpec


def ssm_mixer(hidden: int, ssm: SSMSpec) -> Mamba | Mamba2:
    if ssm.version == 2:
        assert ssm.num_heads is not None, "a validated Mamba-2 spec has num_heads"
        return Mamba2(hidden, ssm.intermediate_size, ssm.state_size, ssm.num_heads, ssm.n_groups, ssm.chunk_size,
                      ssm.conv_kernel, ssm.use_bias, ssm.use_conv_bias)
    assert ssm.time_step_rank is not None, "a validated Mamba spec has time_step_rank"
    return Mamba(hidden, ssm.intermediate_size, ssm.state_size, ssm.conv_kernel, ssm.time_step_rank, ssm.use_bias,
                 ssm.use_conv_bias, ssm.bcdt_norm, ssm.bcdt_norm_weight)
