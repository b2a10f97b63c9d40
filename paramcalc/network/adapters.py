"""What training changes on a lowered network: frozen parts and LoRA adapters.

- `freeze(net, patterns)`: parameters matching the globs keep no gradients or
  optimizer state; every pattern must match some parameter (a typo would
  silently train everything).
- `with_lora(net, ...)`: Hu et al. 2021: adapters on the named linears of every
  layer, everything else frozen except PEFT's `modules_to_save`. A spec's
  `lora:` and the command line's `--lora-rank` come here alike.
"""

from __future__ import annotations

from dataclasses import replace

from paramcalc.errors import UserError
from paramcalc.network.network import Adapters, Network, Stage, matches

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def freeze(net: Network, patterns: tuple[str, ...], *, field: str = "freeze") -> Network:
    if not patterns:
        return net
    check_patterns(net, patterns, field=field)
    return replace(net, freeze=tuple(net.freeze) + tuple(patterns))


def with_lora(net: Network, rank: int, *, alpha: float = 16.0, targets: tuple[str, ...] = ("q_proj", "v_proj"),
              modules_to_save: tuple[str, ...] = (), dropout: float = 0.0) -> Network:
    """The network with LoRA adapters of `rank` on `targets`, its base frozen; `dropout` is PEFT's
    lora_dropout on each adapter's input (what it keeps for backward: blocks/lora.py).
    Errors name `rank`, `target_modules`, `modules_to_save` or `dropout` (nest them: `lora.rank`)."""
    from paramcalc.blocks.lora import adapt, adapters_of  # imported only when used: cold starts stay short

    if not net.layers:
        raise UserError("LoRA adapters need a transformer architecture", field="rank",
                        fix="give a preset, config.json or transformer YAML spec")
    if not 0 <= dropout < 1:
        raise UserError(f"lora dropout must be a probability in [0, 1), got {dropout}", field="dropout",
                        fix="write 0.05 for 5% (PEFT's lora_dropout)")
    stages = tuple(Stage(s.name, adapt(s.block, rank, alpha, targets, dropout), s.count) for s in net.stages)
    adapted = {path.rsplit("/", 1)[-1] for s in stages for path, _ in adapters_of(s.block)}
    missing = [t for t in targets if t not in adapted]
    if missing:
        raise UserError(f"{missing} match no linear layer of this model", field="target_modules",
                        fix=f"use some of {', '.join(TARGETS)}")
    check_patterns(net, modules_to_save, field="modules_to_save")
    return replace(net, stages=stages, freeze=("*", *net.freeze),
                   train=("*/lora_A", "*/lora_B", *modules_to_save),
                   adapters=Adapters(rank, alpha, tuple(targets), tuple(modules_to_save), dropout))


def check_patterns(net: Network, patterns: tuple[str, ...], *, field: str) -> None:
    keys = list(net.params())
    for pattern in patterns:
        if pattern != "*" and not any(matches(k, (pattern,)) for k in keys):
            examples = ", ".join(sorted({k.split("/", 1)[0] for k in keys}))
            raise UserError(f"pattern {pattern!r} matches no parameter", field=field,
                            fix=f"patterns match breakdown keys, which start with: {examples}")
