/* trap: hits a wasm `unreachable` in a named function, for the trap test: the runner must print the
 * trap with a wasm backtrace naming crash_here and die by SIGABRT. Output before the trap must still
 * reach stdout. */
#include <stdio.h>

__attribute__((noinline)) static void crash_here(void) { __builtin_trap(); }

int main(void) {
    printf("about to trap\n");
    fflush(stdout);
    crash_here();
    return 0;
}
