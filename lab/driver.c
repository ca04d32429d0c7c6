/* driver: runs the lab's measurements inside a guest (started by init, in the chroot of
 * the ext4 root; static, 64-bit for the x86_64 kernels, 32-bit for the 686 kernel).
 *
 *   driver OUTDIR CASES [JOBS]
 *
 * CASES has one program per line: "BITS<TAB>PATH" (BITS 64 or 32). For each program,
 * layout (flexible, legacy) and, for 32-bit programs, address limit (std, 3gb):
 *   - /lab/bin/recorderBITS --no-aslr [--legacy] [--3gb] records the maps at the exec,
 *     loaded and entry stops of one child:
 *       OUTDIR/recorder/KEY.STAGE.LAYOUT.LIMIT.maps (+ .info)
 *   - on an x86_64 kernel, for each stage:
 *       elfmap run --no-aslr --stage STAGE [--layout legacy] [--3gb] PATH
 *         > OUTDIR/elfmap-run/KEY.STAGE.LAYOUT.LIMIT.maps (stderr: .err)
 *       elfmap compare (same options) PATH
 *         > OUTDIR/compare/KEY.STAGE.LAYOUT.LIMIT.txt (stdout and stderr)
 * KEY is PATH without its leading '/', with every '/' turned into '%'.
 * OUTDIR/index.tsv lists every result (one line per program x stage x layout x limit x
 * tool); OUTDIR/sysinfo/ holds the kernel's facts. 64-bit programs are skipped on a
 * 32-bit kernel. On an x86_64 kernel sysinfo/kernel-capture.json is what `elfmap kernel
 * capture` measured there. JOBS (default 1) programs are measured at once. The programs are taken
 * from /lab/bin, or from $LAB_BIN (host-record.sh runs the same measurements on the host). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The lab's programs: /lab/bin in the guest; LAB_BIN=DIR elsewhere (the host's run). */
static char BIN[512] = "/lab/bin";
static char ELFMAP[600];
#define ELFMAP_TIMEOUT "120"
#define CHILD_GUARD 600 /* seconds: SIGALRM (kept across execve) ends any runaway child */

extern char **environ;
static const char *OUT;
static int native64;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void say(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    if (write(2, line, (size_t)n) < 0) {
    }
    char path[512];
    snprintf(path, sizeof path, "%s/driver.log", OUT);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) < 0) {
        }
        close(fd);
    }
}

/* Run argv with stdout to out_path (NULL: inherit) and stderr to err_path (NULL: same as
 * stdout; "" : /dev/null), personality `pers` (or -1 to keep). Returns the exit status,
 * or 128 + signal, or -1 if it could not start. */
static int run(char *const argv[], const char *out_path, const char *err_path, long pers) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) dup2(null, 0);
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) _exit(126);
            dup2(fd, 1);
            close(fd);
        }
        if (err_path && !*err_path) {
            dup2(null, 2);
        } else if (err_path) {
            int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) _exit(126);
            dup2(fd, 2);
            close(fd);
        } else {
            dup2(1, 2);
        }
        if (null > 2) close(null);
        if (pers != -1 && personality((unsigned long)pers) == -1) _exit(125);
        alarm(CHILD_GUARD);
        execve(argv[0], argv, environ);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

static void copy_file(const char *src, const char *dst_name) {
    char dst[512];
    snprintf(dst, sizeof dst, "%s/sysinfo/%s", OUT, dst_name);
    int in = open(src, O_RDONLY);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0) {
        if (out >= 0) {
            dprintf(out, "(absent: %s: %s)\n", src, strerror(errno));
            close(out);
        }
        if (in >= 0) close(in);
        return;
    }
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) < 0) break;
    close(in);
    close(out);
}

