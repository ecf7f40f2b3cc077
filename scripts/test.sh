#!/usr/bin/env bash
# The test command of README.md: installs what the tests need, checks format
# and lints, then runs every test (unit and multi-host integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
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
cargo nextest run --workspace --locked --no-fail-fast "$@"
