/* libleaf.so: leaf of the dependency chain (also used as an LD_PRELOAD library). */
int leaf(void) { return 7; }
