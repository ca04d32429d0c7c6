/* Program with a 40 MiB zero-initialised static array: large .bss beyond the file-backed part. */
#include <stdio.h>
static char big[40 << 20];
int main(int argc, char **argv) {
    (void)argv;
    char *volatile p = big;               /* volatile: keep the array and the accesses */
    p[0] = 1; p[sizeof big - 1] = (char)argc;
    printf("bss %d %d\n", p[0], p[sizeof big - 1]);
    return 0;
}
