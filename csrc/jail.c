/* aisbom-jail: run one command in a sandbox.
 *
 *   aisbom-jail [OPTIONS] -- EXEC_PATH ARGV0 [ARGS...]
 *
 * Started by aisbom/jail.py with posix_spawn (never fork) and single-threaded, it
 * supervises the jail and reports on --status-fd, one line per event:
 *
 *   started LEVEL FEATURES...     the command is running at LEVEL (full|no-userns)
 *   exit N | signal N              how the command ended
 *   timeout                        --timeout-ms passed: everything in the jail was killed
 *   terminated SIG                 the helper was told to stop (SIGTERM, SIGINT, parent death)
 *   error KIND CODE MESSAGE        KIND: unavailable | setup | exec | usage
 *
 * and exits with the command's code, 128+signal, 124 (timeout), 125 (no jail),
 * 126/127 (cannot execute / not found).
 *
 * Level "full", the default:
 *   supervisor --clone(new user, mount, pid, net, ipc, uts, cgroup ns)--> init (pid 1)
 *   init: tmpfs root with read-only binds, private /tmp, /dev/{null,zero,urandom},
 *         /proc, pivot_root, read-only root; forks the payload and reaps.
 *   payload: only the kept fds, unprivileged uid, no capabilities, rlimits,
 *         no-new-privs, Landlock, seccomp, then its one execve.
 *   The supervisor enforces the timeout: killing init kills the whole pid namespace.
 * Level "no-userns" (only if --min-level no-userns): when user namespaces are
 *   unavailable the payload is forked directly, with the same identity drop,
 *   limits, Landlock (read access only to the listed paths, a private temp dir)
 *   and seccomp; the supervisor is a child subreaper and kills every descendant.
 * Anything less fails closed with "error unavailable".
 */
#define _GNU_SOURCE

#include <getopt.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "jail_landlock.h"
#include "jail_seccomp.h"
#include "jail_util.h"

extern char **environ;

#define NOBODY_ID 65534          /* the payload's uid/gid when started as real root */
#define JAIL_UNAVAILABLE (-1)    /* run_*_jail: this level cannot be built here */
#define MAX_KEEP_FDS 64

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef SECBIT_NO_CAP_AMBIENT_RAISE
#define SECBIT_NO_CAP_AMBIENT_RAISE (1 << 6)
#define SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED (1 << 7)
#endif

enum level { LEVEL_FULL, LEVEL_NO_USERNS };
static const char *const level_names[] = {"full", "no-userns"};

enum bind_kind { BIND_RO, BIND_RO_TRY, BIND_RW, BIND_SYMLINK, BIND_DEV };

struct bind {
    enum bind_kind kind;
    const char *path;       /* same path on the host and in the jail */
    char link_target[PATH_MAX]; /* BIND_SYMLINK */
    int tree_fd;            /* detached copy of the mount (new mount API) */
    int src_fd;             /* O_PATH fd of the source (old mount API) */
    bool is_dir;
    bool flags_pending;     /* read-only etc. still to apply after attaching */
    bool missing;           /* BIND_RO_TRY whose path does not exist */
};

struct jail {
    /* command line */
    struct bind *binds;
    size_t nbinds;
    const char **exec_allow;
    size_t nexec;
    int keep_fds[MAX_KEEP_FDS];
    size_t nkeep;
    int status_fd;
    pid_t parent_pid;
    enum level min_level;
    const char *chdir_to;
    int64_t timeout_ms;
    long long mem, nproc, nofile, fsize, tmp_size;
    const char *exec_path;
    char **argv;
    /* found at run time */
    bool real_root;
    uid_t outer_uid, payload_uid;
    gid_t outer_gid, payload_gid;
    int landlock_abi;
    enum level level;
    int sigfd;
    pid_t supervisor_pid;
    pid_t child;            /* init (full) or the payload (no-userns) */
    int64_t start_ms;
    char private_tmp[64];
    char why_not_full[600];
    char init_features[64];
};

/* ---- reporting to the caller ------------------------------------------------ */

__attribute__((format(printf, 2, 3)))
static void emit(struct jail *j, const char *fmt, ...)
{
    if (j->status_fd < 0)
        return;
    char line[1300];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    write_all(j->status_fd, line, (size_t)n);
}

static const char *errno_hint(int err)
{
    switch (err) {
    case EPERM:
    case EACCES:
        return " (forbidden here: a container's seccomp profile, an AppArmor/SELinux "
               "rule, or kernel.unprivileged_userns_clone=0)";
    case ENOSPC:
    case EUSERS:
        return " (user.max_user_namespaces is 0 or exhausted)";
    case EINVAL:
    case ENOSYS:
        return " (the kernel lacks namespace support)";
    default:
        return "";
    }
}

/* ---- 1. command line ---------------------------------------------------------- */

static void add_bind(struct jail *j, enum bind_kind kind, const char *path)
{
    if (path[0] != '/' || strcmp(path, "/") == 0)
        die_usage("path must be absolute and not /: %s", path);
    struct bind *grown = realloc(j->binds, (j->nbinds + 1) * sizeof *grown);
    if (!grown)
        die_setup("out of memory");
    j->binds = grown;
    j->binds[j->nbinds++] = (struct bind){.kind = kind, .path = path, .tree_fd = -1, .src_fd = -1};
}

static long long option_number(const char *name, const char *value, long long min)
{
    long long v;
    if (!parse_long(value, min, INT64_MAX / 2, &v))
        die_usage("bad value for --%s: %s", name, value);
    return v;
}

