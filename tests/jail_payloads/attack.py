"""Escape attempts, run inside the jail by tests/test_jail_escape.py.

    python attack.py NAME

Each attack tries something the jail must stop and prints one JSON line,
RESULT {...}, naming the outcome of every attempt: "ok" (it worked), an errno
name such as "EPERM", or an exception name. The test asserts the exact outcome.
Parameters come from environment variables set by the test (ATTACK_*).
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict

RESULT: Dict[str, Any] = {}


def outcome(name: str, attempt: Callable[[], Any]) -> Any:
    try:
        value = attempt()
    except OSError as e:
        RESULT[name] = errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__
        return None
    except Exception as e:  # noqa: BLE001 - the name is the outcome
        RESULT[name] = type(e).__name__
        return None
    RESULT[name] = "ok"
    return value


def env(name: str) -> str:
    return os.environ["ATTACK_" + name]


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def write(path: str, data: str = "pwned\n", mode: str = "w") -> None:
    with open(path, mode) as f:
        f.write(data)


# ---- the attacks -------------------------------------------------------------------


def attack_network() -> None:
    port = int(env("PORT"))
    outcome("tcp_connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=2).sendall(b"LEAK"))
    outcome("udp_sendto", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"LEAK", ("127.0.0.1", int(env("UDP_PORT")))))
    outcome("tcp6_socket", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
    outcome("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    outcome("netlink_socket", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
    # An AF_UNIX socketpair is allowed: it cannot reach anything outside.
    outcome("unix_socketpair", lambda: socket.socketpair())


def attack_read_secret() -> None:
    secret = env("SECRET")
    outcome("secret_file", lambda: read(secret))
    outcome("secret_dir", lambda: os.listdir(os.path.dirname(secret)))
    parent = env("PARENT_PID")
    outcome("via_proc_root", lambda: read(f"/proc/{parent}/root{secret}"))
    outcome("via_proc_environ", lambda: read(f"/proc/{parent}/environ"))


def attack_read_ssh() -> None:
    outcome("home_ssh_key", lambda: read(os.path.expanduser("~/.ssh/id_ed25519")))
    outcome("home_ssh_dir", lambda: os.listdir(os.path.expanduser("~/.ssh")))
    outcome("root_ssh_dir", lambda: os.listdir("/root/.ssh"))
    outcome("etc_shadow", lambda: read("/etc/shadow"))


def attack_write() -> None:
    outcome("cwd", lambda: write("pwned.txt"))
    outcome("outside_dir", lambda: write(os.path.join(env("OUTSIDE"), "pwned.txt")))
    outcome("python_prefix", lambda: write(os.path.join(sys.prefix, "pwned.txt")))
    outcome("append_to_payload", lambda: write(os.path.abspath(__file__), "# pwned\n", "a"))
    outcome("private_tmp", lambda: write(os.path.join(tempfile.gettempdir(), "ok.txt")))


def fork_exec(path: str, argv: list) -> None:
    """execv in a forked child; raise the child's exec error, if any."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(path, argv)
        except OSError as e:
            os._exit(100 + e.errno)
        os._exit(99)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code >= 100:
        raise OSError(code - 100, "exec in child")
    if code != 0:
        raise RuntimeError(f"child exited {code}")


def attack_exec_shell() -> None:
    outcome("subprocess_sh", lambda: subprocess.run(["/bin/sh", "-c", f"echo pwned > {env('OUTSIDE')}/sh.txt"]))
    outcome("execv_sh", lambda: fork_exec("/bin/sh", ["sh", "-c", "true"]))


def attack_subprocess() -> None:
    outcome("subprocess_python", lambda: subprocess.run([sys.executable, "-c", "print(1)"]))
    RESULT["os_system"] = os.system("true")
    outcome("posix_spawn", lambda: os.posix_spawn(sys.executable, [sys.executable, "-c", "1"], os.environ))
    outcome("fork_then_exec", lambda: fork_exec(sys.executable, [sys.executable, "-c", "1"]))


def attack_fork_capped() -> None:
    """Fork sleepers until the kernel refuses; report how many fit."""
    children = 0
    try:
        while children < 100000:
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children += 1
    except OSError as e:
        RESULT["fork"] = errno.errorcode[e.errno]
    RESULT["children"] = children
    # Exit leaving the sleepers behind: the jail must kill them.


def attack_fork_bomb() -> None:
    """A real fork bomb: every process forks forever. Only the timeout ends it."""
    print("RESULT " + json.dumps({"bomb": "started"}), flush=True)
    while True:
        try:
            os.fork()
        except OSError:
            pass


def attack_daemonize() -> None:
    """Leave the jail's process group, then leave a detached sleeper behind."""
    outcome("setsid", os.setsid)
    outcome("setpgid", lambda: os.setpgid(0, 0))
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
        except OSError:
            pass
        if os.fork() == 0:
            time.sleep(60)
        os._exit(0)
    os.waitpid(pid, 0)


