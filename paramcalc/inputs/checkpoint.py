"""Safetensors checkpoints, read from their headers (no weights loaded).

A `.safetensors` file is an 8-byte little-endian header length N, N bytes of
JSON (`{name: {"dtype", "shape", "data_offsets": [begin, end]}}` and an
optional `__metadata__` of strings), then the tensors' bytes; offsets count
from the end of the header (https://github.com/huggingface/safetensors, "Format").
A sharded checkpoint's `model.safetensors.index.json` maps each tensor to its
shard (`weight_map`). Every header is checked against its file: a length beyond
the file, JSON that stops early, offsets outside the data or disagreeing with
dtype x shape are refused, placed at the file.

Counting conventions: a tensor's elements are the product of its header shape
(the logical count: a packed F4 tensor holds two per byte); tensors of one file
with identical data_offsets share storage (tied weights) and count once.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from paramcalc.errors import UserError

# bits per element of each safetensors dtype (safetensors' Dtype enum)
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32,
    "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64,
}
INDEX_SUFFIX = ".safetensors.index.json"
_MAX_HEADER = 100_000_000  # safetensors refuses headers over 100 MB


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offsets: tuple[int, int]

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.offsets[1] - self.offsets[0]


@dataclass(frozen=True)
class Checkpoint:
    """The tensors of a checkpoint: `tensors` holds each storage once, `shared`
    the (name, name of the tensor whose storage it shares) pairs left out."""

    path: Path
    files: tuple[Path, ...]
    tensors: tuple[Tensor, ...]
    shared: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        return sum(t.numel for t in self.tensors)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def by_dtype(self) -> dict[str, tuple[int, int]]:
        """{dtype: (elements, bytes)}, largest first."""
        out: dict[str, tuple[int, int]] = {}
        for t in self.tensors:
            n, b = out.get(t.dtype, (0, 0))
            out[t.dtype] = (n + t.numel, b + t.nbytes)
        return dict(sorted(out.items(), key=lambda kv: -kv[1][0]))


def is_checkpoint(path: Path) -> bool:
    return path.name.endswith((".safetensors", INDEX_SUFFIX))


def shards_in(folder: Path) -> list[Path]:
    """A folder's checkpoint: its index (the one `*.safetensors.index.json`), else its `*.safetensors` files."""
    indexes = sorted(folder.glob(f"*{INDEX_SUFFIX}"))
    if len(indexes) == 1:
        return indexes
    preferred = folder / f"model{INDEX_SUFFIX}"
    if preferred.is_file():
        return [preferred]
    return sorted(p for p in folder.glob("*.safetensors") if p.is_file())


def read_checkpoint(path: Path) -> Checkpoint:
    """A `.safetensors` file, an index, or a folder holding either."""
    if path.is_dir():
        found = shards_in(path)
        if not found:
            raise UserError("no safetensors checkpoint here", where=str(path),
                            fix="name a .safetensors file, a model.safetensors.index.json, or a folder holding them")
        if len(found) == 1 and found[0].name.endswith(INDEX_SUFFIX):
            return _from_index(path, found[0])
        return _combine(path, [read_file(p) for p in found])
    if path.name.endswith(INDEX_SUFFIX):
        return _from_index(path, path)
    return _combine(path, [read_file(path)])


def read_file(path: Path) -> tuple[Path, list[Tensor], dict]:
    """One safetensors file's tensors and `__metadata__`, every header entry checked against the file."""
    where = str(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{size} bytes: too short for a safetensors file (an 8-byte header length first)",
                                where=where, fix="the file is truncated or not safetensors; download it again")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > _MAX_HEADER:
                raise UserError(f"the header claims {n:,} bytes but the file holds {size - 8:,} after its length",
                                where=where, fix="the file is truncated or not safetensors; download it again")
            raw = f.read(n)
    except OSError as error:
        raise UserError(f"cannot read it ({error.strerror or error})", where=where) from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"the header is not valid JSON ({error})", where=where,
                        fix="the file is truncated or corrupt; download it again") from None
    if not isinstance(header, dict):
        raise UserError("the header is not a JSON object", where=where, fix="download the file again")
    metadata = header.pop("__metadata__", None) or {}
    data = size - 8 - n
    tensors = []
    for name, entry in header.items():
        tensors.append(_tensor(name, entry, path, data))
    return path, tensors, metadata if isinstance(metadata, dict) else {}


