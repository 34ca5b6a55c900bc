"""The package type-checks: aisbom ships py.typed (and a stub for the C
engine, aisbom/_core.pyi), so its annotations are what users' type checkers
see for safe_load, scan, guard and the reports.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The sanitized rerun (tests/test_sanitizers.py) swaps in another _core only; the
# sources mypy reads are the same, so checking them again there costs ~15 s for nothing.
pytestmark = pytest.mark.skipif(bool(os.environ.get("AISBOM_SANITIZED_RUN")),
                                reason="type-checked in the outer run already")


def test_the_package_passes_mypy_strict(tmp_path):
    """mypy --strict over aisbom/, with one exemption: --untyped-calls-exclude=torch.

    torch ships the functions aisbom must call without annotations
    (torch._utils._rebuild_*, TypedStorage(), serialization._get_restore_location,
    sparse.check_sparse_tensor_invariants ...), so --strict's
    disallow_untyped_calls would flag every call into them; the exemption
    covers calls into torch only, and every other --strict check applies.
    The cache goes to tmp_path: a cold run, nothing written into the checkout.
    """
    pytest.importorskip("mypy")
    cmd = [sys.executable, "-m", "mypy", "--strict", "--untyped-calls-exclude=torch",
           "--cache-dir", str(tmp_path / "mypy_cache"), "aisbom"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(cmd[1:])} exited with {run.returncode}:\n{run.stdout}{run.stderr}"
