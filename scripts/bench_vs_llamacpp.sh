#!/usr/bin/env bash
# `strata bench` against llama.cpp (llama-cpp-python, CPU) on the same GGUF, same machine,
# same run, same thread count: prompt processing (pp) and generation (tg) tokens/s.
#   scripts/bench_vs_llamacpp.sh [MODEL.gguf ...]   (default: both real models)
# Needs the reference venv of scripts/make_reference_fixtures.py (llama-cpp-python).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
py="$cache/refvenv/bin/python"
P=${P:-512}; N=${N:-128}
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$cache/models/gemma-3-270m-q4_k_m.gguf")
cargo build -q --release -p strata-cli
threads=$(nproc)
for m in "${models[@]}"; do
  s=$(./target/release/strata bench -m "$m" -p "$P" -n "$N" --json)
  l=$("$py" - "$m" "$P" "$N" "$threads" <<'PY'
import sys, time, json
from llama_cpp import Llama
m, p, n, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=m, n_ctx=p + n + 8, n_batch=p, n_threads=t, n_threads_batch=t, verbose=False)
vocab = llm.n_vocab()
x = 0x2545F4914F6CDD1D
toks = []
for _ in range(p):
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    toks.append(x % vocab)
t0 = time.perf_counter(); llm.eval(toks); pp = time.perf_counter() - t0
llm.reset(); tok = toks[0]
t0 = time.perf_counter()
for _ in range(n):
    llm.eval([tok])
tg = time.perf_counter() - t0
print(json.dumps({"pp_tokens_per_s": p / pp, "tg_tokens_per_s": n / tg}))
PY
)
  python3 - "$m" "$s" "$l" "$P" "$N" <<'PY'
import sys, json, os
m, s, l, p, n = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
name = os.path.basename(m)
for test, key in [(f"pp{p}", "pp_tokens_per_s"), (f"tg{n}", "tg_tokens_per_s")]:
    print(f"| {name} | {test} | strata {s[key]:8.2f} t/s | llama.cpp {l[key]:8.2f} t/s | strata/llama.cpp {s[key] / l[key]:.3f} |")
PY
done
