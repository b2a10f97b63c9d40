"""A measured link: the bus bandwidth `paramcalc bench-collectives` wrote, which
`estimate --comm FILE` uses for the scale-up link in place of the catalog's
(the step-time model's collectives are in analysis/step.py)."""

from __future__ import annotations

from pathlib import Path

from paramcalc.errors import UserError
from paramcalc.inputs.files import load_mapping


def measured_link_bandwidth(path) -> float:
    """The largest measured bus bandwidth in a `bench-collectives` file (bytes/s per rank)."""
    data = load_mapping(Path(path))
    if data.get("kind") != "paramcalc.collectives" or not isinstance(data.get("busbw_max"), (int, float)):
        raise UserError("not a paramcalc collectives file", where=str(path),
                        fix="write one with `paramcalc bench-collectives --out FILE`")
    return float(data["busbw_max"])
