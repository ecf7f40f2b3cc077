#!/usr/bin/env bash
# Builds the C test programs of wos-wasm into OUTDIR:
#   hello.wasm spin.wasm grow.wasm cat.wasm trap.wasm   WASI preview 1 commands (clang, wasm32-wasi)
#   reactor.wasm                                        a WASI reactor (no _start), which the runner must refuse
#   hello-native                                        hello.c built for the host with cc, the reference output
#
# Needs Debian's clang for wasm:  apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
# (clang finds wasi-libc in /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi by itself).
# With a wasi-sdk style sysroot instead, set WASI_SYSROOT=/path/to/wasi-sysroot.
# Exits non-zero with a message naming the missing tools; the tests fail (not skip) on that.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
out=$1
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/programs" && pwd)
install_hint="install them with: apt-get update && apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32"

CLANG=${CLANG:-clang}
CC=${CC:-cc}
if ! command -v "$CLANG" >/dev/null; then
    echo "build-wasm-programs: '$CLANG' not found; the wasm test programs need clang, lld and wasi-libc;" \
        "$install_hint" >&2
    exit 1
fi
if ! command -v "$CC" >/dev/null; then
    echo "build-wasm-programs: no host C compiler '$CC' for the native reference build of hello.c" >&2
    exit 1
fi

wasm_flags=(--target=wasm32-wasi -O2)
if [[ -n ${WASI_SYSROOT:-} ]]; then
    wasm_flags+=("--sysroot=$WASI_SYSROOT")
fi

mkdir -p "$out"
wasm_cc() { # NAME [EXTRA FLAGS...]
    local name=$1
    shift
    if ! "$CLANG" "${wasm_flags[@]}" "$@" -o "$out/$name.wasm" "$src/$name.c"; then
        echo "build-wasm-programs: compiling $name.c for wasm32-wasi failed; if the errors above name a" \
            "missing stdio.h, crt1-command.o, wasm-ld or libclang_rt.builtins-wasm32.a, $install_hint" >&2
        exit 1
    fi
}

for prog in hello spin grow cat trap; do
    wasm_cc "$prog"
done
wasm_cc reactor -mexec-model=reactor
"$CC" -O2 -o "$out/hello-native" "$src/hello.c"
