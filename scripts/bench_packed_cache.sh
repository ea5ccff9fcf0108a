#!/usr/bin/env bash
# The packed-weight cache's benchmark (issue 30): load time of `strata bench` (fast CPU
# backend) cold (no cache file: repack + write it), warm (the cache file mapped) and with
# --no-cache (repacked in memory), beside llama.cpp's `llama-bench` (built from source by
# scripts/llama_cpp.sh) loading the same file, interleaved, REPS runs each, medians; and
# decode speed (tgN) through the mapped cache against --no-cache, since the kernels then
# read file pages instead of anonymous huge pages.
#
#   scripts/bench_packed_cache.sh [MODEL.gguf ...]
#
# Default models: SmolLM2 Q4_1, Gemma 3 Q4_K_M and the random 7B Q4_K_M of
# scripts/bench_vs_llamacpp.sh. Env: THREADS (2), REPS (3), N (tg tokens, 64), OUT
# (default target/bench/packed-cache.md). Every file is read once first, so "cold" means
# no cache file, not an empty page cache. Load time is `load_ms` of `strata bench --json`
# (open to weights ready); "wall" is the whole process for a 1-token prompt and 1 token,
# which for llama-bench (-p 0 -n 1 --no-warmup) is its load plus one token.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
THREADS=${THREADS:-2}; REPS=${REPS:-3}; N=${N:-64}
OUT=${OUT:-target/bench/packed-cache.md}
mkdir -p "$(dirname "$OUT")"
bench_bin="$(scripts/llama_cpp.sh)/llama-bench"
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  models=("$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/gemma-3-270m-q4_k_m.gguf" "$cache/bench/random-llama-7b-Q4_K_M.gguf")
fi
cargo build -q --release -p strata-cli
strata=target/release/strata
pc=$(mktemp -d)   # the packed cache of this run only
raw=$(mktemp)
trap 'rm -rf "$pc" "$raw"' EXIT

now() { python3 -c 'import time; print(time.monotonic())'; }
run_strata() { # label model p n [flags]
  local label=$1 m=$2 p=$3 n=$4; shift 4
  local t0 j t1
  t0=$(now)
  j=$(STRATA_CACHE="$pc" "$strata" bench -m "$m" --backend cpu -t "$THREADS" -p "$p" -n "$n" --ctx $((p + n + 8)) --json "$@" 2>/dev/null)
  t1=$(now)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({"run":sys.argv[2],"model":sys.argv[3],"load_ms":d["load_ms"],"wall_ms":(float(sys.argv[5])-float(sys.argv[4]))*1e3,"tg":d["tg_tokens_per_s"],"cache":d["packed_cache"],"anon_kib":d["memory_kib"]["anon"],"file_kib":d["memory_kib"]["file"]}))' "$j" "$label" "$m" "$t0" "$t1"
}
run_llama() { # model
  local t0 t1
  t0=$(now)
  "$bench_bin" -m "$1" -t "$THREADS" -p 0 -n 1 -r 1 --no-warmup -o json >/dev/null 2>&1
  t1=$(now)
  python3 -c 'import json,sys; print(json.dumps({"run":"llama.cpp","model":sys.argv[1],"wall_ms":(float(sys.argv[3])-float(sys.argv[2]))*1e3}))' "$1" "$t0" "$t1"
}

for m in "${models[@]}"; do
  cat "$m" >/dev/null   # into the page cache: every run reads it from memory
  run_strata cold "$m" 1 1 >>"$raw"
  for r in $(seq "$REPS"); do
    run_strata warm "$m" 1 1 >>"$raw"
    run_strata no-cache "$m" 1 1 --no-cache >>"$raw"
    run_llama "$m" >>"$raw"
    echo "   $(basename "$m") load run $r done" >&2
  done
  case "$m" in *7b*) continue ;; esac   # decode of the 7B: scripts/bench_vs_llamacpp.sh
  for r in $(seq "$REPS"); do
    run_strata tg-mapped "$m" 8 "$N" >>"$raw"
    run_strata tg-no-cache "$m" 8 "$N" --no-cache >>"$raw"
  done
done

python3 - "$raw" "$OUT" "$THREADS" "$N" <<'PY'
import json, sys, statistics as st, os
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, n = sys.argv[3], sys.argv[4]
med = lambda xs: st.median(xs) if xs else float("nan")
out = [f"# packed-weight cache: load and decode ({threads} threads, medians)", "",
       "| model | cold load ms | warm load ms | --no-cache load ms | warm wall ms | llama.cpp wall ms | warm / llama.cpp wall | anon MiB warm / no-cache | file MiB warm |",
       "|---|---|---|---|---|---|---|---|---|"]
for m in dict.fromkeys(r["model"] for r in rows):
    g = lambda run, k: [r[k] for r in rows if r["model"] == m and r["run"] == run]
    warm_wall, ll = med(g("warm", "wall_ms")), med(g("llama.cpp", "wall_ms"))
    out.append(f"| {os.path.basename(m)} | {med(g('cold','load_ms')):.0f} | {med(g('warm','load_ms')):.0f} | {med(g('no-cache','load_ms')):.0f} | {warm_wall:.0f} | {ll:.0f} | {warm_wall/ll:.2f} | {med(g('warm','anon_kib'))/1024:.0f} / {med(g('no-cache','anon_kib'))/1024:.0f} | {med(g('warm','file_kib'))/1024:.0f} |")
out += ["", f"| model | tg{n} mapped cache | tg{n} --no-cache | ratio |", "|---|---|---|---|"]
for m in dict.fromkeys(r["model"] for r in rows):
    a = med([r["tg"] for r in rows if r["model"] == m and r["run"] == "tg-mapped"])
    b = med([r["tg"] for r in rows if r["model"] == m and r["run"] == "tg-no-cache"])
    if a == a:
        out.append(f"| {os.path.basename(m)} | {a:.1f} | {b:.1f} | {a/b:.2f} |")
bad = [r for r in rows if r["run"] in ("warm", "tg-mapped") and r.get("cache") != "used"]
if bad:
    out.append(f"\nWARNING: {len(bad)} warm runs did not use the cache: {bad[:2]}")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