static void parse_args(struct jail *j, int argc, char **argv)
{
    static const struct option options[] = {
        {"status-fd", required_argument, NULL, 's'}, {"keep-fd", required_argument, NULL, 'k'},
        {"parent-pid", required_argument, NULL, 'p'}, {"min-level", required_argument, NULL, 'L'},
        {"ro", required_argument, NULL, 'r'},        {"ro-try", required_argument, NULL, 'R'},
        {"rw", required_argument, NULL, 'w'},        {"symlink", required_argument, NULL, 'l'},
        {"exec", required_argument, NULL, 'x'},      {"chdir", required_argument, NULL, 'C'},
        {"timeout-ms", required_argument, NULL, 't'}, {"mem", required_argument, NULL, 'm'},
        {"nproc", required_argument, NULL, 'n'},     {"nofile", required_argument, NULL, 'f'},
        {"fsize", required_argument, NULL, 'F'},     {"tmp-size", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    j->status_fd = -1;
    j->min_level = LEVEL_FULL;
    j->nproc = 256;
    j->nofile = 1024;
    j->tmp_size = 256ll << 20;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
        switch (c) {
        case 's':
            j->status_fd = (int)option_number("status-fd", optarg, 3);
            report_fd = j->status_fd;
            break;
        case 'k':
            if (j->nkeep == MAX_KEEP_FDS)
                die_usage("too many --keep-fd");
            j->keep_fds[j->nkeep++] = (int)option_number("keep-fd", optarg, 3);
            break;
        case 'p': j->parent_pid = (pid_t)option_number("parent-pid", optarg, 1); break;
        case 'L':
            if (strcmp(optarg, "full") == 0)
                j->min_level = LEVEL_FULL;
            else if (strcmp(optarg, "no-userns") == 0)
                j->min_level = LEVEL_NO_USERNS;
            else
                die_usage("unknown level %s (full, no-userns)", optarg);
            break;
        case 'r': add_bind(j, BIND_RO, optarg); break;
        case 'R': add_bind(j, BIND_RO_TRY, optarg); break;
        case 'w': add_bind(j, BIND_RW, optarg); break;
        case 'l': add_bind(j, BIND_SYMLINK, optarg); break;
        case 'x': {
            const char **grown = realloc(j->exec_allow, (j->nexec + 1) * sizeof *grown);
            if (!grown)
                die_setup("out of memory");
            j->exec_allow = grown;
            j->exec_allow[j->nexec++] = optarg;
            break;
        }
        case 'C': j->chdir_to = optarg; break;
        case 't': j->timeout_ms = option_number("timeout-ms", optarg, 1); break;
        case 'm': j->mem = option_number("mem", optarg, 1 << 20); break;
        case 'n': j->nproc = option_number("nproc", optarg, 1); break;
        case 'f': j->nofile = option_number("nofile", optarg, 16); break;
        case 'F': j->fsize = option_number("fsize", optarg, 1); break;
        case 'T': j->tmp_size = option_number("tmp-size", optarg, 1 << 20); break;
        default: die_usage("unknown option %s", argv[optind - 1]);
        }
    }
    if (argc - optind < 2)
        die_usage("usage: aisbom-jail [OPTIONS] -- EXEC_PATH ARGV0 [ARGS...]");
    j->exec_path = argv[optind];
    j->argv = argv + optind + 1;
    if (j->exec_path[0] != '/')
        die_usage("EXEC_PATH must be absolute: %s", j->exec_path);
    add_bind(j, BIND_DEV, "/dev/null");
    add_bind(j, BIND_DEV, "/dev/zero");
    add_bind(j, BIND_DEV, "/dev/urandom");
}

/* ---- 2. the supervisor's own hygiene ------------------------------------------ */

static int compare_ints(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Only stdin/out/err, the status fd and the --keep-fd fds survive. */
static void keep_only_needed_fds(struct jail *j)
{
    int keep[MAX_KEEP_FDS + 1];
    size_t n = 0;
    for (size_t i = 0; i < j->nkeep; i++) {
        if (fcntl(j->keep_fds[i], F_SETFD, 0) < 0)
            die_usage("--keep-fd %d is not open", j->keep_fds[i]);
        keep[n++] = j->keep_fds[i];
    }
    if (j->status_fd >= 0) {
        if (fcntl(j->status_fd, F_SETFD, FD_CLOEXEC) < 0) {
            report_fd = -1;
            die_usage("--status-fd %d is not open", j->status_fd);
        }
        keep[n++] = j->status_fd;
    }
    qsort(keep, n, sizeof *keep, compare_ints);
    if (close_fds_except(keep, n) < 0)
        die_setup("cannot close inherited file descriptors");
}

/* The jail must not outlive the process that asked for it. */
static void die_with_parent(struct jail *j)
{
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
        die_setup("prctl(PR_SET_PDEATHSIG)");
    if (j->parent_pid && getppid() != j->parent_pid)
        _exit(EXIT_SETUP); /* the parent is already gone: nobody to report to */
}

/* Signals arrive through a signalfd polled together with the jail's pipe. */
static void block_signals(struct jail *j)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        die_setup("sigprocmask");
    j->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (j->sigfd < 0)
        die_setup("signalfd");
    signal(SIGPIPE, SIG_IGN); /* a vanished caller must not stop the cleanup */
}

/* Real root (uid 0 in the initial user namespace) runs the payload as nobody. */
static void identify_caller(struct jail *j)
{
    j->outer_uid = getuid();
    j->outer_gid = getgid();
    j->real_root = false;
    if (j->outer_uid == 0) {
        j->real_root = true;
        FILE *f = fopen("/proc/self/uid_map", "re");
        if (f) {
            unsigned long inside, outside, count;
            if (fscanf(f, "%lu %lu %lu", &inside, &outside, &count) == 3 &&
                !(inside == 0 && outside == 0 && count == 4294967295ul))
                j->real_root = false; /* root of a user namespace: already unprivileged */
            fclose(f);
        }
    }
    j->payload_uid = j->real_root ? NOBODY_ID : j->outer_uid;
    j->payload_gid = j->real_root ? NOBODY_ID : j->outer_gid;
}

/* ---- 3. the payload's last steps (both levels) ---------------------------------- */

static void reset_signals(void)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* glibc-reserved numbers fail harmlessly */
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        die_setup("sigprocmask");
}

