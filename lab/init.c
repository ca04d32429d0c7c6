/* init: PID 1 of a kernel-lab guest (in the initramfs).
 *
 * Mounts devtmpfs, proc and sysfs; loads the modules listed in /modules/order (finit_module,
 * uncompressed .ko files: the host decompressed them); waits for /dev/vda (the read-only
 * ext4 root: system programs, libraries, testdata, elfmap) and /dev/vdb (the ext4 output
 * disk); mounts them at /root and /root/out, with proc, sysfs, devtmpfs and a tmpfs under
 * /root; chroots into /root and runs /lab/bin/driver64 (x86_64 kernel) or
 * /lab/bin/driver32 (i686 kernel) with a fixed environment (kernel command line:
 * lab.jobs=N programs at once, lab.cases=PATH another list than /lab/cases.tsv); then syncs, unmounts the
 * output disk and powers off. Whatever fails, it powers off (the host bounds the run with
 * a timeout as well). Progress goes to the console (ttyS0) and to /out/init.log.
 *
 * Build: gcc -O2 -static (x86_64 kernels) or gcc -m32 -O2 -static (the 686 kernel). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char logbuf[65536];
static size_t loglen;

static void say(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    if (write(2, "lab-init: ", 10) < 0 || write(2, line, (size_t)n) < 0) {
    }
    if (loglen + (size_t)n < sizeof logbuf) {
        memcpy(logbuf + loglen, "lab-init: ", 10);
        loglen += 10;
        memcpy(logbuf + loglen, line, (size_t)n);
        loglen += (size_t)n;
    }
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void power_off(void) {
    sync();
    say("powering off");
    reboot(RB_POWER_OFF);
    /* Should not return; if it does, exiting PID 1 panics the kernel (panic=-1 reboots,
     * qemu -no-reboot then exits). */
    _exit(1);
}

static void must_mount(const char *src, const char *dst, const char *type, unsigned long flags,
                       const char *data) {
    mkdir(dst, 0755);
    if (mount(src, dst, type, flags, data) != 0 && errno != EBUSY) {
        say("mount %s on %s (%s): %s", src, dst, type, strerror(errno));
        power_off();
    }
}

static void load_modules(void) {
    FILE *f = fopen("/modules/order", "r");
    if (!f) {
        say("no /modules/order: no module loaded");
        return;
    }
    char name[256];
    while (fgets(name, sizeof name, f)) {
        name[strcspn(name, "\n")] = 0;
        if (!name[0]) continue;
        char path[512];
        snprintf(path, sizeof path, "/modules/%s", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            say("module %s: %s", name, strerror(errno));
            continue;
        }
        if (syscall(SYS_finit_module, fd, "", 0) != 0) {
            if (errno == EEXIST) say("module %s: already loaded", name);
            else say("module %s: finit_module: %s", name, strerror(errno));
        } else {
            say("module %s loaded", name);
        }
        close(fd);
    }
    fclose(f);
}

static int wait_for(const char *path, double secs) {
    double end = now() + secs;
    struct stat st;
    while (stat(path, &st) != 0) {
        if (now() > end) return -1;
        usleep(20000);
    }
    return 0;
}

static void save_log(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    if (write(fd, logbuf, loglen) < 0) {
    }
    close(fd);
}

int main(void) {
    double t0 = now();
    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    int c = open("/dev/console", O_RDWR);
    if (c >= 0) {
        dup2(c, 0);
        dup2(c, 1);
        dup2(c, 2);
        if (c > 2) close(c);
    }
    must_mount("proc", "/proc", "proc", 0, NULL);
    must_mount("sysfs", "/sys", "sysfs", 0, NULL);
    struct utsname u;
    uname(&u);
    say("kernel %s %s, %.2f s since init started", u.release, u.machine, now() - t0);

    load_modules();
    if (wait_for("/dev/vda", 60) || wait_for("/dev/vdb", 60)) {
        say("no /dev/vda or /dev/vdb after 60 s");
        power_off();
    }
    must_mount("/dev/vda", "/root", "ext4", MS_RDONLY, NULL);
    must_mount("/dev/vdb", "/root/out", "ext4", 0, NULL);
    must_mount("proc", "/root/proc", "proc", 0, NULL);
    must_mount("sysfs", "/root/sys", "sysfs", 0, NULL);
    must_mount("devtmpfs", "/root/dev", "devtmpfs", 0, NULL);
    must_mount("tmpfs", "/root/tmp", "tmpfs", 0, "mode=1777");
    if (chroot("/root") != 0 || chdir("/") != 0) {
        say("chroot /root: %s", strerror(errno));
        power_off();
    }
    say("root mounted, %.2f s", now() - t0);

    const char *driver = strcmp(u.machine, "x86_64") == 0 ? "/lab/bin/driver64" : "/lab/bin/driver32";
    /* lab.jobs=N on the kernel command line: programs measured at once */
    char jobs[16] = "1", cases[256] = "/lab/cases.tsv";
    int cfd = open("/proc/cmdline", O_RDONLY);
    if (cfd >= 0) {
        char cmd[4096];
        ssize_t n = read(cfd, cmd, sizeof cmd - 1);
        close(cfd);
        cmd[n > 0 ? n : 0] = 0;
        char *j = strstr(cmd, "lab.jobs=");
        if (j) snprintf(jobs, sizeof jobs, "%d", atoi(j + 9));
        /* lab.cases=PATH: another list of programs (the smoke test's) */
        char *c = strstr(cmd, "lab.cases=");
        if (c) snprintf(cases, sizeof cases, "%.*s", (int)strcspn(c + 10, " \n"), c + 10);
    }
    char *argv[] = {(char *)driver, "/out", cases, jobs, NULL};
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root",
                    "LC_ALL=C", "TERM=dumb", NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execve(driver, argv, envp);
        say("execve %s: %s", driver, strerror(errno));
        _exit(127);
    }
    int st = 0;
    for (;;) {
        pid_t r = wait(&st);
        if (r == pid) break;
        if (r < 0 && errno == ECHILD) break;
        /* PID 1 reaps every orphan */
    }
    say("driver %s ended (status %#x) after %.1f s", driver, st, now() - t0);
    save_log("/out/init.log");
    sync();
    if (umount("/out") != 0) say("umount /out: %s", strerror(errno));
    power_off();
    return 0;
}
