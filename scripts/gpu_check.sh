#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine, one command, writing a Markdown report:
#   1. `strata devices` (the GPU, driver, NVRTC, peak bandwidth);
#   2. tests/tests/cuda.rs with STRATA_REQUIRE_CUDA=1: the op harness vs the CPU reference
#      (default paths, every matmul through cuBLAS, attention in splits), SmolLM2 and
#      Gemma 3 vs the CPU backend (greedy tokens, logits cosine >= 0.9999, 16 steps),
#      streamed == resident;
#   3. `strata bench --backend cuda` pp512/tg128 on SmolLM2, Gemma 3 and a random-weight
#      Llama-architecture model (scripts/make_random_gguf.py, 8B shapes, Q4_0), with decode
#      speed as a fraction of the memory-bandwidth roofline (weight bytes per token /
#      peak bandwidth), and llama.cpp's llama-bench on the same files when one is on PATH
#      (or $LLAMA_BENCH).
# Usage: scripts/gpu_check.sh [REPORT]   (default target/gpu-report.md)
# Env: STRATA_BIN / STRATA_CUDA_TESTS: prebuilt `strata` and tests/cuda binaries (a GPU
#      machine without Rust: build them elsewhere with `scripts/gpu_check.sh --build-only`);
#      STRATA_CACHE (models under $STRATA_CACHE/models); STRATA_RANDOM_GGUF: a prebuilt
#      random model; STRATA_GPU_CHECK_SKIP_BENCH=1.
set -uo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
export STRATA_CACHE=$cache

build() {
    cargo build --release -q -p strata-cli || exit 1
    local exe
    exe=$(cargo test --release -q --no-run -p strata-conformance --test cuda --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "cuda":
        print(m["executable"])' | tail -1)
    [ -n "$exe" ] || { echo "could not build the tests/cuda binary" >&2; exit 1; }
    mkdir -p target/gpu-check
    cp target/release/strata "$exe" target/gpu-check/ && mv "target/gpu-check/$(basename "$exe")" target/gpu-check/cuda-tests
    strip target/gpu-check/strata target/gpu-check/cuda-tests 2>/dev/null || true
    echo "built target/gpu-check/strata and target/gpu-check/cuda-tests" >&2
}

if [ "${1:-}" = "--build-only" ]; then
    build
    exit 0
fi
report=${1:-target/gpu-report.md}
mkdir -p "$(dirname "$report")"
if [ -z "${STRATA_BIN:-}" ] || [ -z "${STRATA_CUDA_TESTS:-}" ]; then
    build
    STRATA_BIN=${STRATA_BIN:-target/gpu-check/strata}
    STRATA_CUDA_TESTS=${STRATA_CUDA_TESTS:-target/gpu-check/cuda-tests}
fi

# cudarc (built for the CUDA 12.8 API, loading libraries at run time) looks for
# libnvrtc.so / libnvrtc.so.12 and libcublas.so / .so.12. A CUDA 13 machine has .so.13
# (API-compatible for what strata calls): link the unversioned names to what is there.
libdir=$(mktemp -d)
for lib in nvrtc cublas cublasLt; do
    if ! ldconfig -p 2>/dev/null | grep -q "lib$lib.so "; then
        found=$( (ls /usr/local/cuda/lib64/lib$lib.so* /usr/local/cuda/targets/x86_64-linux/lib/lib$lib.so* 2>/dev/null
                  python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null |
                  xargs -I{} find {} -name "lib$lib.so*" 2>/dev/null) | grep -v builtins | sort -V | tail -1)
        if [ -n "$found" ]; then
            ln -sf "$found" "$libdir/lib$lib.so"
            # NVRTC needs its builtins beside it.
            for b in "$(dirname "$found")"/lib$lib-builtins*.so*; do [ -e "$b" ] && ln -sf "$b" "$libdir/"; done
        fi
    fi
done
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Mesa's Vulkan loader (wgpu's adapter list in `strata devices`) wants one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

