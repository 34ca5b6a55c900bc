/* jail_seccomp.h: the seccomp-bpf filter of aisbom-jail.
 *
 * A deny list (everything not named here is allowed). See docs/sandbox.md for
 * the reasoning behind each group. Summary:
 *   - wrong architecture (e.g. i386 syscalls through int 0x80, x32): kill.
 *   - execve: allowed only with one filename pointer, the one the helper itself
 *     passes for the payload (placed at a random address just before the filter is
 *     loaded). After that exec the address space is gone, so every later execve
 *     fails with EPERM. execveat always fails.
 *   - clone3: ENOSYS (flags sit in memory a filter cannot read; glibc then falls
 *     back to clone(), whose flags we can check, so threads still work).
 *   - clone/unshare with namespace flags, setns, mount family, ptrace family,
 *     bpf, io_uring, keyrings, perf, kexec, modules, userfaultfd, personality
 *     changes, sockets (socketpair(AF_UNIX) excepted), connect/bind/listen/accept,
 *     terminal input injection (TIOCSTI/TIOCLINUX), setuid/setgid mode bits on
 *     files, plus admin syscalls: EPERM.
 *   - SysV IPC and POSIX message queues: shared with the host without an ipc
 *     namespace, and a way around RLIMIT_DATA (shm pages) with one.
 *   - without a pid namespace (level no-userns): setsid and setpgid, so that the
 *     payload's process group holds every process it starts and one kill() of the
 *     group ends them all.
 */
#ifndef AISBOM_JAIL_SECCOMP_H
#define AISBOM_JAIL_SECCOMP_H

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "jail_util.h"

#if defined(__x86_64__)
#define JAIL_AUDIT_ARCH AUDIT_ARCH_X86_64
#define JAIL_X32_SYSCALL_BIT 0x40000000u
#elif defined(__aarch64__)
#define JAIL_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#define JAIL_NO_SECCOMP_ARCH 1
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000u
#endif

/* Namespace flags refused in clone() (CLONE_NEWTIME shares its bit with CSIGNAL
 * there) and in unshare(). */
#define JAIL_CLONE_NS_FLAGS                                                          \
    (CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |      \
     CLONE_NEWUTS | CLONE_NEWCGROUP)
#define JAIL_UNSHARE_NS_FLAGS (JAIL_CLONE_NS_FLAGS | CLONE_NEWTIME)

/* Low and high 32-bit halves of syscall argument i (little endian only). */
#define ARG_LO(i) ((uint32_t)offsetof(struct seccomp_data, args[i]))
#define ARG_HI(i) ((uint32_t)offsetof(struct seccomp_data, args[i]) + 4u)

#define JAIL_MAX_INSNS 1024

struct bpf_prog_buf {
    struct sock_filter insn[JAIL_MAX_INSNS];
    unsigned int len;
};

static void bpf_add(struct bpf_prog_buf *b, uint16_t code, uint8_t jt, uint8_t jf, uint32_t k)
{
    if (b->len >= JAIL_MAX_INSNS)
        fail("setup", EXIT_SETUP, 0, "seccomp filter too long");
    b->insn[b->len++] = (struct sock_filter){code, jt, jf, k};
}

#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((uint32_t)(e) & SECCOMP_RET_DATA))

/* The accumulator holds the syscall number between rules; a rule that loads an
 * argument always ends in a return, so the next rule still sees the number. */

static void deny(struct bpf_prog_buf *b, long nr, int err)
{
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)nr);
    bpf_add(b, BPF_RET | BPF_K, 0, 0, RET_ERRNO(err));
}

