/* jail_landlock.h: Landlock for aisbom-jail, at the best ABI the kernel offers.
 *
 * The ruleset handles every access right the running kernel knows, so anything
 * not granted below is denied:
 *   - read (files and directory listing) beneath the read-only paths;
 *   - read, write, create, remove, rename beneath the writable paths (the private
 *     /tmp and --rw directories), never execute, never device nodes;
 *   - execute only the files named with --exec (the payload binary and its ELF
 *     interpreter): together with the seccomp execve rule nothing else can run;
 *   - ABI >= 4: no TCP bind/connect (sockets are already refused by seccomp);
 *   - ABI >= 6: no signals to, and no abstract unix sockets of, processes outside
 *     the jail (the only guard against kill(parent) when there is no pid namespace).
 * Constants carry our own names so that old and new <linux/landlock.h> both work.
 */
#ifndef AISBOM_JAIL_LANDLOCK_H
#define AISBOM_JAIL_LANDLOCK_H

#include <stddef.h>

#include "jail_util.h"

#define LL_CREATE_RULESET_VERSION (1u << 0)
#define LL_RULE_PATH_BENEATH 1

#define LL_FS_EXECUTE (1ull << 0)
#define LL_FS_WRITE_FILE (1ull << 1)
#define LL_FS_READ_FILE (1ull << 2)
#define LL_FS_READ_DIR (1ull << 3)
#define LL_FS_REMOVE_DIR (1ull << 4)
#define LL_FS_REMOVE_FILE (1ull << 5)
#define LL_FS_MAKE_CHAR (1ull << 6)
#define LL_FS_MAKE_DIR (1ull << 7)
#define LL_FS_MAKE_REG (1ull << 8)
#define LL_FS_MAKE_SOCK (1ull << 9)
#define LL_FS_MAKE_FIFO (1ull << 10)
#define LL_FS_MAKE_BLOCK (1ull << 11)
#define LL_FS_MAKE_SYM (1ull << 12)
#define LL_FS_REFER (1ull << 13)     /* ABI 2 */
#define LL_FS_TRUNCATE (1ull << 14)  /* ABI 3 */
#define LL_FS_IOCTL_DEV (1ull << 15) /* ABI 5 */
#define LL_NET_BIND_TCP (1ull << 0)  /* ABI 4 */
#define LL_NET_CONNECT_TCP (1ull << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ull << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL (1ull << 1)

/* Rights that make sense on a single file (a rule on a file may hold only these). */
#define LL_FILE_RIGHTS (LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_TRUNCATE | \
                        LL_FS_IOCTL_DEV)
#define LL_READ (LL_FS_READ_FILE | LL_FS_READ_DIR)
#define LL_WRITE (LL_READ | LL_FS_WRITE_FILE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE |          \
                  LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_FIFO | LL_FS_MAKE_SYM |          \
                  LL_FS_REFER | LL_FS_TRUNCATE)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

/* The Landlock ABI version of the running kernel, 0 when Landlock is off. */
static int landlock_abi(void)
{
    long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    return abi < 0 ? 0 : (int)abi;
}

struct landlock_rules {
    int ruleset_fd;
    uint64_t handled_fs;
};

static int landlock_begin(struct landlock_rules *rules, int abi)
{
    struct ll_ruleset_attr attr = {0};
    size_t size = sizeof attr.handled_access_fs;
    attr.handled_access_fs = (LL_FS_MAKE_SYM << 1) - 1; /* ABI 1: bits 0..12 */
    if (abi >= 2)
        attr.handled_access_fs |= LL_FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= LL_FS_TRUNCATE;
    if (abi >= 4) {
        attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
        size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 5)
        attr.handled_access_fs |= LL_FS_IOCTL_DEV;
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
        size = sizeof attr;
    }
    rules->handled_fs = attr.handled_access_fs;
    rules->ruleset_fd = (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0u);
    return rules->ruleset_fd < 0 ? -1 : 0;
}

/* Grant access beneath path (or to the file path). Returns -1 with errno set;
 * a missing path is not an error (there is nothing to grant). */
static int landlock_allow(struct landlock_rules *rules, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        access &= LL_FILE_RIGHTS;
    struct ll_path_beneath_attr attr = {
        .allowed_access = access & rules->handled_fs,
        .parent_fd = fd,
    };
    long rc = 0;
    if (attr.allowed_access)
        rc = syscall(__NR_landlock_add_rule, rules->ruleset_fd, LL_RULE_PATH_BENEATH, &attr, 0u);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc < 0 ? -1 : 0;
}

static int landlock_enforce(struct landlock_rules *rules)
{
    long rc = syscall(__NR_landlock_restrict_self, rules->ruleset_fd, 0u);
    int saved = errno;
    close(rules->ruleset_fd);
    errno = saved;
    return rc < 0 ? -1 : 0;
}

#endif /* AISBOM_JAIL_LANDLOCK_H */
