#!/usr/bin/env bash
# llama.cpp built from source on this machine, once, for the benchmarks that compare with
# it (scripts/bench_vs_llamacpp.sh, scripts/bench_serve.sh): the sdist of
# llama-cpp-python 0.3.36 (its vendor/llama.cpp), cmake + ninja from PyPI, -DGGML_NATIVE=ON,
# targets llama-bench, llama-server and llama-quantize, into $STRATA_CACHE/llama.cpp
# (~25 min on 2 cores). Prints the directory holding the binaries.
set -euo pipefail
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
lcpp="$cache/llama.cpp"
bin="$lcpp/build/bin"
if [ ! -x "$bin/llama-bench" ] || [ ! -x "$bin/llama-server" ]; then
  echo "== building llama.cpp (llama-cpp-python 0.3.36's vendor/llama.cpp) into $lcpp" >&2
  tmp=$(mktemp -d)
  python3 -m pip install --quiet --disable-pip-version-check scikit-build-core cmake ninja >&2
  (cd "$tmp" && python3 -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation llama-cpp-python==0.3.36 >&2)
  tar xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
  rm -rf "$lcpp" && mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp" "$lcpp"
  # AMX off: on the VMs here the CPU reports AMX but a tile instruction raises SIGILL
  # (llama-bench dies in tinygemm_kernel_amx before printing anything); explicit -mno-*
  # flags win over -march=native. Harmless where there is no AMX.
  noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  cmake -S "$lcpp" -B "$lcpp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    "-DCMAKE_C_FLAGS=$noamx" "-DCMAKE_CXX_FLAGS=$noamx" \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF >&2
  cmake --build "$lcpp/build" -j"$(nproc)" --target llama-bench llama-server llama-quantize >&2
  rm -rf "$tmp"
fi
echo "$bin"
