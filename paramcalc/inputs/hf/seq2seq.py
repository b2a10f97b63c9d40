"""Encoder-decoders: T5 and mT5 (RMSNorm, relative position buckets) and
BART's lineage (mBART, Pegasus, Marian: LayerNorm, learned or sinusoidal
positions, one token table shared by both stacks and the LM head).
"""

from __future__ import annotations

from paramcalc.errors import UserError
from paramcalc.inputs.hf.fields import Config, Converter, Fields

T5 = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
          relative_attention_num_buckets=32, feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.1)


def t5(f: Fields) -> dict:
    proj = f("feed_forward_proj")
    gated = proj.startswith("gated-")
    act = "gelu_new" if proj == "gated-gelu" else proj.removeprefix("gated-")  # T5Config's backward-compatible mapping
    return {"architecture": "encoder-decoder", "vocab_size": f("vocab_size"),
            "hidden_size": f("d_model", "hidden_size"),
            "num_hidden_layers": f("num_layers", "num_hidden_layers"), "num_decoder_layers": f("num_decoder_layers"),
            "num_attention_heads": f("num_heads", "num_attention_heads"), "head_dim": f("d_kv", "head_dim"),
            "intermediate_size": f("d_ff"), "hidden_act": act, "mlp": "gated" if gated else "plain",
            "norm": "rmsnorm", "rmsnorm_style": "t5", "position_embedding": "relative",
            "relative_attention_num_buckets": f("relative_attention_num_buckets"),
            # transformers 5 always ties T5's head to `shared` (T5Config forces
            # tie_word_embeddings=True; a False only turns off the output rescaling).
            "tie_word_embeddings": True, "attention_dropout": f("dropout_rate"), "hidden_dropout": f("dropout_rate"),
            "embedding_dropout": f("dropout_rate"), "mlp_inner_dropout": True, "softmax_fp32": False}


# mT5 (Xue et al. 2021): T5 v1.1's layers over a 250k vocabulary; transformers 5 ties its head too.
MT5 = dict(T5, vocab_size=250112, d_ff=1024, num_layers=8, num_heads=6, feed_forward_proj="gated-gelu")


BART = dict(vocab_size=50265, max_position_embeddings=1024, encoder_layers=12, encoder_ffn_dim=4096,
            encoder_attention_heads=16, decoder_layers=12, decoder_ffn_dim=4096, decoder_attention_heads=16,
            activation_function="gelu", d_model=1024, dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
            tie_word_embeddings=True)


def bart(f: Fields, *, pre_norm: bool = False, sinusoidal: bool = False) -> dict:
    # BART (Lewis et al. 2020; modeling_bart): post-norm encoder and decoder with
    # biases, a shared token table, each stack its own learned positions (2 rows
    # of offset) and embedding LayerNorm; the LM head is tied. mBART is pre-norm
    # with a final LayerNorm per stack. Pegasus and Marian keep a fixed sinusoidal
    # table per stack instead (an nn.Embedding, so parameters() counts it, with no
    # offset) and no embedding norm.
    if not f("tie_word_embeddings"):
        raise UserError("tie_word_embeddings is false: transformers then gives the shared table, each stack and "
                        "the LM head a token table of their own", field="tie_word_embeddings",
                        fix="paramcalc models these encoder-decoders with one shared token table (the published "
                            "checkpoints' setting)")
    return {**bart_stacks(f), "layout": "pre" if pre_norm else "post", "final_norm": pre_norm,
            "embedding_norm": not sinusoidal, "position_embedding": "learned",
            "max_position_embeddings": f("max_position_embeddings"), "position_offset": 0 if sinusoidal else 2,
            "tie_word_embeddings": True, "attention_dropout": f("attention_dropout"), "hidden_dropout": f("dropout"),
            "embedding_dropout": f("dropout"), "softmax_fp32": False}


def bart_stacks(f: Fields) -> dict:
    """The two stacks of a BART-style encoder-decoder (BART, mBART, Pegasus, Marian, Whisper):
    d_model, encoder_/decoder_ layers, one layer shape for both (checked), biased linears,
    LayerNorm, a plain feed-forward."""
    for enc, dec in (("encoder_ffn_dim", "decoder_ffn_dim"), ("encoder_attention_heads", "decoder_attention_heads")):
        if f(enc) != f(dec):
            raise UserError(f"{enc} ({f(enc)}) differs from {dec} ({f(dec)})", field=enc,
                            fix="paramcalc models one layer shape for both stacks of an encoder-decoder")
    return {"architecture": "encoder-decoder", "vocab_size": f("vocab_size"), "hidden_size": f("d_model"),
            "num_hidden_layers": f("encoder_layers"), "num_decoder_layers": f("decoder_layers"),
            "num_attention_heads": f("encoder_attention_heads"), "intermediate_size": f("encoder_ffn_dim"),
            "hidden_act": f("activation_function"), "mlp": "plain", "mlp_bias": True, "qkv_bias": True,
            "o_bias": True, "norm": "layernorm"}


def mbart(f: Fields) -> dict:
    return bart(f, pre_norm=True)


def pegasus(f: Fields) -> dict:
    return bart(f, pre_norm=True, sinusoidal=True)


MARIAN = dict(BART, vocab_size=58101, decoder_vocab_size=None, share_encoder_decoder_embeddings=True)


def marian(f: Fields) -> dict:
    # MarianMT: post-norm like BART, sinusoidal tables like Pegasus
    if not f("share_encoder_decoder_embeddings") or f("decoder_vocab_size") not in (None, f("vocab_size")):
        raise UserError("this Marian model has a decoder vocabulary of its own", field="decoder_vocab_size",
                        fix="paramcalc models Marian with one token table shared by both stacks")
    return bart(f, sinusoidal=True)


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {
    "t5": (t5, T5), "mt5": (t5, MT5), "bart": (bart, BART), "mbart": (mbart, BART), "pegasus": (pegasus, BART),
    "marian": (marian, MARIAN),
}