static bool have_capability(int cap)
{
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return false;
    return (data[cap / 32].effective >> (cap % 32)) & 1;
}

/* Unprivileged uid, empty capability sets (bounding set too when we may). */
static void drop_identity(struct jail *j)
{
    if (have_capability(CAP_SETPCAP)) {
        for (int cap = 0; cap < 64; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                die_setup("cannot drop capability %d from the bounding set", cap);
        if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                         SECBIT_NO_CAP_AMBIENT_RAISE |
                                         SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0, 0, 0) < 0)
            die_setup("cannot lock the securebits");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        die_setup("cannot clear the ambient capabilities");
    if (j->real_root) {
        if (setgroups(0, NULL) < 0)
            die_setup("cannot drop supplementary groups");
        if (setresgid(j->payload_gid, j->payload_gid, j->payload_gid) < 0)
            die_setup("cannot switch to gid %u", (unsigned)j->payload_gid);
        if (setresuid(j->payload_uid, j->payload_uid, j->payload_uid) < 0)
            die_setup("cannot switch to uid %u", (unsigned)j->payload_uid);
    }
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct none[2] = {{0}};
    if (syscall(SYS_capset, &hdr, none) < 0)
        die_setup("cannot drop capabilities");
    if (getuid() != j->payload_uid || geteuid() != j->payload_uid || getgid() != j->payload_gid)
        fail("setup", EXIT_SETUP, 0, "identity check failed after dropping privileges");
}

/* Tasks (threads included) whose real uid is uid: RLIMIT_NPROC counts them all
 * when there is no user namespace of our own. */
static long long count_tasks_of(uid_t uid)
{
    long long count = 0;
    DIR *proc = opendir("/proc");
    if (!proc)
        return 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", entry->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        bool mine = false;
        while (fgets(line, sizeof line, f)) {
            unsigned long ruid, threads;
            if (sscanf(line, "Uid: %lu", &ruid) == 1)
                mine = ruid == uid;
            else if (mine && sscanf(line, "Threads: %lu", &threads) == 1)
                count += (long long)threads;
        }
        fclose(f);
    }
    closedir(proc);
    return count;
}

static void set_limit(int resource, const char *name, long long value)
{
    struct rlimit current;
    if (getrlimit(resource, &current) < 0)
        die_setup("getrlimit(%s)", name);
    rlim_t v = (rlim_t)value;
    if (current.rlim_max != RLIM_INFINITY && v > current.rlim_max)
        v = current.rlim_max; /* cannot raise a hard limit: keep the lower one */
    struct rlimit rl = {v, v};
    if (setrlimit(resource, &rl) < 0)
        die_setup("cannot set %s", name);
}

static void set_limits(struct jail *j)
{
    set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0);
    set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", j->nofile);
    long long nproc = j->nproc;
    if (j->level == LEVEL_NO_USERNS) {
        /* the uid's other tasks on the host count too; we ourselves are the first of ours */
        long long others = count_tasks_of(j->payload_uid) - 1;
        nproc += others > 0 ? others : 0;
    }
    set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", nproc);
    if (j->mem)
        set_limit(RLIMIT_DATA, "RLIMIT_DATA", j->mem);
    if (j->fsize)
        set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", j->fsize);
}

static void close_other_fds(struct jail *j, int exec_fd)
{
    int keep[MAX_KEEP_FDS + 1];
    size_t n = 0;
    for (size_t i = 0; i < j->nkeep; i++)
        keep[n++] = j->keep_fds[i];
    keep[n++] = exec_fd; /* close-on-exec: gone once the command runs */
    qsort(keep, n, sizeof *keep, compare_ints);
    if (close_fds_except(keep, n) < 0)
        die_setup("cannot close file descriptors");
}

static void landlock_or_die(struct landlock_rules *rules, const char *path, uint64_t access)
{
    if (landlock_allow(rules, path, access) < 0)
        die_setup("cannot add the Landlock rule for %s", path);
}

/* Build the ruleset while we still have the identity that opened the jail's paths
 * (enforced later, once no-new-privs is set). rules->ruleset_fd < 0: no Landlock. */
static void build_landlock(struct jail *j, struct landlock_rules *rules_out)
{
    rules_out->ruleset_fd = -1;
    if (j->landlock_abi == 0)
        return; /* level full without Landlock: the namespaces keep their promises */
    struct landlock_rules rules;
    if (landlock_begin(&rules, j->landlock_abi) < 0)
        die_setup("cannot create the Landlock ruleset");
    if (j->level == LEVEL_FULL) {
        landlock_or_die(&rules, "/", LL_READ); /* the jail holds only what was bound */
        landlock_or_die(&rules, "/tmp", LL_WRITE);
    } else {
        for (size_t i = 0; i < j->nbinds; i++) {
            struct bind *b = &j->binds[i];
            if (b->kind == BIND_RO || b->kind == BIND_RO_TRY || b->kind == BIND_DEV)
                landlock_or_die(&rules, b->path, LL_FS_READ_FILE | LL_FS_READ_DIR);
        }
        landlock_or_die(&rules, j->private_tmp, LL_WRITE);
    }
    for (size_t i = 0; i < j->nbinds; i++)
        if (j->binds[i].kind == BIND_RW)
            landlock_or_die(&rules, j->binds[i].path, LL_WRITE);
    landlock_or_die(&rules, "/dev/null", LL_FS_READ_FILE | LL_FS_WRITE_FILE | LL_FS_TRUNCATE);
    landlock_or_die(&rules, j->exec_path, LL_FS_EXECUTE | LL_FS_READ_FILE);
    for (size_t i = 0; i < j->nexec; i++)
        landlock_or_die(&rules, j->exec_allow[i], LL_FS_EXECUTE | LL_FS_READ_FILE);
    *rules_out = rules;
}

