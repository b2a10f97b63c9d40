"""Lower a LayersSpec to a LayersNetwork of shaped blocks.

Shapes propagate item by item from `input_shape`: each layer's input size is
the previous layer's output, so a misfit (a kernel larger than its input, a
linear after an unflattened feature map of the wrong width) is reported at
lowering time naming its item (its line, when the spec is a file). Consecutive identical blocks (torchvision's
layer1.1 and layer1.2) form one stage with a count, as transformer layers do.
"""

from __future__ import annotations

from paramcalc.blocks.channelnorm import BatchNorm, GroupNorm
from paramcalc.blocks.conv import Conv, check_groups
from paramcalc.blocks.lastaxis import LastAxis
from paramcalc.blocks.linear import Embedding, Linear
from paramcalc.blocks.norm import Norm
from paramcalc.blocks.pointwise import Activation, CrossEntropy, Dropout, Flatten
from paramcalc.blocks.pool import AdaptiveAvgPool, Pool
from paramcalc.blocks.recurrent import Recurrent
from paramcalc.blocks.residual import Residual, basic, bottleneck
from paramcalc.blocks.shaped import Sequential, Shape, Shaped
from paramcalc.errors import UserError
from paramcalc.inputs.files import dotted
from paramcalc.inputs.layers_spec import LayersSpec
from paramcalc.network.network import LayersNetwork, Stage


def _misfit(message: str, loc: tuple, fix: str | None = None) -> UserError:
    """A layer that does not fit its input, named by its place in the spec (`layers[3]`)."""
    return UserError(message, field=dotted(loc), fix=fix)


Named = list[tuple[str, int | None, Shaped]]  # (name, index within a repeated item or None, block)


def lower_layers(spec: LayersSpec) -> LayersNetwork:
    flat: Named = []
    shape = spec.sample_shape
    for i, item in enumerate(spec.layers):
        lowered = _item(item, shape, ("layers", i), f"{item.type}{i}")
        flat += lowered
        shape = lowered[-1][2].out_shape
    if spec.loss == "cross_entropy":
        if not shape:
            raise _misfit("the cross-entropy loss needs class scores on the last axis", ("loss",),
                          fix="end with a linear layer, or set loss: none")
        flat.append(("loss", None, CrossEntropy(shape)))
    return LayersNetwork(spec.name or "model", _stages(flat), expected_params=spec.expected_params,
                         input_shape=spec.input_shape, sequential=spec.sequential)


def _stages(flat: Named) -> tuple[Stage, ...]:
    """Runs of identical blocks under one name become one stage: layer1.1-2 x 2."""
    stages: list[Stage] = []
    run: Named = []
    for entry in [*flat, None]:  # a sentinel flushes the last run
        if run and (entry is None or entry[2] != run[0][2] or entry[0] != run[0][0]):
            name, first, block = run[0]
            last = run[-1][1]
            label = name if first is None else f"{name}.{first}" if len(run) == 1 else f"{name}.{first}-{last}"
            stages.append(Stage(label, block, len(run)))
            run = []
        if entry is not None:
            run.append(entry)
    return tuple(stages)


def _item(item, shape: Shape, loc: tuple, default: str) -> Named:
    """One spec item, repeated; each copy fed by the previous one's output."""
    name = item.name or default
    out: Named = []
    for k in range(item.repeat):
        try:
            blocks = _lower(item, shape, loc)
        except UserError as e:
            if e.field:  # a nested item, placed already
                raise
            raise _misfit(f"{item.type}: {e.message}", loc, e.fix) from None
        for j, block in enumerate(blocks):
            index = k * len(blocks) + j if (item.repeat > 1 or len(blocks) > 1) else None
            out.append((name, index, block))
            shape = block.out_shape
    return out


def _sub(items, shape: Shape, loc: tuple) -> Sequential:
    """Nested layers (residual and sequential items) as one Sequential, parts named 0, 1, ... or by name."""
    parts, n = [], 0
    for i, item in enumerate(items):
        for name, index, block in _item(item, shape, (*loc, i), str(i)):
            label = name if index is None else f"{name}_{index}"
            parts.append((label if item.name else str(n), block))
            n += 1
            shape = block.out_shape
    return Sequential(parts[0][1].in_shape, tuple(parts))


