"""Run a command in aisbom's sandbox (the ``aisbom-jail`` helper shipped in this package).

The parent never forks: :func:`spawn` starts the single-threaded C helper with
``os.posix_spawn``, handing it only stdin/stdout/stderr, a status pipe and the fds
listed in ``pass_fds``. The helper builds the jail (see docs/sandbox.md), runs the
command and reports on the status pipe; this module turns that into
:class:`JailResult` objects or :class:`JailError` exceptions.

Levels, strongest first:

``"full"``
    new user, mount, pid, net, ipc, uts and cgroup namespaces; a tmpfs root with
    read-only binds; Landlock; seccomp; rlimits; unprivileged uid.
``"no-userns"``
    no namespaces (user namespaces unavailable, e.g. Docker, Ubuntu's AppArmor
    restriction): Landlock restricts reads to the same paths, writes to a private
    temp dir; same seccomp filter, limits and identity drop. Used only when the
    caller passes ``min_level="no-userns"``.

Anything weaker is refused with :class:`JailUnavailable`; the sandbox never runs a
command unsandboxed.

Typical use (what ``safe_load`` does)::

    r, w = os.pipe()
    with jail.spawn([sys.executable, "-m", "aisbom._child", path],
                    ro_paths=[path], pass_fds=[w], timeout=60, memory="4G") as proc:
        os.close(w)
        data = read_all(r)          # while the child runs
        result = proc.wait()
    result.check()
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import selectors
import shutil
import signal
import site
import struct
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import IO, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from aisbom.errors import SandboxError

__all__ = [
    "LEVELS",
    "PIPE",
    "DEVNULL",
    "EXIT_TIMEOUT",
    "EXIT_SETUP",
    "EXIT_CANNOT_EXEC",
    "EXIT_NOT_FOUND",
    "JailError",
    "JailUnavailable",
    "JailSetupError",
    "JailExecError",
    "JailCommandError",
    "JailTimeout",
    "JailResult",
    "JailProcess",
    "spawn",
    "run",
    "parse_size",
    "helper_path",
    "default_ro_paths",
]

#: Levels from strongest to weakest.
LEVELS: Tuple[str, ...] = ("full", "no-userns")

#: Pass as stdin/stdout/stderr to get a pipe (``JailProcess.stdout`` etc.).
PIPE = -1
#: Pass as stdin/stdout/stderr to connect it to /dev/null.
DEVNULL = -3

EXIT_TIMEOUT = 124
EXIT_SETUP = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127

#: How long past the jail's own timeout the parent waits before killing the helper.
_WATCHDOG_GRACE = 5.0
#: How long terminate() waits for the helper before SIGKILL.
_TERMINATE_GRACE = 5.0

PathLike = Union[str, "os.PathLike[str]"]
StreamSpec = Union[None, int, IO[bytes], IO[str]]


# ---- errors ----------------------------------------------------------------------


class JailError(SandboxError):
    """The sandbox could not do what was asked. ``str(e)`` is one clear line."""


class JailUnavailable(JailError):
    """The requested level cannot be reached on this machine (or this is not Linux)."""


class JailSetupError(JailError):
    """The helper failed while building the jail (bad path, kernel refusal...)."""


class JailExecError(JailError):
    """The command could not be started inside the jail."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class JailCommandError(JailError):
    """Raised by :meth:`JailResult.check` when the command failed."""

    def __init__(self, message: str, result: "JailResult") -> None:
        super().__init__(message)
        self.result = result


class JailTimeout(JailCommandError):
    """Raised by :meth:`JailResult.check` when the jail's timeout killed the command."""


# ---- results ---------------------------------------------------------------------


