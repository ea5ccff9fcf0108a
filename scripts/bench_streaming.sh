#!/usr/bin/env bash
# Layer streaming figures on the CPU backend, same machine, same run:
#  * peak RSS (/usr/bin/time -v) resident vs a budget of a quarter of the model;
#  * decode tok/s streamed vs resident with the file in page cache, bytes read per token,
#    and the floor (bytes per token / measured read bandwidth of the file).
# Usage: scripts/bench_streaming.sh [MODEL.gguf] [TG]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
model=${1:-$cache/models/gemma-3-270m-q4_k_m.gguf}
tg=${2:-32}
cargo build --release -q -p strata-cli
bin=target/release/strata
size=$(stat -c %s "$model")
# A quarter of the file, but at least resident tensors + two layers (the budget counts the
# resident embedding/head too; for small tied models that alone can exceed a quarter).
need=$( ("$bin" bench --backend cpu -m "$model" -p 1 -n 1 --max-memory 1 2>&1 || true) | python3 -c "
import re, sys
t = sys.stdin.read()
g = re.search(r'resident tensors \(([\d.]+) MiB', t); l = re.search(r'one layer \(([\d.]+) MiB', t)
print(int((float(g.group(1)) + 2 * float(l.group(1)) + 0.2) * 1048576))")
budget=$(( size / 4 > need ? size / 4 : need ))
cat "$model" > /dev/null   # into the page cache
# Read bandwidth of the source (page cache), 1 MiB reads.
bw=$(python3 - "$model" <<'PY'
import sys, time, os
p = sys.argv[1]; n = 0
fd = os.open(p, os.O_RDONLY); t = time.perf_counter()
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
print(n / (time.perf_counter() - t))
PY
)
run() { /usr/bin/time -v "$bin" bench --backend cpu -m "$model" -p 16 -n "$tg" --json --profile "$@" 2>/tmp/strata_bench_err; }
res=$(run)
res_rss=$(grep "Maximum resident" /tmp/strata_bench_err | awk '{print $NF}')
str=$(run --max-memory "$budget")
str_rss=$(grep "Maximum resident" /tmp/strata_bench_err | awk '{print $NF}')
prof=$(grep "profile tg" /tmp/strata_bench_err || true)
python3 - "$res" "$str" "$res_rss" "$str_rss" "$bw" "$budget" "$size" "$prof" <<'PY'
import json, re, sys
res, st = json.loads(sys.argv[1]), json.loads(sys.argv[2])
res_rss, st_rss, bw, budget, size, prof = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
m = re.search(r"read ([\d.]+) MiB", prof)
per_tok = float(m.group(1)) * 1048576 if m else 0.0
floor_s = per_tok / bw if bw else 0.0
print(f"model {res['model']} ({size/1048576:.1f} MiB), budget {budget/1048576:.1f} MiB ({budget/size:.0%} of the file)")
print(f"peak RSS: resident {res_rss/1024:.1f} MiB, streamed {st_rss/1024:.1f} MiB")
print(f"tg: resident {res['tg_tokens_per_s']:.2f} tok/s, streamed {st['tg_tokens_per_s']:.2f} tok/s (ratio {st['tg_tokens_per_s']/res['tg_tokens_per_s']:.3f})")
print(f"read per token {per_tok/1048576:.1f} MiB, source bandwidth {bw/1048576:.0f} MiB/s, floor {floor_s*1e3:.2f} ms/token")
t_stream = 1 / st['tg_tokens_per_s']; t_res = 1 / res['tg_tokens_per_s']
print(f"streaming overhead per token {(t_stream - t_res)*1e3:.2f} ms = {(t_stream - t_res)/floor_s if floor_s else 0:.2f}x the floor")
print(prof)
PY
