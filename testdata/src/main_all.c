/* Needs all test libraries and calls one function of each (main_all, m32/main_all32). */
#include <stdio.h>
int chain(void), bss_fn(void), align_fn(void), tls_fn(void), big_fn(void), old2m_fn(void), old4k_fn(void);
int main(void) {
    int r = chain() + bss_fn() + align_fn() + tls_fn() + big_fn() + old2m_fn() + old4k_fn();
    printf("all %d\n", r);
    return r == 8 + 3 + 5 + 10 + 3 + 4 + 4 ? 0 : 1;
}
