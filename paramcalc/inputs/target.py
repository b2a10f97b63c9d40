"""TARGET resolution (docs/contract.md): a config.json (or a downloaded snapshot
folder holding one), a safetensors checkpoint (a `.safetensors` file, a
`*.safetensors.index.json`, or a folder of shards without a config.json), a YAML
spec, a preset name, a Hugging Face Hub model id (`org/name`, inputs/hub.py) or a
bare parameter count, in that order; before them all, `package.module:factory`
(not an existing file) builds the user's own PyTorch module (inputs/factory.py).
Each becomes a spec; paramcalc.network.lower turns any spec into the network
every analysis reads.

A config.json whose model_type has no analytic importer is counted by
transformers on the meta device (inputs/hf/meta_fallback.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

from paramcalc.catalog import preset_path, unknown_preset
from paramcalc.errors import UserError
from paramcalc.inputs.spec import CountSpec, TransformerSpec

if TYPE_CHECKING:  # a layers spec is imported where one is read
    from paramcalc.inputs.checkpoint import Checkpoint
    from paramcalc.inputs.factory import FactorySpec
    from paramcalc.inputs.hf.meta_fallback import MeasuredSpec
    from paramcalc.inputs.layers_spec import LayersSpec

Spec = Union[TransformerSpec, "LayersSpec", CountSpec, "MeasuredSpec", "FactorySpec"]


@dataclass(frozen=True)
class Source:
    """A spec and the YAML file it came from (None for presets, config.json
    files and counts): lowering places its errors in that file. A checkpoint
    TARGET also carries its tensors (read when asked: `count` reports them)."""

    spec: Spec
    path: Path | None = None
    checkpoint: Checkpoint | None = None
    config: dict | None = None  # the config.json beside a checkpoint, to explain the difference


def read_target(target: str | Path, *, base: Path | None = None, revision: str | None = None,
                checkpoint: bool = False) -> Source:
    """Resolve a TARGET to its spec. `base` resolves relative paths (budget and pipeline files);
    `revision` picks a Hub model's branch, tag or commit; `checkpoint` reads a snapshot folder's
    safetensors headers too (a folder with a config.json is otherwise read through its config)."""
    text = str(target)
    path = Path(text)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        path.exists()
    except OSError as e:  # a name the file system refuses (ENAMETOOLONG): it cannot be a file, nor a model
        raise UserError(f"{text[:40]}... ({len(text):,} characters) is no preset, file, Hub id or count "
                        f"({e.strerror})", field="target",
                        fix="name a preset, a config.json, a .yaml spec, a checkpoint, org/name or a count") from None
    if ":" in text and not path.exists():
        from paramcalc.inputs.factory import is_factory, read_factory

        if is_factory(text):  # package.module:factory, the user's own PyTorch module
            return Source(read_factory(text))
    if revision is not None:
        from paramcalc.inputs.hub import is_repo_id

        if path.exists() or not is_repo_id(text):
            raise UserError(f"a revision applies to a Hugging Face model id (org/name), not {text!r}",
                            field="revision", fix="drop {revision}, or name the model as org/name")
        return _hub(text, revision)
    if path.is_dir():
        from paramcalc.inputs.checkpoint import shards_in

        has_config = (path / "config.json").is_file()
        if not has_config or checkpoint:
            if shards_in(path):
                return _checkpoint(path, path, has_config)
        if has_config:  # a downloaded Hugging Face snapshot
            path = path / "config.json"
    is_checkpoint = path.name.endswith((".safetensors", ".safetensors.index.json"))
    if is_checkpoint and path.is_file():
        config = path.parent / "config.json"
        if checkpoint or not config.is_file():
            return _checkpoint(path, path.parent, config.is_file())
        path = config  # flops, memory: through the config beside it
    suffix = path.suffix.lower()
    if suffix == ".json":
        return Source(read_config(path))
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
            raise UserError(f"folder {text!r} has no config.json or safetensors checkpoint",
                            fix="name the config.json, or a folder holding one (a Hugging Face snapshot)") from None
        if is_checkpoint:
            raise UserError(f"checkpoint {text!r} does not exist", fix="check the path") from None
        from paramcalc.inputs.hub import is_repo_id

        if is_repo_id(text):
            return _hub(text, None)
        raise UserError(f"{text!r} is not a file, a preset or a parameter count", fix=unknown_preset(text)) from None
    if not isinstance(count, int) or count <= 0:
        raise UserError(f"a parameter count must be a positive whole number, got {text!r}")
    return Source(CountSpec(name=text, params=count))


def read_config(path: Path, name: str | None = None) -> Spec:
    """A Hugging Face config.json: its family's analytic importer, else transformers on the meta device.
    A snapshot's config.json is named after its folder (Llama-3.1-8B/config.json: Llama-3.1-8B)."""
    from paramcalc.inputs.files import load_mapping
    from paramcalc.inputs.hf import FAMILIES, analytic, from_config

    if name is None:
        folder = path.parent.resolve().name
        name = folder if path.stem == "config" and folder else path.stem
    cfg = load_mapping(path)
    model_type = cfg.get("model_type")
    if isinstance(model_type, str) and not analytic(cfg):  # multimodal wrappers too (qwen2_vl, mllama)
        from paramcalc.inputs.hf.meta_fallback import measure

        return measure(cfg, str(path), name, sorted(FAMILIES))
    return from_config(cfg, str(path), name=name)


def _hub(repo_id: str, revision: str | None) -> Source:
    from paramcalc.inputs.hub import config_path

    return Source(read_config(config_path(repo_id, revision), name=repo_id))


def _checkpoint(path: Path, folder: Path, has_config: bool) -> Source:
    """A safetensors checkpoint: the spec of the config.json beside it, else its tensor count."""
    from paramcalc.inputs.checkpoint import read_checkpoint

    scanned = read_checkpoint(path)
    if not scanned.total:
        raise UserError("the checkpoint holds no tensor elements", where=str(path),
                        fix="name the checkpoint's weights (model.safetensors or its index)")
    if has_config:
        from paramcalc.inputs.files import load_mapping

        config = folder / "config.json"
        return Source(read_config(config), checkpoint=scanned, config=load_mapping(config))
    name = folder.resolve().name if path.is_dir() or path.name.startswith("model") else path.name.split(".")[0]
    return Source(CountSpec(name=name or path.name, params=scanned.total), checkpoint=scanned)


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
