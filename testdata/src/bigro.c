/* Program with a 3 MiB const array so the image spans more than 2 MiB (used as static-pie). */
#include <stdio.h>
static const char ro[3 << 20] = {1};
int main(int argc, char **argv) {
    (void)argv;
    const char *volatile p = ro;
    printf("ro %d %d\n", p[0], p[(argc << 20) + 12345]);
    return 0;
}