/* Deny when (low 32 bits of arg) & mask != 0, allow otherwise. */
static void deny_if_bits(struct bpf_prog_buf *b, long nr, int arg, uint32_t mask, int err)
{
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 4, (uint32_t)nr);
    bpf_add(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG_LO(arg));
    bpf_add(b, BPF_JMP | BPF_JSET | BPF_K, 0, 1, mask);
    bpf_add(b, BPF_RET | BPF_K, 0, 0, RET_ERRNO(err));
    bpf_add(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

/* Allow only when the low 32 bits of arg equal one of two values. */
static void allow_only_values(struct bpf_prog_buf *b, long nr, int arg, uint32_t v1,
                              uint32_t v2, int err)
{
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 5, (uint32_t)nr);
    bpf_add(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG_LO(arg));
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 2, 0, v1);
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, v2);
    bpf_add(b, BPF_RET | BPF_K, 0, 0, RET_ERRNO(err));
    bpf_add(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

/* Deny when the low 32 bits of arg equal one of two values (ioctl requests). */
static void deny_values(struct bpf_prog_buf *b, long nr, int arg, uint32_t v1, uint32_t v2,
                        int err)
{
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 5, (uint32_t)nr);
    bpf_add(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG_LO(arg));
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, v1);
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, v2);
    bpf_add(b, BPF_RET | BPF_K, 0, 0, RET_ERRNO(err));
    bpf_add(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
}

/* Allow only when the full 64-bit arg equals value (the payload's exec path). */
static void allow_only_pointer(struct bpf_prog_buf *b, long nr, int arg, uint64_t value,
                               int err)
{
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 6, (uint32_t)nr);
    bpf_add(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG_LO(arg));
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 3, (uint32_t)value);
    bpf_add(b, BPF_LD | BPF_W | BPF_ABS, 0, 0, ARG_HI(arg));
    bpf_add(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (uint32_t)(value >> 32));
    bpf_add(b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
    bpf_add(b, BPF_RET | BPF_K, 0, 0, RET_ERRNO(err));
}

/* Syscalls refused with EPERM at every level (those the architecture has). */
static const long jail_denied_syscalls[] = {
    /* networking: no sockets at all; socketpair(AF_UNIX) is handled apart */
    __NR_socket, __NR_connect, __NR_bind, __NR_listen, __NR_accept, __NR_accept4,
    /* other processes' memory and fds */
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_pidfd_getfd,
    /* the mount table */
    __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_move_mount,
    __NR_open_tree, __NR_open_tree_attr, __NR_fsopen, __NR_fsmount, __NR_fsconfig,
    __NR_fspick, __NR_mount_setattr,
    /* namespaces (clone and unshare are checked by flag) */
    __NR_setns,
    /* kernel attack surface */
    __NR_bpf, __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
    __NR_keyctl, __NR_add_key, __NR_request_key, __NR_perf_event_open,
    __NR_kexec_load, __NR_kexec_file_load, __NR_init_module, __NR_finit_module,
    __NR_delete_module, __NR_userfaultfd,
    /* exec by fd; plain execve is checked by pointer */
    __NR_execveat,
    /* administration (would need capabilities the payload does not have anyway) */
    __NR_acct, __NR_swapon, __NR_swapoff, __NR_reboot, __NR_syslog,
    __NR_settimeofday, __NR_clock_settime, __NR_clock_adjtime, __NR_adjtimex,
    __NR_sethostname, __NR_setdomainname, __NR_quotactl, __NR_quotactl_fd,
    __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_lookup_dcookie,
    __NR_vhangup, __NR_fanotify_init,
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR_iopl
    __NR_iopl,
#endif
#ifdef __NR_ioperm
    __NR_ioperm,
#endif
#ifdef __NR_modify_ldt
    __NR_modify_ldt,
#endif
#ifdef __NR__sysctl
    __NR__sysctl,
#endif
#ifdef __NR_nfsservctl
    __NR_nfsservctl,
#endif
};

/* SysV IPC and POSIX message queues (EPERM too). */
static const long jail_denied_ipc[] = {
    __NR_shmget, __NR_shmat, __NR_shmctl, __NR_shmdt,
    __NR_msgget, __NR_msgsnd, __NR_msgrcv, __NR_msgctl,
    __NR_semget, __NR_semop, __NR_semctl, __NR_semtimedop,
    __NR_mq_open, __NR_mq_unlink, __NR_mq_timedsend, __NR_mq_timedreceive,
    __NR_mq_notify, __NR_mq_getsetattr,
};