static void sysinfo(void) {
    char d[512];
    snprintf(d, sizeof d, "%s/sysinfo", OUT);
    mkdir(d, 0755);
    struct { const char *src, *name; } files[] = {
        {"/proc/sys/kernel/osrelease", "uname-r"},
        {"/proc/version", "proc-version"},
        {"/proc/cmdline", "cmdline"},
        {"/proc/sys/kernel/randomize_va_space", "kernel.randomize_va_space"},
        {"/proc/sys/vm/mmap_rnd_bits", "vm.mmap_rnd_bits"},
        {"/proc/sys/vm/mmap_rnd_compat_bits", "vm.mmap_rnd_compat_bits"},
        {"/proc/sys/vm/legacy_va_layout", "vm.legacy_va_layout"},
        {"/proc/sys/vm/mmap_min_addr", "vm.mmap_min_addr"},
        {"/proc/sys/vm/overcommit_memory", "vm.overcommit_memory"},
        {"/proc/sys/vm/max_map_count", "vm.max_map_count"},
        {"/proc/sys/kernel/pid_max", "kernel.pid_max"},
        {"/sys/kernel/mm/transparent_hugepage/enabled", "thp-enabled"},
        {"/sys/kernel/mm/transparent_hugepage/defrag", "thp-defrag"},
        {"/sys/kernel/mm/transparent_hugepage/shmem_enabled", "thp-shmem_enabled"},
        {"/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "thp-hpage_pmd_size"},
        {"/proc/self/mountinfo", "mountinfo"},
        {"/proc/cpuinfo", "cpuinfo"},
        {"/proc/meminfo", "meminfo"},
        {"/proc/self/limits", "limits"},
        {"/proc/self/status", "status"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) copy_file(files[i].src, files[i].name);

    struct utsname u;
    uname(&u);
    char path[512];
    snprintf(path, sizeof path, "%s/sysinfo/uname", OUT);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "sysname\t%s\nnodename\t%s\nrelease\t%s\nversion\t%s\nmachine\t%s\n", u.sysname,
                u.nodename, u.release, u.version, u.machine);
        struct rlimit rl;
        getrlimit(RLIMIT_STACK, &rl);
        fprintf(f, "RLIMIT_STACK\t%lld %lld\n", (long long)rl.rlim_cur, (long long)rl.rlim_max);
        fprintf(f, "personality\t%#x\n", personality(0xffffffff));
        for (char **e = environ; *e; e++) fprintf(f, "env\t%s\n", *e);
        fclose(f);
    }
    /* The recorder's own maps: vDSO/vvar sizes, [vsyscall], for a 64- and a 32-bit task,
     * randomised (the kernel's default) and with ADDR_NO_RANDOMIZE. */
    const char *bits[] = {"64", "32"};
    for (int b = 0; b < 2; b++) {
        if (!native64 && b == 0) continue;
        char prog[600];
        snprintf(prog, sizeof prog, "%s/recorder%s", BIN, bits[b]);
        char *argv[] = {prog, "--self-maps", NULL};
        char out[512];
        snprintf(out, sizeof out, "%s/sysinfo/self-maps-%s", OUT, bits[b]);
        run(argv, out, "", -1);
        snprintf(out, sizeof out, "%s/sysinfo/self-maps-%s-norandom", OUT, bits[b]);
        run(argv, out, "", 0x0040000);
        snprintf(out, sizeof out, "%s/sysinfo/self-maps-%s-norandom-legacy", OUT, bits[b]);
        run(argv, out, "", 0x0040000 | 0x0200000);
        if (b == 1) {
            snprintf(out, sizeof out, "%s/sysinfo/self-maps-%s-norandom-3gb", OUT, bits[b]);
            run(argv, out, "", 0x0040000 | 0x8000000);
        }
    }
    if (native64) {
        char *argv[] = {ELFMAP, "--version", NULL};
        snprintf(path, sizeof path, "%s/sysinfo/elfmap-version", OUT);
        run(argv, path, NULL, -1);
        /* the kernel's profile as `elfmap kernel capture` sees it here: the host plans
         * with it (`--kernel FILE`) and compares with the built-in profile */
        char *cargv[] = {ELFMAP, "kernel", "capture", NULL};
        char err[600];
        snprintf(path, sizeof path, "%s/sysinfo/kernel-capture.json", OUT);
        snprintf(err, sizeof err, "%s/sysinfo/kernel-capture.err", OUT);
        run(cargv, path, err, -1);
    }
}

static FILE *idx;

static void index_row(const char *prog, const char *bits, const char *stage, const char *layout,
                      const char *lim, const char *tool, const char *status, int rc,
                      const char *file, const char *detail) {
    fprintf(idx, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", prog, bits, stage, layout, lim, tool,
            status, rc, file, detail ? detail : "");
}

static const char *stages[] = {"exec", "loaded", "entry"};

static const char *layouts[] = {"flexible", "legacy"};
static const char *lims[] = {"std", "3gb"};

/* The recorder on `prog` in layout `l` and limit `m`, ASLR off (directory recorder/, tool
 * "recorder") or on (recorder-aslr/, tool "recorder-aslr"): one index row per stage. */
