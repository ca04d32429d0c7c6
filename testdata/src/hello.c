/* Minimal program: base of the exec-stage variants that differ only in build/link flags (see Makefile). */
#include <stdio.h>
int main(void) { puts("hi"); return 0; }
