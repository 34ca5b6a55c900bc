"""The C engine under the compiler's eyes: every source builds without a
warning under -Wall -Wextra, and the suite passes against a copy of the
package whose _core is built with AddressSanitizer and UndefinedBehaviorSanitizer.

The sanitized run covers every test that runs in this process's kind of
environment; the jail's escape suite and the sandboxed loads are left out,
because their children run under the jail's memory limit, which ASan's
shadow-memory reservation cannot live with. csrc/fuzz/ covers the jail-free
engine with libFuzzer under the same sanitizers (docs/fuzzing.md).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
INNER = "AISBOM_SANITIZED_RUN"  # set in the inner run, so that it does not recurse

pytestmark = pytest.mark.skipif(bool(os.environ.get(INNER)), reason="already inside the sanitized run")


def _gcc() -> str:
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


def _runtime(cc: str, name: str) -> str:
    path = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        pytest.skip(f"{name} is not installed for {cc}")
    return path


@pytest.mark.parametrize("source", sorted(p.name for p in CSRC.glob("*.c")))
def test_every_source_compiles_without_a_warning(source):
    cc = _gcc()
    cmd = [cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{CSRC}",
           f"-I{sysconfig.get_paths()['include']}", str(CSRC / source)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_suite_passes_under_asan_and_ubsan(tmp_path):
    cc = _gcc()
    preload = [_runtime(cc, "libasan.so"), _runtime(cc, "libstdc++.so.6")]  # torch throws C++ exceptions
    lib, build = tmp_path / "lib", tmp_path / "build"
    env = dict(os.environ, AISBOM_SANITIZE="address,undefined", AISBOM_WERROR="1")
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(lib),
                            "--build-temp", str(build)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    # The package's Python files beside the sanitized _core, imported ahead of the checkout.
    shutil.copytree(ROOT / "aisbom", lib / "aisbom", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "aisbom-jail"))

    env = dict(os.environ, PYTHONPATH=str(lib), LD_PRELOAD=" ".join(preload), **{INNER: "1"},
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",  # CPython's own allocations are not leaks
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    env.pop("PYTEST_ADDOPTS", None)
    where = subprocess.run([sys.executable, "-c", "import aisbom._core as c; print(c.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(lib)), where.stderr[-2000:]

    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests"),
            "--ignore", str(ROOT / "tests" / "test_jail_escape.py"),
            "--ignore", str(ROOT / "tests" / "test_sandboxed_load.py"),
            "--ignore", str(Path(__file__))]
    try:
        import xdist  # noqa: F401

        args += ["-n", "2"]
    except ImportError:
        pass
    # From tmp_path, so that the checkout's own aisbom/ is not on sys.path ahead of lib.
    run = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    report = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, report
    assert "AddressSanitizer" not in run.stderr and "runtime error" not in run.stderr, report
    assert " passed" in run.stdout.splitlines()[-1], report