def _lower(item, s: Shape, loc: tuple) -> list[Shaped]:
    t = item.type
    if t.startswith("conv"):
        dims = int(t[4])
        _rank(s, dims + 1, f"{t} needs [channels, {', '.join(['size'] * dims)}] input")
        kernel, stride, dilation = (_per_axis(v, dims, f) for v, f in (
            (item.kernel_size, "kernel_size"), (item.stride, "stride"), (item.dilation, "dilation")))
        padding = item.padding if isinstance(item.padding, str) else _per_axis(item.padding, dims, "padding")
        if padding == "same" and set(stride) != {1}:
            raise UserError("padding 'same' needs stride 1 (torch refuses it otherwise)",
                            fix="give the padding in pixels")
        check_groups(s[0], item.out_channels, item.groups)
        conv = Conv(s, item.out_channels, kernel, stride, padding, dilation, item.groups, item.bias)
        _ = conv.out_shape  # raises when the kernel does not fit
        return [conv]
    if t == "linear":
        _rank(s, None, "linear needs a feature axis")
        return [LastAxis(s, Linear(s[-1], item.out_features, item.bias))]
    if t.startswith("batchnorm"):
        dims = int(t[9])
        ranks = (1, 2) if dims == 1 else (dims + 1,)
        if len(s) not in ranks:
            raise UserError(f"{t} needs [channels{', size' * dims}] input, got {list(s)}")
        return [BatchNorm(s, item.affine, item.track_running_stats)]
    if t == "groupnorm":
        _rank(s, None, "groupnorm needs a channel axis")
        if s[0] % item.num_groups:
            raise UserError(f"num_groups ({item.num_groups}) does not divide the {s[0]} channels")
        return [GroupNorm(s, item.num_groups, item.affine)]
    if t == "layernorm":
        _rank(s, None, "layernorm needs a feature axis")
        return [LastAxis(s, Norm(s[-1], "layernorm", item.bias, affine=item.elementwise_affine))]
    if t in ("maxpool1d", "maxpool2d", "maxpool3d", "avgpool1d", "avgpool2d", "avgpool3d"):
        dims = int(t[7])
        _rank(s, dims + 1, f"{t} needs [channels, {', '.join(['size'] * dims)}] input")
        kernel = _per_axis(item.kernel_size, dims, "kernel_size")
        stride = _per_axis(item.stride, dims, "stride") if item.stride is not None else kernel
        padding = _per_axis(item.padding, dims, "padding")
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise UserError(f"padding {padding} exceeds half the kernel {kernel} (torch refuses it)")
        pool = Pool(s, t[:3], kernel, stride, padding)
        _ = pool.out_shape  # raises when the window does not fit
        return [pool]
    if t == "avgpool" or t.startswith("adaptive"):
        dims = len(s) - 1 if t == "avgpool" else int(t[-2])
        _rank(s, dims + 1, f"{t} needs [channels, sizes...] input")
        return [AdaptiveAvgPool(s, _per_axis(item.output_size, dims, "output_size"))]
    if t == "flatten":
        return [Flatten(s)]
    if t == "dropout":
        return [Dropout(s, item.p)]
    if t in ("lstm", "gru"):
        _rank(s, 1, f"{t} needs one feature vector per time step ([seq_len, features] input)")
        return [Recurrent(s, t, item.hidden_size, item.num_layers, item.bidirectional, item.bias, item.proj_size,
                          item.dropout)]
    if t == "embedding":
        _rank(s, 0, "embedding reads token ids: input_shape [seq_len]")
        return [LastAxis(s, Embedding(item.num_embeddings, item.embedding_dim))]
    if t in ("bottleneck", "basic"):
        _rank(s, 3, f"{t} needs [channels, height, width] input")
        if t == "basic" and (item.groups != 1 or item.width_per_group != 64):
            raise UserError("basic blocks have no groups or width_per_group (torchvision refuses them)")
        make = (lambda shape, stride: bottleneck(shape, item.planes, stride, item.groups, item.width_per_group)) \
            if t == "bottleneck" else (lambda shape, stride: basic(shape, item.planes, stride))
        blocks: list[Shaped] = []
        shape = s
        for k in range(item.blocks):
            blocks.append(make(shape, item.stride if k == 0 else 1))
            shape = blocks[-1].out_shape
        return blocks
    if t == "residual":
        main = _sub(item.layers, s, (*loc, "layers"))
        shortcut = _sub(item.shortcut, s, (*loc, "shortcut")) if item.shortcut else None
        return [Residual(s, main, shortcut, item.activation)]
    if t == "sequential":
        return [_sub(item.layers, s, (*loc, "layers"))]
    return [Activation(s, t)]


def _rank(s: Shape, rank: int | None, message: str) -> None:
    if (rank is None and not s) or (rank is not None and len(s) != rank):
        raise UserError(f"{message}; its input here is {list(s)}",
                        fix="check input_shape (its first axis is the time axis when the network has an lstm, gru or "
                            "embedding layer) and the layers before it (flatten turns a feature map into a vector)")


def _per_axis(value, dims: int, field: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    if len(value) != dims:
        raise UserError(f"{field} has {len(value)} entries for {dims} spatial axes")
    return tuple(value)
