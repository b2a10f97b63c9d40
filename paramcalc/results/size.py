"""Architectures that hit a parameter target (`paramcalc size`)."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.results.base import Document, Result


class Candidate(Result):
    """One architecture: the fields of its config.json and its exact count."""

    params_total: int = Field(description="exact parameter count (tied weights once)")
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    deviation: float = Field(description="(params_total - target) / target, signed")
    score: float = Field(0.0, description="how far the shape strays from published, hardware-friendly ones "
                                          "(0 = a Llama 3 shape; lower ranks first; docs/sizing.md)")


class SizeReport(Document):
    command: str = "size"
    target: int = Field(description="the parameter count aimed at")
    tolerance: float = Field(description="largest |params - target| / target admitted")
    vocab_size: int
    tie_word_embeddings: bool
    flops: int | None = Field(None, description="--flops: the compute budget the target comes from")
    tokens: int | None = Field(None, description="--flops: compute-optimal training tokens D = 20 N")
    matches: int = Field(description="architectures within the tolerance, before --max")
    candidates: list[Candidate] = Field(description="lowest score first (ties: closest count), at most --max")
