#!/usr/bin/env bash
# One prepared GPU session: the GPU tests, the kernel-efficiency sweep, then the
# recorded layer benchmark.
#
#     bash benchmarks/gpu_session.sh OUTDIR [extra gpu_layers.py arguments]
#
# Runs from a source checkout on a machine that has torch with CUDA but maybe
# not paramcalc's other dependencies: wheels found in .whl/ (pydantic and its
# needs, say) are installed into a scratch folder first, offline. It writes
# OUTDIR/gpu-tests.log, OUTDIR/gpu-kernels.json, OUTDIR/gpu-layers.md and
# OUTDIR/gpu-layers.json. Every
# step runs even when an earlier one fails; the exit code is the first failure.
#
# Filling .whl/ (on any machine with pip, for the device's Python version; the
# bench needs torch, pydantic and PyYAML, not typer or rich):
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#         pydantic pydantic-core annotated-types typing-inspection typing-extensions pyyaml
# (pin pydantic-core to the version the chosen pydantic requires)

set -u -o pipefail
out=${1:?usage: gpu_session.sh OUTDIR [gpu_layers.py arguments]}
shift
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
status=0
failed() { [ "$status" -ne 0 ] || status=1; }

if compgen -G ".whl/*.whl" >/dev/null; then
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/paramcalc-site .whl/*.whl 2>&1 | tee "$out/wheels.log"; then
        export PYTHONPATH="/tmp/paramcalc-site${PYTHONPATH:+:$PYTHONPATH}"
    else
        failed
    fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

python3 - <<'EOF' 2>&1 | tee "$out/environment.txt"
import torch, pydantic, yaml
from paramcalc.torchref import bench  # the whole bench path imports
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("pydantic", pydantic.VERSION, "pyyaml", yaml.__version__)
if torch.cuda.is_available():
    print("card", torch.cuda.get_device_name(0))
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || failed

# The GPU tests (marked gpu) where pytest is there; they skip without CUDA.
if python3 -c "import pytest" 2>/dev/null; then
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_bench.py 2>&1 | tee "$out/gpu-tests.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed
else
    echo "pytest not installed: GPU tests skipped" | tee "$out/gpu-tests.log"
fi

# The efficiencies the step-time and serving models use (GEMM bf16/fp8, flash attention, HBM).
python3 benchmarks/gpu_kernels.py "$out/gpu-kernels.json" 2>&1 | tee "$out/gpu-kernels.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed

python3 benchmarks/gpu_layers.py "$out/gpu-layers.md" "$@" 2>&1 | tee "$out/gpu-layers.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || failed
exit "$status"
