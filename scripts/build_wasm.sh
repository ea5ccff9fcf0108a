#!/usr/bin/env bash
# Build the runtime (`strata`, with its wgpu backend: WebGPU in the browser), `strata-web`
# (the npm package's engine) and `strata-web-conformance` for wasm32-unknown-unknown, with
# SIMD128 (the CPU backend's loops vectorise; every current browser has it).
# scripts/build_web.sh turns the .wasm files into the npm package and the test pages.
#
# rustup on our machines has no wasm32 std and cannot fetch one, so this uses Debian's
# rustc-web/cargo-web (rustc 1.96 with std sources) and builds std itself (-Zbuild-std).
# Installs the toolchain with apt when missing (needs root), builds into target/wasm32.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/wasm-ld ] || [ ! -d /usr/lib/rustlib/src/rust/library ]; then
  echo "build_wasm: installing rustc-web cargo-web rust-web-src lld (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rustc-web cargo-web rust-web-src lld >/dev/null
fi
export PATH=/usr/bin:$PATH
export RUSTFLAGS="-C linker=wasm-ld -C target-feature=+simd128"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_WASM:-target/wasm32}
# rustup's proxies would pick the rustup toolchain; call Debian's binaries directly.
export RUSTC=/usr/bin/rustc
/usr/bin/cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort \
  -p strata -p strata-web -p strata-web-conformance --features strata/wgpu "$@"
ls -l "$CARGO_TARGET_DIR"/wasm32-unknown-unknown/release/*.wasm
