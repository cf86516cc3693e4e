#!/usr/bin/env bash
# The GPU path, proven in one prepared run on a GPU machine (docs/gpus.md,
# "Proving it on a GPU"). From the repository root:
#
#   bash benchmarks/gpu_check.sh             # on a GPU machine
#   bash benchmarks/gpu_check.sh --rehearse  # anywhere: every step on the CPU
#
# deepaas runs from this source tree (nothing is installed). When .whl/
# (or DEEPAAS_GPU_WHEELS) holds wheels (made where pip reaches an index by benchmarks/gpu_wheels.py,
# for a machine without one), they are installed first into a folder of
# their own that comes before the Python's own packages.
#
# Environment: PYTHON (default python3), DEEPAAS_GPU_WHEELS (the wheels'
# folder, default .whl), DEEPAAS_GPU_SITE (where they are installed, default
# /tmp/deepaas-gpu-site), OUT (where the log, the figures and the servers'
# logs go; --out overrides it). Other options: --help.
# Exit status: 0 all passed, 1 a check failed, 2 a package or torch is
# missing, 3 no GPU (one line says why).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "gpu_check: no Python: '$python' is not a command (set PYTHON)"
    exit 2
fi
shopt -s nullglob
wheel_dir=${DEEPAAS_GPU_WHEELS:-.whl}
wheels=("$wheel_dir"/*.whl)
if ((${#wheels[@]})); then
    site=${DEEPAAS_GPU_SITE:-/tmp/deepaas-gpu-site}
    if ! "$python" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "${wheels[@]}"; then
        echo "gpu_check: the ${#wheels[@]} wheels of $wheel_dir/ could not be installed into $site"
        exit 2
    fi
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu_check: ${#wheels[@]} wheels from $wheel_dir/ installed into $site"
fi
exec "$python" -u benchmarks/gpu_check.py "$@"
