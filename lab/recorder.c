/* recorder: the real /proc/PID/maps of a program at the stages `elfmap run` knows, for the
 * kernels elfmap itself cannot run on (the native 32-bit 686 kernel) and, built the same
 * way, for every other kernel of the lab.
 *
 *   recorder [--no-aslr] [--legacy] [--3gb] [--timeout SEC] [--stages LIST]
 *            -o TEMPLATE PROGRAM [ARGS...]
 *   recorder --self-maps
 *
 * The child sets its personality (current | ADDR_NO_RANDOMIZE 0x0040000 |
 * ADDR_COMPAT_LAYOUT 0x0200000 | ADDR_LIMIT_3GB 0x8000000, as asked), asks to be traced
 * (PTRACE_TRACEME), and execve()s PROGRAM with argv[0] = PROGRAM as given and the
 * recorder's own environment; its stdin/stdout/stderr are /dev/null. One child passes
 * through the stages of LIST (default exec,loaded,entry), in that order:
 *
 *   exec    the SIGTRAP after execve: not one instruction of the program has run;
 *   loaded  the loader's r_debug rendezvous: an int3 on the interpreter's _dl_debug_state
 *           (r_brk), continued until _r_debug.r_state == RT_CONSISTENT with r_map != 0
 *           (glibc calls it with RT_ADD first); musl has no _r_debug: its first call.
 *           No interpreter and no _dl_debug_state in the program (static): loaded = exec;
 *   entry   an int3 at AT_ENTRY. When the program counter at the exec stop already is
 *           AT_ENTRY (static programs, ld.so run as a command), entry = exec.
 *
 * This is the logic of src/observe/ptrace.rs (elfmap run), in C. At each stage it writes
 * TEMPLATE with "{stage}" replaced by the stage name plus ".maps" (a copy of
 * /proc/PID/maps) and plus ".info" (auxv values, /proc/PID/stat's start_brk and
 * start_stack, the exe link, the pc). It prints one line per requested stage on stdout:
 * "STAGE<TAB>ok<TAB>FILE" or "STAGE<TAB>error<TAB>REASON". The child is always killed
 * and reaped. Exit status: 0 every stage recorded, 1 some stage failed, 2 usage.
 *
 * Build: gcc -O2 -static -o recorder64 recorder.c; gcc -m32 -O2 -static -o recorder32
 * recorder.c. Use the 64-bit build for 64-bit programs and the 32-bit one for 32-bit
 * programs (a 32-bit tracer cannot read a 64-bit tracee's registers). */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#define ADDR_NO_RANDOMIZE_F 0x0040000
#define ADDR_COMPAT_LAYOUT_F 0x0200000
#define ADDR_LIMIT_3GB_F 0x8000000
#define RT_CONSISTENT 0

#ifndef PTRACE_EVENT_EXEC
#define PTRACE_EVENT_EXEC 4
#endif

extern char **environ;

enum { ST_EXEC, ST_LOADED, ST_ENTRY, NSTAGES };
static const char *stage_name[NSTAGES] = {"exec", "loaded", "entry"};

static char errbuf[512];
static volatile sig_atomic_t timed_out;
static pid_t child = -1;
static int reaped;

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return -1;
}

static void on_alarm(int sig) {
    (void)sig;
    timed_out = 1;
}

/* ---------------------------------------------------------------------------------- */
/* Files. */

static char *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) buf = realloc(buf, (cap *= 2) + 1);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int write_file(const char *path, const char *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail("%s: %s", path, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return fail("%s: %s", path, strerror(errno));
        }
        off += (size_t)w;
    }
    close(fd);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* The tracee's /proc files. */

struct auxv {
    uint64_t entry, base, phdr, pagesz, sysinfo_ehdr;
};

static int exe_class(pid_t pid) {
    char path[64], id[5];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("%s: %s", path, strerror(errno));
    ssize_t n = read(fd, id, 5);
    close(fd);
    if (n != 5 || memcmp(id, ELFMAG, 4)) return fail("%s: not an ELF file", path);
    if (id[4] != ELFCLASS32 && id[4] != ELFCLASS64) return fail("%s: unknown ELF class", path);
    return id[4];
}

