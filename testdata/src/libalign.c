/* libalign.so: linked with max-page-size=0x200000 (PT_LOAD p_align 2 MiB). */
int align_data = 5;
int align_fn(void) { return align_data; }
