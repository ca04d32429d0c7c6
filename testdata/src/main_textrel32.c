/* i386 program needing libtextrel32.so (a library with text relocations). */
#include <stdio.h>
int textrel_fn(void);
int main(void) { int r = textrel_fn(); printf("textrel %d\n", r); return r == 42 ? 0 : 1; }