static int read_auxv(pid_t pid, int class, struct auxv *a) {
    char path[64];
    size_t len;
    snprintf(path, sizeof path, "/proc/%d/auxv", pid);
    unsigned char *b = (unsigned char *)read_file(path, &len);
    if (!b) return fail("%s: %s", path, strerror(errno));
    memset(a, 0, sizeof *a);
    size_t w = class == ELFCLASS64 ? 8 : 4;
    for (size_t off = 0; off + 2 * w <= len; off += 2 * w) {
        uint64_t t = 0, v = 0;
        if (w == 8) {
            memcpy(&t, b + off, 8);
            memcpy(&v, b + off + 8, 8);
        } else {
            uint32_t t32, v32;
            memcpy(&t32, b + off, 4);
            memcpy(&v32, b + off + 4, 4);
            t = t32;
            v = v32;
        }
        if (t == AT_NULL) break;
        switch (t) {
        case AT_ENTRY: a->entry = v; break;
        case AT_BASE: a->base = v; break;
        case AT_PHDR: a->phdr = v; break;
        case AT_PAGESZ: a->pagesz = v; break;
        case AT_SYSINFO_EHDR: a->sysinfo_ehdr = v; break;
        }
    }
    free(b);
    if (!a->pagesz || (a->pagesz & (a->pagesz - 1))) a->pagesz = 4096;
    return 0;
}

/* Fields 28 (startstack) and 47 (start_brk) of /proc/PID/stat, counted after the
 * parenthesised comm. */
static void read_stat(pid_t pid, uint64_t *start_stack, uint64_t *start_brk) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    *start_stack = *start_brk = 0;
    char *s = read_file(path, NULL);
    if (!s) return;
    char *p = strrchr(s, ')');
    if (p) {
        int field = 2;
        for (p++; *p; p++) {
            if (*p == ' ') {
                field++;
                uint64_t v = strtoull(p + 1, NULL, 10);
                if (field == 28) *start_stack = v;
                if (field == 47) *start_brk = v;
            }
        }
    }
    free(s);
}

/* ---------------------------------------------------------------------------------- */
/* Waiting, with the whole run bounded by alarm(). */

enum ev_kind { EV_SIGNAL, EV_PTRACE, EV_EXITED, EV_KILLED, EV_ERROR };
struct event {
    enum ev_kind kind;
    int val;
};

static struct event wait_child(void) {
    struct event e = {EV_ERROR, 0};
    int st;
    for (;;) {
        pid_t r = waitpid(child, &st, __WALL);
        if (r < 0) {
            if (errno == EINTR && !timed_out) continue;
            if (errno == EINTR) fail("timed out");
            else fail("waitpid: %s", strerror(errno));
            return e;
        }
        if (WIFEXITED(st)) {
            reaped = 1;
            e.kind = EV_EXITED;
            e.val = WEXITSTATUS(st);
        } else if (WIFSIGNALED(st)) {
            reaped = 1;
            e.kind = EV_KILLED;
            e.val = WTERMSIG(st);
        } else if (WIFSTOPPED(st)) {
            if (st >> 16) {
                e.kind = EV_PTRACE;
                e.val = st >> 16;
            } else {
                e.kind = EV_SIGNAL;
                e.val = WSTOPSIG(st);
            }
        } else {
            continue;
        }
        return e;
    }
}

static int event_fatal(struct event e, const char *stage) {
    switch (e.kind) {
    case EV_EXITED: return fail("the program exited with status %d before reaching the %s stop", e.val, stage);
    case EV_KILLED: return fail("the program was killed by signal %d (%s) before reaching the %s stop", e.val, strsignal(e.val), stage);
    case EV_SIGNAL: return fail("the program stopped with signal %d (%s) before reaching the %s stop", e.val, strsignal(e.val), stage);
    case EV_PTRACE:
        if (e.val == PTRACE_EVENT_EXEC) return fail("the program executed another program before reaching the %s stop", stage);
        return fail("the program stopped with ptrace event %d before reaching the %s stop", e.val, stage);
    default: return -1; /* errbuf already says why */
    }
}

