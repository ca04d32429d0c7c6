/* libbss.so: 64 MiB .bss plus a .data that ends mid-page (file-backed RW page followed by anon bss). */
char bss_big[64 << 20];
char bss_data[3000] = {1};
int bss_fn(void) { bss_big[sizeof bss_big - 1] = 2; return bss_data[0] + bss_big[sizeof bss_big - 1]; }
