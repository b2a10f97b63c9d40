"""Pre-lowered presets: each model preset's Network, stored beside the presets
(presets/lowered/NAME.pickle), so that `paramcalc count PRESET --json` reads
one small file instead of parsing YAML into a pydantic spec and lowering it
(issue #19's cold start). Regenerate them after changing a preset, a block or
the lowering:

    python -m paramcalc.presets_store

Each file is one text line, the fingerprint of what its network was lowered
from (the preset's bytes and the source of every module lowering reads,
`SOURCES`), then the pickled network and the caveats lowering said. `load`
recomputes the fingerprint (about 60 small files, a millisecond or two) and
gives None, never an error, when it differs or the file is missing or
unreadable: the caller lowers the preset as usual, so a block edited without
regenerating still gives the right answer, only slower. tests/test_presets_store.py
fails while a stored network is stale.

Pickle, because these files are the package's own generated data: written by
this module from its own presets and shipped inside the package. Unpickling
runs whatever a file says, so this module reads only its own folder, by preset
name; nothing a user passes is ever unpickled.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import paramcalc
from paramcalc.catalog import preset_names, preset_path, presets_root

if TYPE_CHECKING:
    from paramcalc.network import Network

# What lowering a preset reads, relative to the package: reading a preset (catalog, inputs),
# the spec models (inputs), the lowering (network) and the blocks it builds. tests/test_presets_store.py
# checks that every paramcalc module lowering imports is among them.
SOURCES = ("__init__.py", "catalog.py", "errors.py", "units.py", "inputs/*.py", "inputs/hf/*.py", "network/*.py",
           "blocks/*.py")
_FORMAT = b"paramcalc-lowered-1"  # the first word of every file; a new layout gets a new word


def stored_path(name: str) -> Path:
    return presets_root() / "lowered" / f"{name}.pickle"


def sources() -> list[Path]:
    """The source files every stored network depends on, in a fixed order."""
    package = Path(paramcalc.__file__).parent
    return sorted({path for pattern in SOURCES for path in package.glob(pattern)},
                  key=lambda path: path.relative_to(package).as_posix())


def fingerprint(preset: Path) -> str:
    """The sha256 of the preset's bytes and of every source file (each after its package-relative name)."""
    package = Path(paramcalc.__file__).parent
    digest = hashlib.sha256()
    for name, path in [("preset", preset), *((p.relative_to(package).as_posix(), p) for p in sources())]:
        data = path.read_bytes()
        digest.update(f"{name} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def load(target: str) -> Network | None:
    """The stored network of the preset `target` names, its lowering's caveats said again
    (paramcalc.errors.warn); None when there is none or it is stale (lower it instead)."""
    preset = preset_path(target)
    if preset is None or Path(target).exists():  # a file or folder of that name is read as what it is
        return None
    try:
        with stored_path(preset.stem).open("rb") as f:
            header = f.readline().split()
            if header != [_FORMAT, fingerprint(preset).encode()]:
                return None
            net, caveats = pickle.load(f)  # the package's own generated file (see above), never a user's
    except Exception:  # missing, unreadable, or written by other code: lowering answers instead
        return None
    from paramcalc.errors import warn

    for caveat in caveats:
        warn(caveat)
    return net


def write(name: str) -> Path:
    """Lower the preset `name` and store its network."""
    from paramcalc.errors import collect_warnings
    from paramcalc.network import lower

    preset = preset_path(name)
    assert preset is not None, name
    with collect_warnings() as caveats:
        net = lower(name)
    path = stored_path(name)
    path.parent.mkdir(exist_ok=True)
    with path.open("wb") as f:
        f.write(_FORMAT + b" " + fingerprint(preset).encode() + b"\n")
        pickle.dump((net, tuple(caveats)), f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def main() -> None:
    """Store every preset's network; drop the files of presets that are gone."""
    names = preset_names()
    for name in names:
        print(write(name))
    for path in (presets_root() / "lowered").glob("*.pickle"):
        if path.stem not in names:
            path.unlink()
            print(f"removed {path}")


if __name__ == "__main__":
    main()
