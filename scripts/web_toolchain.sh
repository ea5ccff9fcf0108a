#!/usr/bin/env bash
# The browser target's toolchain, installed once and cached (a fresh machine gets all of it):
#  - Debian rustc-web/cargo-web/rust-web-src/lld (wasm32 std from source; build_wasm.sh);
#  - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock
#    (cargo install, ~9 min on 2 cores; cached under $STRATA_CACHE/tools);
#  - binaryen (wasm-opt) from npm, pinned; Node.js from apt when missing;
#  - chromium + chromium-driver (apt) for the headless conformance and end-to-end tests.
# Prints `export` lines for the tool paths (eval "$(scripts/web_toolchain.sh)").
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${STRATA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
tools="$cache/tools"
mkdir -p "$tools"

apt_pkgs=()
[ -x /usr/bin/wasm-ld ] && [ -d /usr/lib/rustlib/src/rust/library ] || apt_pkgs+=(rustc-web cargo-web rust-web-src lld)
command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_pkgs+=(chromium chromium-driver)
command -v npm >/dev/null || apt_pkgs+=(nodejs npm)
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "web_toolchain: apt-get install ${apt_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

ver=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
wb="$tools/wasm-bindgen-$ver"
if [ ! -x "$wb/bin/wasm-bindgen" ]; then
  echo "web_toolchain: cargo install wasm-bindgen-cli $ver (once, ~9 min)" >&2
  cargo install wasm-bindgen-cli --version "$ver" --root "$wb" --quiet >&2
fi

binaryen_ver=132.0.0
npmdir="$tools/npm"
if [ ! -x "$npmdir/node_modules/.bin/wasm-opt" ] || ! grep -q "\"version\": \"$binaryen_ver\"" "$npmdir/node_modules/binaryen/package.json" 2>/dev/null; then
  echo "web_toolchain: npm install binaryen@$binaryen_ver" >&2
  mkdir -p "$npmdir"
  npm install --silent --no-audit --no-fund --prefix "$npmdir" "binaryen@$binaryen_ver" >&2
fi

echo "export WASM_BINDGEN=$wb/bin/wasm-bindgen"
echo "export WASM_OPT=$npmdir/node_modules/.bin/wasm-opt"
echo "export CHROMIUM=$(command -v chromium)"
echo "export CHROMEDRIVER=$(command -v chromedriver)"
