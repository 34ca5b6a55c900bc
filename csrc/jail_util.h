/* jail_util.h: messages, raw syscall wrappers and fd helpers for aisbom-jail.
 *
 * Included only by csrc/jail.c (the helper is one translation unit).
 */
#ifndef AISBOM_JAIL_UTIL_H
#define AISBOM_JAIL_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* Exit codes of the helper (the payload's own code passes through unchanged). */
#define EXIT_TIMEOUT 124    /* wall-clock timeout hit, like coreutils timeout */
#define EXIT_SETUP 125      /* the jail could not be built (or not at the level asked) */
#define EXIT_CANNOT_EXEC 126
#define EXIT_NOT_FOUND 127

/* Numbers of syscalls newer than some distributions' headers. Since Linux 5.1
 * every architecture but alpha/mips shares these numbers. */
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef __NR_fsopen
#define __NR_fsopen 430
#endif
#ifndef __NR_fsconfig
#define __NR_fsconfig 431
#endif
#ifndef __NR_fsmount
#define __NR_fsmount 432
#endif
#ifndef __NR_fspick
#define __NR_fspick 433
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif
#ifndef __NR_quotactl_fd
#define __NR_quotactl_fd 443
#endif
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif

/* New mount API constants (own names: glibc >= 2.36 and <linux/mount.h> clash). */
#define JAIL_OPEN_TREE_CLONE 1u
#define JAIL_MOVE_MOUNT_F_EMPTY_PATH 0x00000004u
#define JAIL_MOUNT_ATTR_RDONLY 0x00000001ull
#define JAIL_MOUNT_ATTR_NOSUID 0x00000002ull
#define JAIL_MOUNT_ATTR_NODEV 0x00000004ull
#define JAIL_MOUNT_ATTR_NOEXEC 0x00000008ull
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct jail_mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};

static int sys_open_tree(int dfd, const char *path, unsigned int flags)
{
    return (int)syscall(__NR_open_tree, dfd, path, flags);
}

static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to,
                          unsigned int flags)
{
    return (int)syscall(__NR_move_mount, from_dfd, from, to_dfd, to, flags);
}

static int sys_mount_setattr(int dfd, const char *path, unsigned int flags,
                             struct jail_mount_attr *attr)
{
    return (int)syscall(__NR_mount_setattr, dfd, path, flags, attr, sizeof *attr);
}

static int sys_close_range(unsigned int first, unsigned int last)
{
    return (int)syscall(__NR_close_range, first, last, 0u);
}

/* fork() without glibc's atfork machinery, optionally into new namespaces. */
static pid_t sys_clone(unsigned long flags)
{
    return (pid_t)syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

/* ---- messages ----------------------------------------------------------------
 *
 * Every failure is one line "error KIND CODE MESSAGE" written to report_fd: the
 * status pipe to Python in the supervisor, or the pipe to the supervisor in the
 * jail's processes. KIND is unavailable (this level cannot be reached here),
 * setup (the jail could not be built), exec (the command could not be started)
 * or usage. Without a status fd the message goes to stderr.
 */
static int report_fd = -1;

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* nobody left to tell: the exit code still says it */
        buf += n;
        len -= (size_t)n;
    }
}

static void vreport_error(const char *kind, int code, int err, const char *fmt, va_list ap)
{
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = (int)sizeof msg - 1;
    if (err)
        snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(err));
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    char line[1200];
    if (report_fd >= 0) {
        n = snprintf(line, sizeof line, "error %s %d %s\n", kind, code, msg);
    } else {
        n = snprintf(line, sizeof line, "aisbom-jail: %s\n", msg);
        report_fd = 2;
    }
    if (n > 0)
        write_all(report_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

__attribute__((noreturn, format(printf, 4, 5)))
static void fail(const char *kind, int code, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_error(kind, code, err, fmt, ap);
    va_end(ap);
    _exit(code);
}

/* The common cases: a failed step while building the jail, with errno. */
#define die_setup(...) fail("setup", EXIT_SETUP, errno, __VA_ARGS__)
/* A namespace step refused by policy makes the level unavailable; any other
 * failure (EAGAIN, ENOMEM...) is a plain setup error, never a reason to fall back. */
static bool refused_by_policy(int err)
{
    return err == EPERM || err == EACCES || err == ENOSPC || err == EUSERS || err == EINVAL ||
           err == ENOSYS;
}
#define die_unavailable(...)                                                                \
    fail(refused_by_policy(errno) ? "unavailable" : "setup", EXIT_SETUP, errno, __VA_ARGS__)
#define die_usage(...) fail("usage", EXIT_SETUP, 0, __VA_ARGS__)

/* ---- small file helpers --------------------------------------------------- */

static int write_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    int saved = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? saved : EIO;
        return -1;
    }
    return 0;
}

/* mkdir -p for a path relative to the current directory (the new root). */
static int mkdir_p(const char *rel, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", rel) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -1;
            *p = saved;
            if (saved == '\0')
                return 0;
        }
    }
}

/* Close every fd >= 3 except those in keep[] (sorted ascending, all >= 3). */
static int close_fds_except(const int *keep, size_t nkeep)
{
    unsigned int from = 3;
    for (size_t i = 0; i <= nkeep; i++) {
        unsigned int upto = i < nkeep ? (unsigned int)keep[i] : ~0u;
        if (upto > from && sys_close_range(from, upto - 1) < 0) {
            if (errno != ENOSYS)
                return -1;
            /* Kernel < 5.9: close one by one up to the fd limit. */
            long max = sysconf(_SC_OPEN_MAX);
            unsigned int last = upto == ~0u ? (unsigned int)(max > 0 ? max : 65536) : upto;
            for (unsigned int fd = from; fd < last; fd++)
                close((int)fd);
        }
        if (i < nkeep)
            from = (unsigned int)keep[i] + 1;
    }
    return 0;
}

/* rm -rf of a directory we created, never following symlinks. */
static void remove_tree_at(int parent, const char *name, int depth)
{
    if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
        return;
    if (depth > 64)
        return;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        fchmodat(parent, name, 0700, 0);
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0)
        return;
    fchmod(fd, 0700);
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        remove_tree_at(dirfd(dir), entry->d_name, depth + 1);
    }
    closedir(dir);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static bool parse_long(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif /* AISBOM_JAIL_UTIL_H */
