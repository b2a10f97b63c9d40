"""Hugging Face `config.json` -> TransformerSpec.

One small function per model_type reads the fields that family really uses;
a field the config omits takes transformers' default for that model_type
(the `<Family>Config.__init__` defaults of transformers 5.24.0, the
reference version). `architectures[0]` picks the head: *ForCausalLM,
*ForConditionalGeneration and MarianMTModel have an LM head (an encoder
family's causal-LM class keeps its MLM head), *Model none (BERT's a pooler),
*ForMaskedLM the MLM head, *ForSequenceClassification a classifier,
*ForTokenClassification and *ForQuestionAnswering a linear layer per token.
Where a family's code ignores a config field (OLMo's mlp_bias, StableLM's
head_dim), so does its converter: the count is the instantiated model's.
"""

from __future__ import annotations

from pathlib import Path

from paramcalc.errors import UserError, warn
from paramcalc.inputs.files import load_mapping, validate
from paramcalc.inputs.hf import (
    albert,
    clip,
    deberta,
    encoders,
    gemma,
    gpt,
    jamba,
    llama,
    mamba,
    moe,
    qwen,
    seq2seq,
    whisper,
)
from paramcalc.inputs.hf.fields import Config, Converter, Fields
from paramcalc.inputs.spec import TransformerSpec


def _head(arch: str, *, encoder: bool = False) -> dict:
    if arch.endswith(("ForCausalLM", "ForConditionalGeneration", "LMHeadModel", "MTModel")):  # MarianMTModel
        # an encoder family's causal-LM class (BertLMHeadModel, RobertaForCausalLM)
        # keeps the MLM head: transform + LayerNorm + tied decoder
        return {"head": "mlm" if encoder else "lm"}
    if arch.endswith("ForMaskedLM"):
        return {"head": "mlm"}
    if arch.endswith(("ForSequenceClassification", "ForImageClassification")):
        return {"head": "classifier"}
    if arch.endswith("ForTokenClassification"):
        return {"head": "token-classifier"}
    if arch.endswith("ForQuestionAnswering"):
        return {"head": "qa"}
    if arch.endswith("Model"):
        return {"head": "pooler" if encoder else "none"}
    raise UserError(f"unsupported architecture {arch!r}", field="architectures[0]",
                    fix="use a *ForCausalLM, *Model, *ForMaskedLM, *ForSequenceClassification, "
                        "*ForTokenClassification or *ForQuestionAnswering class")


FAMILIES: dict[str, tuple[Converter, Config]] = {
    **llama.MODEL_TYPES, **qwen.MODEL_TYPES, **gemma.MODEL_TYPES, **gpt.MODEL_TYPES, **moe.MODEL_TYPES,
    **encoders.MODEL_TYPES, **seq2seq.MODEL_TYPES, **albert.MODEL_TYPES, **deberta.MODEL_TYPES,
    **mamba.MODEL_TYPES, **whisper.MODEL_TYPES, **jamba.MODEL_TYPES, **clip.MODEL_TYPES,
}


def analytic(cfg: Config) -> bool:
    """Whether an importer here models the config; else transformers counts it on the meta
    device (meta_fallback.py): model types without one, and CLIP's and LLaVA's classes and
    towers that clip.py does not model (LLaVA with a SigLIP tower, CLIP*WithProjection)."""
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        return False
    return clip.analytic(cfg) if model_type in clip.ARCHITECTURES else True


