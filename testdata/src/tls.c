/* Program with a PT_TLS segment: 4 KiB .tbss array plus an initialised .tdata int. */
#include <stdio.h>
__thread char buf[4096];
__thread int x = 42;
int main(int argc, char **argv) {
    (void)argv;
    buf[argc * 100] = 'a';
    printf("tls %d %c\n", x, buf[argc * 100]);
    return x == 42 ? 0 : 1;
}
