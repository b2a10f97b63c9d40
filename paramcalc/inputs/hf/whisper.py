"""Whisper (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision"; transformers' modeling_whisper): a speech encoder over log-mel
frames and a text decoder, both pre-norm with LayerNorms and GELU MLPs with
biases. Attention projections have biases except k_proj (WhisperAttention).
The encoder's front end (two convs, a table of max_source_positions positions
that transformers freezes) is `audio:` in the spec (blocks/audio.py); the
decoder has a learned table of max_target_positions and its own token table,
which proj_out reuses (tie_word_embeddings, true by default).
"""

from __future__ import annotations

from paramcalc.inputs.hf.fields import Config, Converter, Fields
from paramcalc.inputs.hf.seq2seq import bart_stacks

# WhisperConfig's defaults (whisper-tiny's shape, transformers 5.24.0)
WHISPER = dict(vocab_size=51865, num_mel_bins=80, encoder_layers=4, encoder_attention_heads=6, decoder_layers=4,
               decoder_attention_heads=6, decoder_ffn_dim=1536, encoder_ffn_dim=1536, activation_function="gelu",
               d_model=384, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, max_source_positions=1500,
               max_target_positions=448, tie_word_embeddings=True)


def whisper(f: Fields) -> dict:
    return {**bart_stacks(f), "k_proj_bias": False, "layout": "pre", "final_norm": True,
            "position_embedding": "learned", "max_position_embeddings": f("max_target_positions"),
            "audio": {"num_mel_bins": f("num_mel_bins"), "max_source_positions": f("max_source_positions")},
            # WhisperEncoder: embed_positions.requires_grad_(False) (the sinusoids the checkpoints load)
            "freeze": ("encoder/embedding/positions",),
            "tie_word_embeddings": bool(f("tie_word_embeddings")), "attention_dropout": f("attention_dropout"),
            "hidden_dropout": f("dropout"), "embedding_dropout": f("dropout"),
            "mlp_inner_dropout": bool(f("activation_dropout")), "softmax_fp32": False}


MODEL_TYPES: dict[str, tuple[Converter, Config]] = {"whisper": (whisper, WHISPER)}
