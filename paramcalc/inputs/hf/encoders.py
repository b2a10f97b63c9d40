"""Encoders: BERT and its descendants (RoBERTa, XLM-R, DistilBERT, ELECTRA),
post-norm layers over learned token and position embeddings, and ViT,
pre-norm layers over image patches.
"""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.inputs.hf.fields import Config, Converter, Fields

BERT = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            hidden_act="gelu", max_position_embeddings=512, type_vocab_size=2, tie_word_embeddings=True,
            hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def bert(f: Fields) -> dict:
    return {"architecture": "encoder", "vocab_size": f("vocab_size"), "hidden_size": f("hidden_size"),
            "num_hidden_layers": f("num_hidden_layers"), "num_attention_heads": f("num_attention_heads"),
            "intermediate_size": f("intermediate_size"), "hidden_act": f("hidden_act"), "mlp": "plain",
            "mlp_bias": True, "qkv_bias": True, "o_bias": True, "norm": "layernorm", "layout": "post",
            "final_norm": False, "embedding_norm": True, "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"), "type_vocab_size": f("type_vocab_size"),
            "tie_word_embeddings": f("tie_word_embeddings"), "attention_dropout": f("attention_probs_dropout_prob"),
            "hidden_dropout": f("hidden_dropout_prob"), "embedding_dropout": f("hidden_dropout_prob"),
            "softmax_fp32": False}


DISTILBERT = dict(vocab_size=30522, max_position_embeddings=512, n_layers=6, n_heads=12, dim=768, hidden_dim=3072,
                  activation="gelu", dropout=0.1, attention_dropout=0.1, tie_word_embeddings=True)


def distilbert(f: Fields) -> dict:
    # DistilBERT (Sanh et al. 2019): BERT's post-norm layers without token types;
    # *Model has no pooler, the classifier's pre_classifier + classifier match BERT's
    # pooler + classifier. Sinusoidal positions are still an (untrained) table.
    fields = {**bert(f), "hidden_size": f("dim", "hidden_size"),
              "num_hidden_layers": f("n_layers", "num_hidden_layers"),
              "num_attention_heads": f("n_heads", "num_attention_heads"), "intermediate_size": f("hidden_dim"),
              "hidden_act": f("activation"), "type_vocab_size": 0, "attention_dropout": f("attention_dropout"),
              "attention_output_dropout": False,
              "hidden_dropout": f("dropout"), "embedding_dropout": f("dropout")}
    return fields


ELECTRA = dict(BERT, embedding_size=128, hidden_size=256, num_attention_heads=4, intermediate_size=1024)


def electra(f: Fields) -> dict:
    # ELECTRA (Clark et al. 2020; modeling_electra): BERT's layers over embeddings
    # of embedding_size projected (with a bias) to hidden_size; *Model has no
    # pooler; *ForPreTraining is the replaced-token discriminator; *ForMaskedLM the
    # generator, whose MLM head transforms down to embedding_size.
    return {**bert(f), "embedding_size": f("embedding_size")}


ROBERTA = dict(BERT, vocab_size=50265)
XLM_ROBERTA = dict(BERT, vocab_size=30522)


def roberta(f: Fields) -> dict:
    # BERT's layers and heads. Positions start at pad_token_id + 1 but the table
    # keeps max_position_embeddings rows (514 in roberta-base's config), so the
    # count needs nothing new; the classification head (dense + out_proj on <s>)
    # has the same shapes as BERT's pooler + classifier.
    return bert(f)


VIT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_size=224, patch_size=16, num_channels=3,
           qkv_bias=True)


def _square(size, field: str) -> int:
    """ViTConfig takes a size or a (height, width) pair; paramcalc models square ones."""
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise UserError(f"{field} {list(size)} is not square", field=field,
                            fix="paramcalc models square images and patches")
        return size[0]
    return size


def vit(f: Fields) -> dict:
    # ViT (Dosovitskiy et al. 2021; modeling_vit): patches by a strided conv, a
    # class token and learned positions, pre-norm encoder layers (q/k/v biases by
    # qkv_bias, the output projection and MLP always biased), a final LayerNorm.
    image, patch = _square(f("image_size"), "image_size"), _square(f("patch_size"), "patch_size")
    return {"architecture": "vit", "image_size": image, "patch_size": patch, "num_channels": f("num_channels"),
            "hidden_size": f("hidden_size"), "num_hidden_layers": f("num_hidden_layers"),
            "num_attention_heads": f("num_attention_heads"), "intermediate_size": f("intermediate_size"),
            "hidden_act": f("hidden_act"), "mlp": "plain", "mlp_bias": True, "qkv_bias": bool(f("qkv_bias")),
            "o_bias": True, "norm": "layernorm", "position_embedding": "none",
            "attention_dropout": f("attention_probs_dropout_prob"), "hidden_dropout": f("hidden_dropout_prob"),
            "embedding_dropout": f("hidden_dropout_prob")}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "bert": (bert, BERT), "roberta": (roberta, ROBERTA), "xlm-roberta": (roberta, XLM_ROBERTA),
    "distilbert": (distilbert, DISTILBERT), "electra": (electra, ELECTRA), "vit": (vit, VIT),
}
