#!/usr/bin/env bash
# strata in headless Chromium against wllama (llama.cpp compiled to wasm, npm
# @wllama/wllama) on the same GGUF, same prompt, greedy, one thread each: time to first
# token and decode tokens/s (web/bench/). Usage: scripts/bench_browser.sh [MODEL] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/web_toolchain.sh)"
export CHROMIUM CHROMEDRIVER
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
[ -f web/pkg/strata_web_bg.wasm ] || scripts/build_web.sh
wllama_ver=3.8.1
if ! grep -q "\"version\": \"$wllama_ver\"" "$cache/tools/npm/node_modules/@wllama/wllama/package.json" 2>/dev/null; then
  npm install --silent --no-audit --no-fund --prefix "$cache/tools/npm" "@wllama/wllama@$wllama_ver" >&2
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
cargo run --release --quiet -p strata-web-driver --bin strata-web-bench -- "$@"
