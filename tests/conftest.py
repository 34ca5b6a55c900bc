"""Shared fixtures for the scanner's behavioural tests.

Malicious samples are built by the tests from bytes (tests/asm.py). Every
payload only ever creates a *canary* file in the test's own temp folder, and
the `canary` fixture checks after each test that the file does not exist: the
scanner must never run anything it reads.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import pytest

# Make `import asm` work whatever pytest's import mode is.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import asm  # noqa: E402

REPO_ROOT = os.path.dirname(_HERE)
CORPUS_DIR = os.path.join(REPO_ROOT, "..", "shared", "corpus", "picklescan")


@dataclass
class Canary:
    """A file that exists only if a payload ran."""

    path: Path

    @property
    def shell(self) -> str:
        return asm.shell_touch(str(self.path))

    def assert_absent(self) -> None:
        assert not self.path.exists(), f"a payload ran: the canary {self.path} was created"

    # Complete payload pickles, each of which would only create the canary.
    def os_system(self, module: str = "os", proto: int = 2) -> bytes:
        return asm.os_system(str(self.path), module=module, proto=proto)

    def builtins_open(self, proto: int = 2) -> bytes:
        return asm.builtins_open(str(self.path), proto=proto)

    def subprocess_run(self, proto: int = 2) -> bytes:
        return asm.subprocess_run(str(self.path), proto=proto)

    def builtins_exec(self, proto: int = 2) -> bytes:
        return asm.builtins_exec(str(self.path), proto=proto)

    def body(self) -> bytes:
        """os.system("touch canary") as opcodes leaving the result on the stack (no PROTO/STOP)."""
        return asm.payload_body(str(self.path))

    def payloads(self) -> Dict[str, tuple]:
        """name -> (pickle bytes, the global the scan must name)."""
        return {
            "os.system": (self.os_system(), "os.system"),
            "posix.system": (self.os_system(module="posix"), "posix.system"),
            "builtins.open": (self.builtins_open(), "builtins.open"),
            "subprocess.run": (self.subprocess_run(), "subprocess.run"),
            "builtins.exec": (self.builtins_exec(), "builtins.exec"),
        }


@pytest.fixture
def canary(tmp_path: Path):
    """The canary path for this test; asserted absent after the test (and on demand)."""
    c = Canary(tmp_path / "canary")
    assert not c.path.exists()
    yield c
    c.assert_absent()


@pytest.fixture
def short_canary():
    """A canary with a short absolute path, for payloads that must fit a small field."""
    import shutil
    import tempfile

    base = "/tmp" if os.path.isdir("/tmp") else None
    d = tempfile.mkdtemp(prefix="ac", dir=base)
    c = Canary(Path(d) / "c")
    try:
        yield c
        c.assert_absent()
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """write(name, data) -> path of a new file in tmp_path."""

    def _write(name: str, data: bytes) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    return _write


# ---- tests that count what the whole host holds ----
#
# A few jail tests measure host-wide state: the tasks of uid nobody (RLIMIT_NPROC
# counts them all) or the jail folders in /tmp. Under pytest -n, another worker's
# jails would be counted too. Those tests are marked host_exclusive and hold an
# exclusive lock; every other test holds it shared, so they run alone.


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "host_exclusive: run with no other test of this session running")


@pytest.fixture(scope="session")
def _host_lock_fd(tmp_path_factory: pytest.TempPathFactory):
    # Workers of one xdist session share the parent of their base temp folders.
    path = tmp_path_factory.getbasetemp().parent / "aisbom-host.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    yield fd
    os.close(fd)


@pytest.fixture(autouse=True)
def _host_lock(request: pytest.FixtureRequest, _host_lock_fd: int):
    import fcntl

    exclusive = request.node.get_closest_marker("host_exclusive") is not None
    fcntl.flock(_host_lock_fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    try:
        yield
    finally:
        fcntl.flock(_host_lock_fd, fcntl.LOCK_UN)
