/* libbig.so: 3 MiB read-only data. */
const char big_ro[3 << 20] = {3};
int big_fn(void) { return big_ro[0]; }
