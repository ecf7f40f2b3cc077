#!/usr/bin/env bash
# Runs the fuzz targets (cargo-fuzz, libFuzzer) for SECONDS each (default 60).
# cargo-fuzz needs nightly-only flags (sanitizers); this machine has only a
# stable toolchain, so RUSTC_BOOTSTRAP=1 lets stable accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
for target in token_parse api_decode; do
    mkdir -p "fuzz/corpus/$target"
    cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 2>&1 | tail -n 3
done
