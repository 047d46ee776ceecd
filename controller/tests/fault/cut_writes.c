/* A power cut inside a process's own writes, for tests: after
 * VOLCTL_CUT_AFTER writes to the file VOLCTL_CUT_PATH, the next write to it
 * lands only half, and the process exits at once with status 137. Writes to
 * other files pass through. Loaded with LD_PRELOAD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long writes_seen = 0;

static int is_target(int fd) {
    const char *target = getenv("VOLCTL_CUT_PATH");
    struct stat a, b;
    if (!target || fstat(fd, &a) != 0 || stat(target, &b) != 0)
        return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Returns how many bytes to let through: all, or half at the cut. */
static size_t allowance(int fd, size_t len, int *cut) {
    *cut = 0;
    if (!is_target(fd))
        return len;
    const char *after = getenv("VOLCTL_CUT_AFTER");
    long n = after ? atol(after) : LONG_MAX;
    if (writes_seen++ < n)
        return len;
    *cut = 1;
    return len / 2;
}

static void power_off(void) {
    static const char msg[] = "cut_writes: simulated power cut\n";
    ssize_t ignored = syscall(1, 2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(137);
}

ssize_t write(int fd, const void *buf, size_t len) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = dlsym(RTLD_NEXT, "write");
    int cut;
    size_t n = allowance(fd, len, &cut);
    if (cut) { if (n) real(fd, buf, n); power_off(); }
    return real(fd, buf, len);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite");
    int cut;
    size_t n = allowance(fd, len, &cut);
    if (cut) { if (n) real(fd, buf, n, off); power_off(); }
    return real(fd, buf, len, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = dlsym(RTLD_NEXT, "pwrite64");
    int cut;
    size_t n = allowance(fd, len, &cut);
    if (cut) { if (n) real(fd, buf, n, off); power_off(); }
    return real(fd, buf, len, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = dlsym(RTLD_NEXT, "writev");
    int cut;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    allowance(fd, total, &cut);
    if (cut) power_off();
    return real(fd, iov, cnt);
}
