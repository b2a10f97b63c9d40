"""ALBERT (Lan et al. 2020, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations"; transformers' models/albert/modeling_albert.py).

BERT's post-norm layers with two changes (section 3.1): factorised embeddings
(token, position and type tables of embedding_size E, LayerNorm-ed at E, then
embedding_hidden_mapping_in, an E x h linear with a bias) and cross-layer
sharing: num_hidden_groups groups of inner_group_num layers hold the weights,
and each of the num_hidden_layers steps runs one group's layers (AlbertTransformer).
Parameters count the groups once, FLOPs and activations every run. The MLM head
transforms down to E (dense, GELU, LayerNorm) before a decoder tied to the token
table, with a vocab bias; the pooler is BERT's.
"""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.inputs.hf.encoders import bert
from paramcalc.inputs.hf.fields import Config, Converter, Fields

# AlbertConfig's defaults (transformers 5.24.0): ALBERT-xxlarge's shape
ALBERT = dict(vocab_size=30000, embedding_size=128, hidden_size=4096, num_hidden_layers=12, num_hidden_groups=1,
              num_attention_heads=64, intermediate_size=16384, inner_group_num=1, hidden_act="gelu_new",
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=512,
              type_vocab_size=2, tie_word_embeddings=True)


def albert(f: Fields) -> dict:
    # AlbertLayer drops the attention output but never calls its own dropout on the FFN's:
    # one dropped sublayer output per layer, the noise tensor attention_output_dropout=False
    # counts (it names DistilBERT's opposite choice; the bytes are the same)
    fields = {**bert(f), "embedding_size": f("embedding_size"), "num_hidden_groups": f("num_hidden_groups"),
              "inner_group_num": f("inner_group_num"), "attention_output_dropout": False}
    if fields["embedding_size"] == fields["hidden_size"]:
        raise UserError(f"embedding_size equals hidden_size ({fields['hidden_size']}): ALBERT still projects it "
                        "(an h x h linear) where paramcalc's factorised embeddings expect a narrower table",
                        field="embedding_size", fix="paramcalc models ALBERT with embedding_size < hidden_size "
                                                    "(every published checkpoint: 128)")
    return fields


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {"albert": (albert, ALBERT)}
