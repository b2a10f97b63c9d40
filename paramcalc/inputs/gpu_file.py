"""The GPU file (presets/gpus/*.yaml, or a user's own passed to `--gpu`) and
the price table (presets/prices.yaml), as typed models.

Peaks are dense (no 2:4 sparsity) FLOP/s per dtype; bandwidths are bytes/s
per direction; sizes take byte units (`80GiB`). A misspelt key (`tdp_wats`)
is refused, naming it, instead of silently turning energy into "unknown".
"""

# No `from __future__ import annotations`: pydantic reads the annotations at import.
from typing import Literal

from pydantic import BaseModel, Field

from paramcalc.errors import UserError
from paramcalc.inputs.fields import STRICT, Bytes, Count, Positive, Share, Text

DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
Dtype = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4"]


class Link(BaseModel):
    """A link of one GPU (to other GPUs, or to its host), per GPU and direction."""

    model_config = STRICT
    name: Text = Field(description="e.g. NVLink 4, InfiniBand NDR")
    bandwidth: Positive = Field(description="bytes/s per GPU and direction (450G for NVLink 4)")


class Efficiency(BaseModel):
    """Shares of the datasheet figures that training and serving kernels sustain on this card:
    the step-time and serving models' rates (analysis/step.py, analysis/serve.py). Catalog
    entries cite where each comes from; `paramcalc bench --calibration-out` measures them."""

    model_config = STRICT
    gemm_bf16: Share = Field(0.6, description="large bf16 GEMMs, of the dense bf16 peak")
    gemm_fp8: Share = Field(0.45, description="fp8 GEMMs, of the dense fp8 peak")
    attention: Share = Field(0.4, description="flash attention forward and backward, of the dense bf16 peak")
    memory: Share = Field(0.8, description="memory-bound kernels, of the HBM bandwidth")
    link: Share = Field(0.8, description="NCCL collectives' bus bandwidth, of a link's per-direction bandwidth")
    source: Text = Field("generic defaults (no measurement for this card)", description="where the shares come from")


class Gpu(BaseModel):
    """One accelerator."""

    model_config = STRICT
    name: Text = Field(description="catalog name, e.g. h100-sxm")
    display_name: Text | None = Field(None, description="shown in tables [default: name]")
    vendor: Text | None = None
    family: Text | None = Field(None, description="architecture generation, e.g. hopper")
    memory_bytes: Bytes = Field(description="memory per GPU (80GiB, or bytes)")
    memory_bandwidth: Positive = Field(description="HBM bandwidth, bytes/s (3.35T)")
    interconnect: Link | None = Field(None, description="the scale-up link inside a node (NVLink, Infinity Fabric)")
    network: Link | None = Field(None, description="the scale-out link between nodes, per GPU (InfiniBand, RoCE)")
    host_link: Link | None = Field(None, description="the link to the host's memory, per GPU (PCIe), which offload "
                                                     "copies cross [default: PCIe Gen5 x16, 64G]")
    gpus_per_node: Count = Field(8, description="GPUs that share the scale-up link (an HGX node: 8; NVL72: 72)")
    efficiency: Efficiency = Field(Efficiency(), description="kernel efficiencies on this card")
    tdp_watts: Positive | None = Field(None, description="board power, for energy estimates")
    peak_flops_dense: dict[Dtype, Positive] = Field(description="dense peak FLOP/s per dtype (no 2:4 sparsity)")
    aliases: tuple[Text, ...] = Field((), description="other names that find this file")
    source: Text | None = Field(
        None, description="datasheet or paper the figures come from (every catalog entry has one)")

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def interconnect_bandwidth(self) -> int | float | None:
        return self.interconnect.bandwidth if self.interconnect else None

    def peak(self, dtype: str) -> int:
        if dtype not in self.peak_flops_dense:
            raise UserError(f"{self.name} has no dense {dtype} peak in its catalog entry", field="dtype",
                            fix=f"use one of: {', '.join(self.peak_flops_dense)}")
        return int(self.peak_flops_dense[dtype])


class Price(BaseModel):
    model_config = STRICT
    usd_per_hour: Positive = Field(description="USD per GPU-hour, on demand")
    source: Text


class Prices(BaseModel):
    """presets/prices.yaml: indicative list prices, dated."""

    model_config = STRICT
    as_of: Text = Field(description="when the prices were last checked (YYYY-MM)")
    prices: dict[str, Price]
