/* Needs libchain.so and libleaf.so directly, so RUNPATH finds both (main_runpath_ok). */
#include <stdio.h>
int chain(void);
int leaf(void);
int main(void) { int r = chain() + leaf(); printf("runpath %d\n", r); return r == 15 ? 0 : 1; }