static void kill_and_reap(void) {
    if (child <= 0 || reaped) return;
    kill(child, SIGKILL);
    for (;;) {
        int st;
        pid_t r = waitpid(child, &st, __WALL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (WIFEXITED(st) || WIFSIGNALED(st)) break;
    }
    reaped = 1;
}

/* ---------------------------------------------------------------------------------- */
/* Memory and registers of the tracee. PEEK/POKE move one native word (long). */

typedef unsigned long word_t;

static int peek(uint64_t addr, word_t *w) {
    errno = 0;
    long v = ptrace(PTRACE_PEEKDATA, child, (void *)(uintptr_t)addr, NULL);
    if (v == -1 && errno) return fail("PTRACE_PEEKDATA at %#llx: %s", (unsigned long long)addr, strerror(errno));
    *w = (word_t)v;
    return 0;
}

static int poke(uint64_t addr, word_t w) {
    if (ptrace(PTRACE_POKEDATA, child, (void *)(uintptr_t)addr, (void *)w) == -1)
        return fail("PTRACE_POKEDATA at %#llx: %s", (unsigned long long)addr, strerror(errno));
    return 0;
}

static int read_mem(uint64_t addr, void *out, size_t n) {
    uint64_t a = addr & ~(uint64_t)(sizeof(word_t) - 1);
    size_t skip = (size_t)(addr - a), got = 0;
    unsigned char buf[64];
    while (got < skip + n) {
        word_t w;
        if (peek(a, &w)) return -1;
        memcpy(buf + got, &w, sizeof w);
        got += sizeof w;
        a += sizeof w;
    }
    memcpy(out, buf + skip, n);
    return 0;
}

static int get_pc(uint64_t *pc) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, child, NULL, &r) == -1) return fail("PTRACE_GETREGS: %s", strerror(errno));
#if defined(__x86_64__)
    *pc = r.rip;
#else
    *pc = (uint32_t)r.eip;
#endif
    return 0;
}

static int set_pc(uint64_t pc) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, child, NULL, &r) == -1) return fail("PTRACE_GETREGS: %s", strerror(errno));
#if defined(__x86_64__)
    r.rip = pc;
#else
    r.eip = (long)pc;
#endif
    if (ptrace(PTRACE_SETREGS, child, NULL, &r) == -1) return fail("PTRACE_SETREGS: %s", strerror(errno));
    return 0;
}

struct bp {
    uint64_t addr;
    unsigned char orig;
};

static int set_byte(uint64_t addr, unsigned char b, unsigned char *old) {
    uint64_t a = addr & ~(uint64_t)(sizeof(word_t) - 1);
    word_t w;
    if (peek(a, &w)) return -1;
    unsigned char *bytes = (unsigned char *)&w;
    if (old) *old = bytes[addr - a];
    bytes[addr - a] = b;
    return poke(a, w);
}

static int bp_insert(struct bp *b, uint64_t addr) {
    b->addr = addr;
    return set_byte(addr, 0xcc, &b->orig);
}
static int bp_remove(struct bp *b) { return set_byte(b->addr, b->orig, NULL); }
static int bp_reinsert(struct bp *b) { return set_byte(b->addr, 0xcc, NULL); }

/* Continue (delivering sig first) until the tracee traps on b; other signals are
 * re-injected, a SIGTRAP that is not ours too. */
static int continue_to(struct bp *b, int sig, const char *stage) {
    for (;;) {
        if (ptrace(PTRACE_CONT, child, NULL, (void *)(uintptr_t)sig) == -1)
            return fail("PTRACE_CONT: %s", strerror(errno));
        sig = 0;
        struct event e = wait_child();
        if (e.kind == EV_SIGNAL && e.val == SIGTRAP) {
            uint64_t pc;
            if (get_pc(&pc)) return -1;
            if (pc == b->addr + 1) return 0;
            sig = SIGTRAP;
        } else if (e.kind == EV_SIGNAL) {
            sig = e.val;
        } else if (e.kind == EV_PTRACE && e.val != PTRACE_EVENT_EXEC) {
            /* nothing to deliver */
        } else {
            return event_fatal(e, stage);
        }
    }
}

