"""The lowered form of every model, the one thing every analysis reads.

A network is an ordered tuple of stages, each a block repeated `count` times.
Every figure (parameters, FLOPs, saved bytes) is the sum over stages of the
block's own breakdown times its count, keyed `stage/part/...`.

Three kinds answer the same questions:
- `TransformerNetwork`: embeddings, layer stages, final norm, head (a
  transformer spec or a config.json, lowered in network/transformer.py);
- `LayersNetwork`: a chain of shaped blocks, CNNs, RNNs and MLPs (an
  `architecture: layers` spec, lowered in network/layers.py);
- `BareCount`: a model known by its parameter count alone (`7.5B`): no
  stages; what needs the architecture is unknown (`has_architecture` False).

What an analysis needs from the architecture is asked of the network, never
of the spec it came from: its sequence lengths (default, fixed, limit), its
residual width, its layer stages, how its reference implementation saves
activations, what it keeps beyond its blocks (rotary tables, an encoder's
output), its inference working set and the tensor-parallel degrees it admits.

Training can freeze parameters: `freeze` patterns (fnmatch globs on the
breakdown keys; a pattern also matches every key below it, so `embedding`
freezes `embedding/tokens/weight`) minus `train` patterns (LoRA: the adapters
and PEFT's modules_to_save). Gradients and optimizer state follow the
trainable parameters only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import ClassVar

from paramcalc.blocks.base import Activations, Block, Breakdown, Pass, merge, scale
from paramcalc.blocks.embed import DecoderPositions, LMHead
from paramcalc.blocks.layer import TransformerLayer
from paramcalc.blocks.norm import Norm
from paramcalc.errors import UserError


@dataclass(frozen=True)
class Stage:
    """A block run `count` times. `shared`: the runs reuse that many copies of its
    weights (ALBERT's cross-layer sharing, Lan et al. 2020, section 3.1: 12 runs of 1
    layer's weights); 0: every run has its own. Parameters count the copies, FLOPs
    and saved bytes every run."""

    name: str
    block: Block
    count: int = 1
    shared: int = 0

    @property
    def copies(self) -> int:
        """How many sets of weights the stage holds."""
        return self.shared or self.count


@dataclass(frozen=True)
class Adapters:
    """LoRA adapters on a network (Hu et al. 2021): what `count` says about them."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    modules_to_save: tuple[str, ...] = ()
    dropout: float = 0.0  # lora_dropout: the adapters' input dropout (memory only)


@dataclass(frozen=True)
class Network:
    """A model as a sequence of stages; the questions every kind answers."""

    name: str
    stages: tuple[Stage, ...] = ()
    freeze: tuple[str, ...] = ()  # glob patterns on params() keys
    train: tuple[str, ...] = ()  # patterns trained despite `freeze` (LoRA adapters, modules_to_save)
    expected_params: int | None = None  # the published count a preset carries
    adapters: Adapters | None = None
    has_architecture: ClassVar[bool] = True

    # ------------------------------------------------ figures, summed over stages

    def _sum(self, figure, *, weights: bool = False) -> Breakdown:
        """A figure summed over stages: per run, or per copy of the weights (`weights`)."""
        return merge(*((s.name, scale(figure(s.block), s.copies if weights else s.count)) for s in self.stages))

    def _memo(self, key, compute):
        """A figure computed once per network (it is frozen): the plan search asks for the same
        breakdowns thousands of times. Callers get their own copy of a dict."""
        memo = self.__dict__.get("_memo_")
        if memo is None:
            memo = {}
            object.__setattr__(self, "_memo_", memo)
        if key not in memo:
            memo[key] = compute()
        value = memo[key]
        return dict(value) if isinstance(value, dict) else value

    def params(self) -> Breakdown:
        return self._memo("params", lambda: self._sum(lambda b: b.params(), weights=True))

    def active_params(self) -> Breakdown:
        return self._sum(lambda b: b.active_params(), weights=True)

    def flops(self, p: Pass) -> Breakdown:
        return self._sum(lambda b: b.flops(p))

    def buffers(self) -> Breakdown:
        return self._sum(lambda b: b.buffers(), weights=True)

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        """Bytes autograd keeps for backward in a training forward with the loss."""
        return self._memo(("saved", p, a), lambda: self._sum(lambda b: b.saved(p, a)))

    @property
    def total_params(self) -> int:
        return sum(self.params().values())

    def is_frozen(self, key: str) -> bool:
        return matches(key, self.freeze) and not matches(key, self.train)

    def frozen_base(self) -> bool:
        """Whether a LoRA network's layers are frozen but for their adapters (transformers only)."""
        return False

    def trainable_params(self) -> Breakdown:
        return self._memo("trainable", lambda: {k: v for k, v in self.params().items() if not self.is_frozen(k)})

    def embedding_params(self) -> int:
        """Lookup tables (and a ViT's patch projection, class token and positions)."""
        total = 0
        for s in self.stages:
            if hasattr(s.block, "table_params"):
                total += s.block.table_params() * s.copies
            elif s.block.kind == "embedding":  # an embedding layer of a layers network
                total += sum(s.block.params().values()) * s.copies
        return total

    @property
    def layers(self) -> tuple[Stage, ...]:
        """The repeated transformer layer stages (what tensor and pipeline parallelism split); none here."""
        return ()

    @property
    def head(self) -> Block:
        return unwrap(self.stages[-1].block)

    # ------------------------------------------------ what the architecture decides

    @property
    def width(self) -> int | None:
        """The residual stream's width (None without one: a CNN, an RNN, a bare count)."""
        return None

    @property
    def default_seq_len(self) -> int:
        return 2048

    @property
    def fixed_seq_len(self) -> int | None:
        """Positions the architecture fixes whatever the sequence length asked (a ViT's patches)."""
        return None

    @property
    def training_seq_len(self) -> int:
        """The context a training plan defaults to: what the model was pre-trained at, where known."""
        return self.default_seq_len

    @property
    def max_seq_len(self) -> int | None:
        """The longest sequence the architecture takes (a learned position table's rows)."""
        return None

    def seq_len(self, asked: int | None) -> int:
        """The sequence length a pass runs at: `asked` (default: the architecture's), fixed
        where the architecture fixes it, refused beyond its limit."""
        seq = self.fixed_seq_len or (self.default_seq_len if asked is None else asked)
        limit = self.max_seq_len
        if limit is not None and seq > limit:
            raise UserError(f"{seq} exceeds this model's {limit} learned positions", field="seq_len",
                            fix=f"use {limit} or less")
        return seq

    def seq_notes(self, asked: int | None) -> list[str]:
        """How the sequence length was read (`asked`: the length asked, if any), where the
        architecture decides it."""
        return []

    def activations(self, dtype_bytes: int, attention: str) -> Activations:
        """How a training forward of this network saves tensors: `attention` is eager or flash."""
        return Activations(dtype_bytes=dtype_bytes, mask_bytes=dtype_bytes, attention=attention)

    def working_set(self, p: Pass, dtype_bytes: int, attention: str = "flash") -> int:
        """Bytes an inference forward holds beyond weights and cache (no autograd state);
        `attention` eager or flash, as the kernel computes the scores."""
        return 0

    def check_tensor_parallel(self, tp: int) -> None:
        """Refuse a tensor-parallel degree the architecture cannot split."""

    def module(self):
        """The whole network as PyTorch modules (build it under `torch.device("meta")`
        to count without memory): stage name -> list of block modules, one per copy of the weights,
        the LM head tied to the token table where the spec ties them."""
        from torch import nn

        built = {stage.name.replace(".", "_"): [stage.block.module() for _ in range(stage.copies)]
                 for stage in self.stages}
        head = self.head
        if isinstance(head, LMHead) and head.tied:
            built["head"][0].tie(built["embedding"][0].tokens)
        return nn.ModuleDict({name: nn.ModuleList(modules) for name, modules in built.items()})


@dataclass(frozen=True)
class TransformerNetwork(Network):
    """Embeddings, transformer layer stages, a final norm and a head."""

    kind: str = "decoder"  # decoder | encoder | encoder-decoder | vit
    hidden: int = 0
    heads: int = 0
    kv_heads: int = 0
    score_dim: int = 0  # per-head width of q.k (MLA: nope + rope dims)
    ffn: int = 0  # the dense feed-forward width
    rotary_dim: int = 0  # rotary cos and sin tables, computed once and read by every layer
    positions: int | None = None  # rows of a learned position table (its length limit)
    default_seq: int = 2048
    fixed_seq: int | None = None
    fixed_seq_note: str = ""
    training_seq: int | None = None  # the pre-training context a preset or config states
    encoder_seq: int | None = None  # Whisper: the encoder's fixed positions, whatever the decoder's length
    vision_seq: int | None = None  # CLIP, LLaVA: the vision tower's positions per image, one image per sample
    vision_image: int | None = None  # the side of that image in pixels
    image_tokens: int | None = None  # LLaVA: the decoder positions one image's features fill
    profile: Activations = field(default_factory=Activations)  # the reference implementation's saving

    @property
    def layers(self) -> tuple[Stage, ...]:
        return self._memo("layers", lambda: tuple(s for s in self.stages
                                                  if isinstance(unwrap(s.block), TransformerLayer)))

    @property
    def width(self) -> int:
        return self.hidden

    @property
    def default_seq_len(self) -> int:
        return self.fixed_seq or self.default_seq

    @property
    def fixed_seq_len(self) -> int | None:
        return self.fixed_seq

    @property
    def training_seq_len(self) -> int:
        return self.fixed_seq or self.training_seq or self.default_seq

    @property
    def max_seq_len(self) -> int | None:
        return self.positions

    def seq_len(self, asked: int | None) -> int:
        seq = super().seq_len(asked)
        if self.image_tokens and seq < self.image_tokens:
            raise UserError(f"a sequence of {seq} cannot hold one image's {self.image_tokens} tokens",
                            field="seq_len", fix=f"use {self.image_tokens} or more (the image tokens and the text)")
        return seq

    def seq_notes(self, asked: int | None) -> list[str]:
        if self.vision_seq:
            image = (f"one {self.vision_image}x{self.vision_image} image per sample: the vision tower runs on "
                     f"{self.vision_seq} positions (patches + the class token)"
                     + (", once at prefill" if self.image_tokens else ""))
            if self.image_tokens:
                return [f"{image}; the sequence length is the language model's, its {self.image_tokens} image "
                        "tokens included"]
            return [f"{image}; beside it one text of seq_len tokens (default: the text tower's "
                    f"{self.positions} positions)"]
        if self.encoder_seq:
            return [f"the speech encoder runs on {self.encoder_seq} positions ({2 * self.encoder_seq} log-mel frames, "
                    "30 s of audio) per sequence, once at prefill; the sequence length is the decoder's tokens"]
        if self.fixed_seq is None:
            return []
        return [self.fixed_seq_note + (" (the sequence length asked is ignored)" if asked is not None else "")]

    def activations(self, dtype_bytes: int, attention: str) -> Activations:
        return replace(self.profile, dtype_bytes=dtype_bytes, mask_bytes=dtype_bytes, attention=attention,
                       frozen_base=self.frozen_base())

    def frozen_base(self) -> bool:
        """LoRA with every layer weight frozen but the adapters' (no modules_to_save inside the layers)."""
        if self.adapters is None:
            return False
        names = {s.name for s in self.layers}
        return self._memo("frozen_base", lambda: all(self.is_frozen(k) for k in self.params()
                                                     if "lora_" not in k and stage_of(k, names)))

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        out = dict(super().saved(p, a))
        if a.frozen_base and not a.megatron:
            # LoRA: outside the layers the base is frozen too (blocks/lora.py Adapted.saved for the layers'):
            # a frozen table keeps no ids, a frozen head no input, a frozen final norm no normalised x
            def frozen(stage: str) -> bool:
                return all(self.is_frozen(k) for k in self.params() if k.startswith(stage + "/"))

            for key, stage in (("embedding/ids", "embedding"), ("head/input", "head")):
                if key in out and frozen(stage):
                    out[key] = 0
            norm = next((s.block for s in self.stages if s.name == "final_norm"), None)
            if isinstance(norm, Norm) and "final_norm" in out and frozen("final_norm"):
                out["final_norm"] = max(0, out["final_norm"] - norm.weight_input_rows(p.tokens, a))
        if self.rotary_dim:
            out["rotary"] = 2 * a.x * p.seq * self.rotary_dim  # cos and sin, (1, s, rotary dims) each
        if self.kind == "encoder-decoder":
            encoded = p.batch * self.encoder_seq if self.encoder_seq else p.tokens
            out["encoder_output"] = a.x * encoded * self.hidden  # the k/v input of every cross-attention
            # the shifted labels the decoder embeds (Whisper's Embeddings stage is the decoder's and
            # counts those: here the labels the loss reads)
            out["decoder_ids"] = 8 * p.tokens
            # T5 drops out the decoder's embeddings and both stacks' final outputs too (BART's
            # decoder embedding dropout is its DecoderPositions stage's, and it has no other)
            if not self.encoder_seq and not any(isinstance(s.block, DecoderPositions) for s in self.stages):
                drops = a.embedding_dropout + 2 * a.hidden_dropout
                out["stack_dropout"] = drops * a.mask_bytes * p.tokens * self.hidden
        return out

    def working_set(self, p: Pass, dtype_bytes: int, attention: str = "flash") -> int:
        """One layer's widest moment beside the residual stream and the sublayer's normed
        input (2 x hidden a token): the gated MLP's gate-up output and product (3 x ffn), or
        q, k, v and the attention output (4 x hidden). vLLM's profiling forward of Llama 3.1 8B
        peaks at about (3 x ffn + 2 x hidden) x 2 bytes a token (vllm-project/vllm#10517: 2.07
        and 2.99 GiB over the weights at 20,000 and 29,000 tokens, its fp32 sampler logits
        included). Eager attention also holds the batch x heads x seq x keys scores in the
        model dtype beside their fp32 softmax (transformers' eager_attention_forward); flash
        kernels keep no seq x keys tensor (Dao et al. 2022)."""
        x, h, T = dtype_bytes, self.hidden, p.tokens
        if self.encoder_seq and p.keys <= p.seq:  # Whisper's prefill runs the encoder over its fixed positions
            T = max(T, p.batch * self.encoder_seq)
        widest = x * T * max(3 * self.ffn, 4 * h)
        if attention == "eager":
            pairs = p.batch * self.heads * p.seq * p.keys
            scores = (x + 4 if self.profile.softmax_fp32 else 2 * x) * pairs
            widest = max(widest, x * T * 4 * h + scores)
        return x * T * 2 * h + widest

    @property
    def recurrent_state(self) -> bool:
        """Some layer mixes tokens with a state-space scan (Mamba, blocks/ssm.py): its cache is a
        constant state per sequence, not keys and values per token."""
        return any(transformer_layer(s).attention.kind == "mixer" for s in self.layers)

    def check_tensor_parallel(self, tp: int) -> None:
        """Megatron splits attention by heads: tp must divide the query and the K/V heads."""
        if tp > 1 and self.recurrent_state:
            raise UserError(f"tensor parallelism {tp} of state-space (Mamba) layers is not modelled", field="tp",
                            fix="use tp 1 (data and pipeline parallelism apply)")
        for name, n in (("attention heads", self.heads), ("K/V heads", self.kv_heads)):
            if n and n % tp:
                raise UserError(f"tensor parallelism {tp} does not divide the {n} {name} "
                                f"({self.heads} query heads, {self.kv_heads} K/V heads)", field="tp",
                                fix=f"use a tp that divides both: {_common_divisors(self.heads, self.kv_heads)}")


@dataclass(frozen=True)
class LayersNetwork(Network):
    """Shaped blocks run one after another (an `architecture: layers` spec).

    Saved storages shared between neighbours count once (blocks/shaped.py's
    chain): a ReLU's output is the next conv's saved input."""

    input_shape: tuple[int, ...] = ()
    sequential: bool = False  # a recurrent or token model: input_shape[0] is the time axis

    @property
    def default_seq_len(self) -> int:
        return self.input_shape[0] if self.sequential else 1

    @property
    def fixed_seq_len(self) -> int | None:
        return None if self.sequential else 1  # a CNN sees one input of input_shape per sample

    def seq_notes(self, asked: int | None) -> list[str]:
        if self.sequential:
            return [f"sequence model: {self.input_shape[0] if asked is None else asked} time steps per sample "
                    "(default: input_shape[0])"]
        ignored = " (the sequence length asked is ignored)" if asked is not None else ""
        return [f"one input of shape {list(self.input_shape)} per sample; counts per token are per sample{ignored}"]

    def saved(self, p: Pass, a: Activations) -> Breakdown:
        from paramcalc.blocks.shaped import Shaped, chain_saved

        parts = [(s.name, s.block, s.count) for s in self.stages if isinstance(s.block, Shaped)]
        assert len(parts) == len(self.stages), "network/layers.py lowers every layer to shaped blocks"
        return chain_saved(parts, p, a, first_input=True)

    def working_set(self, p: Pass, dtype_bytes: int, attention: str = "flash") -> int:
        """The widest layer's input and output live at once (a residual block also
        keeps its input for the shortcut); errs low by a residual branch's intermediates."""
        from paramcalc.blocks.shaped import Shaped

        a = Activations(dtype_bytes=dtype_bytes)
        sizes = [b.in_bytes(p, a) * (1 + (b.kind == "residual")) + b.out_bytes(p, a)
                 for b in (st.block for st in self.stages) if isinstance(b, Shaped)]
        return max(sizes, default=0)


@dataclass(frozen=True)
class BareCount(Network):
    """A model known by its parameter count alone: every figure that needs the
    architecture (FLOPs per layer, activations, the KV cache) is unknown."""

    count: int = 0
    has_architecture: ClassVar[bool] = False

    def params(self) -> Breakdown:
        return {"model": self.count}

    def active_params(self) -> Breakdown:
        return {}

    @property
    def total_params(self) -> int:
        return self.count


def unwrap(block: Block) -> Block:
    """The block inside its wrappers: LoRA's (blocks.lora.Adapted) and a fixed length's
    (blocks.fixed.FixedLength), the blocks with a `base`."""
    while hasattr(block, "base"):
        block = block.base
    return block


def transformer_layer(stage: Stage) -> TransformerLayer:
    """The transformer layer of one of `Network.layers`' stages (inside its LoRA wrapper, if any)."""
    layer = unwrap(stage.block)
    assert isinstance(layer, TransformerLayer), "Network.layers holds transformer layer stages only"
    return layer


def stage_of(key: str, names: Iterable[str]) -> str | None:
    """The name of the stage among `names` that breakdown key `key` belongs to, or None. A stage's
    name may hold a slash (T5's `encoder/layers`), so the key's first segment is not enough."""
    for name in names:
        if key == name or key.startswith(name + "/"):
            return name
    return None


def matches(key: str, patterns: tuple[str, ...]) -> bool:
    """A glob matches the key or any '/'-prefix of it (`embedding` matches `embedding/tokens/weight`)."""
    parts = key.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)


def _common_divisors(a: int, b: int) -> str:
    return ", ".join(str(d) for d in range(1, max(a, b) + 1) if not a % d and not b % d)


__all__ = ["Adapters", "BareCount", "LayersNetwork", "Network", "Stage", "TransformerNetwork", "matches",
           "transformer_layer", "unwrap"]
