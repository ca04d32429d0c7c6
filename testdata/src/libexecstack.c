/* libexecstack.so: library linked with -z execstack (loader makes the stack executable). */
int execstack_fn(void) { return 11; }