static void record(const char *bits, const char *prog, const char *key, int l, int m, int aslr) {
    const char *dir = aslr ? "recorder-aslr" : "recorder";
    char suffix[64];
    snprintf(suffix, sizeof suffix, "%s.%s", layouts[l], lims[m]);
    char rec[600], tmpl[1536], status_path[1536];
    snprintf(rec, sizeof rec, "%s/recorder%s", BIN, bits);
    snprintf(tmpl, sizeof tmpl, "%s/%s/%s.{stage}.%s", OUT, dir, key, suffix);
    snprintf(status_path, sizeof status_path, "%s/%s/%s.%s.status", OUT, dir, key, suffix);
    char *rargv[12];
    int n = 0;
    rargv[n++] = rec;
    if (!aslr) rargv[n++] = "--no-aslr";
    if (l == 1) rargv[n++] = "--legacy";
    if (m == 1) rargv[n++] = "--3gb";
    rargv[n++] = "--timeout";
    rargv[n++] = ELFMAP_TIMEOUT;
    rargv[n++] = "-o";
    rargv[n++] = tmpl;
    rargv[n++] = (char *)prog;
    rargv[n] = NULL;
    int rc = run(rargv, status_path, "", -1);
    /* the status file: "STAGE\tok\tFILE" or "STAGE\terror\tREASON" */
    int seen[3] = {0, 0, 0};
    FILE *sf = fopen(status_path, "r");
    char line[2048];
    while (sf && fgets(line, sizeof line, sf)) {
        line[strcspn(line, "\n")] = 0;
        char *st = strtok(line, "\t"), *what = strtok(NULL, "\t"), *rest = strtok(NULL, "");
        if (!st || !what) continue;
        for (int s = 0; s < 3; s++) {
            if (strcmp(st, stages[s])) continue;
            seen[s] = 1;
            char file[1536];
            snprintf(file, sizeof file, "%s/%s.%s.%s.maps", dir, key, stages[s], suffix);
            if (!strcmp(what, "ok")) index_row(prog, bits, stages[s], layouts[l], lims[m], dir, "ok", rc, file, "");
            else index_row(prog, bits, stages[s], layouts[l], lims[m], dir, "error", rc, "-", rest);
        }
    }
    if (sf) fclose(sf);
    for (int s = 0; s < 3; s++)
        if (!seen[s]) {
            char why[64];
            snprintf(why, sizeof why, "the recorder ended with status %d", rc);
            index_row(prog, bits, stages[s], layouts[l], lims[m], dir, "error", rc, "-", why);
        }
}

/* `elfmap run` (ASLR off only) and `elfmap compare` in the guest, one stage at a time, in
 * layout `l` and limit `m`; with `aslr`, compare runs the program randomised and recovers
 * the draws (directory compare-aslr/, tool "compare-aslr"). */
static void elfmap_runs(const char *bits, const char *prog, const char *key, int l, int m, int aslr) {
    char suffix[64];
    snprintf(suffix, sizeof suffix, "%s.%s", layouts[l], lims[m]);
    for (int s = 0; s < 3; s++) {
        char *eargv[16];
        int k = 0;
        eargv[k++] = ELFMAP;
        eargv[k++] = "run";
        if (!aslr) eargv[k++] = "--no-aslr";
        eargv[k++] = "--stage";
        eargv[k++] = (char *)stages[s];
        if (l == 1) {
            eargv[k++] = "--layout";
            eargv[k++] = "legacy";
        }
        if (m == 1) eargv[k++] = "--3gb";
        eargv[k++] = "--timeout";
        eargv[k++] = ELFMAP_TIMEOUT;
        eargv[k++] = (char *)prog;
        eargv[k] = NULL;
        char out[1536], err[1536], file[1536], detail[512] = "";
        int r;
        if (!aslr) {
            snprintf(file, sizeof file, "elfmap-run/%s.%s.%s.maps", key, stages[s], suffix);
            snprintf(out, sizeof out, "%s/%s", OUT, file);
            snprintf(err, sizeof err, "%s/elfmap-run/%s.%s.%s.err", OUT, key, stages[s], suffix);
            r = run(eargv, out, err, -1);
            struct stat st;
            if (stat(err, &st) == 0 && st.st_size == 0) unlink(err);
            if (r != 0) {
                FILE *ef = fopen(err, "r");
                if (ef) {
                    if (!fgets(detail, sizeof detail, ef)) detail[0] = 0;
                    detail[strcspn(detail, "\n")] = 0;
                    fclose(ef);
                }
            }
            index_row(prog, bits, stages[s], layouts[l], lims[m], "elfmap-run", r == 0 ? "ok" : "error", r, file, detail);
        }
        const char *dir = aslr ? "compare-aslr" : "compare";
        eargv[1] = "compare";
        snprintf(file, sizeof file, "%s/%s.%s.%s.txt", dir, key, stages[s], suffix);
        snprintf(out, sizeof out, "%s/%s", OUT, file);
        r = run(eargv, out, NULL, -1);
        const char *res = r == 0 ? "identical" : r == 1 ? "different" : "error";
        detail[0] = 0;
        if (r == 0 || r >= 2) {
            /* the last line says "identical: ..." or "elfmap: ...: reason" */
            FILE *cf = fopen(out, "r");
            char l2[2048];
            while (cf && fgets(l2, sizeof l2, cf)) {
                l2[strcspn(l2, "\n")] = 0;
                snprintf(detail, sizeof detail, "%s", l2);
            }
            if (cf) fclose(cf);
        }
        index_row(prog, bits, stages[s], layouts[l], lims[m], dir, res, r, file, detail);
    }
}

