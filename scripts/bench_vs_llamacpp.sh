#!/usr/bin/env bash
# `strata bench` (the fast CPU backend) against llama.cpp's own `llama-bench`, built from
# source on this machine, on the same GGUF files, in the same run, interleaved, with the
# same thread counts: prompt processing (pp) and generation (tg) tokens/s, medians of REPS
# runs, peak RSS of each process, and decode as a fraction of the memory-read floor
# (weight bytes per token / read bandwidth measured here with the same threads).
#
#   scripts/bench_vs_llamacpp.sh [MODEL.gguf ...]
#
# Default models: SmolLM2-135M-Instruct Q4_1, Gemma 3 270M Q4_K_M (scripts/fetch_models.sh)
# and a random-weight Llama-2-7B-shaped Q4_K_M (scripts/make_random_gguf.py, made once
# into $STRATA_CACHE/bench). Env: THREADS (default "1 2"), REPS (3), P (512), N (128),
# P_7B / N_7B (the 7B's sizes; default P, N), OUT (markdown report, default
# target/bench/vs-llamacpp.md).
#
# llama.cpp is built from source once by scripts/llama_cpp.sh (~25 min on 2 cores).
# Run on a quiet machine: llama.cpp's threads spin, a busy core ruins its
# figures.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
THREADS=${THREADS:-"1 2"}; REPS=${REPS:-3}; P=${P:-512}; N=${N:-128}
P_7B=${P_7B:-$P}; N_7B=${N_7B:-$N}
OUT=${OUT:-target/bench/vs-llamacpp.md}
mkdir -p "$(dirname "$OUT")" "$cache/bench"

# --- llama.cpp from source (cached) ---------------------------------------------------
bench_bin="$(scripts/llama_cpp.sh)/llama-bench"

# --- models ---------------------------------------------------------------------------
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
  scripts/fetch_models.sh all >/dev/null
  m7="$cache/bench/random-llama-7b-Q4_K_M.gguf"
  if [ ! -f "$m7" ]; then
    venv="$cache/venv"
    "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null || { python3 -m venv "$venv"; "$venv/bin/pip" install --quiet "gguf==0.19.0" "numpy<3"; }
    "$venv/bin/python" scripts/make_random_gguf.py "$m7" --tokenizer-from "$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" --preset 7b --type Q4_K_M
  fi
  models=("$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/gemma-3-270m-q4_k_m.gguf" "$m7")
fi

cargo build -q --release -p strata-cli
cargo build -q --release -p strata-conformance --example membw
strata=target/release/strata
membw=target/release/examples/membw
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
isa=$(grep -qw avx512_vnni /proc/cpuinfo && echo "AVX-512 VNNI" || (grep -qw avx2 /proc/cpuinfo && echo "AVX2" || echo "other"))
raw=$(mktemp)

# One line of JSON per run: {runtime, model, threads, pp, tg, rss_kib, bytes_per_token}.
run_strata() { # model threads p n
  local rss=$(mktemp) j
  j=$(/usr/bin/time -f %M -o "$rss" "$strata" bench -m "$1" --backend cpu -t "$2" -p "$3" -n "$4" --ctx $(($3 + $4 + 8)) --json 2>/dev/null)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(json.dumps({"runtime":"strata","model":sys.argv[2],"threads":int(sys.argv[3]),"pp":d["pp_tokens_per_s"],"tg":d["tg_tokens_per_s"],"rss_kib":int(open(sys.argv[4]).read().split()[-1]),"bytes_per_token":d["weight_bytes_per_token"],"load_ms":d["load_ms"],"backend":d["backend"]}))' "$j" "$1" "$2" "$rss"
  rm -f "$rss"
}
run_llama() { # model threads p n
  local rss=$(mktemp) j
  j=$(/usr/bin/time -f %M -o "$rss" "$bench_bin" -m "$1" -t "$2" -p "$3" -n "$4" -r 1 -o json 2>/dev/null)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); pp=[r["avg_ts"] for r in d if r["n_prompt"]>0][0]; tg=[r["avg_ts"] for r in d if r["n_gen"]>0][0]; print(json.dumps({"runtime":"llama.cpp","model":sys.argv[2],"threads":int(sys.argv[3]),"pp":pp,"tg":tg,"rss_kib":int(open(sys.argv[4]).read().split()[-1])}))' "$j" "$1" "$2" "$rss"
  rm -f "$rss"
}

