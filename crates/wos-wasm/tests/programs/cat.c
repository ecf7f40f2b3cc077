/* cat: copies stdin to stdout in 64 KiB chunks, for the stdio throughput / integrity test. */
#include <errno.h>
#include <unistd.h>

static char buf[64 * 1024];

static int write_all(const char *p, size_t len) {
    while (len > 0) {
        ssize_t w = write(1, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int main(void) {
    for (;;) {
        ssize_t r = read(0, buf, sizeof buf);
        if (r == 0)
            return 0;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (write_all(buf, (size_t)r) != 0)
            return 1;
    }
}
