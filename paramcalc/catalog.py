"""The embedded catalogs: model presets (presets/models) and accelerators
(presets/gpus), each a YAML file with its source. Users add a GPU by passing
their own YAML file in the same format to `--gpu`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from paramcalc.errors import UserError
from paramcalc.files import load_yaml, require_mapping
from paramcalc.units import parse_number


@cache
def presets_root() -> Path:
    """The presets folder: the installed package paramcalc.presets (the repository's
    top-level presets/), or, in a source checkout put on sys.path without installing,
    the presets/ folder beside the package."""
    from importlib.resources import files

    try:
        return Path(str(files("paramcalc.presets")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in (presets_root() / "models").glob("*.yaml"))


def preset_path(name: str) -> Path | None:
    """One preset file by name (case-insensitive), without reading the others."""
    if "/" in name or "\\" in name or not name:
        return None
    path = presets_root() / "models" / f"{name.lower()}.yaml"
    return path if path.is_file() else None
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")


def list_presets() -> list[dict]:
    """Name, family, exact count and source of every embedded model preset."""
    out = []
    for name in preset_names():
        data = load_yaml(presets_root() / "models" / f"{name}.yaml")
        out.append({"name": name, "family": data.get("family"), "params": data.get("expected_params"),
                    "source": data.get("source")})
    return out


@dataclass(frozen=True)
class Gpu:
    """One accelerator: dense peaks (no 2:4 sparsity) in FLOP/s per dtype, bytes, bytes/s, watts."""

    name: str
    display_name: str
    memory_bytes: int
    memory_bandwidth: int
    interconnect_bandwidth: int | None
    tdp_watts: int | None
    peak_flops: dict[str, int]
    source: str

    def peak(self, dtype: str) -> int:
        if dtype not in self.peak_flops:
            have = ", ".join(self.peak_flops)
            raise UserError(f"{self.name} has no dense {dtype} peak in its catalog entry",
                            fix=f"use one of: {have}")
        return self.peak_flops[dtype]


def _gpu_from(data: dict, where: str) -> Gpu:
    try:
        peaks = {k: int(parse_number(v, what=f"peak_flops_dense.{k}")) for k, v in data["peak_flops_dense"].items()}
        link = (data.get("interconnect") or {}).get("bandwidth")
        return Gpu(name=str(data["name"]), display_name=str(data.get("display_name") or data["name"]),
                   memory_bytes=int(parse_number(data["memory_bytes"], what="memory_bytes")),
                   memory_bandwidth=int(parse_number(data["memory_bandwidth"], what="memory_bandwidth")),
                   interconnect_bandwidth=int(parse_number(link, what="interconnect.bandwidth")) if link else None,
                   tdp_watts=data.get("tdp_watts"), peak_flops=peaks, source=str(data.get("source") or where))
    except KeyError as e:
        raise UserError(f"missing field {e.args[0]!r}", where=where,
                        fix="a GPU file needs name, memory_bytes, memory_bandwidth and peak_flops_dense") from None
    except UserError as e:
        raise e.at(where) from None


@cache
def _aliases() -> dict[str, str]:
    out = {}
    for path in (presets_root() / "gpus").glob("*.yaml"):
        data = load_yaml(path)
        for alias in [path.stem, *(data.get("aliases") or [])]:
            out[str(alias).lower()] = path.stem
    return out


def gpu_names() -> list[str]:
    return sorted(p.stem for p in (presets_root() / "gpus").glob("*.yaml"))


def load_gpu(name: str) -> Gpu:
    """A catalog GPU by name or alias (`h100`, `H100-SXM`), or a user's YAML file."""
    if name.lower().endswith((".yaml", ".yml")):
        path = Path(name)
        return _gpu_from(require_mapping(load_yaml(path), str(path)), str(path))
    path = presets_root() / "gpus" / f"{name.lower()}.yaml"
    if not path.is_file():
        stem = _aliases().get(name.lower())
        if stem is None:
            close = difflib.get_close_matches(name.lower(), list(_aliases()), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UserError(f"unknown GPU {name!r}", where="--gpu",
                            fix=f"{hint}choose from: {', '.join(gpu_names())}, or pass a GPU .yaml file")
        path = presets_root() / "gpus" / f"{stem}.yaml"
    return _gpu_from(load_yaml(path), str(path))


@cache
def prices() -> tuple[str, dict[str, float]]:
    """(as_of, {gpu: USD per GPU-hour}): indicative on-demand list prices."""
    data = load_yaml(presets_root() / "prices.yaml")
    return str(data.get("as_of")), {k: float(v["usd_per_hour"]) for k, v in data["prices"].items()}