{
    echo "# strata CUDA check — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>&1
    "$STRATA_BIN" devices 2>&1
    echo '```'
} >"$report"

echo "## Conformance (tests/tests/cuda.rs, STRATA_REQUIRE_CUDA=1)" >>"$report"
log=$(dirname "$report")/gpu-tests.log
STRATA_REQUIRE_CUDA=1 STRATA_REQUIRE_MODELS=1 "$STRATA_CUDA_TESTS" --test-threads=1 --nocapture >"$log" 2>&1
tests_rc=$?
{
    echo
    echo '```'
    grep -E -A1 "^(test |backend:|worst NMSE|[0-9]+ passed|FAIL |UNSUPPORTED )|worst cosine|layers streamed|panicked" "$log" | grep -v "^--$"
    echo '```'
    echo "exit status: $tests_rc (full log: $(basename "$log"))"
} >>"$report"

if [ "${STRATA_GPU_CHECK_SKIP_BENCH:-0}" != 1 ]; then
    models=("$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/gemma-3-270m-q4_k_m.gguf")
    random=${STRATA_RANDOM_GGUF:-$cache/models/random-llama-8b-q4_0.gguf}
    if [ ! -f "$random" ] && python3 -c "import gguf, numpy" 2>/dev/null && [ -f "${models[0]}" ]; then
        python3 scripts/make_random_gguf.py "$random" --tokenizer-from "${models[0]}" --preset 8b --type Q4_0 >&2
    fi
    [ -f "$random" ] && models+=("$random")
    bw=$("$STRATA_BIN" devices --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["cuda"]["devices"]; print(d[0]["memory_bandwidth"] if d else 0)')
    {
        echo
        echo "## Speed (strata bench --backend cuda -p 512 -n 128)"
        echo
        echo "Roofline: weight bytes read per decoded token / peak bandwidth ($(python3 -c "print(round($bw/1e9))") GB/s from the device's memory clock and bus width)."
        echo
        echo "| model | pp512 t/s | tg128 t/s | bytes/token | roofline t/s | of roofline | llama.cpp pp512 | llama.cpp tg128 | tg ratio |"
        echo "|---|---|---|---|---|---|---|---|---|"
    } >>"$report"
    llama_bench=${LLAMA_BENCH:-$(command -v llama-bench || true)}
    for m in "${models[@]}"; do
        [ -f "$m" ] || { echo "| $(basename "$m") | missing | | | | | | | |" >>"$report"; continue; }
        j=$("$STRATA_BIN" bench --backend cuda -m "$m" -p 512 -n 128 --json 2>>"$log") || { echo "| $(basename "$m") | failed (see log) | | | | | | | |" >>"$report"; continue; }
        lpp=""; ltg=""
        if [ -n "$llama_bench" ]; then
            lj=$("$llama_bench" -m "$m" -p 512 -n 128 -ngl 99 -o json 2>>"$log")
            lpp=$(echo "$lj" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(next(round(x["avg_ts"],1) for x in r if x["n_prompt"]>0))' 2>/dev/null)
            ltg=$(echo "$lj" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(next(round(x["avg_ts"],1) for x in r if x["n_gen"]>0))' 2>/dev/null)
        fi
        echo "$j" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
bw = float(sys.argv[1])
lpp, ltg = sys.argv[2], sys.argv[3]
name = r["model"].split("/")[-1]
pp, tg, b = r["pp_tokens_per_s"], r["tg_tokens_per_s"], r["weight_bytes_per_token"]
roof = bw / b if b and bw else 0.0
frac = tg / roof * 100 if roof else 0.0
ratio = "%.2f" % (tg / float(ltg)) if ltg else ""
print("| %s | %.1f | %.1f | %.1f MB | %.0f | %.0f%% | %s | %s | %s |" % (name, pp, tg, b / 1e6, roof, frac, lpp, ltg, ratio))
' "$bw" "$lpp" "$ltg" >>"$report"
    done
fi
echo "report: $report" >&2
cat "$report"
exit $tests_rc