def attack_memory() -> None:
    outcome("one_huge_block", lambda: bytearray(8 << 30))
    chunks = []

    def grow() -> None:
        while len(chunks) < 100000:
            chunks.append(bytearray(16 << 20))

    outcome("many_blocks", grow)
    RESULT["allocated_mib"] = 16 * len(chunks)
    chunks.clear()
    # Memory that RLIMIT_DATA does not count: a big memfd, SysV shared memory.
    outcome("memfd_8g", lambda: os.ftruncate(os.memfd_create("big"), 8 << 30))
    libc = ctypes.CDLL(None, use_errno=True)

    def shmget() -> None:
        if libc.shmget(0, ctypes.c_size_t(1 << 30), 0o1600) < 0:  # IPC_PRIVATE, IPC_CREAT
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    outcome("sysv_shm", shmget)


def attack_spin() -> None:
    print("RESULT " + json.dumps({"spin": "started"}), flush=True)
    while True:
        pass


def attack_parent() -> None:
    parent = int(env("PARENT_PID"))
    libc = ctypes.CDLL(None, use_errno=True)

    def ptrace_attach() -> None:
        if libc.ptrace(16, parent, None, None) != 0:  # PTRACE_ATTACH
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    outcome("ptrace_attach", ptrace_attach)
    outcome("kill_0", lambda: os.kill(parent, 0))
    outcome("kill_9", lambda: os.kill(parent, signal.SIGKILL))
    outcome("kill_init", lambda: os.kill(1, signal.SIGKILL))
    outcome("kill_ppid", lambda: os.kill(os.getppid(), signal.SIGKILL))
    if os.environ.get("ATTACK_KILL_ALL") == "1":
        outcome("kill_all", lambda: os.kill(-1, signal.SIGKILL))
    outcome("proc_mem", lambda: read(f"/proc/{parent}/mem"))


def attack_setuid() -> None:
    rw = env("RW")
    outcome("open_suid_tmp", lambda: os.close(os.open("/tmp/suid", os.O_CREAT | os.O_WRONLY, 0o4755)))
    outcome("open_suid_rw", lambda: os.close(os.open(os.path.join(rw, "suid"), os.O_CREAT | os.O_WRONLY, 0o4755)))
    plain = os.path.join(rw, "plain")
    outcome("create_plain_rw", lambda: write(plain))
    outcome("chmod_suid_rw", lambda: os.chmod(plain, 0o4755))
    outcome("chmod_sgid_rw", lambda: os.chmod(plain, 0o2755))
    outcome("mknod_suid", lambda: os.mknod(os.path.join(rw, "node"), 0o4755 | 0o100000))


def attack_inherited_fd() -> None:
    fd = int(env("FD"))
    outcome("fstat", lambda: os.fstat(fd))
    outcome("read", lambda: os.read(fd, 100))
    outcome("proc_self_fd", lambda: read(f"/proc/self/fd/{fd}"))
    # Nothing open in this process may be the secret file, whatever its number.
    secret_ino = int(env("SECRET_INO"))
    leaked = []
    for candidate in range(1024):
        try:
            if os.fstat(candidate).st_ino == secret_ino:
                leaked.append(candidate)
        except OSError:
            pass
    RESULT["leaked_fds"] = leaked


def attack_threads() -> None:
    """Not an attack: threads must work (clone3 gets ENOSYS, glibc uses clone)."""
    import threading

    out = []
    threads = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    RESULT["threads"] = sorted(out)


def attack_identity() -> None:
    """Not an attack: what the jail looks like from inside."""
    import resource

    RESULT["uid"] = os.getuid()
    RESULT["gid"] = os.getgid()
    status = outcome("read_proc_status", lambda: read("/proc/self/status")) or ""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for key in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd", "NoNewPrivs", "Seccomp"):
        RESULT[key] = fields.get(key, "").strip()
    RESULT["dev"] = outcome("list_dev", lambda: sorted(os.listdir("/dev")))
    RESULT["hostname"] = socket.gethostname()
    RESULT["pid"] = os.getpid()
    RESULT["tmpdir"] = os.environ.get("TMPDIR")
    RESULT["rlimit_core"] = resource.getrlimit(resource.RLIMIT_CORE)[1]
    RESULT["rlimit_nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    RESULT["rlimit_data"] = resource.getrlimit(resource.RLIMIT_DATA)[1]
    RESULT["rlimit_fsize"] = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    RESULT["python"] = [sys.prefix, sys.base_prefix, sys.version]


def attack_tmp_persist() -> None:
    """Not an attack: is the private temp dir new for every run?"""
    marker = os.path.join(tempfile.gettempdir(), "marker")
    RESULT["marker_existed"] = os.path.exists(marker)
    outcome("write_marker", lambda: write(marker))
    RESULT["tmpdir"] = tempfile.gettempdir()


def attack_rw_dir() -> None:
    """Not an attack: --rw makes a directory writable."""
    outcome("write_rw", lambda: write(os.path.join(env("RW"), "out.txt"), "written in the jail\n"))


def main() -> None:
    name = sys.argv[1]
    globals()["attack_" + name]()
    print("RESULT " + json.dumps(RESULT, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