/* Copy the exec path to a random address. The seccomp filter allows execve only
 * with this pointer, which stops existing once the command's image replaces ours. */
static const char *place_exec_path(const char *path)
{
    size_t len = strlen(path) + 1;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t size = (len + page - 1) / page * page;
    uint64_t r[2];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        die_setup("getrandom");
#if defined(__x86_64__)
    const uint64_t top = 1ull << 46;
#else
    const uint64_t top = 1ull << 38;
#endif
    const uint64_t bottom = 1ull << 32;
    char *area = MAP_FAILED;
    for (int tries = 0; tries < 16 && area == MAP_FAILED; tries++) {
        uintptr_t addr = (uintptr_t)(bottom + (r[0] % ((top - bottom) / page)) * page);
        area = mmap((void *)addr, size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        r[0] = r[0] * 6364136223846793005ull + 1442695040888963407ull;
    }
    if (area == MAP_FAILED)
        area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        die_setup("mmap");
    char *p = area + r[1] % (size - len + 1);
    memcpy(p, path, len);
    return p;
}

/* In the payload process, after fork: lock down, then exec. exec_fd is a
 * close-on-exec pipe: whatever fails before the exec is written there. */
__attribute__((noreturn))
static void payload_exec(struct jail *j, int exec_fd, pid_t expected_parent)
{
    report_fd = exec_fd;
    /* a. die with the process that supervises us */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        die_setup("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != expected_parent)
        _exit(EXIT_SETUP);
    /* b. a fresh process's signal state; at no-userns our own process group, which
     *    the seccomp filter keeps every descendant in */
    reset_signals();
    if (j->level == LEVEL_NO_USERNS && setpgid(0, 0) < 0)
        die_setup("setpgid");
    /* c. working directory and temp dir */
    if (j->chdir_to && chdir(j->chdir_to) < 0)
        die_setup("cannot change directory to %s", j->chdir_to);
    const char *tmp = j->level == LEVEL_FULL ? "/tmp" : j->private_tmp;
    if (setenv("TMPDIR", tmp, 1) < 0)
        die_setup("setenv");
    /* d. only stdin/out/err and the kept fds */
    close_other_fds(j, exec_fd);
    /* e. the Landlock ruleset, built with the identity that can open every path */
    struct landlock_rules rules;
    build_landlock(j, &rules);
    /* f. unprivileged identity, no capabilities */
    drop_identity(j);
    /* g. resource limits */
    set_limits(j);
    /* h. no new privileges (setuid bits, file capabilities) from here on */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die_setup("prctl(PR_SET_NO_NEW_PRIVS)");
    /* i. Landlock */
    if (rules.ruleset_fd >= 0 && landlock_enforce(&rules) < 0)
        die_setup("cannot enforce the Landlock ruleset");
    /* j. seccomp, last: from here on only the one execve below is possible */
    const char *path = place_exec_path(j->exec_path);
    if (install_seccomp(path, j->level == LEVEL_FULL) < 0)
        die_setup("cannot install the seccomp filter");
    execve(path, j->argv, environ);
    int err = errno;
    if (err == EACCES && j->real_root && j->level == LEVEL_NO_USERNS)
        fail("exec", EXIT_CANNOT_EXEC, err, "cannot execute %s as uid %u (at level no-userns "
             "the command runs as nobody on the host's files, which it must be able to reach)",
             j->exec_path, (unsigned)j->payload_uid);
    fail("exec", err == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC, err, "cannot execute %s",
         j->exec_path);
}

/* ---- 4. level full: the init process builds the filesystem ---------------------- */

static const char *relative(const char *path)
{
    return path + 1; /* "/usr/lib" -> "usr/lib", below the new root (our cwd) */
}

static unsigned long long bind_attrs(const struct bind *b)
{
    switch (b->kind) {
    case BIND_RW: return JAIL_MOUNT_ATTR_NOSUID | JAIL_MOUNT_ATTR_NODEV | JAIL_MOUNT_ATTR_NOEXEC;
    case BIND_DEV: return JAIL_MOUNT_ATTR_NOSUID | JAIL_MOUNT_ATTR_NOEXEC;
    default: return JAIL_MOUNT_ATTR_RDONLY | JAIL_MOUNT_ATTR_NOSUID | JAIL_MOUNT_ATTR_NODEV;
    }
}

/* Take a detached copy of every source before the new root covers anything. */
static void open_bind_sources(struct jail *j)
{
    for (size_t i = 0; i < j->nbinds; i++) {
        struct bind *b = &j->binds[i];
        if (b->kind == BIND_SYMLINK) {
            ssize_t n = readlink(b->path, b->link_target, sizeof b->link_target - 1);
            if (n < 0)
                die_setup("cannot read the symlink %s", b->path);
            b->link_target[n] = '\0';
            continue;
        }
        b->src_fd = open(b->path, O_PATH | O_CLOEXEC);
        if (b->src_fd < 0) {
            if (b->kind == BIND_RO_TRY && errno == ENOENT) {
                b->missing = true;
                continue;
            }
            die_setup("cannot open %s", b->path);
        }
        struct stat st;
        if (fstat(b->src_fd, &st) < 0)
            die_setup("cannot stat %s", b->path);
        b->is_dir = S_ISDIR(st.st_mode);
        /* New mount API (5.12+): recursive copy with the flags set on the whole tree. */
        b->tree_fd = sys_open_tree(b->src_fd, "", JAIL_OPEN_TREE_CLONE | O_CLOEXEC |
                                                      AT_EMPTY_PATH | AT_RECURSIVE);
        if (b->tree_fd < 0 && errno != ENOSYS)
            die_setup("cannot copy the mount of %s", b->path);
        if (b->tree_fd >= 0) {
            struct jail_mount_attr attr = {.attr_set = bind_attrs(b)};
            if (sys_mount_setattr(b->tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) == 0)
                continue;
            if (errno != ENOSYS)
                die_setup("cannot make the mount of %s read-only", b->path);
            /* 5.2-5.11: copy only the top mount and remount it after attaching. */
            close(b->tree_fd);
            b->tree_fd = sys_open_tree(b->src_fd, "", JAIL_OPEN_TREE_CLONE | O_CLOEXEC |
                                                          AT_EMPTY_PATH);
            if (b->tree_fd < 0)
                die_setup("cannot copy the mount of %s", b->path);
        }
        b->flags_pending = true;
    }
}

/* Old API: remount a bind with our flags, keeping the locked ones it inherited. */
static void remount_bind(const struct bind *b)
{
    struct statvfs sv;
    if (statvfs(relative(b->path), &sv) < 0)
        die_setup("cannot stat the mount of %s", b->path);
    unsigned long flags = MS_REMOUNT | MS_BIND;
    unsigned long long attrs = bind_attrs(b);
    if ((attrs & JAIL_MOUNT_ATTR_RDONLY) || (sv.f_flag & ST_RDONLY))
        flags |= MS_RDONLY;
    if ((attrs & JAIL_MOUNT_ATTR_NOSUID) || (sv.f_flag & ST_NOSUID))
        flags |= MS_NOSUID;
    if ((attrs & JAIL_MOUNT_ATTR_NODEV) || (sv.f_flag & ST_NODEV))
        flags |= MS_NODEV;
    if ((attrs & JAIL_MOUNT_ATTR_NOEXEC) || (sv.f_flag & ST_NOEXEC))
        flags |= MS_NOEXEC;
    flags |= sv.f_flag & (ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
    if (mount(NULL, relative(b->path), NULL, flags, NULL) < 0)
        die_setup("cannot make the mount of %s read-only", b->path);
}

static void make_mount_point(const struct bind *b)
{
    const char *rel = relative(b->path);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", rel);
    char *slash = strrchr(parent, '/');
    if (slash) {
        *slash = '\0';
        if (mkdir_p(parent, 0755) < 0)
            die_setup("cannot create %s in the jail", parent);
    }
    if (b->kind == BIND_SYMLINK) {
        if (symlink(b->link_target, rel) < 0 && errno != EEXIST)
            die_setup("cannot create the symlink %s in the jail", b->path);
        return;
    }
    if (b->is_dir) {
        if (mkdir(rel, 0755) < 0 && errno != EEXIST)
            die_setup("cannot create %s in the jail", b->path);
    } else {
        int fd = open(rel, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            die_setup("cannot create %s in the jail", b->path);
        close(fd);
    }
}

static void attach_bind(struct bind *b)
{
    if (b->missing)
        return;
    make_mount_point(b);
    if (b->kind == BIND_SYMLINK)
        return;
    if (b->tree_fd >= 0) {
        if (sys_move_mount(b->tree_fd, "", AT_FDCWD, relative(b->path),
                           JAIL_MOVE_MOUNT_F_EMPTY_PATH) < 0)
            die_setup("cannot bind %s", b->path);
        close(b->tree_fd);
    } else {
        char source[64];
        snprintf(source, sizeof source, "/proc/self/fd/%d", b->src_fd);
        if (mount(source, relative(b->path), NULL, MS_BIND, NULL) < 0)
            die_setup("cannot bind %s", b->path);
    }
    if (b->flags_pending)
        remount_bind(b);
    close(b->src_fd);
}

static void mount_proc(struct jail *j)
{
    if (mkdir("proc", 0555) < 0)
        die_setup("cannot create /proc in the jail");
    unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount("proc", "proc", "proc", flags, "subset=pid") == 0) {
        snprintf(j->init_features, sizeof j->init_features, "proc=subset");
    } else if (errno == EINVAL && mount("proc", "proc", "proc", flags, NULL) == 0) {
        snprintf(j->init_features, sizeof j->init_features, "proc=full"); /* kernel < 5.8 */
    } else if (errno == EPERM || errno == EACCES) {
        /* e.g. a container whose /proc has masked paths: run without /proc */
        snprintf(j->init_features, sizeof j->init_features, "proc=none");
    } else {
        die_setup("cannot mount /proc");
    }
}

static void build_filesystem(struct jail *j)
{
    /* a. nothing we mount may propagate back to the host */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        die_unavailable("cannot make the mount namespace private");
    /* b. grab every source (some live under /tmp, which the new root covers) */
    open_bind_sources(j);
    /* c. an empty tmpfs becomes the new root */
    const char *base = access("/tmp", F_OK) == 0 ? "/tmp" : "/mnt";
    if (mount("aisbom-jail", base, "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755,size=8m,nr_inodes=16384") < 0)
        die_unavailable("cannot mount a tmpfs for the jail's root");
    if (chdir(base) < 0)
        die_setup("cannot enter the jail's root");
    /* d. the private /tmp, then the binds (some may land inside /tmp) */
    if (mkdir("tmp", 0755) < 0)
        die_setup("cannot create /tmp in the jail");
    char tmp_options[64];
    snprintf(tmp_options, sizeof tmp_options, "mode=1777,size=%lld", j->tmp_size);
    if (mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, tmp_options) < 0)
        die_setup("cannot mount the jail's /tmp");
    if (mkdir("dev", 0755) < 0)
        die_setup("cannot create /dev in the jail");
    for (size_t i = 0; i < j->nbinds; i++)
        attach_bind(&j->binds[i]);
    /* e. /dev holds null, zero, urandom (bound above) and the usual fd links */
    static const char *const dev_links[][2] = {
        {"/proc/self/fd", "dev/fd"},       {"/proc/self/fd/0", "dev/stdin"},
        {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"},
    };
    for (size_t i = 0; i < sizeof dev_links / sizeof *dev_links; i++)
        if (symlink(dev_links[i][0], dev_links[i][1]) < 0)
            die_setup("cannot create /%s in the jail", dev_links[i][1]);
    /* f. /proc of the jail's own pid namespace */
    mount_proc(j);
    /* g. switch to the new root and drop the old one */
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        die_unavailable("pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        die_setup("cannot detach the host's root");
    if (chdir("/") < 0)
        die_setup("chdir /");
    /* h. the root itself is read-only: only /tmp and --rw dirs take writes */
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
        die_setup("cannot make the jail's root read-only");
}

/* Pid 1 of the jail: build it, start the payload, reap until the payload ends. */
__attribute__((noreturn))
static void jail_init(struct jail *j, int go_fd)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        die_setup("prctl(PR_SET_PDEATHSIG)");
    char go;
    if (read(go_fd, &go, 1) != 1)
        _exit(EXIT_SETUP); /* the supervisor died before mapping our uids */
    close(go_fd);
    close(j->sigfd);
    if (j->status_fd >= 0)
        close(j->status_fd);

    build_filesystem(j);
    if (sethostname("aisbom-jail", strlen("aisbom-jail")) < 0)
        die_unavailable("sethostname");

    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0)
        die_setup("pipe");
    pid_t payload = fork();
    if (payload < 0)
        die_setup("fork");
    if (payload == 0) {
        close(exec_pipe[0]);
        payload_exec(j, exec_pipe[1], 1);
    }
    close(exec_pipe[1]);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        die_setup("prctl(PR_SET_DUMPABLE)");

    /* Relay the exec outcome: an error line, or EOF when execve succeeded. */
    char buf[1300];
    ssize_t n, total = 0;
    while ((n = read(exec_pipe[0], buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        write_all(report_fd, buf, (size_t)n);
        total += n;
    }
    close(exec_pipe[0]);
    if (total == 0) {
        char line[128];
        int len = snprintf(line, sizeof line, "started %s\n", j->init_features);
        write_all(report_fd, line, (size_t)len);
    }
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid == payload) {
            char line[64];
            int len = snprintf(line, sizeof line, "status %d\n", status);
            write_all(report_fd, line, (size_t)len);
            _exit(0); /* the kernel now kills everything left in the pid namespace */
        }
        if (pid < 0 && errno != EINTR)
            die_setup("waitpid");
    }
}

/* ---- 5. the supervisor ---------------------------------------------------------- */

struct outcome {
    bool started, have_status, have_error, unavailable, stopping;
    int status, error_code, child_status;
};

static void kill_descendants(struct jail *j, struct outcome *o);

static void reap_child(struct jail *j, struct outcome *o, bool block, bool *reaped)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(j->level == LEVEL_FULL ? j->child : -1, &status, block ? 0 : WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            return;
        if (pid == j->child) {
            *reaped = true;
            o->child_status = status;
            if (j->level == LEVEL_NO_USERNS && !o->have_error) {
                o->have_status = true; /* the payload itself */
                o->status = status;
            }
            if (block)
                return;
        }
    }
}

/* Kill everything in the jail and wait until it is gone. */
static void stop_jail(struct jail *j, struct outcome *o, bool *reaped)
{
    o->stopping = true; /* what follows is our doing, not a failure to report */
    if (j->level == LEVEL_FULL) {
        if (!*reaped) {
            kill(j->child, SIGKILL); /* pid 1 gone: the kernel kills the namespace */
            reap_child(j, o, true, reaped);
        }
    } else {
        kill_descendants(j, o);
        *reaped = true;
    }
}

static void handle_line(struct jail *j, struct outcome *o, char *line)
{
    if (strncmp(line, "started", 7) == 0) {
        o->started = true;
        const char *extra = line[7] == ' ' ? line + 8 : "";
        emit(j, "started %s landlock=%d seccomp uid=%u%s%s%s%s", level_names[j->level],
             j->landlock_abi, (unsigned)j->payload_uid,
             j->level == LEVEL_FULL ? " namespaces" : "",
             j->landlock_abi >= 6 ? " scope-signal" : "", *extra ? " " : "", extra);
        return;
    }
    if (strncmp(line, "status ", 7) == 0) {
        o->have_status = true;
        o->status = atoi(line + 7);
        return;
    }
    if (strncmp(line, "error ", 6) == 0) {
        char kind[16] = "";
        int code = EXIT_SETUP, skip = 0;
        sscanf(line + 6, "%15s %d %n", kind, &code, &skip);
        if (strcmp(kind, "unavailable") == 0 && j->level == LEVEL_FULL && !o->started) {
            o->unavailable = true;
            snprintf(j->why_not_full, sizeof j->why_not_full, "%s", line + 6 + skip);
            return;
        }
        o->have_error = true;
        o->error_code = code;
        if (j->status_fd >= 0)
            emit(j, "%s", line);
        else
            dprintf(2, "aisbom-jail: %s\n", line + 6 + skip);
    }
}

/* Wait for the jail to end, enforcing the timeout. Returns the exit code. */
static int supervise(struct jail *j, int from_jail)
{
    struct outcome o = {0};
    bool eof = false, reaped = false;
    char buf[4096];
    size_t used = 0;
    while (!(eof && reaped)) {
        int wait_ms = -1;
        if (j->timeout_ms) {
            int64_t left = j->start_ms + j->timeout_ms - now_ms();
            wait_ms = left > 0 ? (int)(left > INT32_MAX ? INT32_MAX : left) : 0;
        }
        struct pollfd fds[2] = {{j->sigfd, POLLIN, 0}, {eof ? -1 : from_jail, POLLIN, 0}};
        int ready = poll(fds, 2, wait_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready < 0)
            die_setup("poll");
        if (ready == 0) {
            stop_jail(j, &o, &reaped);
            emit(j, "timeout");
            return EXIT_TIMEOUT;
        }
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(j->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGCHLD) {
                    reap_child(j, &o, false, &reaped);
                    continue;
                }
                stop_jail(j, &o, &reaped);
                emit(j, "terminated %u", si.ssi_signo);
                return 128 + (int)si.ssi_signo;
            }
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(from_jail, buf + used, sizeof buf - 1 - used);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                eof = true;
                if (j->level == LEVEL_NO_USERNS && !o.have_error && !o.started)
                    handle_line(j, &o, (char[]){"started"});
                continue;
            }
            used += (size_t)n;
            buf[used] = '\0';
            char *line = buf, *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = '\0';
                handle_line(j, &o, line);
                line = nl + 1;
            }
            used = strlen(line);
            memmove(buf, line, used + 1);
            if (used == sizeof buf - 1)
                used = 0; /* an over-long line: drop it */
        }
    }
    if (j->level == LEVEL_NO_USERNS)
        kill_descendants(j, &o); /* whatever the payload left running */
    if (o.unavailable)
        return JAIL_UNAVAILABLE;
    if (o.have_error)
        return o.error_code;
    if (!o.have_status) {
        /* init ended without saying how the payload did (killed from outside?) */
        int st = o.child_status;
        emit(j, "error setup %d the jail's init ended unexpectedly (%s %d)", EXIT_SETUP,
             WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        return EXIT_SETUP;
    }
    if (WIFSIGNALED(o.status)) {
        emit(j, "signal %d", WTERMSIG(o.status));
        return 128 + WTERMSIG(o.status);
    }
    emit(j, "exit %d", WEXITSTATUS(o.status));
    return WEXITSTATUS(o.status);
}

