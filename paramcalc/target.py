"""TARGET resolution (CONTRACT.md): a config.json, a YAML spec, a preset name
or a bare parameter count, in that order."""

from __future__ import annotations

import difflib
from pathlib import Path

from paramcalc.catalog import preset_names, preset_path
from paramcalc.errors import UserError
from paramcalc.spec import CountSpec, TransformerSpec


def load_spec(target: str | Path, *, base: Path | None = None) -> TransformerSpec | CountSpec:
    """Resolve a TARGET to a spec. `base` resolves relative paths (budget files)."""
    text = str(target)
    path = Path(text)
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir() and (path / "config.json").is_file():  # a downloaded Hugging Face snapshot
        path = path / "config.json"
    suffix = path.suffix.lower()
    if suffix == ".json":
        from paramcalc.hf import from_config_file

        return from_config_file(path)
    if suffix in (".yaml", ".yml"):
        return load_yaml_spec(path)
    preset = preset_path(text)
    if preset is not None:
        return load_preset(preset)
    from paramcalc.units import parse_number

    try:
        count = parse_number(text, what="parameter count")
    except UserError:
        if path.is_dir():
            raise UserError(f"folder {text!r} has no config.json",
                            fix="name the config.json, or a folder holding one (a Hugging Face snapshot)") from None
        raise _unknown_target(text) from None
    if not isinstance(count, int) or count <= 0:
        raise UserError(f"a parameter count must be a positive whole number, got {text!r}")
    return CountSpec(name=text, params=count)


def load_yaml_spec(path: Path) -> TransformerSpec:
    from paramcalc.files import load_yaml, require_mapping, yaml_line
    from paramcalc.validation import validate

    data = require_mapping(load_yaml(path), str(path))
    return validate(data, str(path), locate=lambda loc: yaml_line(path, loc))


def load_preset(path: Path) -> TransformerSpec:
    """An embedded preset; transformer presets are trusted (the tests validate each one)."""
    from paramcalc.files import load_yaml

    data = load_yaml(path)
    if data.get("architecture") == "layers":
        return load_yaml_spec(path)  # shapes propagate during validation
    return TransformerSpec.trusted(data)


def _unknown_target(text: str) -> UserError:
    close = difflib.get_close_matches(text.lower(), preset_names(), n=3, cutoff=0.5)
    fix = f"did you mean {', '.join(close)}?" if close else "see `paramcalc presets` for the names"
    return UserError(f"{text!r} is not a file, a preset or a parameter count", fix=fix)
