/* A power cut inside a process's own writes, for tests (a test double: a
 * real power cut cannot be had on demand). Loaded with LD_PRELOAD.
 *
 *   VOLCTL_CUT_PATH   the file (device image) whose writes are counted;
 *                     writes to any other file pass through.
 *   VOLCTL_CUT_FOLDER a folder (absolute, canonical): writes to every
 *                     regular file in it count too, in one sequence with
 *                     the device's (a detached header kept beside it).
 *   VOLCTL_CUT_AFTER  N: writes 1..N land, write N+1 is the cut one.
 *   VOLCTL_CUT_MODE   "torn" (default): the cut write lands half, then the
 *                     process exits at once with status 137;
 *                     "whole": the cut write lands whole, then the same.
 *   VOLCTL_CUT_COUNT  a file: at exit, the number of writes to the target
 *                     is written there (to learn N of an uncut run).
 *   VOLCTL_CUT_SHARED a file holding the count of writes made so far by
 *                     every process that has this set (a parent and the
 *                     workers it starts, e.g. an online reencryption run):
 *                     the cut falls at the N+1-th write of them all, and
 *                     every later write of any of them is cut too, as a
 *                     power cut stops them all. The file ends holding the
 *                     whole count (for an uncut run).
 *
 * The model: writes reach the device in the order issued (the page cache
 * of an image file survives the process), and the power fails during (or
 * right after) one of them. A torn write lands exactly half its bytes,
 * with O_DIRECT dropped for it so that an unaligned half can land. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long writes_seen = 0;

/* Whether fd is a file in folder `dir` (by its path in /proc). */
static int in_folder(int fd, const char *dir) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    size_t len = strlen(dir);
    if (n <= 0 || len == 0)
        return 0;
    path[n] = 0;
    return strncmp(path, dir, len) == 0 && path[len] == '/';
}

static int is_target(int fd) {
    const char *target = getenv("VOLCTL_CUT_PATH");
    const char *folder = getenv("VOLCTL_CUT_FOLDER");
    struct stat a, b;
    if (fstat(fd, &a) != 0)
        return 0;
    if (folder && S_ISREG(a.st_mode) && in_folder(fd, folder))
        return 1;
    if (!target || stat(target, &b) != 0)
        return 0;
    /* A block device may be opened by another node (/dev/block/7:0). */
    if (S_ISBLK(a.st_mode) && S_ISBLK(b.st_mode))
        return a.st_rdev == b.st_rdev;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* The writes made so far: this process's, or (VOLCTL_CUT_SHARED) those of
 * every process sharing the count file; counts this one. */
static long next_write(void) {
    const char *shared = getenv("VOLCTL_CUT_SHARED");
    if (!shared)
        return writes_seen++;
    int fd = open(shared, O_RDWR | O_CREAT, 0600);
    if (fd < 0)
        return writes_seen++;
    flock(fd, LOCK_EX);
    char buf[32] = {0};
    ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
    long n = got > 0 ? atol(buf) : 0;
    int len = snprintf(buf, sizeof buf, "%ld\n", n + 1);
    if (ftruncate(fd, 0) == 0) {
        ssize_t put = pwrite(fd, buf, (size_t)len, 0);
        (void)put; /* the count file is the test's own */
    }
    flock(fd, LOCK_UN);
    close(fd);
    writes_seen++;
    return n;
}

static int whole_mode(void) {
    const char *mode = getenv("VOLCTL_CUT_MODE");
    return mode && strcmp(mode, "whole") == 0;
}

/* Returns how many bytes to let through: all, or (at the cut) half or all
 * by the mode, with *cut set. */
static size_t allowance(int fd, size_t len, int *cut) {
    *cut = 0;
    if (!is_target(fd))
        return len;
    const char *after = getenv("VOLCTL_CUT_AFTER");
    long n = after ? atol(after) : LONG_MAX;
    if (next_write() < n)
        return len;
    *cut = 1;
    if (whole_mode())
        return len;
    /* An unaligned half cannot pass O_DIRECT: drop it for this write. */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_DIRECT))
        fcntl(fd, F_SETFL, fl & ~O_DIRECT);
    return len / 2;
}

static void power_off(void) {
    static const char msg[] = "cut_writes: simulated power cut\n";
    ssize_t ignored = syscall(1, 2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(137);
}

__attribute__((destructor)) static void report_count(void) {
    const char *out = getenv("VOLCTL_CUT_COUNT");
    if (!out)
        return;
    FILE *f = fopen(out, "w");
    if (!f)
        return;
    fprintf(f, "%ld\n", writes_seen);
    fclose(f);
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

/* A vectored write is cut before it (torn: nothing of it lands) or after
 * it (whole). */
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = dlsym(RTLD_NEXT, "writev");
    int cut;
    size_t total = 0;
    for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
    size_t n = allowance(fd, total, &cut);
    if (cut) { if (n == total) real(fd, iov, cnt); power_off(); }
    return real(fd, iov, cnt);
}