@dataclass(frozen=True)
class JailResult:
    """How a jailed command ended.

    ``returncode`` follows :mod:`subprocess`: the exit status, or ``-N`` when a
    signal N ended it (``-9`` after a timeout). ``exit_code`` is the shell-style
    code ``aisbom sandbox`` exits with.
    """

    argv: Tuple[str, ...]
    returncode: int
    level: str
    features: Tuple[str, ...] = ()
    timed_out: bool = False
    terminated: bool = False
    stdout: Optional[bytes] = None
    stderr: Optional[bytes] = None
    duration: float = 0.0

    @property
    def signal(self) -> Optional[int]:
        """The signal that ended the command, if one did."""
        return -self.returncode if self.returncode < 0 else None

    @property
    def exit_code(self) -> int:
        """124 on timeout, 128+N when signal N ended it, else the exit status."""
        if self.timed_out:
            return EXIT_TIMEOUT
        if self.returncode < 0:
            return 128 - self.returncode
        return self.returncode

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def check(self) -> "JailResult":
        """Return self if the command succeeded, else raise JailTimeout/JailCommandError."""
        if self.timed_out:
            raise JailTimeout(f"{self.argv[0]} timed out in the sandbox and was killed", self)
        if self.terminated:
            raise JailCommandError(f"{self.argv[0]} was stopped in the sandbox", self)
        if self.returncode < 0:
            name = _signal_name(-self.returncode)
            raise JailCommandError(f"{self.argv[0]} was killed by {name} in the sandbox", self)
        if self.returncode != 0:
            raise JailCommandError(
                f"{self.argv[0]} exited with status {self.returncode} in the sandbox", self
            )
        return self


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


# ---- sizes -----------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: Union[int, str]) -> int:
    """``"512M"`` -> 536870912. Units K, M, G, T are powers of 1024; a bare number is bytes."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"size must be positive: {value}")
        return value
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"invalid size {value!r} (use e.g. 512M, 4G)")
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


# ---- what the jail sees ------------------------------------------------------------

#: System directories bound read-only (or recreated as the same symlink).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: The few files of /etc that programs need; nothing secret (no shadow, no ssh).
_ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
)


def helper_path() -> str:
    """Where the aisbom-jail executable lives (inside the installed package)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "aisbom-jail")


