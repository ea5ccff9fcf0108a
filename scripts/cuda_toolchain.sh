#!/usr/bin/env bash
# NVRTC + ptxas without a GPU or a CUDA install, from PyPI's NVIDIA wheels (each into its
# own directory under ~/.cache/strata/cuda-toolchain; fetched once):
#   nvidia-cuda-nvrtc-cu12   libnvrtc.so.12 (+ builtins): what the CUDA backend loads at run time
#   nvidia-cuda-nvcc-cu12    ptxas: assembles the PTX to cubin, reports registers and spills
#   nvidia-cuda-runtime-cu12 CUDA headers (not needed by strata's kernels, which use NVRTC
#                            built-ins only; installed so `ptxas`/tools match one release)
# Prints `export ...` lines for LD_LIBRARY_PATH and STRATA_PTXAS; use with
#   eval "$(scripts/cuda_toolchain.sh)"
set -euo pipefail
DIR="${STRATA_CUDA_TOOLCHAIN:-$HOME/.cache/strata/cuda-toolchain}"
VERSION="${STRATA_CUDA_WHEELS_VERSION:-12.9.86}"
PY="${PYTHON:-python3}"
mkdir -p "$DIR"
fetch() { # package dir
    if [ ! -f "$DIR/$2/.done-$VERSION" ]; then
        echo "cuda toolchain: installing $1==$VERSION into $DIR/$2" >&2
        rm -rf "$DIR/$2"
        "$PY" -m pip install -q --no-deps --target "$DIR/$2" "$1==$VERSION" >&2
        touch "$DIR/$2/.done-$VERSION"
    fi
}
fetch nvidia-cuda-nvrtc-cu12 nvrtc
fetch nvidia-cuda-nvcc-cu12 nvcc
# The runtime wheel's versions differ from nvrtc/nvcc's (12.9.79 beside 12.9.86).
VERSION="${STRATA_CUDA_RUNTIME_VERSION:-12.9.79}" fetch nvidia-cuda-runtime-cu12 runtime
NVRTC_LIB="$DIR/nvrtc/nvidia/cuda_nvrtc/lib"
PTXAS="$DIR/nvcc/nvidia/cuda_nvcc/bin/ptxas"
chmod +x "$PTXAS" 2>/dev/null || true
# pip names the library libnvrtc.so.12; cudarc also tries libnvrtc.so.
[ -e "$NVRTC_LIB/libnvrtc.so" ] || ln -sf libnvrtc.so.12 "$NVRTC_LIB/libnvrtc.so"
echo "export LD_LIBRARY_PATH=\"$NVRTC_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
echo "export STRATA_PTXAS=\"$PTXAS\""
