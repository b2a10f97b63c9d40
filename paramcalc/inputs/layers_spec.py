"""The second spec kind: `architecture: layers`, a network written as a list of
typed layers (CNNs, RNNs, MLPs) over an `input_shape`, lowered to blocks by
network/layers.py with shapes propagated layer by layer.

```yaml
architecture: layers
input_shape: [3, 224, 224]           # one sample: channels, height, width
layers:
  - {type: conv2d, name: conv1, out_channels: 64, kernel_size: 7, stride: 2, padding: 3, bias: false}
  - {type: batchnorm2d, name: bn1}
  - {type: relu}
  - {type: bottleneck, name: layer1, planes: 64, blocks: 3}
```

A network with an lstm, gru or embedding layer is a sequence model: the first
axis of input_shape is the time axis (its length is the sequence length), and every
layer sees one time step ([seq_len] for token ids, [seq_len, features] else).
Field names follow the torch.nn constructors (out_channels, kernel_size, ...).
"""

from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, model_validator

from paramcalc.blocks.pointwise import ACTIVATIONS
from paramcalc.inputs.fields import STRICT, Count, Natural, Number
from paramcalc.inputs.spec import _Spec

Sizes = Union[Count, tuple[Count, ...]]


class _Item(BaseModel):
    """A layer: frozen, unknown keys refused, numbers in the command line's grammar."""

    model_config = STRICT

    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="the layer's name in breakdowns (default: its type and position), e.g. conv1")
    repeat: Count = Field(1, le=10_000, description="the layer this many times in a row, each fed by the previous")


class ConvItem(_Item):
    type: Literal["conv1d", "conv2d", "conv3d"]
    out_channels: Count = Field(description="output channels")
    kernel_size: Sizes = Field(description="one size, or one per spatial axis")
    stride: Sizes = Field(1, description="one stride, or one per spatial axis")
    padding: Union[Natural, tuple[Natural, ...], Literal["same", "valid"]] = Field(
        0, description="zero padding per side; 'same' keeps the size (stride 1), 'valid' is 0")
    dilation: Sizes = Field(1, description="spacing between kernel taps")
    groups: Count = Field(1, description="channel groups; divides in and out channels (in_channels: depthwise)")
    bias: bool = Field(True, description="a bias per output channel")


class LinearItem(_Item):
    type: Literal["linear"]
    out_features: Count = Field(description="output width; applied to the last axis")
    bias: bool = Field(True, description="a bias per output")


class BatchNormItem(_Item):
    type: Literal["batchnorm1d", "batchnorm2d", "batchnorm3d"]
    affine: bool = Field(True, description="a learned scale and shift per channel")
    track_running_stats: bool = Field(True, description="running mean and variance buffers (not parameters)")


class GroupNormItem(_Item):
    type: Literal["groupnorm"]
    num_groups: Count = Field(description="channel groups normalised together; divides the channels")
    affine: bool = Field(True, description="a learned scale and shift per channel")


class LayerNormItem(_Item):
    type: Literal["layernorm"]
    elementwise_affine: bool = Field(True, description="a learned scale (and bias) over the last axis")
    bias: bool = Field(True, description="the affine part has a bias")


class ActivationItem(_Item):
    type: Literal[ACTIVATIONS]  # type: ignore[valid-type]


class PoolItem(_Item):
    type: Literal["maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d"]
    kernel_size: Sizes = Field(description="window size, one or one per spatial axis")
    stride: Sizes | None = Field(None, description="default: kernel_size (as torch.nn)")
    padding: Union[Natural, tuple[Natural, ...]] = Field(
        0, description="implicit padding per side, at most half the kernel")


class AdaptivePoolItem(_Item):
    type: Literal["avgpool", "adaptive_avgpool1d", "adaptive_avgpool2d", "adaptive_avgpool3d"]
    output_size: Sizes = Field(1, description="output size per spatial axis (avgpool: global average, 1)")


class FlattenItem(_Item):
    type: Literal["flatten"]


class DropoutItem(_Item):
    type: Literal["dropout"]
    p: Number = Field(0.5, ge=0, lt=1, description="drop probability")


