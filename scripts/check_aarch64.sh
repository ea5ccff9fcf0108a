#!/usr/bin/env bash
# The aarch64 build of the runtime (the fast CPU backend's NEON kernels), cross-compiled
# with Debian's rustc-web and its std sources (-Zbuild-std, as for wasm32), and its unit
# tests, the fast backend against the reference among them, run under qemu-aarch64.
# Installs gcc-aarch64-linux-gnu and qemu-user with apt when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/bin/aarch64-linux-gnu-gcc ] || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
[ -x /usr/bin/qemu-aarch64 ] || need+=(qemu-user)
[ -d /usr/lib/rustlib/src/rust/library ] || need+=(rustc-web cargo-web rust-web-src)
if [ ${#need[@]} -gt 0 ]; then
  echo "check_aarch64: installing ${need[*]} (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_AARCH64:-target/aarch64}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
/usr/bin/cargo test --release --target aarch64-unknown-linux-gnu -Zbuild-std=std,panic_abort,test -p strata --lib -- backend::fast
