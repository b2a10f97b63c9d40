"""Lowering: every kind of model becomes one Network, which every analysis takes.

`lower(model)` accepts a TARGET (a preset name, a config.json or snapshot
folder, a YAML spec, a bare count such as `7.5B`), a spec object, or a
Network (returned as it is). A problem found while lowering (a layer that
does not fit its input, a freeze pattern that matches nothing) is placed at
its key and line when the spec came from a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Union

from paramcalc.errors import UserError
from paramcalc.network.network import (
    BareCount,
    LayersNetwork,
    Network,
    Stage,
    TransformerNetwork,
    stage_of,
    transformer_layer,
    unwrap,
)

if TYPE_CHECKING:
    from paramcalc.inputs.target import Source, Spec

Model = Union[str, Path, "Spec", Network]


def lower(model: Model, *, base: Path | None = None) -> Network:
    """The network of any model; `base` resolves relative paths (budget and pipeline files).

    >>> lower("llama-3.1-8b").total_params
    8030261248
    """
    if isinstance(model, Network):
        return model
    from paramcalc.inputs.target import Source, read_target

    return lower_source(read_target(model, base=base) if isinstance(model, (str, Path)) else Source(model))


def lower_source(source: Source) -> Network:
    """The network of a resolved TARGET; a YAML spec's errors placed at its key and line."""
    try:
        return lower_spec(source.spec)
    except UserError as error:
        if source.path is None or not error.field or error.where:
            raise
        from paramcalc.inputs.files import locate, undotted

        raise error.placed(locate(source.path, undotted(error.field)), error.field) from None


def lower_spec(spec: Spec) -> Network:
    """The one place that asks what kind of spec it holds."""
    from paramcalc.inputs.spec import CountSpec, TransformerSpec
    from paramcalc.network.adapters import freeze, with_lora

    if isinstance(spec, CountSpec):
        return BareCount(spec.name, count=spec.params)
    if isinstance(spec, TransformerSpec):
        from paramcalc.network.transformer import lower_transformer

        net: Network = lower_transformer(spec)
        if spec.lora:
            lora = spec.lora
            try:
                net = with_lora(net, lora.rank, alpha=lora.alpha, targets=lora.target_modules,
                                modules_to_save=lora.modules_to_save, dropout=float(lora.dropout))
            except UserError as error:
                raise error.under("lora") from None
        return freeze(net, spec.freeze)
    from paramcalc.inputs.hf.meta_fallback import MeasuredSpec

    if isinstance(spec, MeasuredSpec):  # a transformers model counted on the meta device
        from paramcalc.network.measured import MeasuredCount

        return MeasuredCount(spec.name, count=spec.params, embedding=spec.embedding, buffer_count=spec.buffers,
                             model_class=spec.model_class, config_text=spec.config_text, source=spec.source,
                             note=spec.note, parts=spec.parts)
    from paramcalc.inputs.factory import FactorySpec

    if isinstance(spec, FactorySpec):  # the user's own module, built and profiled by torch
        return spec.network
    from paramcalc.network.layers import lower_layers

    return freeze(lower_layers(spec), spec.freeze)


__all__ = ["BareCount", "LayersNetwork", "Model", "Network", "Stage", "TransformerNetwork", "lower", "lower_source",
           "lower_spec", "stage_of", "transformer_layer", "unwrap"]
