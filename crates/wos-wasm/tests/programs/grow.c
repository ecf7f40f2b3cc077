/* grow: allocates 1 MiB blocks until malloc fails, for the --mem test. Under a memory cap memory.grow
 * returns -1, malloc returns NULL and the program reports how far it got and exits 0.
 * The blocks are chained into a list so the compiler cannot drop the allocations. */
#include <stdio.h>
#include <stdlib.h>

#define MIB (1024 * 1024)

int main(void) {
    void **head = NULL;
    unsigned n = 0;
    for (;;) {
        void **block = malloc(MIB);
        if (!block)
            break;
        *block = head;
        head = block;
        n++;
    }
    printf("capped after %u MiB\n", n);
    while (head) {
        void **next = *head;
        free(head);
        head = next;
    }
    return 0;
}
