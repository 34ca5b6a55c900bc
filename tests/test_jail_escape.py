"""The escape suite: hostile payloads run through `aisbom sandbox` (the CLI).

Every attack runs as `python -m aisbom sandbox [opts] -- python attack.py NAME`
in each available mode:

  caller  root (payload runs as nobody) and, when the tests run as root, also the
          whole CLI as uid 65534; when not root, the current user only.
  level   full, and no-userns with user namespaces really disabled for the run
          (a Docker-like seccomp filter, tests/jail_payloads/harness.py).

Each test asserts the exact outcome of every attempt (errno names printed by the
payload), that nothing changed outside the jail, that the CLI (the parent)
survived, and that no process of the jail is left. test_canaries_are_real runs
the same payloads unsandboxed to prove the checks would catch a failure.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from procs import processes_mentioning

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the aisbom sandbox is Linux-only"
)

HERE = os.path.dirname(os.path.abspath(__file__))
PAYLOADS = os.path.join(HERE, "jail_payloads")
HARNESS = os.path.join(PAYLOADS, "harness.py")
ATTACK = os.path.join(PAYLOADS, "attack.py")
IS_ROOT = os.geteuid() == 0
NOBODY = 65534


@dataclass(frozen=True)
class Mode:
    caller: str  # "root", "nobody" (root drops the CLI to 65534) or "user"
    level: str  # "full" or "no-userns"

    @property
    def id(self) -> str:
        return f"{self.caller}-{self.level}"

    @property
    def payload_uid(self) -> int:
        return NOBODY if self.caller in ("root", "nobody") else os.getuid()

    @property
    def traversal_fixed(self) -> bool:
        # As root, anything that runs as nobody on the host needs /root/... reachable.
        return IS_ROOT and (self.caller == "nobody" or self.level == "no-userns")

    @property
    def full(self) -> bool:
        return self.level == "full"


def _modes() -> List[Mode]:
    callers = ["root", "nobody"] if IS_ROOT else ["user"]
    return [Mode(c, lvl) for lvl in ("full", "no-userns") for c in callers]


MODES = _modes()


def _mode_params() -> List[object]:
    params: List[object] = []
    for mode in MODES:
        marks = []
        if mode.level == "no-userns" and platform.machine() != "x86_64":
            marks.append(pytest.mark.skip(reason="the userns-denying harness is x86_64-only"))
        params.append(pytest.param(mode, id=mode.id, marks=marks))
    return params


@pytest.fixture(scope="session")
def jail_levels() -> Dict[str, str]:
    """Which levels this machine offers (probed once)."""
    from aisbom import jail

    found: Dict[str, str] = {}
    for level in jail.LEVELS:
        try:
            found[level] = jail.run(["/bin/true"], min_level=level, cwd="/").level
        except jail.JailUnavailable as e:
            found[level] = f"unavailable: {e}"
    return found


def landlock_abi() -> int:
    """The kernel's Landlock ABI (0 without Landlock)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint(1))
    return max(0, int(abi))


def skip_unless_level_possible(m: Mode, jail_levels: Dict[str, str]) -> None:
    if m.full and jail_levels.get("full") != "full":
        pytest.skip(f"the full jail is unavailable on this machine: {jail_levels.get('full')}")
    if not m.full and landlock_abi() < 6:
        pytest.skip(f"level no-userns needs Landlock ABI 6; this kernel has {landlock_abi()}")


@pytest.fixture(params=_mode_params())
def mode(request: pytest.FixtureRequest, jail_levels: Dict[str, str]) -> Mode:
    m: Mode = request.param
    skip_unless_level_possible(m, jail_levels)
    return m