/* ---- 6. level full ---------------------------------------------------------------- */

/* Written by the supervisor, which is still in the parent user namespace. */
static int write_id_maps(struct jail *j, pid_t pid)
{
    char path[64], map[128];
    if (j->real_root) {
        /* root (setup) and nobody (the payload) keep their numbers */
        snprintf(map, sizeof map, "0 0 1\n%d %d 1\n", NOBODY_ID, NOBODY_ID);
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        if (write_file(path, map) < 0)
            return -1;
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        return write_file(path, map);
    }
    /* an unprivileged user may map only itself, and must give up setgroups first */
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    if (write_file(path, "deny") < 0 && errno != ENOENT)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)j->outer_uid, (unsigned)j->outer_uid);
    if (write_file(path, map) < 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    snprintf(map, sizeof map, "%u %u 1\n", (unsigned)j->outer_gid, (unsigned)j->outer_gid);
    return write_file(path, map);
}

static void note_unavailable(struct jail *j, int err, const char *what)
{
    snprintf(j->why_not_full, sizeof j->why_not_full, "%s: %s%s", what, strerror(err),
             errno_hint(err));
}

static int run_full_jail(struct jail *j)
{
    int go[2], up[2];
    if (pipe2(go, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0)
        die_setup("pipe");
    j->level = LEVEL_FULL;
    pid_t pid = sys_clone(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                          CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP);
    if (pid < 0 && !refused_by_policy(errno))
        die_setup("cannot create the jail's namespaces");
    if (pid < 0) {
        note_unavailable(j, errno, "cannot create user namespaces");
        close(go[0]);
        close(go[1]);
        close(up[0]);
        close(up[1]);
        return JAIL_UNAVAILABLE;
    }
    if (pid == 0) {
        close(go[1]);
        close(up[0]);
        report_fd = up[1];
        jail_init(j, go[0]);
    }
    close(go[0]);
    close(up[1]);
    j->child = pid;
    if (write_id_maps(j, pid) < 0) {
        int err = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        errno = err;
        if (!refused_by_policy(err))
            die_setup("cannot map uids into the user namespace");
        note_unavailable(j, err, "cannot map uids into the user namespace");
        close(go[1]);
        close(up[0]);
        return JAIL_UNAVAILABLE;
    }
    if (write(go[1], "g", 1) != 1)
        die_setup("cannot start the jail's init");
    close(go[1]);
    int code = supervise(j, up[0]);
    close(up[0]);
    return code;
}

/* ---- 7. level no-userns ------------------------------------------------------------- */

struct proc_entry {
    pid_t pid, ppid;
};

static size_t list_processes(struct proc_entry **out)
{
    size_t n = 0, cap = 256;
    struct proc_entry *procs = malloc(cap * sizeof *procs);
    DIR *proc = opendir("/proc");
    if (!procs || !proc) {
        if (proc)
            closedir(proc);
        *out = procs;
        return 0;
    }
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        char path[300], stat_line[512];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, stat_line, sizeof stat_line - 1);
        close(fd);
        if (len <= 0)
            continue;
        stat_line[len] = '\0';
        char *paren = strrchr(stat_line, ')'); /* the command name may hold ')' */
        int ppid;
        if (!paren || sscanf(paren + 1, " %*c %d", &ppid) != 1)
            continue;
        if (n == cap) {
            struct proc_entry *grown = realloc(procs, 2 * cap * sizeof *procs);
            if (!grown)
                break;
            procs = grown;
            cap *= 2;
        }
        procs[n++] = (struct proc_entry){atoi(entry->d_name), ppid};
    }
    closedir(proc);
    *out = procs;
    return n;
}

