#!/usr/bin/env bash
# The browser target: the npm package in web/pkg (wasm-bindgen --target web, wasm-opt,
# the JS API and worker from web/js) and the conformance page's module in
# web/conformance/pkg. Installs the toolchain first (scripts/web_toolchain.sh).
# Prints the package's wasm size, raw and gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/web_toolchain.sh)"
scripts/build_wasm.sh >/dev/null
wasm_dir=${CARGO_TARGET_DIR_WASM:-target/wasm32}/wasm32-unknown-unknown/release

rm -rf web/pkg web/conformance/pkg
"$WASM_BINDGEN" --target web --out-dir web/pkg "$wasm_dir/strata_web.wasm"
"$WASM_BINDGEN" --target web --out-dir web/conformance/pkg "$wasm_dir/strata_web_conformance.wasm"
# Size and speed for the package; the conformance module is used as built.
if [ "${STRATA_WASM_OPT:-1}" = 1 ]; then
  # Exactly the features rustc emits for wasm32 (+simd128): --all-features would let
  # binaryen use proposals browsers do not ship yet (compact imports).
  "$WASM_OPT" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-multivalue --enable-reference-types --strip-debug web/pkg/strata_web_bg.wasm -o web/pkg/strata_web_bg.opt.wasm
  mv web/pkg/strata_web_bg.opt.wasm web/pkg/strata_web_bg.wasm
fi
cp web/js/index.js web/js/index.d.ts web/js/worker.js web/js/model_cache.js web/js/package.json web/js/README.md web/pkg/
rm -f web/pkg/.gitignore web/conformance/pkg/.gitignore
raw=$(stat -c %s web/pkg/strata_web_bg.wasm)
gz=$(gzip -9 -c web/pkg/strata_web_bg.wasm | wc -c)
echo "web/pkg/strata_web_bg.wasm: $raw bytes raw, $gz gzipped ($(awk "BEGIN{printf \"%.2f / %.2f MiB\", $raw/1048576, $gz/1048576}"))" >&2
