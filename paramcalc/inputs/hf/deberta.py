"""DeBERTa-v2 and v3 (He et al. 2021, "DeBERTa: Decoding-enhanced BERT with
Disentangled Attention"; He et al. 2023, "DeBERTaV3"; transformers'
models/deberta_v2/modeling_deberta_v2.py).

BERT's post-norm layers whose attention adds content-to-position and
position-to-content scores against one relative-position table of 2k rows
(k: position_buckets, else max_relative_positions, else max_position_embeddings),
LayerNorm-ed once per forward (norm_rel_ebd: layer_norm) and projected in every
layer (blocks/disentangled.py). v3 (position_biased_input false) has no absolute
position table; v2-xlarge adds a Conv1d beside the first layer (conv_kernel_size).
The MLM head (legacy or not) is BERT's transform and a decoder on the token table
with a vocab bias; the classifier is ContextPooler (dense h x h on the first token)
and a linear layer; DebertaV2Model has no pooler.
"""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.inputs.hf.encoders import bert
from paramcalc.inputs.hf.fields import Config, Converter, Fields

# DebertaV2Config's defaults (transformers 5.24.0: deberta-v2-xlarge's shape); the fields the
# model reads with getattr(config, name, default) take those defaults when a config omits them
DEBERTA_V2 = dict(vocab_size=128100, hidden_size=1536, num_hidden_layers=24, num_attention_heads=24,
                  intermediate_size=6144, hidden_act="gelu", hidden_dropout_prob=0.1,
                  attention_probs_dropout_prob=0.1, max_position_embeddings=512, type_vocab_size=0,
                  relative_attention=False, max_relative_positions=-1, position_biased_input=True,
                  pos_att_type=None, legacy=True, tie_word_embeddings=True)
_GETATTR = dict(position_buckets=-1, share_att_key=False, norm_rel_ebd="none", conv_kernel_size=0, conv_groups=1,
                embedding_size=None, attention_head_size=None, pooler_hidden_size=None)


def _split(value) -> list[str]:
    """DebertaV2Config's "p2c|c2p" strings, or a list already."""
    if value is None:
        return []
    items = value.lower().split("|") if isinstance(value, str) else value
    return [str(x).strip() for x in items]


def deberta_v2(f: Fields) -> dict:
    def extra(name: str):  # getattr(config, name, default): the config class has no default for it
        value = f.cfg.get(name)
        return _GETATTR[name] if value is None else value

    h = f("hidden_size")
    for name in ("embedding_size", "pooler_hidden_size"):
        if extra(name) not in (None, h):
            raise UserError(f"{name} ({extra(name)}) differs from hidden_size ({h})", field=name,
                            fix="paramcalc models DeBERTa-v2 with tables and pooler as wide as the layers "
                                "(every published checkpoint)")
    relative = bool(f("relative_attention"))
    span = 0
    if relative:
        limit = f("max_relative_positions")
        limit = f("max_position_embeddings") if limit < 1 else limit
        buckets = extra("position_buckets")
        span = buckets if buckets > 0 else limit
    terms = tuple(t for t in ("c2p", "p2c") if t in _split(f("pos_att_type"))) if relative else ()
    learned = bool(f("position_biased_input"))
    fields = {**bert(f), "type_vocab_size": f("type_vocab_size"), "head_dim": extra("attention_head_size"),
              "position_embedding": "learned" if learned else "none",
              "max_position_embeddings": f("max_position_embeddings"),
              # the non-legacy head multiplies by the token table itself, tied or not
              "tie_word_embeddings": bool(f("tie_word_embeddings")) or not f("legacy"),
              "disentangled": {"attention_span": span, "pos_att_type": terms,
                               "share_att_key": bool(extra("share_att_key")),
                               "norm_rel_ebd": "layer_norm" in _split(extra("norm_rel_ebd")),
                               "conv_kernel_size": extra("conv_kernel_size"), "conv_groups": extra("conv_groups")}}
    return fields


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {"deberta-v2": (deberta_v2, DEBERTA_V2)}