def _under(path: str, dirs: Sequence[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


def _visible(path: str, bound: Sequence[str], links: Sequence[str]) -> bool:
    """Is path visible in the jail, given the bound dirs and the recreated symlinks?"""
    if _under(path, bound):
        return True
    for link in links:
        if _under(path, [link]):
            return _under(os.path.realpath(link) + path[len(link):], bound)
    return False


@lru_cache(maxsize=1)
def default_ro_paths() -> Tuple[str, ...]:
    """The running interpreter, visible at the same paths inside the jail.

    sys.prefix, sys.base_prefix (and exec prefixes), the site-packages of the
    running environment, the interpreter's directory and this package. The jailed
    ``python`` is therefore the same interpreter as the parent, with the same
    packages. System libraries come from the system dirs (/usr, /lib...).
    """
    candidates: List[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    try:
        candidates += site.getsitepackages()
    except AttributeError:  # old virtualenv's site module
        pass
    if site.ENABLE_USER_SITE:
        user_site = site.getusersitepackages()
        if user_site in sys.path:
            candidates.append(user_site)
    if sys.executable:
        candidates.append(os.path.dirname(os.path.abspath(sys.executable)))
        candidates.append(os.path.dirname(os.path.realpath(sys.executable)))
    candidates.append(os.path.dirname(os.path.abspath(__file__)))
    paths: List[str] = []
    for cand in sorted({os.path.abspath(c) for c in candidates if c}, key=len):
        if not os.path.exists(cand) or cand == "/":
            continue
        if _under(cand, _SYSTEM_DIRS) or _under(cand, paths):
            continue
        paths.append(cand)
    return tuple(paths)


@lru_cache(maxsize=64)
def _elf_interpreter(path: str) -> Optional[str]:
    """PT_INTERP of an ELF executable (the dynamic loader), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return None
            end = "<" if head[5] == 1 else ">"
            if head[4] == 2:
                (phoff,) = struct.unpack(end + "Q", head[32:40])
                phentsize, phnum = struct.unpack(end + "HH", head[54:58])
            else:
                (phoff,) = struct.unpack(end + "I", head[28:32])
                phentsize, phnum = struct.unpack(end + "HH", head[42:46])
            for i in range(min(phnum, 256)):
                f.seek(phoff + i * phentsize)
                ph = f.read(phentsize)
                if len(ph) < 32 or struct.unpack(end + "I", ph[:4])[0] != 3:  # PT_INTERP
                    continue
                if head[4] == 2:
                    offset, size = struct.unpack(end + "Q", ph[8:16])[0], struct.unpack(
                        end + "Q", ph[32:40]
                    )[0]
                else:
                    offset, size = struct.unpack(end + "I", ph[4:8])[0], struct.unpack(
                        end + "I", ph[16:20]
                    )[0]
                f.seek(offset)
                return f.read(min(size, 4096)).rstrip(b"\0").decode("utf-8", "replace")
    except OSError:
        return None
    return None


def _shebang_interpreter(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    parts = head[2:].split(b"\n", 1)[0].split()
    return parts[0].decode("utf-8", "replace") if parts else None


def _exec_files(exe: str) -> List[str]:
    """Files the kernel must be allowed to execute to start exe (Landlock EXECUTE)."""
    files: List[str] = []
    script_interp = _shebang_interpreter(exe)
    if script_interp:
        if os.path.basename(script_interp) == "env":
            raise JailExecError(
                f"cannot execute {exe}: it is a script started through {script_interp}, which "
                f"would need a second exec (the jail allows one); give the interpreter itself",
                EXIT_CANNOT_EXEC,
            )
        files.append(script_interp)
    for binary in [exe] + files[:]:
        interp = _elf_interpreter(os.path.realpath(binary))
        if interp:
            files.append(interp)
    return files


def _resolve_command(cmd: str, env: Mapping[str, str], cwd: str) -> str:
    if "/" in cmd:
        path = os.path.normpath(os.path.join(cwd, cmd))
        if not os.path.exists(path):
            raise JailExecError(f"cannot execute {cmd}: no such file", EXIT_NOT_FOUND)
        return path
    found = shutil.which(cmd, path=env.get("PATH", os.defpath))
    if not found:
        raise JailExecError(f"{cmd}: command not found", EXIT_NOT_FOUND)
    return os.path.abspath(found)


# ---- the helper's command line --------------------------------------------------------


def _check_platform() -> str:
    if not sys.platform.startswith("linux"):
        raise JailUnavailable(
            f"the aisbom sandbox needs Linux (namespaces, Landlock, seccomp); "
            f"this is {sys.platform}: refusing to run unsandboxed"
        )
    helper = helper_path()
    if not os.access(helper, os.X_OK):
        raise JailUnavailable(
            f"the sandbox helper {helper} is missing: reinstall aisbom (pip install aisbom)"
        )
    return helper


def _build_helper_argv(
    helper: str,
    exe: str,
    argv: Sequence[str],
    *,
    ro_paths: Sequence[str],
    rw_paths: Sequence[str],
    cwd: str,
    timeout: Optional[float],
    memory: Optional[int],
    nproc: Optional[int],
    nofile: Optional[int],
    fsize: Optional[int],
    tmp_size: Optional[int],
    min_level: str,
    status_fd: int,
    pass_fds: Sequence[int],
    system_paths: bool,
) -> List[str]:
    args = [helper, "--status-fd", str(status_fd), "--parent-pid", str(os.getpid())]
    args += ["--min-level", min_level]
    binds: List[Tuple[str, str]] = []  # (option, path)
    bound: List[str] = []
    links: List[str] = []

    def add(option: str, path: str) -> None:
        binds.append((option, path))
        (links if option == "--symlink" else bound).append(path)

    def visible(path: str) -> bool:
        return _visible(path, bound, links)

    if system_paths:
        for d in _SYSTEM_DIRS:
            if os.path.islink(d):
                add("--symlink", d)
            elif os.path.isdir(d):
                add("--ro", d)
        for f in _ETC_FILES:
            add("--ro-try", f)
    for p in default_ro_paths():
        add("--ro", p)
    rw = [os.path.abspath(p) for p in rw_paths]
    for p in ro_paths:
        p = os.path.abspath(p)
        if not visible(p):
            add("--ro", p)
    # The working directory, read-only; "/" and "/tmp" exist in the jail already
    # (binding the host's /tmp would hide the private one).
    if cwd not in ("/", "/tmp") and not visible(cwd) and not _under(cwd, rw):
        add("--ro", cwd)
    for f in [exe] + _exec_files(exe):
        for path in (f, os.path.realpath(f)):
            if not visible(path) and not _under(path, rw):
                add("--ro", path)
    for p in rw:
        add("--rw", p)
    # Parents are mounted before what is inside them.
    binds.sort(key=lambda b: (b[1].count("/"), b[1]))
    for option, path in binds:
        args += [option, path]
    for f in _exec_files(exe):
        args += ["--exec", f]
    args += ["--chdir", cwd]
    if timeout is not None:
        args += ["--timeout-ms", str(max(1, math.ceil(timeout * 1000)))]
    if memory is not None:
        args += ["--mem", str(memory)]
    if nproc is not None:
        args += ["--nproc", str(nproc)]
    if nofile is not None:
        args += ["--nofile", str(nofile)]
    if fsize is not None:
        args += ["--fsize", str(fsize)]
    if tmp_size is not None:
        args += ["--tmp-size", str(tmp_size)]
    for fd in pass_fds:
        args += ["--keep-fd", str(fd)]
    args += ["--", exe]
    args += list(argv)
    return args


# ---- the running jail ------------------------------------------------------------------


def _fileno(stream: StreamSpec) -> Optional[int]:
    if stream is None:
        return None
    if isinstance(stream, int):
        return stream
    return stream.fileno()


class JailProcess:
    """A command running in the jail. Use as a context manager, or call wait().

    ``pid`` is the helper's pid; ``level`` and ``features`` say what the jail
    achieved. ``stdin``/``stdout``/``stderr`` are binary file objects when PIPE
    was asked for.
    """

    def __init__(
        self,
        pid: int,
        argv: Sequence[str],
        status_fd: int,
        watchdog: Optional[float],
        stdin: Optional[IO[bytes]],
        stdout: Optional[IO[bytes]],
        stderr: Optional[IO[bytes]],
    ) -> None:
        self.pid = pid
        self.argv: Tuple[str, ...] = tuple(argv)
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.level: str = ""
        self.features: Tuple[str, ...] = ()
        self._status_fd: Optional[int] = status_fd
        self._buffer = b""
        self._watchdog = watchdog  # monotonic deadline, or None
        self._started_at = time.monotonic()
        self._returncode: Optional[int] = None
        self._timed_out = False
        self._terminated = False
        self._error: Optional[Tuple[str, int, str]] = None
        self._helper_status: Optional[int] = None
        self._result: Optional[JailResult] = None
        self._stop_requested = False

    # status lines from the helper

    def _handle_line(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "started":
            parts = rest.split()
            self.level = parts[0] if parts else ""
            self.features = tuple(parts[1:])
        elif word == "exit":
            self._returncode = int(rest)
        elif word == "signal":
            self._returncode = -int(rest)
        elif word == "timeout":
            self._timed_out = True
            self._returncode = -signal.SIGKILL
        elif word == "terminated":  # the helper was told to stop by signal N
            self._terminated = True
            self._returncode = -int(rest) if rest.strip().isdigit() else -signal.SIGKILL
        elif word == "error":
            kind, _, rest = rest.partition(" ")
            code, _, message = rest.partition(" ")
            try:
                exit_code = int(code)
            except ValueError:
                exit_code, message = EXIT_SETUP, rest
            if self._error is None:
                self._error = (kind, exit_code, message)

    def _read_status(self, timeout: Optional[float]) -> bool:
        """Read what the helper said within timeout. False once the pipe is closed."""
        fd = self._status_fd
        if fd is None:
            return False
        if timeout is not None:
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                if not sel.select(max(0.0, timeout)):
                    return True
        data = os.read(fd, 65536)
        if not data:
            os.close(fd)
            self._status_fd = None
            if self._buffer:
                self._handle_line(self._buffer.decode("utf-8", "replace"))
                self._buffer = b""
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            self._handle_line(raw.decode("utf-8", "replace"))
        return True

    def _remaining(self) -> Optional[float]:
        return None if self._watchdog is None else self._watchdog - time.monotonic()

    def _wait_started(self) -> None:
        """Block until the command runs, or raise what prevented it."""
        try:
            while not self.level and self._error is None:
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    self._force_stop()
                    raise JailSetupError("the sandbox helper did not start in time")
                if not self._read_status(remaining):
                    break
        except BaseException:
            self._force_stop()
            raise
        if not self.level:
            self._reap()
            self._close_pipes()
            raise self._error_exception()

    def _error_exception(self) -> JailError:
        if self._error is None:
            return JailSetupError(
                f"the sandbox helper ended unexpectedly ({self._describe_helper_status()})"
            )
        kind, exit_code, message = self._error
        if kind == "unavailable":
            return JailUnavailable(message)
        if kind == "exec":
            return JailExecError(message, exit_code)
        return JailSetupError(message)

    def _describe_helper_status(self) -> str:
        status = self._helper_status
        if status is None:
            return "status unknown"
        if os.WIFSIGNALED(status):
            return f"killed by {_signal_name(os.WTERMSIG(status))}"
        return f"exit status {os.WEXITSTATUS(status)}"

    def _reap(self, block: bool = True) -> bool:
        if self._helper_status is not None:
            return True
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            except InterruptedError:
                continue
            except ChildProcessError:
                self._helper_status = 0
                return True
            if pid == 0:
                return False
            self._helper_status = status
            return True

    def _force_stop(self) -> None:
        """Stop the helper (and so the jail) and reap it. Never hangs."""
        if self._helper_status is not None:
            return
        self.terminate()
        deadline = time.monotonic() + _TERMINATE_GRACE
        while not self._reap(block=False):
            if time.monotonic() >= deadline:
                self.kill()
                self._reap()
                break
            time.sleep(0.005)
        if self._status_fd is not None:
            # Collect what it reported before dying (non-blocking: it is gone).
            while self._read_status(0):
                pass

    def _close_pipes(self) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None

    # public

    def poll(self) -> Optional[JailResult]:
        """The result if the jail has ended, else None."""
        if self._result is not None:
            return self._result
        while self._status_fd is not None and self._read_status(0):
            if self._returncode is not None or self._error is not None:
                break
        if self._status_fd is None and self._reap(block=False):
            return self._finish()
        return None

    def wait(self, timeout: Optional[float] = None) -> JailResult:
        """Wait for the jail to end and return its result.

        With ``timeout``, give up after that many seconds: the jail is stopped and
        the result says ``terminated``. The jail's own timeout (from spawn) is
        enforced by the helper; should the helper not honour it, the parent kills
        it a few seconds later. Raises JailError if the jail itself failed.
        """
        if self._result is not None:
            return self._result
        give_up = None if timeout is None else time.monotonic() + timeout
        try:
            while self._status_fd is not None:
                limits = [t for t in (self._watchdog, give_up) if t is not None]
                remaining = min(limits) - time.monotonic() if limits else None
                if remaining is not None and remaining <= 0:
                    if self._watchdog is not None and time.monotonic() >= self._watchdog:
                        self._timed_out = True
                    self._force_stop()
                    self._terminated = self._terminated or not self._timed_out
                    if self._returncode is None:
                        self._returncode = -signal.SIGKILL
                    break
                self._read_status(remaining)
            self._reap()
        except BaseException:
            self._force_stop()
            self._close_pipes()
            raise
        return self._finish()

    def _finish(self, stdout: Optional[bytes] = None, stderr: Optional[bytes] = None) -> JailResult:
        if self._result is not None:
            return self._result
        if self._returncode is None and self._stop_requested and self._error is None:
            # we killed the helper ourselves before it could report
            self._terminated = True
            self._returncode = -signal.SIGKILL
        if self._returncode is None:
            self._close_pipes()
            raise self._error_exception()
        self._result = JailResult(
            argv=self.argv,
            returncode=self._returncode,
            level=self.level,
            features=self.features,
            timed_out=self._timed_out,
            terminated=self._terminated,
            stdout=stdout,
            stderr=stderr,
            duration=time.monotonic() - self._started_at,
        )
        return self._result

    def communicate(self, input: Optional[bytes] = None) -> JailResult:
        """Send input, read stdout/stderr (those that are PIPEs) to EOF, then wait."""
        sel = selectors.DefaultSelector()
        chunks: Dict[int, List[bytes]] = {}
        pending = memoryview(input or b"")
        try:
            if self.stdin is not None:
                if pending:
                    os.set_blocking(self.stdin.fileno(), False)
                    sel.register(self.stdin.fileno(), selectors.EVENT_WRITE)
                else:
                    self.stdin.close()
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    chunks[stream.fileno()] = []
                    sel.register(stream.fileno(), selectors.EVENT_READ)
            while sel.get_map():
                remaining = self._remaining()
                if remaining is not None and remaining <= 0:
                    break  # wait() below stops the helper
                for key, _ in sel.select(remaining):
                    fd = key.fd
                    if key.events & selectors.EVENT_WRITE:
                        try:
                            written = os.write(fd, pending[:65536])
                        except BrokenPipeError:
                            written = len(pending)
                        pending = pending[written:]
                        if not pending:
                            sel.unregister(fd)
                            assert self.stdin is not None
                            self.stdin.close()
                    else:
                        data = os.read(fd, 65536)
                        if data:
                            chunks[fd].append(data)
                        else:
                            sel.unregister(fd)
        except BaseException:
            self._force_stop()
            self._close_pipes()
            raise
        finally:
            sel.close()
        result = self.wait()
        out = b"".join(chunks[self.stdout.fileno()]) if self.stdout is not None else None
        err = b"".join(chunks[self.stderr.fileno()]) if self.stderr is not None else None
        self._close_pipes()
        self._result = dataclasses.replace(result, stdout=out, stderr=err)
        return self._result

    def terminate(self) -> None:
        """Ask the helper to kill the jail and exit (it reports ``terminated``)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the helper; the jail dies with it (parent-death signal)."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        self._stop_requested = True
        if self._helper_status is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def __enter__(self) -> "JailProcess":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._helper_status is None:
            if exc_type is not None:
                self._force_stop()
            else:
                try:
                    self.wait()
                except JailError:
                    pass
        self._close_pipes()


def _inherited_fds_to_close(keep: Sequence[int]) -> List[int]:
    """Our fds that a spawned process would inherit (not close-on-exec)."""
    fds: List[int] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return fds
    for name in names:
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                fds.append(fd)
        except OSError:
            pass  # the listdir fd itself, already closed
    return fds


def spawn(
    argv: Sequence[str],
    *,
    ro_paths: Sequence[PathLike] = (),
    rw_paths: Sequence[PathLike] = (),
    timeout: Optional[float] = None,
    memory: Union[None, int, str] = None,
    nproc: Optional[int] = None,
    nofile: Optional[int] = None,
    fsize: Union[None, int, str] = None,
    tmp_size: Union[None, int, str] = None,
    pass_fds: Sequence[int] = (),
    stdin: StreamSpec = None,
    stdout: StreamSpec = None,
    stderr: StreamSpec = None,
    min_level: str = "full",
    cwd: Optional[PathLike] = None,
    env: Optional[Mapping[str, str]] = None,
    system_paths: bool = True,
) -> JailProcess:
    """Start argv in the jail and return once it runs (or raise why it cannot).

    ro_paths/rw_paths: extra paths visible read-only / read-write at the same
    place (the running Python, system libraries and cwd are always read-only).
    timeout: wall-clock seconds, enforced by the helper (the whole jail is killed).
    memory, fsize, tmp_size: bytes or "512M"-style sizes (RLIMIT_DATA, RLIMIT_FSIZE,
    size of the private /tmp). nproc: RLIMIT_NPROC (default 256) counted inside the
    jail; nofile: RLIMIT_NOFILE (default 1024).
    pass_fds: fds that stay open, at the same numbers, in the command.
    stdin/stdout/stderr: None (inherit), an fd, a file object, PIPE or DEVNULL.
    min_level: "full" (default) or "no-userns" to accept the weaker level.
    cwd: the command's working directory (default: ours); bound read-only.
    env: the command's environment (default: ours).

    Raises JailUnavailable (level not reachable, not Linux), JailSetupError,
    JailExecError (command not found / not executable).
    """
    helper = _check_platform()
    if not argv:
        raise ValueError("argv must not be empty")
    if min_level not in LEVELS:
        raise ValueError(f"min_level must be one of {LEVELS}, not {min_level!r}")
    argv = [os.fspath(a) for a in argv]
    work_dir = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    environment: Mapping[str, str] = os.environ if env is None else env
    exe = _resolve_command(argv[0], environment, work_dir)
    for fd in pass_fds:
        if fd <= 2:
            raise ValueError(f"pass_fds must be > 2 (use stdin/stdout/stderr): {fd}")
        os.fstat(fd)  # EBADF now rather than a confusing helper error

    to_close_in_parent: List[int] = []
    parent_ends: Dict[int, IO[bytes]] = {}
    child_std: Dict[int, int] = {}
    try:
        for target, spec in ((0, stdin), (1, stdout), (2, stderr)):
            if isinstance(spec, int) and spec == PIPE:
                r, w = os.pipe()
                child_fd, parent_fd = (r, w) if target == 0 else (w, r)
                parent_ends[target] = os.fdopen(parent_fd, "wb" if target == 0 else "rb", buffering=0)
                child_std[target] = child_fd
                to_close_in_parent.append(child_fd)
            elif isinstance(spec, int) and spec == DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                child_std[target] = fd
                to_close_in_parent.append(fd)
            else:
                given = _fileno(spec)
                if given is not None and given != target:
                    child_std[target] = given
        status_r, status_w = os.pipe()
        to_close_in_parent.append(status_w)

        helper_argv = _build_helper_argv(
            helper,
            exe,
            argv,
            ro_paths=[os.fspath(p) for p in ro_paths],
            rw_paths=[os.fspath(p) for p in rw_paths],
            cwd=work_dir,
            timeout=timeout,
            memory=None if memory is None else parse_size(memory),
            nproc=nproc,
            nofile=nofile,
            fsize=None if fsize is None else parse_size(fsize),
            tmp_size=None if tmp_size is None else parse_size(tmp_size),
            min_level=min_level,
            status_fd=status_w,
            pass_fds=list(pass_fds),
            system_paths=system_paths,
        )

        keep = set(pass_fds) | {status_w} | set(child_std.values())
        actions: List[Tuple[int, ...]] = []
        for fd in _inherited_fds_to_close(sorted(keep)):
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
        for target, fd in child_std.items():
            actions.append((os.POSIX_SPAWN_DUP2, fd, target))
        # dup2(fd, fd) clears close-on-exec in the child only (glibc >= 2.29).
        for fd in list(pass_fds) + [status_w]:
            actions.append((os.POSIX_SPAWN_DUP2, fd, fd))
        sigdef = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
        pid = os.posix_spawn(
            helper,
            helper_argv,
            environment,
            file_actions=actions,
            setsigdef=sigdef,
            setsigmask=(),
        )
    except BaseException:
        for stream in parent_ends.values():
            stream.close()
        for fd in to_close_in_parent:
            os.close(fd)
        if "status_r" in locals():
            os.close(status_r)
        raise
    for fd in to_close_in_parent:
        os.close(fd)
    watchdog = None if timeout is None else time.monotonic() + timeout + _WATCHDOG_GRACE
    proc = JailProcess(
        pid, argv, status_r, watchdog, parent_ends.get(0), parent_ends.get(1), parent_ends.get(2)
    )
    proc._wait_started()
    return proc


def run(
    argv: Sequence[str],
    *,
    input: Optional[bytes] = None,
    capture_output: bool = False,
    stdin: StreamSpec = None,
    stdout: StreamSpec = None,
    stderr: StreamSpec = None,
    **kwargs: object,
) -> JailResult:
    """Run argv in the jail to completion (see :func:`spawn` for the options).

    capture_output=True fills result.stdout/stderr; input is fed to stdin.
    Timeouts and signals are reported in the result (use result.check() to
    raise); failures to build the jail raise JailError.
    """
    if capture_output:
        stdout = stderr = PIPE
    if input is not None:
        stdin = PIPE
    proc = spawn(argv, stdin=stdin, stdout=stdout, stderr=stderr, **kwargs)  # type: ignore[arg-type]
    with proc:
        if proc.stdin is not None or proc.stdout is not None or proc.stderr is not None:
            return proc.communicate(input)
        return proc.wait()
