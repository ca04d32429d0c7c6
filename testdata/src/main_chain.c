/* Needs libchain.so only (main_rpath, main_runpath_missing, musl/main_musl). */
#include <stdio.h>
int chain(void);
int main(void) { int r = chain(); printf("chain %d\n", r); return r == 8 ? 0 : 1; }