/* Stopped on b: run the original instruction, put the int3 back. Returns the signal that
 * arrived meanwhile (to deliver on the next continue), 0 for none, -1 on error. */
static int step_over(struct bp *b, const char *stage) {
    if (bp_remove(b) || set_pc(b->addr)) return -1;
    int pending = 0;
    for (;;) {
        if (ptrace(PTRACE_SINGLESTEP, child, NULL, NULL) == -1)
            return fail("PTRACE_SINGLESTEP: %s", strerror(errno));
        struct event e = wait_child();
        if (e.kind == EV_SIGNAL && e.val == SIGTRAP) break;
        if (e.kind == EV_SIGNAL) pending = e.val;
        else if (e.kind == EV_PTRACE && e.val != PTRACE_EVENT_EXEC) {
        } else
            return event_fatal(e, stage);
    }
    if (bp_reinsert(b)) return -1;
    return pending;
}

/* ---------------------------------------------------------------------------------- */
/* The loader's symbols: first PT_LOAD's p_vaddr, and .dynsym values. */

struct loader {
    uint64_t first_vaddr;
    uint64_t debug_state; /* st_value, 0 = absent */
    uint64_t r_debug;
};

static int elf_symbols(const char *path, struct loader *L) {
    size_t len;
    unsigned char *f = (unsigned char *)read_file(path, &len);
    memset(L, 0, sizeof *L);
    if (!f) return fail("%s: %s", path, strerror(errno));
    int ok = -1, found_load = 0;
    if (len < EI_NIDENT || memcmp(f, ELFMAG, 4)) {
        fail("%s: not an ELF file", path);
        goto out;
    }
#define SCAN(EHDR, PHDR, SHDR, SYM)                                                           \
    do {                                                                                      \
        EHDR *eh = (EHDR *)f;                                                                 \
        if (len < sizeof *eh || eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(PHDR) > len ||    \
            eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(SHDR) > len) {                       \
            fail("%s: truncated ELF headers", path);                                          \
            goto out;                                                                         \
        }                                                                                     \
        PHDR *ph = (PHDR *)(f + eh->e_phoff);                                                 \
        for (int i = 0; i < eh->e_phnum; i++)                                                 \
            if (ph[i].p_type == PT_LOAD) {                                                    \
                L->first_vaddr = ph[i].p_vaddr;                                               \
                found_load = 1;                                                               \
                break;                                                                        \
            }                                                                                 \
        SHDR *sh = (SHDR *)(f + eh->e_shoff);                                                 \
        for (int i = 0; i < eh->e_shnum; i++) {                                               \
            if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;        \
            SHDR *st = &sh[sh[i].sh_link];                                                    \
            if (sh[i].sh_offset + sh[i].sh_size > len || st->sh_offset + st->sh_size > len)    \
                continue;                                                                     \
            SYM *sym = (SYM *)(f + sh[i].sh_offset);                                          \
            size_t n = sh[i].sh_size / sizeof(SYM);                                           \
            const char *str = (const char *)(f + st->sh_offset);                              \
            for (size_t k = 0; k < n; k++) {                                                  \
                if (!sym[k].st_value || sym[k].st_name >= st->sh_size) continue;              \
                const char *nm = str + sym[k].st_name;                                        \
                if (!L->debug_state && !strcmp(nm, "_dl_debug_state"))                        \
                    L->debug_state = sym[k].st_value;                                         \
                if (!L->r_debug && !strcmp(nm, "_r_debug")) L->r_debug = sym[k].st_value;      \
            }                                                                                 \
        }                                                                                     \
    } while (0)
    if (f[EI_CLASS] == ELFCLASS64)
        SCAN(Elf64_Ehdr, Elf64_Phdr, Elf64_Shdr, Elf64_Sym);
    else
        SCAN(Elf32_Ehdr, Elf32_Phdr, Elf32_Shdr, Elf32_Sym);
#undef SCAN
    if (!found_load) {
        fail("%s: no PT_LOAD", path);
        goto out;
    }
    ok = 0;
out:
    free(f);
    return ok;
}

