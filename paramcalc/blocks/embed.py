"""The input side (token, position and token-type tables, BERT/BLOOM's
embedding norm, OPT's projection) and the output heads (LM head, BERT's MLM
head and pooler, classification heads)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, Step, merge
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.mlp import MLP, activation
from paramcalc.blocks.norm import Norm


class _Tables(Block):
    """Input-side blocks made of named parts, some of them lookup tables."""

    def parts(self) -> dict[str, Block]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def table_params(self) -> int:
        """The `params.embedding` figure: lookup tables only (tokens, positions, types)."""
        return sum(sum(p.params().values()) for p in self.parts().values() if isinstance(p, Embedding))


@dataclass(frozen=True)
class Embeddings(_Tables):
    """Token table V x h, plus learned positions ((max_positions + offset) x h;
    OPT reserves an offset of 2 rows), token types (BERT), a norm (BERT, BLOOM)
    and OPT's project_in when its word vectors are narrower than the model.
    Rotary (Su et al. 2021) and ALiBi (Press et al. 2022) have no parameters."""

    vocab: int
    dim: int
    positions: int = 0
    token_types: int = 0
    norm: Norm | None = None
    project_to: int | None = None  # OPT: word_embed_proj_dim -> hidden_size, no bias
    # ELECTRA: positions, token types and the norm stay `dim` wide, then a biased projection
    narrow: bool = False
    kind = "embedding"

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {"tokens": Embedding(self.vocab, self.dim)}
        width = self.dim if self.narrow else self.project_to or self.dim
        if self.positions:
            out["positions"] = Embedding(self.positions, width)
        if self.token_types:
            out["token_types"] = Embedding(self.token_types, width)
        if self.project_to:
            out["project_in"] = Linear(self.dim, self.project_to, bias=self.narrow)
        if self.norm:
            out["norm"] = self.norm
        return out

    def flops(self, p: Pass) -> Breakdown:
        # project_in, present when project_to is set, is the one linear part
        return {name: part.matmul_flops(p.tokens) for name, part in self.parts().items() if isinstance(part, Linear)}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """int64 token ids (and position / token-type ids) for the lookups'
        backward, the embedding norm, the projection input, dropout noise."""
        T, width = p.tokens, self.dim if self.narrow else self.project_to or self.dim
        out = {"ids": 8 * T * (1 + bool(self.positions))}
        if self.token_types:
            out["ids"] += 8 * p.seq
        if self.project_to:
            out["project_in"] = a.x * T * self.dim
        if self.norm:
            out["norm"] = self.norm.saved_rows(T, a)
        if a.embedding_dropout:
            out["dropout"] = a.mask_bytes * T * width
        return out

    def module(self, a: Activations | None = None):
        return _embeddings_class()(self)


@dataclass(frozen=True)
class DecoderPositions(_Tables):
    """An encoder-decoder's second stack of learned positions (BART: its
    decoder has its own (max_positions + 2) x h table and embedding norm);
    the decoder's tokens come from the shared table."""

    positions: int
    dim: int
    norm: Norm | None = None
    kind = "embedding"

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {"positions": Embedding(self.positions, self.dim)}
        if self.norm:
            out["norm"] = self.norm
        return out

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The position ids, the embedding norm, dropout noise."""
        out = {"ids": 8 * p.tokens}
        if self.norm:
            out["norm"] = self.norm.saved_rows(p.tokens, a)
        if a.embedding_dropout:
            out["dropout"] = a.mask_bytes * p.tokens * self.dim
        return out

    def module(self, a: Activations | None = None):
        return _positions_class()(self)


@dataclass(frozen=True)
class LMHead(Block):
    """Logits over the vocabulary for every position (transformers' default,
    logits_to_keep=0): 2*T*h*V FLOPs. Tied to the token table: no parameters
    of its own. BERT's MLM head first transforms (dense h x h, GELU, LayerNorm)
    and adds a vocab bias (ELECTRA's generator transforms down to the norm's
    width, its embedding_size); OPT projects back to word_embed_proj_dim first."""

    hidden: int
    vocab: int
    tied: bool = False
    bias: bool = False
    transform_norm: Norm | None = None  # BERT: dense + act + LayerNorm before the decoder
    project_to: int | None = None  # OPT: project_out hidden -> word_embed_proj_dim first
    loss_fp32: bool = True  # causal-LM losses upcast logits to fp32 (transformers' ForCausalLMLoss)
    softcap: bool = False  # Gemma 2: tanh soft-capping of the final logits
    transform_act: str = "gelu"  # the transform's activation: hidden_act (ALBERT's gelu_new)
    kind = "head"

    @property
    def width(self) -> int:
        """What the decoder reads: the transform's output, OPT's projection, or the hidden states."""
        return self.transform_norm.dim if self.transform_norm else self.project_to or self.hidden

    def parts(self) -> dict[str, Block]:
        out: dict[str, Block] = {}
        if self.project_to:
            out["project_out"] = Linear(self.hidden, self.project_to)
        if self.transform_norm:
            out["transform"] = Linear(self.hidden, self.width, bias=True)
            out["transform_norm"] = self.transform_norm
        out["decoder"] = Linear(self.width, self.vocab, self.bias)
        return out

    def params(self) -> Breakdown:
        out = merge(*((name, part.params()) for name, part in self.parts().items()))
        if self.tied:
            del out["decoder/weight"]  # the token table, counted once in the embedding
        return out

    def flops(self, p: Pass) -> Breakdown:
        return {name: part.matmul_flops(p.tokens) for name, part in self.parts().items() if isinstance(part, Linear)}

    def output_elements(self, p: Pass) -> int:
        return p.tokens * self.vocab

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The head's input and, with labels, the loss: cross-entropy keeps its
        log-softmax output over V per token (fp32 when the logits are upcast, as
        causal-LM losses do), the int64 targets and a scalar; soft-capping keeps
        its tanh output. BERT's transform keeps its dense, GELU and norm inputs."""
        x, T, h, V = a.x, p.tokens, self.hidden, self.vocab
        out = {"input": x * T * h}
        if self.project_to:
            out["project_out"] = x * T * self.project_to
        if self.transform_norm:
            # what the activation keeps (MLP.act_saved_elements: GELU its input, gelu_new four
            # tensors), the norm, the decoder's input (the dense input is `input`)
            w, act = self.width, MLP(self.hidden, self.width, act=self.transform_act).act_saved_elements()
            out["transform"] = x * T * w * act + self.transform_norm.saved_rows(T, a) + x * T * w
        if self.softcap:
            out["softcap"] = x * T * V
        # Causal-LM labels are shifted into a new int64 tensor; at batch 1 it stays a view of the
        # padded (1, s + 1) storage, which is what autograd keeps.
        labels = (8 * T if p.batch > 1 else 8 * (p.seq + 1)) if self.loss_fp32 else 0
        if a.megatron:  # the vocab-parallel cross-entropy keeps fp32 logits (Korthikanti et al. 2022: 4sbv)
            labels = 8 * T
        out["loss"] = (4 if self.loss_fp32 or a.megatron else x) * T * V + labels + 4
        return out

    def backward_steps(self, p: Pass, a: Activations) -> list[Step]:
        """First the loss: cross-entropy's and log-softmax's gradients over the
        logits (fp32 when the loss upcasts); its saved tensors are freed. Then
        the decoder with the logits' gradient in the model dtype: its weight
        gradient (a tied table's gradient is allocated here and added to by
        the embedding's) and the rest."""
        T, V = p.tokens, self.vocab
        saved = self.saved(p, a)
        loss = saved["loss"] + saved.get("softcap", 0)
        grads = a.x * sum(self.params().values()) + (a.x * V * self.width if self.tied else 0)
        return [Step(transient=(8 if self.loss_fp32 else 2 * a.x) * T * V, freed=loss),
                Step(grads=grads, transient=a.x * T * V, freed=sum(saved.values()) - loss)]

    def module(self, a: Activations | None = None):
        return _head_class()(self)


