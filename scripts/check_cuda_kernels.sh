#!/usr/bin/env bash
# Every CUDA kernel variant compiled with NVRTC to PTX for sm_80 and sm_90 and assembled
# with ptxas, without a GPU (NVRTC and ptxas from PyPI's NVIDIA wheels, see
# cuda_toolchain.sh). Prints registers, spills and shared memory per kernel; any compile
# or assembly error fails. Usage: scripts/check_cuda_kernels.sh [archs, default sm_80,sm_90]
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHS="${1:-sm_80,sm_90}"
eval "$(scripts/cuda_toolchain.sh)"
OUT=target/cuda-ptx
rm -rf "$OUT"
cargo run -q -p strata-cuda --bin strata-cuda-ptx -- "$OUT" "$ARCHS"
fail=0
spilled=0
printf '%-6s %-34s %-18s %5s %6s %6s\n' arch file kernel regs spill smem
for arch in ${ARCHS//,/ }; do
    for ptx in "$OUT/$arch"/*.ptx; do
        if ! log=$("$STRATA_PTXAS" -arch="$arch" -v "$ptx" -o /dev/null 2>&1); then
            echo "ptxas failed on $ptx:"; echo "$log"; fail=1; continue
        fi
        # ptxas -v: "Compiling entry function 'k'", "N bytes spill stores", "Used R registers, ... S bytes smem"
        echo "$log" | awk -v arch="$arch" -v file="$(basename "$ptx" .ptx)" '
            /Compiling entry function/ { match($0, /'"'"'[^'"'"']*'"'"'/); k = substr($0, RSTART + 1, RLENGTH - 2) }
            /spill stores/ { split($0, a, ","); sp = a[2]; gsub(/[^0-9]/, "", sp); st = $5 + 0 }
            /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); r = substr($0, RSTART + 5, RLENGTH - 15); sm = 0;
                if (match($0, /[0-9]+ bytes smem/)) sm = substr($0, RSTART, RLENGTH - 11);
                printf "%-6s %-34s %-18s %5s %6s %6s\n", arch, file, k, r, st, sm }'
        if echo "$log" | grep -q "[1-9][0-9]* bytes spill stores"; then spilled=$((spilled + 1)); fi
    done
done
n=$(find "$OUT" -name '*.ptx' | wc -l)
echo "cuda kernels: $n PTX files assembled for $ARCHS; $spilled with register spills"
exit $fail
