/* A process whose memory is known from the inside, for `elfmap explain --maps` tests
   (threads64, m32/threads32). It starts four threads (two with the default attributes, one
   with a stack size of its own, one with its own stack and guard sizes), mallocs small and
   large blocks from each of them and from main (so that arenas and mmap'd chunks appear),
   maps a file (argv[2], if given) and an anonymous region of its own, and prints what it
   knows about each: the stacks as pthread_getattr_np() gives them, the blocks as malloc()
   returned them, its own mappings, and every object's PT_LOAD and PT_GNU_RELRO as
   dl_iterate_phdr() gives them. With `--wait` as argv[1] it then waits for its standard
   input to close, so that a test can read /proc/PID/maps meanwhile; without, it exits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define NTHREADS 4

/* 3 MiB of .bss: the program has a .bss tail of its own. */
static char big_bss[3 << 20];

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t reported;
static pthread_barrier_t never;

static void *worker(void *arg) {
    long id = (long)arg;
    pthread_attr_t a;
    void *addr;
    size_t size, guard;
    if (pthread_getattr_np(pthread_self(), &a) != 0) abort();
    pthread_attr_getstack(&a, &addr, &size);
    pthread_attr_getguardsize(&a, &guard);
    pthread_attr_destroy(&a);
    /* The first malloc of a thread gets it an arena of its own. */
    char *small = malloc(100);
    char *large = malloc(400 << 10);
    if (!small || !large) abort();
    memset(small, 1, 100);
    memset(large, 1, PAGE);
    pthread_mutex_lock(&out_lock);
    printf("thread %ld stack %p %#zx guard %#zx\n", id, addr, size, guard);
    printf("arena-chunk %ld %p\n", id, (void *)small);
    printf("mmap-chunk %ld %p %#x\n", id, (void *)large, 400 << 10);
    pthread_mutex_unlock(&out_lock);
    pthread_barrier_wait(&reported);
    pthread_barrier_wait(&never); /* the process exits first */
    return NULL;
}

static int object(struct dl_phdr_info *info, size_t n, void *data) {
    (void)n;
    (void)data;
    const char *name = info->dlpi_name[0] ? info->dlpi_name : "(program)";
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[i];
        uintptr_t va = info->dlpi_addr + p->p_vaddr;
        if (p->p_type == PT_LOAD)
            printf("load %#lx %#lx %#lx %c%c%c %s\n", (unsigned long)(va & ~(PAGE - 1)),
                   (unsigned long)((va + p->p_filesz + PAGE - 1) & ~(PAGE - 1)),
                   (unsigned long)((va + p->p_memsz + PAGE - 1) & ~(PAGE - 1)),
                   p->p_flags & PF_R ? 'r' : '-', p->p_flags & PF_W ? 'w' : '-',
                   p->p_flags & PF_X ? 'x' : '-', name);
        else if (p->p_type == PT_GNU_RELRO)
            /* As elf/dl-reloc.c: _dl_protect_relro() rounds it. */
            printf("relro %#lx %#lx %s\n", (unsigned long)(va & ~(PAGE - 1)),
                   (unsigned long)((va + p->p_memsz) & ~(PAGE - 1)), name);
    }
    return 0;
}

int main(int argc, char **argv) {
    int wait = argc > 1 && strcmp(argv[1], "--wait") == 0;
    pthread_barrier_init(&reported, NULL, NTHREADS + 1);
    pthread_barrier_init(&never, NULL, NTHREADS + 1);
    big_bss[0] = 1;
    big_bss[sizeof big_bss - 1] = 1;

    /* Before the threads: main's blocks. */
    char *heap = malloc(100);
    char *large = malloc(600 << 10);
    if (!heap || !large) abort();
    memset(heap, 2, 100);
    memset(large, 2, PAGE);
    printf("heap-chunk %p\n", (void *)heap);
    printf("mmap-chunk main %p %#x\n", (void *)large, 600 << 10);

    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        if (i == 2) pthread_attr_setstacksize(&a, 256 << 10);
        if (i == 3) {
            pthread_attr_setstacksize(&a, 1 << 20);
            pthread_attr_setguardsize(&a, 64 << 10);
        }
        if (pthread_create(&t[i], &a, worker, (void *)i) != 0) abort();
        pthread_attr_destroy(&a);
    }
    pthread_barrier_wait(&reported);

    if (argc > 2) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) abort();
        void *f = mmap(NULL, 3 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f == MAP_FAILED) abort();
        printf("file-map %p %#lx\n", f, 3 * PAGE);
        close(fd);
    }
    size_t anon_size = (1 << 20) + PAGE;
    char *anon = mmap(NULL, anon_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (anon == MAP_FAILED) abort();
    anon[0] = 1;
    printf("anon-map %p %#zx\n", (void *)anon, anon_size);
    printf("bss %p %#zx\n", (void *)big_bss, sizeof big_bss);
    dl_iterate_phdr(object, NULL);
    printf("ready\n");
    fflush(stdout);
    if (wait) {
        char buf[64];
        while (read(0, buf, sizeof buf) > 0) {
        }
    }
    return 0;
}