/* SIGKILL every process below the supervisor until none is left. As a child
 * subreaper the supervisor inherits every orphan, so nothing escapes the tree. */
static bool have_children(void)
{
    siginfo_t info;
    memset(&info, 0, sizeof info);
    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

static void kill_descendants(struct jail *j, struct outcome *o)
{
    for (;;) {
        /* One signal to the payload's process group ends every process in it: no
         * fork in the group completes past a pending group kill. Every child of ours
         * is in that group (the filter forbids leaving it), and an unreaped child
         * keeps the group's id from being reused: only then is the id still ours. */
        if (have_children())
            kill(-j->child, SIGKILL);
        /* Then the tree, for anything that might have got out of the group. */
        struct proc_entry *procs = NULL;
        size_t n = list_processes(&procs);
        pid_t *tree = malloc((n + 1) * sizeof *tree);
        char *in_tree = calloc(n + 1, 1);
        size_t ntree = 0;
        if (tree && in_tree) {
            tree[ntree++] = j->supervisor_pid;
            for (bool grew = true; grew;) {
                grew = false;
                for (size_t i = 0; i < n; i++)
                    for (size_t k = 0; !in_tree[i] && k < ntree; k++)
                        if (procs[i].ppid == tree[k]) {
                            in_tree[i] = 1;
                            tree[ntree++] = procs[i].pid;
                            grew = true;
                        }
            }
            for (size_t k = 1; k < ntree; k++)
                kill(tree[k], SIGKILL);
        }
        free(tree);
        free(in_tree);
        free(procs);
        int status;
        pid_t pid;
        bool blocking = false;
        for (;;) {
            pid = waitpid(-1, &status, blocking ? 0 : WNOHANG);
            if (pid < 0 && errno == EINTR)
                continue;
            if (pid == j->child && !o->have_status && !o->have_error) {
                o->have_status = true;
                o->status = status;
            }
            if (pid > 0)
                continue;
            if (pid < 0)
                return; /* ECHILD: nothing left */
            if (blocking)
                break;
            blocking = true; /* some are still dying: wait for one, then look again */
        }
    }
}

/* The payload has its own process group at no-userns; if we own the terminal's
 * foreground, hand it over (as a shell does for a job) so that the payload can read
 * the terminal and gets Ctrl-C. Returns the terminal fd, or -1. */
static int give_terminal(pid_t pgid)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (isatty(fd) && tcgetpgrp(fd) == getpgrp()) {
            signal(SIGTTOU, SIG_IGN); /* taking it back later, from the background */
            return tcsetpgrp(fd, pgid) == 0 ? fd : -1;
        }
    }
    return -1;
}