#define SUID_SGID_BITS ((uint32_t)(S_ISUID | S_ISGID))

/* Build and load the filter. exec_path is the only filename execve accepts. */
static int install_seccomp(const char *exec_path, bool have_pid_namespace)
{
#ifdef JAIL_NO_SECCOMP_ARCH
    (void)exec_path;
    (void)have_pid_namespace;
    errno = ENOTSUP;
    return -1;
#else
    static struct bpf_prog_buf b;
    b.len = 0;

    /* Architecture check: a syscall from another ABI would have other numbers. */
    bpf_add(&b, BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)offsetof(struct seccomp_data, arch));
    bpf_add(&b, BPF_JMP | BPF_JEQ | BPF_K, 1, 0, JAIL_AUDIT_ARCH);
    bpf_add(&b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    bpf_add(&b, BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)offsetof(struct seccomp_data, nr));
#ifdef JAIL_X32_SYSCALL_BIT
    bpf_add(&b, BPF_JMP | BPF_JGE | BPF_K, 0, 1, JAIL_X32_SYSCALL_BIT);
    bpf_add(&b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
#endif

    allow_only_pointer(&b, __NR_execve, 0, (uint64_t)(uintptr_t)exec_path, EPERM);
    deny(&b, __NR_clone3, ENOSYS);
    deny(&b, __NR_openat2, ENOSYS); /* open_how is unreadable: let libc use openat */
    deny_if_bits(&b, __NR_clone, 0, JAIL_CLONE_NS_FLAGS, EPERM);
    deny_if_bits(&b, __NR_unshare, 0, JAIL_UNSHARE_NS_FLAGS, EPERM);
    allow_only_values(&b, __NR_socketpair, 0, AF_UNIX, AF_UNIX, EPERM);
    allow_only_values(&b, __NR_personality, 0, 0 /* PER_LINUX */, 0xffffffffu /* query */,
                      EPERM);
    deny_values(&b, __NR_ioctl, 1, TIOCSTI, TIOCLINUX, EPERM);

    /* No set-user-ID / set-group-ID files, whatever the mount options. */
    deny_if_bits(&b, __NR_fchmod, 1, SUID_SGID_BITS, EPERM);
    deny_if_bits(&b, __NR_fchmodat, 2, SUID_SGID_BITS, EPERM);
    deny_if_bits(&b, __NR_fchmodat2, 2, SUID_SGID_BITS, EPERM);
    deny_if_bits(&b, __NR_openat, 3, SUID_SGID_BITS, EPERM);
    deny_if_bits(&b, __NR_mknodat, 2, SUID_SGID_BITS, EPERM);
#ifdef __NR_chmod
    deny_if_bits(&b, __NR_chmod, 1, SUID_SGID_BITS, EPERM);
#endif
#ifdef __NR_open
    deny_if_bits(&b, __NR_open, 2, SUID_SGID_BITS, EPERM);
#endif
#ifdef __NR_creat
    deny_if_bits(&b, __NR_creat, 1, SUID_SGID_BITS, EPERM);
#endif
#ifdef __NR_mknod
    deny_if_bits(&b, __NR_mknod, 1, SUID_SGID_BITS, EPERM);
#endif

    for (size_t i = 0; i < sizeof jail_denied_syscalls / sizeof *jail_denied_syscalls; i++)
        deny(&b, jail_denied_syscalls[i], EPERM);
    for (size_t i = 0; i < sizeof jail_denied_ipc / sizeof *jail_denied_ipc; i++)
        deny(&b, jail_denied_ipc[i], EPERM);
    if (!have_pid_namespace) {
        deny(&b, __NR_setsid, EPERM);
        deny(&b, __NR_setpgid, EPERM);
    }

    bpf_add(&b, BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);

    struct sock_fprog prog = {.len = (unsigned short)b.len, .filter = b.insn};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#endif
}

#endif /* AISBOM_JAIL_SECCOMP_H */
