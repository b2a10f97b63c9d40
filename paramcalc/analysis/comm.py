"""What was measured on real hardware, read back for the models: the bus bandwidth
`paramcalc bench-collectives` wrote (`estimate --comm FILE`: the scale-up link) and
the kernel efficiencies `benchmarks/gpu_kernels.py` wrote (`estimate --kernels FILE`),
each in place of the catalog's (the step-time model is analysis/step.py)."""

from __future__ import annotations

from pathlib import Path

from paramcalc.errors import UserError
from paramcalc.inputs.files import load_mapping, validate
from paramcalc.inputs.gpu_file import Efficiency, Gpu


def measured_link_bandwidth(path) -> float:
    """The largest measured bus bandwidth in a `bench-collectives` file (bytes/s per rank)."""
    data = load_mapping(Path(path))
    if data.get("kind") != "paramcalc.collectives" or not isinstance(data.get("busbw_max"), (int, float)):
        raise UserError("not a paramcalc collectives file", where=str(path),
                        fix="write one with `paramcalc bench-collectives --out FILE`")
    return float(data["busbw_max"])


def measured_efficiency(path, card: Gpu) -> Gpu:
    """`card` with the kernel efficiencies `benchmarks/gpu_kernels.py` measured (its JSON's
    `efficiency` block: gemm_bf16, gemm_fp8, attention, memory, and their source); keys it
    lacks keep the catalog's values."""
    data = load_mapping(Path(path))
    block = data.get("efficiency")
    if data.get("kind") != "paramcalc.kernels" or not isinstance(block, dict):
        raise UserError("not a paramcalc kernels file", where=str(path),
                        fix="write one on a GPU with `python benchmarks/gpu_kernels.py FILE`")
    merged = card.efficiency.model_dump() | block
    return card.model_copy(update={"efficiency": validate(Efficiency, merged, path=Path(path), where="efficiency")})