static int run_no_userns_jail(struct jail *j)
{
    j->level = LEVEL_NO_USERNS;
    if (j->landlock_abi < 6)
        fail("unavailable", EXIT_SETUP, 0,
             "the full jail cannot be built here (%s), and the no-userns level needs Landlock "
             "ABI 6 (Linux 6.12+) to keep the command from signalling other processes; this "
             "kernel has %s%d", j->why_not_full, j->landlock_abi ? "Landlock ABI " : "no Landlock, ABI ",
             j->landlock_abi);
    snprintf(j->private_tmp, sizeof j->private_tmp, "/tmp/aisbom-jail-XXXXXX");
    if (!mkdtemp(j->private_tmp))
        die_setup("cannot create a private temp dir in /tmp");
    if (j->real_root && chown(j->private_tmp, j->payload_uid, j->payload_gid) < 0) {
        int err = errno;
        rmdir(j->private_tmp);
        errno = err;
        die_setup("cannot hand the private temp dir to uid %u", (unsigned)j->payload_uid);
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        die_setup("prctl(PR_SET_CHILD_SUBREAPER)");
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0)
        die_setup("pipe");
    pid_t pid = sys_clone(0);
    if (pid < 0)
        die_setup("fork");
    if (pid == 0) {
        close(exec_pipe[0]);
        payload_exec(j, exec_pipe[1], j->supervisor_pid);
    }
    close(exec_pipe[1]);
    j->child = pid;
    setpgid(pid, pid); /* as the payload does itself: whichever runs first */
    int tty = give_terminal(pid);
    int code = supervise(j, exec_pipe[0]);
    close(exec_pipe[0]);
    if (tty >= 0)
        (void)tcsetpgrp(tty, getpgrp()); /* fails only if the terminal went away */
    remove_tree_at(AT_FDCWD, j->private_tmp, 0);
    return code;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    static struct jail j;
    parse_args(&j, argc, argv);          /* bad usage: exit 125 */
    keep_only_needed_fds(&j);            /* inherited fds never reach the jail */
    die_with_parent(&j);                 /* PR_SET_PDEATHSIG */
    block_signals(&j);                   /* SIGCHLD/SIGTERM/... through a signalfd */
    j.start_ms = now_ms();               /* the timeout counts from here */
    j.supervisor_pid = getpid();
    j.landlock_abi = landlock_abi();
    identify_caller(&j);                 /* real root runs the payload as nobody */

    int code = run_full_jail(&j);
    if (code != JAIL_UNAVAILABLE)
        return code;
    if (j.min_level == LEVEL_FULL)
        fail("unavailable", EXIT_SETUP, 0, "the full jail cannot be built here: %s",
             j.why_not_full);
    return run_no_userns_jail(&j);
}
