/* reactor: a WASI reactor (library) module with no _start, built with -mexec-model=reactor.
 * The runner must refuse it with a clear error. */
__attribute__((export_name("add"))) int add(int a, int b) { return a + b; }