/* One program, all configurations; index rows go to `idx` (a per-worker file). ASLR on:
 * the flexible layout with the standard limit only (one random sample per stage). */
static void measure(const char *bits, const char *prog) {
    char key[1024];
    snprintf(key, sizeof key, "%s", prog[0] == '/' ? prog + 1 : prog);
    for (char *p = key; *p; p++)
        if (*p == '/') *p = '%';
    int nlim = strcmp(bits, "32") == 0 ? 2 : 1;
    for (int l = 0; l < 2; l++) {
        for (int m = 0; m < nlim; m++) {
            record(bits, prog, key, l, m, 0);
            if (native64) elfmap_runs(bits, prog, key, l, m, 0);
        }
    }
    record(bits, prog, key, 0, 0, 1);
    if (native64) elfmap_runs(bits, prog, key, 0, 0, 1);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: driver OUTDIR CASES [JOBS]\n");
        return 2;
    }
    OUT = argv[1];
    const char *lb = getenv("LAB_BIN");
    if (lb && *lb) snprintf(BIN, sizeof BIN, "%s", lb);
    unsetenv("LAB_BIN"); /* the measured programs get the guest's environment exactly */
    snprintf(ELFMAP, sizeof ELFMAP, "%s/elfmap", BIN);
    int jobs = argc > 3 ? atoi(argv[3]) : 1;
    if (jobs < 1) jobs = 1;
    struct utsname u;
    uname(&u);
    native64 = strcmp(u.machine, "x86_64") == 0;
    double t0 = now();
    say("driver: kernel %s (%s), %d job(s)", u.release, u.machine, jobs);
    sysinfo();
    char d[512];
    const char *dirs[] = {"recorder", "recorder-aslr", "elfmap-run", "compare", "compare-aslr", "parts"};
    for (int i = 0; i < 6; i++) {
        snprintf(d, sizeof d, "%s/%s", OUT, dirs[i]);
        mkdir(d, 0755);
    }

    /* read the cases */
    FILE *cf = fopen(argv[2], "r");
    if (!cf) {
        say("driver: %s: %s", argv[2], strerror(errno));
        return 1;
    }
    char **cb = NULL, **cp = NULL;
    int nc = 0, cap = 0;
    char line[2048];
    while (fgets(line, sizeof line, cf)) {
        line[strcspn(line, "\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab || line[0] == '#') continue;
        *tab = 0;
        if (!native64 && strcmp(line, "32")) continue; /* a 64-bit program on a 32-bit kernel */
        if (nc == cap) {
            cap = cap ? 2 * cap : 256;
            cb = realloc(cb, cap * sizeof *cb);
            cp = realloc(cp, cap * sizeof *cp);
        }
        cb[nc] = strdup(line);
        cp[nc] = strdup(tab + 1);
        nc++;
    }
    fclose(cf);
    say("driver: %d programs", nc);

    /* workers: worker w takes cases w, w+jobs, ... and writes parts/index.w.tsv */
    for (int w = 0; w < jobs; w++) {
        pid_t pid = fork();
        if (pid == 0) {
            char ip[512];
            snprintf(ip, sizeof ip, "%s/parts/index.%d.tsv", OUT, w);
            idx = fopen(ip, "w");
            if (!idx) _exit(1);
            for (int i = w; i < nc; i += jobs) {
                double t = now();
                measure(cb[i], cp[i]);
                fflush(idx);
                say("[%d/%d] %.1fs %s (%s-bit) in %.1f s", i + 1, nc, now() - t0, cp[i], cb[i], now() - t);
            }
            fclose(idx);
            _exit(0);
        }
    }
    int st;
    while (wait(&st) > 0) {
    }
    /* index.tsv: the header, then the parts in case order is not needed: sorted later */
    char ip[512];
    snprintf(ip, sizeof ip, "%s/index.tsv", OUT);
    FILE *out = fopen(ip, "w");
    fprintf(out, "program\tbits\tstage\tlayout\tlimit\ttool\tstatus\trc\tfile\tdetail\n");
    for (int w = 0; w < jobs; w++) {
        char pp[512];
        snprintf(pp, sizeof pp, "%s/parts/index.%d.tsv", OUT, w);
        FILE *in = fopen(pp, "r");
        char buf[65536];
        size_t n;
        while (in && (n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
        if (in) fclose(in);
    }
    fclose(out);
    say("driver: done in %.1f s", now() - t0);
    snprintf(ip, sizeof ip, "%s/done", OUT);
    FILE *df = fopen(ip, "w");
    if (df) {
        fprintf(df, "%.1f\n", now() - t0);
        fclose(df);
    }
    return 0;
}
