"""A config.json with no analytic importer, counted by transformers itself.

paramcalc's importers (inputs/hf/) cover the families it models block by
block. Any other model_type transformers knows is built on the meta device
(shapes, no memory, no initialisation cost) as the class `architectures[0]`
names, else AutoModelForCausalLM, else AutoModel, and its parameters are
summed: `sum(p.numel() for p in model.parameters())`, which holds each tied or
shared parameter once. Forward FLOPs, when an analysis asks, are measured by
torch.utils.flop_counter.FlopCounterMode over a meta-device forward of
batch x seq `input_ids` (2 FLOPs per multiply-add, matmuls and attention
kernels; elementwise work not counted); a model whose forward needs other
inputs or does not run on meta reports none, with a note.

torch and transformers are imported here only, when this path is taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from paramcalc.errors import UserError

INSTALL = "pip install 'paramcalc[torch]' transformers"


@dataclass(frozen=True)
class MeasuredSpec:
    """A model counted by instantiating its transformers class on the meta device."""

    name: str
    params: int
    embedding: int
    buffers: int
    model_type: str
    model_class: str  # the transformers class built
    config_text: str  # the config.json mapping as JSON (hashable), rebuilt to measure FLOPs
    source: str
    note: str  # why this path was taken and how the count was made
    parts: tuple = ()  # network/profiled.py's Parts: the base model's children (a vision tower, a projector)


def measure(cfg: dict, where: str, name: str | None, supported: list[str]) -> MeasuredSpec:
    """Count a config.json whose model_type has no analytic importer."""
    model_type = str(cfg.get("model_type"))
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        text = cfg.get("text_config")
        if isinstance(text, dict) and str(text.get("model_type")) in supported:
            raise UserError(f"model_type {model_type!r} wraps a {text['model_type']!r} language model with other "
                            "towers (vision, audio); counting the whole model needs transformers and torch, which "
                            "are not installed", where=where, field="model_type",
                            fix=f"install them ({INSTALL}) to count it on the meta device; or, to count the "
                                "language model alone, save the 'text_config' object as its own config.json "
                                "(paramcalc reads its model_type)") from None
        raise UserError(f"model_type {model_type!r} has no analytic importer, and counting it exactly needs "
                        "transformers and torch, which are not installed", where=where, field="model_type",
                        fix=f"install them ({INSTALL}) to count it on the meta device; analytic importers: "
                            f"{', '.join(supported)}") from None
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise UserError(f"unsupported model_type {model_type!r}: neither paramcalc's importers nor transformers "
                        f"{transformers.__version__} know it", where=where, field="model_type",
                        fix=f"supported: {', '.join(supported)}; or upgrade transformers if the model is newer")
    text = json.dumps(cfg, sort_keys=True)
    model, cls = _build(text, where)
    params = {id(p): p.numel() for p in model.parameters()}
    embedding = _embedding_params(model)
    buffers = sum(b.numel() for b in model.buffers())
    version = transformers.__version__
    note = (f"model_type {model_type!r} has no analytic importer in paramcalc: counted exactly by building "
            f"transformers {version}'s {cls} on the meta device (sum of parameters.numel(), tied ones once); "
            "FLOPs measured by FlopCounterMode over a meta-device forward, memory without activations")
    towers = [k for k in cfg if k.endswith("_config") and k != "text_config" and isinstance(cfg[k], dict)]
    if towers:  # a multimodal model: every tower is in the count, shown apart in the breakdown
        note += (f"; multimodal: the count holds every tower ({', '.join(towers)}, text_config) and the projector, "
                 "each shown in the breakdown")
    from paramcalc.torchref.profile import parts_of

    parts = parts_of(model, getattr(model, "base_model_prefix", None) or None)
    return MeasuredSpec(name=name or model_type, params=sum(params.values()), embedding=embedding, buffers=buffers,
                        model_type=model_type, model_class=cls, config_text=text, source=where, note=note,
                        parts=parts)


@lru_cache(maxsize=4)
def _build(text: str, where: str):
    """(the model on the meta device, its class name), built once per config in a process."""
    import torch
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cfg = json.loads(text)
    model_type = cfg["model_type"]
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # config sanity warnings about token ids are not ours to show
    try:
        config = CONFIG_MAPPING[model_type].from_dict({k: v for k, v in cfg.items() if k != "model_type"})
        archs = cfg.get("architectures")
        named = getattr(transformers, archs[0], None) if isinstance(archs, list) and archs and \
            isinstance(archs[0], str) else None
        with torch.device("meta"):
            if named is not None and hasattr(named, "_from_config"):
                model = named._from_config(config)
            else:
                try:
                    model = transformers.AutoModelForCausalLM.from_config(config)
                except ValueError:  # no causal-LM class for this config: the bare model
                    model = transformers.AutoModel.from_config(config)
    except Exception as error:  # a config transformers refuses: its own message says which field
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"transformers cannot build model_type {model_type!r} from it ({first})", where=where,
                        field="model_type", fix="compare with the model's config.json on the Hugging Face hub") \
            from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model.eval(), type(model).__name__


def _embedding_params(model) -> int:
    from torch import nn

    seen: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            seen[id(module.weight)] = module.weight.numel()
    return sum(seen.values())


def measure_forward_flops(spec_text: str, where: str, batch: int, seq: int) -> tuple[int | None, str]:
    """FLOPs of one meta-device forward over batch x seq input_ids, or None and why."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model, cls = _build(spec_text, where)
    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(input_ids=ids)
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return None, f"FLOPs unknown: {cls}'s forward over input_ids did not run on the meta device ({first[:160]})"
    towers = [k for k, v in json.loads(spec_text).items() if k.endswith("_config") and k != "text_config"
              and isinstance(v, dict)]
    text_only = (f"; input_ids alone run the language model: the {', '.join(towers)} tower's FLOPs on images or "
                 "audio are not in it") if towers else ""
    return counter.get_total_flops(), (f"forward FLOPs measured by torch FlopCounterMode over {cls} on the meta "
                                       f"device, batch {batch} x seq {seq} input_ids (2 per multiply-add; "
                                       f"elementwise work not counted); backward = 2 x forward{text_only}")