bw=""
for t in $THREADS; do bw="$bw $t=$("$membw" "$t")"; done
echo "== read bandwidth (GB/s by threads):$bw" >&2
for m in "${models[@]}"; do
  p=$P; n=$N
  case "$m" in *7b*) p=$P_7B; n=$N_7B ;; esac
  for t in $THREADS; do
    for r in $(seq "$REPS"); do
      # Interleaved, alternating which goes first.
      if [ $((r % 2)) -eq 1 ]; then run_strata "$m" "$t" "$p" "$n" >>"$raw"; run_llama "$m" "$t" "$p" "$n" >>"$raw"
      else run_llama "$m" "$t" "$p" "$n" >>"$raw"; run_strata "$m" "$t" "$p" "$n" >>"$raw"; fi
      echo "   $(basename "$m") t=$t run $r done" >&2
    done
  done
done

python3 - "$raw" "$bw" "$cpu" "$isa" "$P" "$N" "$P_7B" "$N_7B" "$REPS" >"$OUT" <<'PY'
import json, os, statistics, sys
raw, bw, cpu, isa, p, n, p7, n7, reps = sys.argv[1:]
bw = {int(k): float(v) for k, v in (x.split("=") for x in bw.split())}
runs = [json.loads(l) for l in open(raw)]
med = lambda xs: statistics.median(xs)
print(f"CPU: {cpu} ({isa}); read bandwidth {', '.join(f'{v:.1f} GB/s at {k} thread(s)' for k, v in bw.items())}.")
print(f"Medians of {reps} interleaved runs; pp{p}/tg{n} (the 7B: pp{p7}/tg{n7}).\n")
print("| model | threads | strata pp | llama.cpp pp | ratio | strata tg | llama.cpp tg | ratio | strata tg / floor | strata RSS MiB | llama.cpp RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(r["model"], r["threads"]) for r in runs}, key=lambda k: (runs.index(next(r for r in runs if (r["model"], r["threads"]) == k))))
for m, t in keys:
    s = [r for r in runs if r["model"] == m and r["threads"] == t and r["runtime"] == "strata"]
    l = [r for r in runs if r["model"] == m and r["threads"] == t and r["runtime"] == "llama.cpp"]
    spp, stg, lpp, ltg = med([r["pp"] for r in s]), med([r["tg"] for r in s]), med([r["pp"] for r in l]), med([r["tg"] for r in l])
    floor = bw[t] * 1e9 / s[0]["bytes_per_token"]
    srss, lrss = med([r["rss_kib"] for r in s]) / 1024, med([r["rss_kib"] for r in l]) / 1024
    print(f"| {os.path.basename(m)} | {t} | {spp:.1f} | {lpp:.1f} | {spp / lpp:.2f} | {stg:.1f} | {ltg:.1f} | {stg / ltg:.2f} | {stg / floor:.0%} of {floor:.0f} | {srss:.0f} | {lrss:.0f} |")
print()
for m in dict.fromkeys(r["model"] for r in runs):
    s = [r for r in runs if r["model"] == m and r["runtime"] == "strata"]
    print(f"- {os.path.basename(m)}: strata load {med([r['load_ms'] for r in s]):.0f} ms ({s[0]['backend']}), {s[0]['bytes_per_token'] / 1e6:.1f} MB of weights per token")
PY
rm -f "$raw"
cat "$OUT"