class Arena:
    """A world-readable scratch tree: the jail's cwd, and things it must not touch."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="aisbom-escape-")
        os.chmod(self.base, 0o755)
        self.cwd = self._dir("cwd", 0o755)
        self.outside = self._dir("outside", 0o777)
        self.rw = self._dir("rw", 0o777)
        self.canary = "CANARY-" + uuid.uuid4().hex
        secret_dir = self._dir("secret", 0o755)
        self.secret = os.path.join(secret_dir, "secret.txt")
        self._file(self.secret, self.canary + "\n", 0o644)
        self.home = self._dir("home", 0o755)
        ssh = os.path.join(self.home, ".ssh")
        os.mkdir(ssh)
        os.chmod(ssh, 0o755)
        self._file(os.path.join(ssh, "id_ed25519"), self.canary + "\n", 0o644)
        self.payload = os.path.join(self.cwd, "attack.py")
        shutil.copy(ATTACK, self.payload)
        os.chmod(self.payload, 0o666)  # only the jail may stop writes to it

    def _dir(self, name: str, mode: int) -> str:
        path = os.path.join(self.base, name)
        os.mkdir(path)
        os.chmod(path, mode)
        return path

    @staticmethod
    def _file(path: str, content: str, mode: int) -> None:
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, mode)

    def snapshot(self) -> Dict[str, Tuple[int, int, bytes]]:
        """Every file and dir under base except rw/ (the one writable place)."""
        state: Dict[str, Tuple[int, int, bytes]] = {}
        for root, dirs, files in os.walk(self.base):
            if root.startswith(self.rw):
                continue
            for name in dirs + files:
                path = os.path.join(root, name)
                st = os.lstat(path)
                data = b""
                if stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        data = f.read()
                state[path] = (st.st_mode, st.st_size, data)
        return state

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def arena() -> Iterator[Arena]:
    a = Arena()
    try:
        yield a
    finally:
        a.cleanup()


def _traversal_paths(arena: Arena) -> List[str]:
    import aisbom

    return sorted({sys.prefix, sys.base_prefix, os.path.realpath(sys.executable),
                   os.path.dirname(os.path.abspath(aisbom.__file__)), arena.base})


def harness_prefix(mode: Mode, arena: Arena, deny: str = "clone") -> List[str]:
    options: List[str] = []
    if mode.traversal_fixed:
        for p in _traversal_paths(arena):
            options += ["--fix-traversal", p]
    if mode.caller == "nobody":
        options.append("--as-nobody")
    if mode.level == "no-userns":
        options += ["--deny-userns", deny]
    return [sys.executable, HARNESS] + options + ["--"] if options else []


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    result: Optional[dict]
    elapsed: float


def sandbox(
    mode: Mode,
    arena: Arena,
    attack: str,
    *,
    options: Sequence[str] = (),
    degraded_option: bool = True,
    deny: str = "clone",
    pass_fds: Sequence[int] = (),
    env: Optional[Dict[str, str]] = None,
    timeout: float = 60,
) -> Run:
    """Run attack.py NAME through the CLI in mode; check the parent and leftovers."""
    cli = [sys.executable, "-m", "aisbom", "sandbox", *options]
    if mode.level == "no-userns" and degraded_option:
        cli.append("--allow-degraded")
    cli += ["--", sys.executable, "attack.py", attack]
    full_env = dict(os.environ)
    full_env.update(
        HOME=arena.home,
        PYTHONDONTWRITEBYTECODE="1",
        ATTACK_SECRET=arena.secret,
        ATTACK_OUTSIDE=arena.outside,
        ATTACK_RW=arena.rw,
        ATTACK_PARENT_PID=str(os.getpid()),
        ATTACK_KILL_ALL="1" if mode.payload_uid != os.getuid() else "0",
    )
    full_env.update(env or {})
    start = time.monotonic()
    proc = subprocess.run(
        harness_prefix(mode, arena, deny) + cli,
        cwd=arena.cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        pass_fds=pass_fds,
    )
    elapsed = time.monotonic() - start
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
    # The parent survived: the CLI exited by itself (not killed by a signal) ...
    assert proc.returncode >= 0, f"the CLI was killed: {proc.returncode}\n{proc.stderr}"
    # ... no traceback escaped it, and nothing of the jail is left running.
    assert "Traceback" not in proc.stderr.split("RESULT")[0] or attack in ("memory",), proc.stderr
    assert processes_mentioning(arena.base) == []  # nothing left running from the arena
    return Run(proc.returncode, proc.stdout, proc.stderr, result, elapsed)


def by_level(mode: Mode, full: str, no_userns: str) -> str:
    return full if mode.full else no_userns


# ---- the attacks ----------------------------------------------------------------------


def test_network_connect_to_local_listener(mode: Mode, arena: Arena) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(5)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        run = sandbox(mode, arena, "network", env={
            "ATTACK_PORT": str(tcp.getsockname()[1]),
            "ATTACK_UDP_PORT": str(udp.getsockname()[1]),
        })
        assert run.returncode == 0, run.stderr
        assert run.result == {
            "tcp_connect": "EPERM",
            "udp_sendto": "EPERM",
            "tcp6_socket": "EPERM",
            "unix_socket": "EPERM",
            "netlink_socket": "EPERM",
            "unix_socketpair": "ok",
        }
        with pytest.raises(BlockingIOError):
            tcp.accept()  # the listener received no connection
        with pytest.raises(BlockingIOError):
            udp.recvfrom(100)  # and no datagram
    finally:
        tcp.close()
        udp.close()


def test_read_secret_outside_the_jail(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "read_secret")
    assert run.returncode == 0, run.stderr
    denied = by_level(mode, "ENOENT", "EACCES")
    assert run.result == {
        "secret_file": denied,
        "secret_dir": denied,
        "via_proc_root": denied,
        "via_proc_environ": denied,
    }
    assert arena.canary not in run.stdout + run.stderr


def test_read_ssh_keys_and_shadow(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "read_ssh")
    assert run.returncode == 0, run.stderr
    assert run.result is not None
    denied = by_level(mode, "ENOENT", "EACCES")
    assert run.result["home_ssh_key"] == denied
    assert run.result["home_ssh_dir"] == denied
    assert run.result["etc_shadow"] == denied
    if mode.full or mode.traversal_fixed:
        # not in the jail / /root replaced by the harness's tmpfs holding only .pyenv
        assert run.result["root_ssh_dir"] == "ENOENT"
    else:
        # the host's /root: refused by permissions or Landlock, or absent
        assert run.result["root_ssh_dir"] in ("EACCES", "ENOENT")
    assert arena.canary not in run.stdout + run.stderr


def test_write_outside_the_jail(mode: Mode, arena: Arena) -> None:
    before = arena.snapshot()
    run = sandbox(mode, arena, "write")
    assert run.returncode == 0, run.stderr
    assert run.result == {
        "cwd": by_level(mode, "EROFS", "EACCES"),
        "outside_dir": by_level(mode, "ENOENT", "EACCES"),
        "python_prefix": by_level(mode, "EROFS", "EACCES"),
        "append_to_payload": by_level(mode, "EROFS", "EACCES"),
        "private_tmp": "ok",
    }
    assert arena.snapshot() == before
    assert not os.path.exists(os.path.join(sys.prefix, "pwned.txt"))
    assert os.listdir(arena.rw) == []


def test_exec_a_shell(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "exec_shell")
    assert run.returncode == 0, run.stderr
    assert run.result == {"subprocess_sh": "EPERM", "execv_sh": "EPERM"}
    assert os.listdir(arena.outside) == []


def test_spawn_subprocesses(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "subprocess")
    assert run.returncode == 0, run.stderr
    assert run.result == {
        "subprocess_python": "EPERM",
        "os_system": 127 << 8,  # the shell could not be executed
        "posix_spawn": "EPERM",
        "fork_then_exec": "EPERM",
    }


@pytest.mark.host_exclusive  # counts every task of the jail's uid on the host
def test_fork_is_capped_by_nproc(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "fork_capped", options=["--nproc", "40"])
    assert run.returncode == 0, run.stderr
    assert run.result is not None
    assert run.result["fork"] == "EAGAIN"
    # 40 tasks for the jail's uid, the payload itself (and init, same uid) included
    assert 34 <= run.result["children"] <= 39
    # the sleepers were killed with the jail (checked in sandbox()), quickly
    assert run.elapsed < 20


def test_fork_bomb_ends_with_the_timeout(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "fork_bomb", options=["--nproc", "16", "--timeout", "1"])
    assert run.result == {"bomb": "started"}
    assert run.returncode == 124
    assert "timed out after 1 s" in run.stderr
    assert run.elapsed < 20


def test_daemonized_processes_die_with_the_jail(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "daemonize")
    assert run.returncode == 0, run.stderr
    # full: a new session inside the pid namespace is harmless (and the payload is then
    # a session leader, which setpgid refuses); no-userns: the filter keeps everyone in
    # the process group the supervisor kills
    assert run.result == {"setsid": by_level(mode, "ok", "EPERM"), "setpgid": "EPERM"}
    # and the double-forked sleeper is gone (checked by sandbox())


def test_allocate_far_past_the_memory_limit(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "memory", options=["--mem", "256M"])
    assert run.returncode == 0, run.stderr
    assert run.result is not None
    assert run.result["one_huge_block"] == "MemoryError"
    assert run.result["many_blocks"] == "MemoryError"
    assert 0 < run.result["allocated_mib"] <= 256
    assert run.result["memfd_8g"] == "EFBIG"  # RLIMIT_FSIZE defaults to --mem
    assert run.result["sysv_shm"] == "EPERM"


def test_spin_forever_hits_the_timeout(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "spin", options=["--timeout", "1"])
    assert run.result == {"spin": "started"}
    assert run.returncode == 124
    assert run.stderr.strip().splitlines()[-1] == (
        "aisbom sandbox: timed out after 1 s; the command and everything it started were killed"
    )
    assert 1.0 <= run.elapsed < 15


def test_ptrace_or_kill_the_parent(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "parent")
    assert run.returncode == 0, run.stderr
    assert run.result is not None
    expected = {
        "ptrace_attach": "EPERM",
        # full: the parent is not in the jail's pid namespace at all
        "kill_0": by_level(mode, "ESRCH", "EPERM"),
        "kill_9": by_level(mode, "ESRCH", "EPERM"),
        "kill_init": "EPERM",
        "kill_ppid": "EPERM",
        "proc_mem": by_level(mode, "ENOENT", "EACCES"),
    }
    if mode.payload_uid != os.getuid():
        # kill(-1): nothing to signal in the pid namespace; without one, every
        # target is refused by Landlock's signal scope (the call still returns 0)
        expected["kill_all"] = by_level(mode, "ESRCH", "ok")
    assert run.result == expected
    os.kill(os.getpid(), 0)  # and we are alive


def test_create_a_setuid_file(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "setuid", options=["--rw", arena.rw])
    assert run.returncode == 0, run.stderr
    assert run.result == {
        "open_suid_tmp": "EPERM",
        "open_suid_rw": "EPERM",
        "create_plain_rw": "ok",
        "chmod_suid_rw": "EPERM",
        "chmod_sgid_rw": "EPERM",
        "mknod_suid": "EPERM",
    }
    assert os.listdir(arena.rw) == ["plain"]
    assert os.stat(os.path.join(arena.rw, "plain")).st_mode & (stat.S_ISUID | stat.S_ISGID) == 0


def test_use_an_inherited_fd(mode: Mode, arena: Arena) -> None:
    fd = os.open(arena.secret, os.O_RDONLY)  # no O_CLOEXEC once made inheritable
    high = 77
    os.dup2(fd, high, inheritable=True)
    os.close(fd)
    try:
        run = sandbox(mode, arena, "inherited_fd", pass_fds=[high], env={
            "ATTACK_FD": str(high),
            "ATTACK_SECRET_INO": str(os.fstat(high).st_ino),
        })
    finally:
        os.close(high)
    assert run.returncode == 0, run.stderr
    assert run.result == {
        "fstat": "EBADF",
        "read": "EBADF",
        "proc_self_fd": "ENOENT",
        "leaked_fds": [],
    }
    assert arena.canary not in run.stdout + run.stderr


# ---- what the jail looks like ------------------------------------------------------------


def test_identity_limits_and_view(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "identity", options=["--mem", "1G"])
    assert run.returncode == 0, run.stderr
    r = run.result
    assert r is not None
    assert (r["uid"], r["gid"]) == (mode.payload_uid, NOBODY if mode.payload_uid == NOBODY else os.getgid())
    assert r["rlimit_core"] == 0
    assert r["rlimit_nofile"] == 1024
    assert r["rlimit_data"] == r["rlimit_fsize"] == 1 << 30
    assert r["python"] == [sys.prefix, sys.base_prefix, sys.version]
    if mode.full:
        assert r["read_proc_status"] == "ok"
        assert r["CapEff"] == r["CapPrm"] == r["CapInh"] == r["CapAmb"] == "0000000000000000"
        assert r["CapBnd"] == "0000000000000000"
        assert r["NoNewPrivs"] == "1"
        assert r["Seccomp"] == "2"
        assert r["dev"] == ["fd", "null", "stderr", "stdin", "stdout", "urandom", "zero"]
        assert r["hostname"] == "aisbom-jail"
        assert r["pid"] == 2  # pid 1 is the jail's init
        assert r["tmpdir"] == "/tmp"
    else:
        assert r["read_proc_status"] == "EACCES"  # Landlock: /proc is not on the list
        assert r["list_dev"] == "EACCES"
        assert r["tmpdir"].startswith("/tmp/aisbom-jail-")


def test_threads_work(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "threads")
    assert run.returncode == 0, run.stderr
    assert run.result == {"threads": list(range(8))}


@pytest.mark.host_exclusive  # lists every jail folder in the host's /tmp
def test_private_tmp_is_new_each_run_and_vanishes(mode: Mode, arena: Arena) -> None:
    before = {n for n in os.listdir("/tmp") if n.startswith("aisbom-jail-")}
    first = sandbox(mode, arena, "tmp_persist")
    second = sandbox(mode, arena, "tmp_persist")
    assert first.result is not None and second.result is not None
    assert first.result["write_marker"] == second.result["write_marker"] == "ok"
    assert first.result["marker_existed"] is False
    assert second.result["marker_existed"] is False
    assert not os.path.exists(os.path.join(first.result["tmpdir"], "marker")) or mode.full
    after = {n for n in os.listdir("/tmp") if n.startswith("aisbom-jail-")}
    assert after <= before


def test_rw_dir_is_writable_and_level_is_reported(mode: Mode, arena: Arena) -> None:
    run = sandbox(mode, arena, "rw_dir", options=["--rw", arena.rw, "--verbose"])
    assert run.returncode == 0, run.stderr
    assert run.result == {"write_rw": "ok"}
    with open(os.path.join(arena.rw, "out.txt")) as f:
        assert f.read() == "written in the jail\n"
    first = run.stderr.splitlines()[0]
    assert first.startswith(f"aisbom sandbox: level {mode.level} (")
    assert "landlock=" in first and "seccomp" in first
    assert ("namespaces" in first) == mode.full


# ---- the fallback ladder ---------------------------------------------------------------------


NO_USERNS = [p for p in _mode_params() if p.values[0].level == "no-userns"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", NO_USERNS)
@pytest.mark.parametrize("deny", ["clone", "mount"])
def test_without_userns_fails_closed_unless_degraded_is_accepted(
    mode: Mode, deny: str, arena: Arena, jail_levels: Dict[str, str]
) -> None:
    skip_unless_level_possible(mode, jail_levels)
    run = sandbox(mode, arena, "rw_dir", degraded_option=False, deny=deny,
                  options=["--rw", arena.rw])
    assert run.returncode == 125
    assert run.result is None and os.listdir(arena.rw) == []  # nothing ran
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("aisbom sandbox: cannot build the jail: the full jail cannot be built here: ")
    assert "--allow-degraded accepts the weaker no-userns level" in lines[0]
    # accepted explicitly: the weaker level runs, and says so
    run = sandbox(mode, arena, "rw_dir", deny=deny, options=["--rw", arena.rw, "--verbose"])
    assert run.returncode == 0
    assert run.result == {"write_rw": "ok"}
    assert run.stderr.startswith("aisbom sandbox: level no-userns (")


# ---- the checks above are real -------------------------------------------------------------------


def test_canaries_are_real(arena: Arena) -> None:
    """Unsandboxed, as the payload's uid, the same attacks succeed."""
    mode = MODES[0]
    prefix: List[str] = []
    if IS_ROOT:
        prefix = [sys.executable, HARNESS]
        for p in _traversal_paths(arena):
            prefix += ["--fix-traversal", p]
        prefix += ["--as-nobody", "--"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    env = dict(os.environ, HOME=arena.home, ATTACK_SECRET=arena.secret,
               ATTACK_OUTSIDE=arena.outside, ATTACK_RW=arena.rw, PYTHONDONTWRITEBYTECODE="1",
               ATTACK_PARENT_PID=str(os.getpid()), ATTACK_PORT=str(listener.getsockname()[1]),
               ATTACK_UDP_PORT="9")

    def unsandboxed(attack: str) -> dict:
        out = subprocess.run(prefix + [sys.executable, "attack.py", attack], cwd=arena.cwd,
                             env=env, capture_output=True, text=True, timeout=60)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])

    try:
        assert unsandboxed("read_secret")["secret_file"] == "ok"
        assert unsandboxed("read_ssh")["home_ssh_key"] == "ok"
        assert unsandboxed("write")["outside_dir"] == "ok"
        assert os.listdir(arena.outside) == ["pwned.txt"]
        assert unsandboxed("exec_shell") == {"subprocess_sh": "ok", "execv_sh": "ok"}
        assert sorted(os.listdir(arena.outside)) == ["pwned.txt", "sh.txt"]
        assert unsandboxed("network")["tcp_connect"] == "ok"
        conn, _ = listener.accept()
        assert conn.recv(10) == b"LEAK"
        conn.close()
    finally:
        listener.close()
    assert mode  # the suite's modes ran these same payloads in the jail
