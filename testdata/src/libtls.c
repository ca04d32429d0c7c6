/* libtls.so: 1 MiB __thread array (.tbss) plus an initialised __thread int (.tdata). */
__thread char tls_arr[1 << 20];
__thread int tls_init = 9;
int tls_fn(void) { tls_arr[sizeof tls_arr - 1] = 1; return tls_init + tls_arr[sizeof tls_arr - 1]; }
