#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, checks format
# and lints, then runs every test (unit and multi-host integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
# Jobs see the host's /usr only: the fork-bomb test runs Debian's python3.
[ -x /usr/bin/python3 ] || need_apt+=(python3)
# The WebAssembly test programs are C, built with clang for wasm32-wasi.
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
command -v wasm-ld >/dev/null 2>&1 || command -v wasm-ld-14 >/dev/null 2>&1 || need_apt+=(lld)
[ -d /usr/include/wasm32-wasi ] || [ -d /usr/share/wasi-sysroot ] || need_apt+=(wasi-libc)
ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
    || need_apt+=(libclang-rt-14-dev-wasm32)
if [ "$(id -u)" = 0 ] && [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# A short fuzzing run of token parsing and API decoding (60 s each with
# scripts/fuzz.sh alone); WOS_SKIP_FUZZ=1 skips it.
if [ -z "${WOS_SKIP_FUZZ:-}" ]; then
    ./scripts/fuzz.sh "${WOS_FUZZ_SECONDS:-15}"
fi
# crates/wos/tests/posix.rs runs pjdfstest and fsx against a FUSE mount. They
# are built once into ~/.cache/wos-tools, with a target directory of their own
# so that the workspace's build is left alone.
tools="$HOME/.cache/wos-tools"
if [ ! -x "$tools/bin/pjdfstest" ] || [ ! -x "$tools/bin/fsx" ]; then
    CARGO_TARGET_DIR="$tools/target" \
        cargo install --locked --root "$tools" pjdfstest@0.2.2 fsx@0.3.2
fi
# pjdfstest's dummy users (Debian has them; other systems may not).
if [ "$(id -u)" = 0 ]; then
    getent group nogroup >/dev/null || groupadd --system nogroup
    getent passwd nobody >/dev/null \
        || useradd --system --no-create-home --gid nogroup --shell /usr/sbin/nologin nobody
    getent group daemon >/dev/null || groupadd --system daemon
    getent passwd daemon >/dev/null \
        || useradd --system --no-create-home --gid daemon --shell /usr/sbin/nologin daemon
fi
cargo nextest run --workspace --locked --no-fail-fast "$@"