def from_config(cfg: Config, where: str = "config.json", name: str | None = None) -> TransformerSpec:
    """A spec for the class named in `architectures[0]` of a config.json mapping."""
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str):
        model_type = repr(model_type)  # named in the error below
    text = cfg.get("text_config")
    if model_type not in FAMILIES and isinstance(text, dict) and str(text.get("model_type")) in FAMILIES:
        raise UserError(f"model_type {model_type!r} wraps a {text['model_type']!r} language model with other towers "
                        "(vision, audio) that paramcalc does not model", where=where, field="model_type",
                        fix="to count the language model alone, save the 'text_config' object as its own "
                            "config.json (paramcalc reads its model_type)")
    if model_type not in FAMILIES:
        raise UserError(f"unsupported model_type {model_type!r}", where=where, field="model_type",
                        fix=f"supported: {', '.join(sorted(FAMILIES))}")
    convert, defaults = FAMILIES[model_type]
    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else "ForCausalLM"
    try:
        read = Fields(cfg, dict(defaults))
        fields = convert(read)
        if model_type == "whisper" and arch == "WhisperForCausalLM":
            raise UserError(f"{arch} (Whisper's decoder alone) is not modelled: paramcalc models Whisper's "
                            "encoder-decoder",
                            field="architectures[0]", fix="use WhisperForConditionalGeneration or WhisperModel")
        if model_type == "electra" and arch.endswith("ForPreTraining"):
            fields["head"] = "discriminator"  # ELECTRA's pre-training class is its replaced-token detector
        elif "head" not in fields:  # CLIP's and LLaVA's converters name theirs
            fields.update(_head(arch, encoder=fields.get("architecture") in ("encoder", "vit")))
    except UserError as e:
        raise e.placed(where, e.field) from None
    except (TypeError, ValueError, AttributeError) as e:
        raise UserError(f"a field has the wrong type ({e})", where=where,
                        fix="compare with the model's config.json on the Hugging Face hub") from None
    if model_type in ("distilbert", "electra", "deberta-v2") and fields["head"] == "pooler":
        fields["head"] = "none"  # DistilBertModel, ElectraModel and DebertaV2Model end at the last layer
    if fields.get("architecture") == "encoder-decoder" and (arch.endswith("EncoderModel")
                                                            or fields["head"] == "token-classifier"):
        # (M)T5EncoderModel, and *ForTokenClassification built on it: the encoder stack alone
        fields.update(architecture="encoder", num_decoder_layers=None)
        if arch.endswith("EncoderModel"):
            fields["head"] = "none"
    if fields["head"] in ("classifier", "token-classifier", "qa"):
        labels = cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 2
        fields["num_labels"] = labels
    scaling = cfg.get("rope_scaling") or cfg.get("rope_parameters")
    if isinstance(scaling, dict) and isinstance(scaling.get("original_max_position_embeddings"), int):
        # Llama 3.1's long-context RoPE scaling names the context it was pre-trained at
        fields["training_seq_len"] = scaling["original_max_position_embeddings"]
    fields = {k: v for k, v in fields.items() if v is not None}
    spec = validate(TransformerSpec, {"name": name, "family": model_type, "source": where, **fields}, where=where)
    defaulted = read.defaulted_sizes()
    if defaulted:  # transformers' behaviour, kept: the count stands, and says what it assumed
        sizes = ", ".join(f"{k}={v}" for k, v in defaulted.items())
        warn(f"{where}: defaulted {sizes} (transformers' {config_class(model_type)} defaults)")
    return spec


# transformers' config class per model_type where it is not the model_type in title case
# (`qwen2_moe` -> Qwen2MoeConfig); tests/test_cli_polish.py holds these to transformers' own table
_CONFIG_CLASSES = {
    "smollm3": "SmolLM3Config", "stablelm": "StableLmConfig", "granitemoe": "GraniteMoeConfig", "gpt2": "GPT2Config",
    "gpt_bigcode": "GPTBigCodeConfig", "gpt_neox": "GPTNeoXConfig", "gpt_neo": "GPTNeoConfig", "gptj": "GPTJConfig",
    "opt": "OPTConfig", "xlm-roberta": "XLMRobertaConfig", "distilbert": "DistilBertConfig", "vit": "ViTConfig",
    "mt5": "MT5Config", "mbart": "MBartConfig", "clip": "CLIPConfig", "clip_text_model": "CLIPTextConfig",
    "clip_vision_model": "CLIPVisionConfig"}


def config_class(model_type: str) -> str:
    """transformers' configuration class for a model_type (`llama` -> LlamaConfig)."""
    return _CONFIG_CLASSES.get(model_type) or model_type.title().replace("_", "").replace("-", "") + "Config"


def from_config_file(path: Path) -> TransformerSpec:
    # a snapshot's config.json is named after its folder (Llama-3.1-8B/config.json: Llama-3.1-8B)
    name = path.parent.resolve().name if path.stem == "config" and path.parent.resolve().name else path.stem
    return from_config(load_mapping(path), str(path), name=name)