@dataclass(frozen=True)
class Discriminator(Block):
    """ELECTRA's replaced-token detector: dense h x h, GELU, then one logit per token."""

    hidden: int
    kind = "head"

    def parts(self) -> dict[str, Linear]:
        return {"dense": Linear(self.hidden, self.hidden, bias=True), "prediction": Linear(self.hidden, 1, bias=True)}

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        return {name: part.matmul_flops(p.tokens) for name, part in self.parts().items()}

    def output_elements(self, p: Pass) -> int:
        return p.tokens

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """The dense input, the GELU input and the prediction's input; the
        binary cross-entropy over the T logits keeps a few T-sized tensors."""
        x, T, h = a.x, p.tokens, self.hidden
        return {"input": x * T * h, "transform": 2 * x * T * h, "loss": 3 * x * T + 8 * T}

    def module(self, a: Activations | None = None):
        return _discriminator_class()(self)


@dataclass(frozen=True)
class Pooler(Block):
    """BERT's pooler: dense h x h (+ bias) and tanh on the first token; an
    optional classifier (num_labels outputs) on top. 2*b*h*h FLOPs."""

    hidden: int
    labels: int = 0  # 0: pooler only (BertModel)
    kind = "head"

    def parts(self) -> dict[str, Linear]:
        out = {"dense": Linear(self.hidden, self.hidden, bias=True)}
        if self.labels:
            out["classifier"] = Linear(self.hidden, self.labels, bias=True)
        return out

    def params(self) -> Breakdown:
        return merge(*((name, part.params()) for name, part in self.parts().items()))

    def flops(self, p: Pass) -> Breakdown:
        return {name: part.matmul_flops(p.batch) for name, part in self.parts().items()}

    def output_elements(self, p: Pass) -> int:
        return p.batch * (self.labels or self.hidden)

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        return {"pooled": 2 * a.x * p.batch * self.hidden}  # dense input and tanh output

    def module(self, a: Activations | None = None):
        from torch import nn

        return nn.ModuleDict({name: part.module() for name, part in self.parts().items()})


