"""The typed Python API of the sandbox (aisbom.jail): results, errors, fds, cleanup."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import List

import pytest

from aisbom import jail
from procs import processes_mentioning

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the aisbom sandbox is Linux-only"
)
PY = sys.executable


def helper_children() -> List[int]:
    """Our own live children (the helper and anything reparented to us)."""
    found = []
    me = str(os.getpid())
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.append(int(name))
    return found


# ---- platform-independent ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [("512M", 512 << 20), ("4G", 4 << 30), ("1.5G", 3 << 29), ("100", 100), ("64k", 64 << 10),
     ("2GiB", 2 << 30), (" 8 MB ", 8 << 20), (4096, 4096)],
)
def test_parse_size(text: object, expected: int) -> None:
    assert jail.parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "M", "12Q", "-1G", "0", "1.2.3G", 0, -5])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        jail.parse_size(bad)  # type: ignore[arg-type]


def test_non_linux_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(jail.JailUnavailable, match="needs Linux.*this is darwin"):
        jail.run(["true"])


def test_jail_errors_are_aisbom_errors() -> None:
    from aisbom.errors import AisbomError, SandboxError

    for cls in (jail.JailUnavailable, jail.JailSetupError, jail.JailExecError,
                jail.JailCommandError, jail.JailTimeout):
        assert issubclass(cls, jail.JailError)
        assert issubclass(cls, SandboxError) and issubclass(cls, AisbomError)


def test_result_exit_codes() -> None:
    r = jail.JailResult(argv=("x",), returncode=-9, level="full")
    assert (r.signal, r.exit_code, r.ok) == (9, 137, False)
    with pytest.raises(jail.JailCommandError, match="killed by SIGKILL"):
        r.check()
    t = jail.JailResult(argv=("x",), returncode=-9, level="full", timed_out=True)
    assert t.exit_code == 124
    with pytest.raises(jail.JailTimeout):
        t.check()
    ok = jail.JailResult(argv=("x",), returncode=0, level="full")
    assert ok.check() is ok


# ---- Linux ------------------------------------------------------------------------------


@linux_only
def test_run_captures_output_and_uses_the_same_python() -> None:
    code = "import sys; print(sys.prefix, sys.base_prefix, sys.version_info[:3]); print('err', file=sys.stderr)"
    r = jail.run([PY, "-c", code], capture_output=True)
    assert r.returncode == 0 and r.ok
    assert r.level == "full"
    assert "seccomp" in r.features and any(f.startswith("landlock=") for f in r.features)
    assert r.stdout == f"{sys.prefix} {sys.base_prefix} {tuple(sys.version_info[:3])}\n".encode()
    assert r.stderr == b"err\n"


@linux_only
def test_input_env_and_cwd(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("cwd")
    os.chmod(work, 0o755)
    (work / "data.txt").write_text("from the cwd\n")
    os.chmod(work / "data.txt", 0o644)
    code = "import os,sys; print(sys.stdin.read().upper(), os.environ['ONLY'], open('data.txt').read(), end='')"
    r = jail.run([PY, "-c", code], input=b"hello", capture_output=True, cwd=str(work),
                 env={"ONLY": "this", "PATH": "/usr/bin"})
    assert r.stdout == b"HELLO this from the cwd\n"


@linux_only
def test_exit_status_and_signals() -> None:
    assert jail.run([PY, "-c", "import sys; sys.exit(7)"]).returncode == 7
    r = jail.run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert r.returncode == -signal.SIGTERM and r.exit_code == 143


@linux_only
def test_timeout_is_a_result_and_kills_everything() -> None:
    marker = f"jailtimeout{os.getpid()}x"
    code = f"import os, time; os.fork(); os.fork(); time.sleep(60)  # {marker}"
    start = time.monotonic()
    r = jail.run([PY, "-c", code], timeout=0.5)
    assert r.timed_out and r.exit_code == 124 and r.returncode == -signal.SIGKILL
    assert time.monotonic() - start < 10
    assert processes_mentioning(marker) == []
    with pytest.raises(jail.JailTimeout, match="timed out"):
        r.check()


@linux_only
def test_pass_fds_reach_the_command_and_nothing_else_does() -> None:
    r_fd, w_fd = os.pipe()
    stray = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(stray, True)
    try:
        code = (
            f"import os; os.write({w_fd}, b'through the pipe');"
            f"print(sorted(int(n) for n in os.listdir('/proc/self/fd')))"
        )
        with jail.spawn([PY, "-c", code], pass_fds=[w_fd], stdout=jail.PIPE) as proc:
            os.close(w_fd)
            assert os.read(r_fd, 100) == b"through the pipe"
            result = proc.communicate()
        assert result.returncode == 0
        fds = eval(result.stdout)  # the listing: stdin/out/err, the pipe, the listdir fd
        assert w_fd in fds and stray not in fds and len(fds) == 5
    finally:
        os.close(r_fd)
        os.close(stray)


@linux_only
def test_command_not_found_and_not_executable(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(jail.JailExecError, match="no-such-command: command not found") as e:
        jail.run(["no-such-command"])
    assert e.value.exit_code == 127
    d = tmp_path_factory.mktemp("noexec")
    os.chmod(d, 0o755)
    script = d / "script.txt"
    script.write_text("not a program\n")
    os.chmod(script, 0o644)
    with pytest.raises(jail.JailExecError, match="cannot execute") as e:
        jail.run([str(script)])
    assert e.value.exit_code == 126
    wrapper = d / "wrapper"
    wrapper.write_text("#!/usr/bin/env python3\nprint(1)\n")
    os.chmod(wrapper, 0o755)
    with pytest.raises(jail.JailExecError, match="started through /usr/bin/env") as e:
        jail.run([str(wrapper)])
    assert e.value.exit_code == 126


@linux_only
def test_script_with_a_direct_interpreter_runs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """#!/bin/sh is executed by the kernel within the one allowed execve."""
    d = tmp_path_factory.mktemp("script")
    os.chmod(d, 0o755)
    script = d / "hello.sh"
    script.write_text("#!/bin/sh\necho \"hello $1\"\nls /bin/ls > /dev/null 2>&1 || echo no-exec\n")
    os.chmod(script, 0o755)
    r = jail.run([str(script), "jail"], capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello jail\nno-exec\n"  # the shell cannot start ls


@linux_only
def test_missing_path_is_a_setup_error() -> None:
    with pytest.raises(jail.JailSetupError, match="cannot open /no/such/path"):
        jail.run(["/bin/true"], ro_paths=["/no/such/path"])


@linux_only
def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_level"):
        jail.run(["true"], min_level="none")
    with pytest.raises(ValueError):
        jail.run([])
    with pytest.raises(ValueError, match="pass_fds"):
        jail.run(["true"], pass_fds=[1])
    with pytest.raises(ValueError):
        jail.run(["true"], memory="lots")


@linux_only
@pytest.mark.parametrize("how", ["kill", "terminate", "exit_with_error", "wait_timeout"])
def test_stopping_the_helper_leaves_nothing_behind(how: str) -> None:
    marker = f"jailstop{how}{os.getpid()}"
    code = f"import os, time; print('up', flush=True); os.fork(); os.fork(); time.sleep(60)  # {marker}"
    start = time.monotonic()
    if how == "exit_with_error":
        with pytest.raises(RuntimeError):
            with jail.spawn([PY, "-c", code], stdout=jail.PIPE) as proc:
                assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
                raise RuntimeError("caller failed")
    else:
        proc = jail.spawn([PY, "-c", code], stdout=jail.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        if how == "kill":
            proc.kill()  # SIGKILL to the helper: the jail dies by its parent-death signal
            result = proc.wait()
            assert result.terminated and result.returncode == -signal.SIGKILL
        elif how == "terminate":
            proc.terminate()
            result = proc.wait()
            assert result.terminated and result.exit_code == 128 + signal.SIGTERM
        else:
            result = proc.wait(timeout=0.5)
            assert result.terminated
        with pytest.raises(jail.JailCommandError, match="was stopped"):
            result.check()
    deadline = time.monotonic() + 5
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_mentioning(marker) == []
    assert helper_children() == []
    assert time.monotonic() - start < 10


@linux_only
def test_parent_death_kills_the_jail(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A parent that dies abruptly (SIGKILL) takes the jail with it."""
    marker = f"jailorphan{os.getpid()}"
    parent_code = (
        "import sys; from aisbom import jail;"
        f"p = jail.spawn([sys.executable, '-c', 'import time; time.sleep(60)  # {marker}'], stdout=jail.PIPE);"
        "print('spawned', flush=True); import time; time.sleep(60)"
    )
    parent = subprocess.Popen([PY, "-c", parent_code], stdout=subprocess.PIPE)
    assert parent.stdout is not None and parent.stdout.readline() == b"spawned\n"
    assert processes_mentioning(marker) != []
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_mentioning(marker) == []


@linux_only
def test_spawn_from_many_threads_at_once() -> None:
    """The parent is multi-threaded (like torch): posix_spawn, never fork."""
    results: List[bytes] = []
    errors: List[BaseException] = []

    def one(i: int) -> None:
        try:
            results.append(jail.run([PY, "-c", f"print({i})"], capture_output=True).stdout or b"")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [f"{i}\n".encode() for i in range(6)]


@linux_only
def test_helper_builds_without_warnings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """csrc/jail.c compiles with -Wall -Wextra -Werror (the project's rule)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = os.path.join(root, "csrc", "jail.c")
    if not os.path.exists(source) or not os.path.exists("/usr/bin/cc"):
        pytest.skip("no C source or compiler here (installed package)")
    out = tmp_path_factory.mktemp("build") / "aisbom-jail"
    proc = subprocess.run(
        ["cc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), source],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