/* The maps line starting at `start`, or (start == 0) the lowest line of `path`: its
 * start and path. */
static int find_line(const char *maps, uint64_t start, const char *path, uint64_t *got_start,
                     char *got_path, size_t pathsz) {
    int found = 0;
    const char *line = maps;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char buf[4096];
        if (n >= sizeof buf) n = sizeof buf - 1;
        memcpy(buf, line, n);
        buf[n] = 0;
        unsigned long long s, e;
        int pos = 0;
        if (sscanf(buf, "%llx-%llx %*s %*s %*s %*s%n", &s, &e, &pos) >= 2 && pos > 0) {
            const char *p = buf + pos;
            while (*p == ' ') p++;
            if (start ? s == start : (!strcmp(p, path) && (!found || s < *got_start))) {
                *got_start = s;
                snprintf(got_path, pathsz, "%s", p);
                found = 1;
                if (start) return 0;
            }
        }
        line += n;
        if (nl) line++;
        else break;
    }
    return found ? 0 : -1;
}

static int mapped(const char *maps, uint64_t addr) {
    const char *line = maps;
    while (*line) {
        unsigned long long s, e;
        if (sscanf(line, "%llx-%llx", &s, &e) == 2 && s <= addr && addr < e) return 1;
        const char *nl = strchr(line, '\n');
        if (!nl) break;
        line = nl + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* One stop's record. */

struct snapshot {
    char *maps;
    struct auxv auxv;
    uint64_t start_stack, start_brk, pc;
    char exe[4096];
};

static int take(struct snapshot *s, int class) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", child);
    free(s->maps);
    s->maps = read_file(path, NULL);
    if (!s->maps) return fail("%s: %s", path, strerror(errno));
    if (read_auxv(child, class, &s->auxv)) return -1;
    read_stat(child, &s->start_stack, &s->start_brk);
    snprintf(path, sizeof path, "/proc/%d/exe", child);
    ssize_t n = readlink(path, s->exe, sizeof s->exe - 1);
    s->exe[n > 0 ? n : 0] = 0;
    if (get_pc(&s->pc)) return -1;
    return 0;
}

static char *stage_file(const char *tmpl, const char *stage, const char *ext) {
    const char *at = strstr(tmpl, "{stage}");
    size_t n = strlen(tmpl) + strlen(stage) + strlen(ext) + 1;
    char *out = malloc(n);
    if (at)
        snprintf(out, n, "%.*s%s%s%s", (int)(at - tmpl), tmpl, stage, at + 7, ext);
    else
        snprintf(out, n, "%s.%s%s", tmpl, stage, ext);
    return out;
}

static int save(const struct snapshot *s, const char *tmpl, int stage, int class) {
    char *mf = stage_file(tmpl, stage_name[stage], ".maps");
    char *inf = stage_file(tmpl, stage_name[stage], ".info");
    int r = write_file(mf, s->maps, strlen(s->maps));
    if (!r) {
        char info[8192];
        int n = snprintf(info, sizeof info,
                         "stage\t%s\nclass\t%d\nexe\t%s\npc\t%#llx\nAT_ENTRY\t%#llx\nAT_BASE\t%#llx\n"
                         "AT_PHDR\t%#llx\nAT_PAGESZ\t%llu\nAT_SYSINFO_EHDR\t%#llx\n"
                         "start_brk\t%#llx\nstart_stack\t%#llx\n",
                         stage_name[stage], class == ELFCLASS64 ? 64 : 32, s->exe,
                         (unsigned long long)s->pc, (unsigned long long)s->auxv.entry,
                         (unsigned long long)s->auxv.base, (unsigned long long)s->auxv.phdr,
                         (unsigned long long)s->auxv.pagesz,
                         (unsigned long long)s->auxv.sysinfo_ehdr,
                         (unsigned long long)s->start_brk, (unsigned long long)s->start_stack);
        r = write_file(inf, info, (size_t)n);
    }
    if (!r) printf("%s\tok\t%s\n", stage_name[stage], mf);
    free(mf);
    free(inf);
    return r;
}

/* ---------------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr,
            "usage: recorder [--no-aslr] [--legacy] [--3gb] [--timeout SEC] [--stages exec,loaded,entry]\n"
            "                -o TEMPLATE PROGRAM [ARGS...]\n"
            "       recorder --self-maps\n");
    exit(2);
}

int main(int argc, char **argv) {
    unsigned long pers_add = 0;
    int timeout = 60, want[NSTAGES] = {1, 1, 1};
    const char *tmpl = NULL;
    int i;
    for (i = 1; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--self-maps")) {
            char *m = read_file("/proc/self/maps", NULL);
            if (!m) return 1;
            fputs(m, stdout);
            return 0;
        } else if (!strcmp(a, "--no-aslr") || !strcmp(a, "-R")) pers_add |= ADDR_NO_RANDOMIZE_F;
        else if (!strcmp(a, "--legacy") || !strcmp(a, "-L")) pers_add |= ADDR_COMPAT_LAYOUT_F;
        else if (!strcmp(a, "--3gb")) pers_add |= ADDR_LIMIT_3GB_F;
        else if (!strcmp(a, "--timeout") && i + 1 < argc) timeout = atoi(argv[++i]);
        else if (!strcmp(a, "-o") && i + 1 < argc) tmpl = argv[++i];
        else if (!strcmp(a, "--stages") && i + 1 < argc) {
            const char *l = argv[++i];
            for (int s = 0; s < NSTAGES; s++) {
                const char *p = strstr(l, stage_name[s]);
                size_t n = strlen(stage_name[s]);
                want[s] = p && (p == l || p[-1] == ',') && (p[n] == 0 || p[n] == ',');
            }
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else usage();
    }
    if (i >= argc || !tmpl) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *prog = argv[i];
    char **pargv = argv + i;

    int last = -1;
    for (int s = 0; s < NSTAGES; s++)
        if (want[s]) last = s;
    if (last < 0) usage();

    /* A pipe tells the parent why the child could not exec (closed on a successful exec). */
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC)) {
        perror("pipe2");
        return 1;
    }
    unsigned long pers = (unsigned long)personality(0xffffffff);
    if (pers == (unsigned long)-1) pers = 0;
    pers |= pers_add;
    int devnull = open("/dev/null", O_RDWR);

    child = fork();
    if (child < 0) {
        perror("fork");
        return 1;
    }
    if (child == 0) {
        int step = 0;
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        step = 1;
        if (personality(pers) == -1) goto child_fail;
        step = 2;
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) == -1) goto child_fail;
        step = 3;
        execve(prog, pargv, environ);
    child_fail:;
        int msg[2] = {step, errno};
        if (write(pfd[1], msg, sizeof msg) < 0) {
        }
        _exit(127);
    }
    close(pfd[1]);
    if (devnull >= 0) close(devnull);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    alarm(timeout > 0 ? (unsigned)timeout : 60);

    int status[NSTAGES] = {0};
    char reason[NSTAGES][512];
    int rc = 0, s = 0;
    struct snapshot snap = {0}, exec_snap = {0};
    int class = 0;

    int msg[2];
    ssize_t got = read(pfd[0], msg, sizeof msg);
    close(pfd[0]);
    if (got == (ssize_t)sizeof msg) {
        static const char *what[] = {"?", "personality", "ptrace(PTRACE_TRACEME)", "execve"};
        fail("%s failed: %s", what[msg[0] & 3], strerror(msg[1]));
        goto failed;
    }

    struct event e = wait_child();
    if (!(e.kind == EV_SIGNAL && e.val == SIGTRAP)) {
        if (e.kind == EV_ERROR) goto failed;
        event_fatal(e, "exec");
        goto failed;
    }
    if (ptrace(PTRACE_SETOPTIONS, child, NULL, (void *)(uintptr_t)(PTRACE_O_EXITKILL | PTRACE_O_TRACEEXEC)) == -1) {
        fail("PTRACE_SETOPTIONS: %s", strerror(errno));
        goto failed;
    }
    if ((class = exe_class(child)) < 0) goto failed;
    if (take(&exec_snap, class)) goto failed;
    s = ST_EXEC;
    if (want[ST_EXEC]) {
        if (save(&exec_snap, tmpl, ST_EXEC, class)) goto failed;
        status[ST_EXEC] = 1;
    }
    if (last == ST_EXEC) goto done;

    /* loaded */
    s = ST_LOADED;
    if (want[ST_LOADED]) {
        uint64_t lstart = 0;
        char lpath[4096];
        int is_exe = exec_snap.auxv.base == 0;
        if (!is_exe) {
            if (find_line(exec_snap.maps, exec_snap.auxv.base, NULL, &lstart, lpath, sizeof lpath)) {
                fail("no mapping starts at AT_BASE %#llx", (unsigned long long)exec_snap.auxv.base);
                goto failed;
            }
        } else if (find_line(exec_snap.maps, 0, exec_snap.exe, &lstart, lpath, sizeof lpath)) {
            fail("no mapping of %s at the exec stop", exec_snap.exe);
            goto failed;
        }
        struct loader L;
        if (elf_symbols(lpath, &L)) goto failed;
        uint64_t page = exec_snap.auxv.pagesz;
        uint64_t bias = lstart - (L.first_vaddr & ~(page - 1));
        if (!L.debug_state) {
            if (!is_exe) {
                fail("the dynamic loader %s has no _dl_debug_state symbol", lpath);
                goto failed;
            }
            /* A static program: nothing is loaded after the kernel's work. */
            if (save(&exec_snap, tmpl, ST_LOADED, class)) goto failed;
        } else {
            struct bp b;
            if (bp_insert(&b, L.debug_state + bias)) goto failed;
            if (continue_to(&b, 0, "loaded")) goto failed;
            if (L.r_debug) {
                uint64_t rd = L.r_debug + bias;
                for (;;) {
                    int32_t state;
                    uint64_t rmap = 0;
                    if (read_mem(rd + (class == ELFCLASS64 ? 24 : 12), &state, 4)) goto failed;
                    if (class == ELFCLASS64) {
                        if (read_mem(rd + 8, &rmap, 8)) goto failed;
                    } else {
                        uint32_t m32;
                        if (read_mem(rd + 4, &m32, 4)) goto failed;
                        rmap = m32;
                    }
                    if (state == RT_CONSISTENT && rmap != 0) break;
                    int pending = step_over(&b, "loaded");
                    if (pending < 0) goto failed;
                    if (continue_to(&b, pending, "loaded")) goto failed;
                }
            }
            if (bp_remove(&b)) goto failed;
            if (take(&snap, class)) goto failed;
            if (save(&snap, tmpl, ST_LOADED, class)) goto failed;
        }
        status[ST_LOADED] = 1;
    }
    if (last == ST_LOADED) goto done;

    /* entry */
    s = ST_ENTRY;
    {
        uint64_t entry = exec_snap.auxv.entry;
        if (!entry) {
            fail("no AT_ENTRY in the auxv");
            goto failed;
        }
        if (!mapped(exec_snap.maps, entry)) {
            fail("AT_ENTRY %#llx is not mapped at the exec stop", (unsigned long long)entry);
            goto failed;
        }
        if (exec_snap.pc == entry) {
            /* The first instruction is the entry point: elfmap's int3 there traps at once. */
            if (save(&exec_snap, tmpl, ST_ENTRY, class)) goto failed;
        } else {
            struct bp b;
            if (bp_insert(&b, entry)) goto failed;
            if (continue_to(&b, 0, "entry")) goto failed;
            if (bp_remove(&b)) goto failed;
            if (take(&snap, class)) goto failed;
            if (save(&snap, tmpl, ST_ENTRY, class)) goto failed;
        }
        status[ST_ENTRY] = 1;
    }
    goto done;

failed:
    for (int k = 0; k < NSTAGES; k++) snprintf(reason[k], sizeof reason[k], "%s", errbuf);
    /* stages from s on are not recorded */
    for (int k = s; k < NSTAGES; k++)
        if (want[k] && !status[k]) {
            printf("%s\terror\t%s\n", stage_name[k], k == s ? reason[k] : "an earlier stage failed");
            rc = 1;
        }
done:
    alarm(0);
    kill_and_reap();
    (void)reason;
    return rc;
}
