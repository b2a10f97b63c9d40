"""The embedded catalogs: model presets (presets/models), accelerators
(presets/gpus) and the price table (presets/prices.yaml), each with its
source. Users add a GPU by passing their own file in the same format to `--gpu`.

The presets are the package `paramcalc.presets` (the repository's top-level
presets/ folder); one preset file is read by name. Finding a preset imports
neither pydantic nor yaml (the fast `count --json` of a stored preset,
paramcalc/presets_store.py): the file models and the loader are imported
where a file is read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from paramcalc.errors import UserError

if TYPE_CHECKING:
    from paramcalc.inputs.gpu_file import Gpu, Prices
    from paramcalc.results.catalog import GpusReport, PresetsReport


@cache
def presets_root() -> Path:
    """The presets folder: the installed package paramcalc.presets or, in a source
    checkout put on sys.path without installing, the presets/ folder beside the package.
    (The package's own folder, not importlib.resources: that import costs a cold start 13 ms.)"""
    try:
        import paramcalc.presets as presets
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "presets"
    return Path(presets.__file__).parent


def preset_names() -> list[str]:
    return sorted(p.stem for p in (presets_root() / "models").glob("*.yaml"))


def preset_path(name: str) -> Path | None:
    """One preset file by name (case-insensitive), without reading the others."""
    if "/" in name or "\\" in name or not name:
        return None
    path = presets_root() / "models" / f"{name.lower()}.yaml"
    return path if path.is_file() else None


def unknown_preset(text: str) -> str:
    """The fix for a name that is no preset: the closest names, or where to find them."""
    from paramcalc.inputs.files import suggest

    return suggest(text, preset_names(), fallback="see `paramcalc presets` for the names")


def preset_catalog() -> PresetsReport:
    """Name, family, exact count and source of every embedded model preset."""
    from paramcalc.inputs.files import load_yaml
    from paramcalc.results.catalog import PresetEntry, PresetsReport

    entries = []
    for name in preset_names():
        data = load_yaml(presets_root() / "models" / f"{name}.yaml")
        entries.append(PresetEntry(name=name, family=data.get("family"), params=data.get("expected_params"),
                                   source=data.get("source")))
    return PresetsReport(presets=entries)


def gpu_catalog() -> GpusReport:
    """Every accelerator of the catalog, as its file says it."""
    from paramcalc.results.catalog import GpusReport

    return GpusReport(gpus=[load_gpu(name) for name in gpu_names()],
                      notes=["peaks are dense FLOP/s (no 2:4 sparsity); bandwidths bytes/s per direction"])


# ---------------------------------------------------------------- accelerators


@cache
def _aliases() -> dict[str, str]:
    from paramcalc.inputs.files import load_yaml

    out = {}
    for path in (presets_root() / "gpus").glob("*.yaml"):
        data = load_yaml(path)
        for alias in [path.stem, *(data.get("aliases") or [])]:
            out[str(alias).lower()] = path.stem
    return out


def gpu_names() -> list[str]:
    return sorted(p.stem for p in (presets_root() / "gpus").glob("*.yaml"))


def load_gpu(name: str) -> Gpu:
    """A catalog GPU by name or alias (`h100`, `H100-SXM`), or a user's GPU .yaml file."""
    from paramcalc.inputs.files import load_mapping, suggest, validate
    from paramcalc.inputs.gpu_file import Gpu

    if name.lower().endswith((".yaml", ".yml")):
        path = Path(name)
        return validate(Gpu, load_mapping(path), path=path)
    path = presets_root() / "gpus" / f"{name.lower()}.yaml"
    if not path.is_file():
        stem = _aliases().get(name.lower())
        if stem is None:
            raise UserError(f"unknown GPU {name!r}", field="gpu", fix=suggest(
                name, list(_aliases()), fallback=f"choose from: {', '.join(gpu_names())}, or pass a GPU .yaml file"))
        path = presets_root() / "gpus" / f"{stem}.yaml"
    return _catalog_gpu(path)


@cache
def _catalog_gpu(path: Path) -> Gpu:
    from paramcalc.inputs.files import load_mapping, validate
    from paramcalc.inputs.gpu_file import Gpu

    return validate(Gpu, load_mapping(path), path=path)


@cache
def prices() -> Prices:
    """Indicative on-demand list prices (USD per GPU-hour), with their date."""
    from paramcalc.inputs.files import load_mapping, validate
    from paramcalc.inputs.gpu_file import Prices

    path = presets_root() / "prices.yaml"
    return validate(Prices, load_mapping(path), path=path)


def price(gpu: str) -> float | None:
    entry = prices().prices.get(gpu)
    return None if entry is None else float(entry.usd_per_hour)
