/* libold2m.so / libold4k.so: one-text-segment layout (-z noseparate-code); OLD_FN names the function. */
int old_data = 4;
int OLD_FN(void) { return old_data; }
