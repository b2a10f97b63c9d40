"""The embedded catalogs as documents (`paramcalc presets`, `paramcalc gpus`)
and the collective measurements of `paramcalc bench-collectives`."""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from pydantic import Field

from paramcalc.inputs.gpu_file import Gpu
from paramcalc.results.base import Document, Result


class PresetEntry(Result):
    name: str
    family: str | None
    params: int | None = Field(description="the exact published or instantiated count")
    source: str | None


class PresetsReport(Document):
    command: str = "presets"
    presets: list[PresetEntry]


class GpusReport(Document):
    command: str = "gpus"
    gpus: list[Gpu]


class CollectiveRow(Result):
    op: str = Field(description="all_reduce, all_gather or reduce_scatter")
    bytes: int = Field(description="message size per rank")
    seconds: float = Field(description="median time of one collective")
    algbw: float = Field(description="bytes / seconds")
    busbw: float = Field(description="algbw x the ring's traffic factor (nccl-tests' bus bandwidth)")


class CollectivesReport(Document):
    command: str = "bench-collectives"
    kind: str = "paramcalc.collectives"
    backend: str
    world_size: int
    device: str | None = Field(None, description="the GPU's name, or cpu")
    torch_version: str | None = None
    results: list[CollectiveRow]
    busbw_max: float = Field(description="the largest bus bandwidth measured, bytes/s per rank")
