"""TARGET resolution (docs/contract.md): a config.json (or a downloaded snapshot
folder holding one), a YAML spec, a preset name or a bare parameter count, in
that order. Each becomes a spec; paramcalc.network.lower turns any spec into
the network every analysis reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from paramcalc.catalog import preset_path, unknown_preset
from paramcalc.errors import UserError
from paramcalc.inputs.spec import CountSpec, TransformerSpec

if TYPE_CHECKING:  # a layers spec is imported where one is read
    from paramcalc.inputs.layers_spec import LayersSpec

Spec = Union[TransformerSpec, "LayersSpec", CountSpec]


@dataclass(frozen=True)
class Source:
    """A spec and the YAML file it came from (None for presets, config.json
    files and counts): lowering places its errors in that file."""

    spec: Spec
    path: Path | None = None


def read_target(target: str | Path, *, base: Path | None = None) -> Source:
    """Resolve a TARGET to its spec. `base` resolves relative paths (budget and pipeline files)."""
    text = str(target)
    path = Path(text)
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir() and (path / "config.json").is_file():  # a downloaded Hugging Face snapshot
        path = path / "config.json"
    suffix = path.suffix.lower()
    if suffix == ".json":
        from paramcalc.inputs.hf import from_config_file

        return Source(from_config_file(path))
    if suffix in (".yaml", ".yml"):
        return Source(read_spec_file(path), path)
    preset = preset_path(text)
    if preset is not None:
        return Source(read_preset(preset))
    from paramcalc.units import parse_number

    try:
        count = parse_number(text)
    except UserError:
        if path.is_dir():
            raise UserError(f"folder {text!r} has no config.json",
                            fix="name the config.json, or a folder holding one (a Hugging Face snapshot)") from None
        raise UserError(f"{text!r} is not a file, a preset or a parameter count", fix=unknown_preset(text)) from None
    if not isinstance(count, int) or count <= 0:
        raise UserError(f"a parameter count must be a positive whole number, got {text!r}")
    return Source(CountSpec(name=text, params=count))


def load_spec(target: str | Path, *, base: Path | None = None) -> Spec:
    """The spec a TARGET names (a preset, config.json, YAML spec or count)."""
    return read_target(target, base=base).spec


def read_spec_file(path: Path) -> Spec:
    """A paramcalc YAML spec: `architecture: layers` is a LayersSpec, anything else a TransformerSpec."""
    from paramcalc.inputs.files import load_mapping, validate

    data = load_mapping(path)
    if data.get("architecture") == "layers":
        from paramcalc.inputs.layers_spec import LayersSpec

        return validate(LayersSpec, data, path=path)
    return validate(TransformerSpec, data, path=path)


def read_preset(path: Path) -> Spec:
    """An embedded preset; transformer presets are trusted (tests/test_presets.py validates each one)."""
    from paramcalc.inputs.files import load_yaml

    data = load_yaml(path)
    if data.get("architecture") == "layers":
        return read_spec_file(path)
    return TransformerSpec.trusted(data)
