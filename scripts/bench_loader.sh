#!/usr/bin/env bash
# Header-parse benchmark on the real models: strata vs gguf-rs (in-process, same run) and
# vs llama.cpp's Python reader (gguf-py GGUFReader, same machine, same run of this script).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
cargo bench -q -p strata-conformance --bench load_header 2>/dev/null
py="$cache/venv/bin/python"; [ -x "$py" ] || py=python3
"$py" - "$cache/models" <<'PY'
import sys, time, statistics, gguf, os
for name in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]:
    p = os.path.join(sys.argv[1], name)
    ts = []
    for _ in range(7):
        t = time.perf_counter(); gguf.GGUFReader(p); ts.append((time.perf_counter() - t) * 1e3)
    print(f"gguf-py {gguf.__name__} GGUFReader {name:<36} {statistics.median(ts):8.2f} ms")
PY
