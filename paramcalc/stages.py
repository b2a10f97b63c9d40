"""The lowered form of every spec: an ordered list of stages, each a block
repeated `count` times. Every figure (params, FLOPs, saved bytes) is the sum
over stages of the block's own breakdown times its count.

Training can freeze parameters: `freeze` patterns (fnmatch globs on the
breakdown keys; a pattern also matches every key below it, so `embedding`
freezes `embedding/tokens/weight`) minus `train` patterns (LoRA: the adapters
and PEFT's modules_to_save). Gradients and optimizer state follow the
trainable parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge, scale
from paramcalc.blocks.embed import DecoderPositions, LMHead
from paramcalc.blocks.layer import TransformerLayer


@dataclass(frozen=True)
class Stage:
    name: str
    block: Block
    count: int = 1


@dataclass(frozen=True)
class Network:
    name: str
    stages: tuple[Stage, ...]
    rotary_dim: int = 0  # rotary cos and sin tables, computed once and read by every layer
    cross_memory: bool = False  # encoder-decoder: the encoder output feeds every cross-attention
    chained: bool = False  # shaped stages (spec_layers): saved storages shared between neighbours count once
    freeze: tuple[str, ...] = ()  # glob patterns on params() keys
    train: tuple[str, ...] = ()  # patterns trained despite `freeze` (LoRA adapters, modules_to_save)

    def _sum(self, figure) -> Breakdown:
        return merge(*((s.name, scale(figure(s.block), s.count)) for s in self.stages))

    def params(self) -> Breakdown:
        return self._sum(lambda b: b.params())

    def active_params(self) -> Breakdown:
        return self._sum(lambda b: b.active_params())

    def flops(self, p: Pass) -> Breakdown:
        return self._sum(lambda b: b.flops(p))

    def buffers(self) -> Breakdown:
        return self._sum(lambda b: b.buffers())

    def is_frozen(self, key: str) -> bool:
        return _matches(key, self.freeze) and not _matches(key, self.train)

    def trainable_params(self) -> Breakdown:
        return {k: v for k, v in self.params().items() if not self.is_frozen(k)}

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """Bytes autograd keeps for backward in a training forward with the loss."""
        if self.chained:
            from paramcalc.blocks.shaped import chain_saved

            return chain_saved([(s.name, s.block, s.count) for s in self.stages], p, a, first_input=True)
        out = self._sum(lambda b: b.saved(p, a))
        if self.rotary_dim:
            out["rotary"] = 2 * a.x * p.seq * self.rotary_dim  # cos and sin, (1, s, rotary dims) each
        if self.cross_memory:
            width = self.stages[0].block.dim
            out["encoder_output"] = a.x * p.tokens * width  # the k/v input of every cross-attention
            out["decoder_ids"] = 8 * p.tokens  # the shifted labels the decoder embeds
            # T5 drops out the decoder's embeddings and both stacks' final outputs too (BART's
            # decoder embedding dropout is its DecoderPositions stage's, and it has no other)
            if not any(isinstance(s.block, DecoderPositions) for s in self.stages):
                drops = a.embedding_dropout + 2 * a.hidden_dropout
                out["stack_dropout"] = drops * a.mask_bytes * p.tokens * width
        return out

    def embedding_params(self) -> int:
        """Lookup tables (and a ViT's patch projection, class token and positions)."""
        total = 0
        for s in self.stages:
            if hasattr(s.block, "table_params"):
                total += s.block.table_params() * s.count
            elif s.block.kind == "embedding":  # an embedding layer of a layers spec
                total += sum(s.block.params().values()) * s.count
        return total

    @property
    def layers(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if isinstance(_unwrap(s.block), TransformerLayer))

    def module(self):
        """The whole network as PyTorch modules (build it under `torch.device("meta")`
        to count without memory): stage name -> list of `count` block modules,
        the LM head tied to the token table where the spec ties them."""
        from torch import nn

        out = nn.ModuleDict()
        for stage in self.stages:
            out[stage.name.replace(".", "_")] = nn.ModuleList(stage.block.module() for _ in range(stage.count))
        head = _unwrap(self.stages[-1].block)
        if isinstance(head, LMHead) and head.tied:
            out["head"][0].tie(out["embedding"][0].tokens)
        return out


def _unwrap(block: Block) -> Block:
    """The block inside a LoRA wrapper (blocks.lora.Adapted, the only block with a `base`)."""
    return getattr(block, "base", block)


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    """A glob matches the key or any '/'-prefix of it (`embedding` matches `embedding/tokens/weight`)."""
    parts = key.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)
