#!/usr/bin/env bash
# `strata bench` on the wgpu backend next to the CPU backend, same machine, same run.
# On lavapipe (no GPU) the wgpu figures show per-op overhead and kernel efficiency on a CPU
# emulation, not GPU speed. Usage: scripts/bench_wgpu.sh [PP] [TG]   (default 64 16)
set -euo pipefail
cd "$(dirname "$0")/.."
pp=${1:-64}
tg=${2:-16}
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo build --release -q -p strata-cli
bin=target/release/strata
$bin devices | head -3
printf '| model | backend | pp%s t/s | tg%s t/s |\n|---|---|---|---|\n' "$pp" "$tg"
for model in SmolLM2-135M-Instruct.Q4_1.gguf gemma-3-270m-q4_k_m.gguf; do
  path="$cache/models/$model"
  [ -f "$path" ] || { echo "missing $path (scripts/fetch_models.sh)" >&2; continue; }
  for backend in cpu wgpu; do
    $bin bench --backend $backend -m "$path" -p "$pp" -n "$tg" --json 2>/dev/null |
      python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"| $model | {r['backend']} | {r['pp_tokens_per_s']:.2f} | {r['tg_tokens_per_s']:.2f} |\")"
  done
done
