/* spin: burns CPU forever, for the --cpu-seconds test. The counter is volatile so the compiler cannot
 * remove the loop (an empty infinite loop without side effects is undefined behaviour in C). */
int main(void) {
    volatile unsigned long counter = 0;
    for (;;)
        counter++;
}
