/* hello: the runner's smoke test. Output must be deterministic and byte-identical between a native gcc
 * build and a wasm32-wasi build, so it prints only what both see the same way.
 *
 * Arguments (any order, each optional):
 *   read=PATH   read PATH and print its length in bytes
 *   write=DIR   write DIR/out.txt with a fixed line
 *   exit=N      exit with status N (tests proc_exit -> process exit code)
 * Environment: WOS_TEST is printed when set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_len(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("cannot read %s\n", path);
        return 1;
    }
    char buf[4096];
    unsigned long total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        total += n;
    fclose(f);
    printf("read %lu bytes\n", total);
    return 0;
}

static int write_out(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("cannot write out.txt in %s\n", dir);
        return 1;
    }
    fputs("written by hello\n", f);
    fclose(f);
    printf("wrote out.txt\n");
    return 0;
}

int main(int argc, char **argv) {
    printf("hello from wasm\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *t = getenv("WOS_TEST");
    printf("WOS_TEST=%s\n", t ? t : "(unset)");

    int status = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "read=", 5) == 0)
            status |= read_len(argv[i] + 5);
        else if (strncmp(argv[i], "write=", 6) == 0)
            status |= write_out(argv[i] + 6);
        else if (strncmp(argv[i], "exit=", 5) == 0)
            status = atoi(argv[i] + 5);
    }
    return status;
}
