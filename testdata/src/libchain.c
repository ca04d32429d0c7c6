/* libchain.so: needs libleaf.so (no RPATH/RUNPATH of its own). */
int leaf(void);
int chain(void) { return leaf() + 1; }
