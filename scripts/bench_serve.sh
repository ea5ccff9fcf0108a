#!/usr/bin/env bash
# `strata serve` (the fast CPU backend) against llama.cpp's `llama-server`, built from
# source on this machine (scripts/llama_cpp.sh), on the same GGUF, the same threads, the
# same slots and context, under the same load (scripts/serve_load.py: the real openai
# client, streamed chats, CONCURRENCY at a time), interleaved: each round starts one
# server, loads it, stops it, then the other; never both at once (llama.cpp's threads
# spin). Reports medians over ROUNDS of generated tokens/s, requests/s, time to first
# token and time per output token, and the ratios.
#
#   scripts/bench_serve.sh [MODEL.gguf]
#
# Env: THREADS (2), PARALLEL (4), CTX (4096, shared by the slots on both), REQUESTS (16),
# CONCURRENCY (PARALLEL), MAX_TOKENS (64), ROUNDS (3), OUT (target/bench/serve.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
THREADS=${THREADS:-2}; PARALLEL=${PARALLEL:-4}; CTX=${CTX:-4096}; REQUESTS=${REQUESTS:-16}
CONCURRENCY=${CONCURRENCY:-$PARALLEL}; MAX_TOKENS=${MAX_TOKENS:-64}; ROUNDS=${ROUNDS:-3}
OUT=${OUT:-target/bench/serve.md}
model=${1:-$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}
mkdir -p "$(dirname "$OUT")"

bin=$(scripts/llama_cpp.sh)
cargo build -q --release -p strata-cli
python=$cache/venv/bin/python
"$python" -c "import openai" 2>/dev/null || { python3 -m venv "$cache/venv" && "$python" -m pip install -q openai; }
port=18080
results=$(mktemp -d)

wait_ready() {
  for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "server did not become ready" >&2; return 1
}

run_one() { # name command...
  local name=$1; shift
  "$@" >"$results/$name.log" 2>&1 &
  local pid=$!
  wait_ready
  # One short request first: both servers warm up (llama-server also runs its own warm-up).
  "$python" scripts/serve_load.py "http://127.0.0.1:$port" --requests 1 --concurrency 1 --max-tokens 4 >/dev/null
  "$python" scripts/serve_load.py "http://127.0.0.1:$port" --requests "$REQUESTS" --concurrency "$CONCURRENCY" --max-tokens "$MAX_TOKENS" >>"$results/$name.jsonl"
  kill -TERM $pid; wait $pid || true
}

for r in $(seq "$ROUNDS"); do
  echo "== round $r" >&2
  run_one strata target/release/strata serve -m "$model" --backend cpu --threads "$THREADS" --parallel "$PARALLEL" --ctx "$CTX" --port $port
  run_one llama "$bin/llama-server" -m "$model" -t "$THREADS" -tb "$THREADS" -np "$PARALLEL" -c "$CTX" --port $port --host 127.0.0.1
done

python3 - "$results" "$OUT" "$model" <<PY
import json, statistics, sys, platform
res, out, model = sys.argv[1:4]
rows = {n: [json.loads(l) for l in open(f"{res}/{n}.jsonl")] for n in ("strata", "llama")}
med = lambda n, k: statistics.median(r[k] for r in rows[n])
keys = [("generated_tokens_per_s", "generated tok/s", True), ("requests_per_s", "requests/s", True), ("ttft_median_s", "TTFT median (s)", False), ("ttft_p90_s", "TTFT p90 (s)", False), ("tpot_median_s", "time per output token, median (s)", False), ("completion_tokens", "completion tokens per round", None)]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = open("/proc/cpuinfo").read()
isa = "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX2" if "avx2" in flags else "other")
lines = [f"# strata serve vs llama-server", "", f"{model.split('/')[-1]}; {cpu} ({isa}); threads $THREADS, slots $PARALLEL, ctx $CTX; $REQUESTS streamed chats per round, $CONCURRENCY at a time, max_tokens $MAX_TOKENS, greedy; medians of $ROUNDS interleaved rounds", "", "| metric | strata | llama-server | strata / llama-server |", "|---|---|---|---|"]
for k, name, higher in keys:
    a, b = med("strata", k), med("llama", k)
    ratio = a / b if b else float("nan")
    lines.append(f"| {name} | {a:.4g} | {b:.4g} | {ratio:.2f}× |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
