/* libtextrel32.so: non-PIC i386 code in a shared library -> DT_TEXTREL (absolute refs patched in .text). */
int textrel_counter = 41;
int textrel_fn(void) { return ++textrel_counter; }
