#!/usr/bin/env bash
# The real models in the weight types no one here wrote a quantiser for, made by llama.cpp's
# own tools, into the model cache (never into the repo):
#   SmolLM2-135M-Instruct.{Q2_K,Q3_K_M,IQ4_NL,IQ4_XS}.gguf   <- llama-quantize (built from
#       source by scripts/llama_cpp.sh) requantising the Q4_1 file of fetch_models.sh
#   SmolLM2-135M-Instruct.MXFP4.gguf                          <- gguf-py's MXFP4 quantiser
#       (llama-quantize writes MXFP4 only for MoE experts): every 2-D weight MXFP4
# and the same four llama-quantize types for Gemma 3 270M (gemma-3-270m.<TYPE>.gguf).
# No imatrix: llama-quantize accepts these types without one. Idempotent.
# The tests that read them (tests/tests/quant_models.rs) skip where they are missing unless
# STRATA_REQUIRE_QUANT_MODELS=1; CI does not build llama.cpp (25 minutes), so it checks
# these files' blocks through the rows committed in tests/fixtures/dequant.json.
#   scripts/fetch_models.sh && scripts/make_quant_models.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
models="$cache/models"
bin=$("$here/llama_cpp.sh")
py=${STRATA_PYTHON:-$cache/venv/bin/python}
quant() { # quant SRC DST TYPE [FLAGS...]
  if [ ! -s "$2" ]; then
    "$bin/llama-quantize" --allow-requantize "${@:4}" "$1" "$2.tmp" "$3" >/dev/null 2>"$2.log" || { cat "$2.log" >&2; exit 1; }
    mv "$2.tmp" "$2"
  fi
  echo "$2"
}
# --pure for the 2- and 3-bit K types: both models' widths (576, 640) are not multiples of
# 256, so only ffn_down (input 1536 / 2048) can hold a K type, and llama-quantize's mixtures
# would bump it to Q3_K / Q4_K, leaving no Q2_K (or Q3_K) tensor at all.
for t in Q2_K Q3_K_M IQ4_NL IQ4_XS; do
  flags=(); case $t in Q2_K|Q3_K_M) flags=(--pure) ;; esac
  quant "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/SmolLM2-135M-Instruct.$t.gguf" "$t" "${flags[@]}"
  quant "$models/gemma-3-270m-q4_k_m.gguf" "$models/gemma-3-270m.$t.gguf" "$t" "${flags[@]}"
done
out="$models/SmolLM2-135M-Instruct.MXFP4.gguf"
if [ ! -s "$out" ]; then
  "$py" "$here/gguf_requantize.py" "$models/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.tmp" MXFP4
  mv "$out.tmp" "$out"
fi
echo "$out"