@cache
def _embeddings_class():
    import torch
    from torch import nn

    class EmbeddingsModule(nn.Module):
        # Registered by name from spec.parts() (add_module); declared for the type checker.
        tokens: nn.Module
        positions: nn.Module  # with spec.positions only
        token_types: nn.Module  # with spec.token_types only
        project_in: nn.Module  # with spec.project_to only
        norm: nn.Module  # with spec.norm only

        def __init__(self, spec: Embeddings):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                self.add_module(name, part.module())

        def forward(self, ids):
            s = self.spec
            x = self.tokens(ids)
            if s.project_to and not s.narrow:
                x = self.project_in(x)
            if s.positions:
                x = x + self.positions(torch.arange(ids.shape[1], device=ids.device))
            if s.token_types:
                x = x + self.token_types(torch.zeros_like(ids))
            if s.norm:
                x = self.norm(x)
            return self.project_in(x) if s.project_to and s.narrow else x

    return EmbeddingsModule


@cache
def _discriminator_class():
    from torch import nn

    class DiscriminatorModule(nn.Module):
        def __init__(self, spec: Discriminator):
            super().__init__()
            self.dense = spec.parts()["dense"].module()
            self.prediction = spec.parts()["prediction"].module()

        def forward(self, x):
            return self.prediction(nn.functional.gelu(self.dense(x))).squeeze(-1)

    return DiscriminatorModule


@cache
def _positions_class():
    import torch
    from torch import nn

    class DecoderPositionsModule(nn.Module):
        """Reads the decoder's token ids for their positions only (the shared
        table's lookup is the embedding stage's)."""

        # Registered by name from spec.parts() (add_module); declared for the type checker.
        positions: nn.Module
        norm: nn.Module  # with spec.norm only

        def __init__(self, spec: DecoderPositions):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                self.add_module(name, part.module())

        def forward(self, ids):
            x = self.positions(torch.arange(ids.shape[1], device=ids.device)).expand(*ids.shape, -1)
            return self.norm(x) if self.spec.norm else x

    return DecoderPositionsModule


@cache
def _head_class():
    from torch import nn

    class LMHeadModule(nn.Module):
        # Registered by name from spec.parts() (add_module); declared for the type checker.
        project_out: nn.Module  # with spec.project_to only
        transform: nn.Module  # with spec.transform_norm only
        transform_norm: nn.Module  # with spec.transform_norm only
        decoder: nn.Linear

        def __init__(self, spec: LMHead):
            super().__init__()
            self.spec = spec
            for name, part in spec.parts().items():
                self.add_module(name, part.module())
            self.act = activation(spec.transform_act)

        def tie(self, table: nn.Embedding) -> None:
            self.decoder.weight = table.weight

        def forward(self, x):
            if self.spec.project_to:
                x = self.project_out(x)
            if self.spec.transform_norm:
                x = self.transform_norm(self.act(self.transform(x)))
            return self.decoder(x)

    return LMHeadModule