class RecurrentItem(_Item):
    type: Literal["lstm", "gru"]
    hidden_size: Count = Field(description="H: the hidden state per direction")
    num_layers: Count = Field(1, description="stacked recurrent layers")
    bidirectional: bool = Field(False, description="a reverse-direction copy of every layer")
    bias: bool = Field(True, description="b_ih and b_hh bias vectors per layer and direction")
    proj_size: Natural = Field(0, description="LSTM only: project h to this width (0: none)")
    dropout: Number = Field(0.0, ge=0, lt=1, description="dropout between stacked layers (torch.nn.LSTM's dropout)")

    @model_validator(mode="after")
    def _proj(self):
        if self.proj_size and self.type != "lstm":
            raise ValueError("proj_size exists for lstm only")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size ({self.proj_size}) must be smaller than hidden_size ({self.hidden_size})")
        return self


class EmbeddingItem(_Item):
    type: Literal["embedding"]
    num_embeddings: Count = Field(description="rows of the table (vocabulary)")
    embedding_dim: Count = Field(description="width of each row")


class ResNetBlockItem(_Item):
    type: Literal["bottleneck", "basic"]
    planes: Count = Field(
        description="torchvision's planes: the block's inner width (output planes x 4 for bottleneck)")
    blocks: Count = Field(1, description="blocks in this stage (torchvision's _make_layer); the first takes the stride")
    stride: Count = Field(1, description="stride of the first block (on its 3x3 conv)")
    groups: Count = Field(1, description="bottleneck only: grouped 3x3 conv (ResNeXt)")
    width_per_group: Count = Field(64, description="bottleneck only: inner width per group (Wide ResNet: 128)")


class ResidualItem(_Item):
    type: Literal["residual"]
    layers: tuple["Item", ...] = Field(min_length=1, description="the residual branch")
    shortcut: tuple["Item", ...] = Field((), description="the shortcut branch; empty: the identity")
    activation: Literal[ACTIVATIONS] = Field("relu", description="applied after the addition")  # type: ignore[valid-type]


class SequentialItem(_Item):
    type: Literal["sequential"]
    layers: tuple["Item", ...] = Field(min_length=1, description="layers run in order (a unit to repeat)")


Item = Annotated[Union[ConvItem, LinearItem, BatchNormItem, GroupNormItem, LayerNormItem, ActivationItem, PoolItem,
                       AdaptivePoolItem, FlattenItem, DropoutItem, RecurrentItem, EmbeddingItem, ResNetBlockItem,
                       ResidualItem, SequentialItem], Field(discriminator="type")]
SEQUENCE_TYPES = ("lstm", "gru", "embedding")


class LayersSpec(_Spec):
    """A network as a list of typed layers over a fixed input shape."""

    name: str | None = Field(None, description="model name, e.g. resnet-50")
    family: str | None = Field(None, description="model family, e.g. resnet")
    source: str | None = Field(None, description="where the numbers come from (paper, library)")
    expected_params: Count | None = Field(None, description="the published or instantiated parameter count")

    architecture: Literal["layers"] = Field(description="layers: this list-of-layers kind")
    input_shape: tuple[Count, ...] = Field(description=(
        "one sample without the batch axis: [channels, height, width] for images, [seq_len, features] or "
        "[seq_len] (token ids) for sequence models"))
    layers: tuple[Item, ...] = Field(min_length=1, description="the layers, first to last")
    loss: Literal["cross_entropy", "none"] = Field(
        "cross_entropy", description="training loss over the last axis (counted in train activations)")
    freeze: tuple[str, ...] = Field((), description="glob patterns on breakdown keys whose parameters are frozen")

    @model_validator(mode="after")
    def _time_axis(self):
        if self.sequential and not self.input_shape:
            raise ValueError("a sequence model's input_shape starts with its time axis: [seq_len] or "
                             "[seq_len, features]")
        return self

    @property
    def sequential(self) -> bool:
        """A recurrent or token model: input_shape[0] is the time axis."""
        return bool(_types(self.layers) & set(SEQUENCE_TYPES))

    @property
    def seq_len(self) -> int:
        return self.input_shape[0] if self.sequential else 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """What one time step of one sample looks like."""
        return self.input_shape[1:] if self.sequential else self.input_shape


def _types(items) -> set[str]:
    out = set()
    for item in items:
        out.add(item.type)
        for field in ("layers", "shortcut"):
            out |= _types(getattr(item, field, ()))
    return out


ResidualItem.model_rebuild()
SequentialItem.model_rebuild()
