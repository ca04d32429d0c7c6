/* Program without execstack of its own that needs libexecstack.so (execstack comes from a library). */
#include <stdio.h>
int execstack_fn(void);
int main(void) { printf("execstack %d\n", execstack_fn()); return 0; }