def _tensor(name: str, entry, path: Path, data: int) -> Tensor:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise UserError("a tensor entry needs dtype, shape and data_offsets", where=where,
                        fix="the header is corrupt; download the file again")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise UserError(f"unknown dtype {dtype!r}", where=where, fix=f"safetensors dtypes: {', '.join(DTYPE_BITS)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UserError(f"shape {shape!r} is not a list of non-negative integers", where=where,
                        fix="the header is corrupt; download the file again")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise UserError(f"data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end", where=where,
                        fix="the header is corrupt; download the file again")
    if offsets[1] > data:
        raise UserError(f"data_offsets {offsets} run past the end of the data ({data:,} bytes after the header)",
                        where=where, fix="the file is truncated; download it again")
    want = -(-prod(shape) * DTYPE_BITS[dtype] // 8)
    if offsets[1] - offsets[0] != want:
        raise UserError(f"{dtype} x {shape} needs {want:,} bytes but data_offsets {offsets} span "
                        f"{offsets[1] - offsets[0]:,}", where=where, fix="the header is corrupt; download it again")
    return Tensor(name, dtype, tuple(shape), path, (offsets[0], offsets[1]))


def _from_index(path: Path, index: Path) -> Checkpoint:
    from paramcalc.inputs.files import load_mapping

    data = load_mapping(index)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise UserError("no 'weight_map' of tensor name -> shard file", where=str(index), field="weight_map",
                        fix="a safetensors index maps every tensor to its shard; download it again")
    files = []
    for shard in dict.fromkeys(weight_map.values()):  # in order, once each
        file = index.parent / shard
        if not file.is_file():
            raise UserError(f"names shard {shard!r}, which is missing", where=str(index), field="weight_map",
                            fix=f"download {shard} into {index.parent}")
        files.append(read_file(file))
    held = {t.name: file for file, tensors, _ in files for t in tensors}
    for name, shard in weight_map.items():
        if held.get(name) != index.parent / shard:
            raise UserError(f"maps tensor {name!r} to {shard!r}, which does not hold it", where=str(index),
                            field="weight_map", fix="the shards and the index disagree; download them again")
    return _combine(path, files)


def _combine(path: Path, files: list[tuple[Path, list[Tensor], dict]]) -> Checkpoint:
    unique: list[Tensor] = []
    shared: list[tuple[str, str]] = []
    for _, tensors, _ in files:
        first: dict[tuple[int, int], Tensor] = {}
        for t in tensors:
            if t.nbytes and t.offsets in first:  # one storage, several names (tied weights)
                shared.append((t.name, first[t.offsets].name))
                continue
            first.setdefault(t.offsets, t)
            unique.append(t)
    return Checkpoint(path, tuple(f for f, _, _ in files), tuple(unique), tuple(shared))


# ------------------------------------------------ a checkpoint against its config


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
_BUFFER = re.compile(r"(?:\.inv_freq|\.attn\.bias|\.attn\.masked_bias|\.position_ids)$")
_SCALE = re.compile(r"(?:_scale_inv|weight_scale(?:_2)?|input_scale|activation_scale|[kv]_scale)$")


def explain(checkpoint: Checkpoint, config: dict) -> dict[str, int]:
    """Elements the checkpoint holds that the model's parameters do not, by reason:
    layers past `num_hidden_layers` (multi-token prediction, DeepSeek-V3's layer 61),
    buffers saved with the weights (rotary inv_freq, GPT-2's causal mask, position_ids),
    and quantisation scales (fp8 `*_scale_inv`, `weight_scale`, `input_scale`)."""
    text = config.get("text_config")
    layers = (text if isinstance(text, dict) else config).get("num_hidden_layers", config.get("num_hidden_layers"))
    tied = config.get("tie_word_embeddings") is True
    names = {t.name for t in checkpoint.tensors}
    out: dict[str, int] = {}
    for t in checkpoint.tensors:
        match = _LAYER.search(t.name)
        if isinstance(layers, int) and match and int(match.group(1)) >= layers:
            reason = f"layers beyond num_hidden_layers={layers} (multi-token prediction)"
        elif _BUFFER.search(t.name):
            reason = "buffers saved with the weights (rotary inv_freq, attention masks, position ids)"
        elif _SCALE.search(t.name):
            reason = "quantisation scales (fp8 *_scale_inv, weight_scale, input_scale)"
        elif tied and t.name == "lm_head.weight" and any(n.endswith("embed_tokens.weight") for n in names):
            reason = "lm_head.weight stored though tie_word_embeddings is true"
        else:
            continue
        out[reason] = out.get(reason, 0) + t.numel
    return out
