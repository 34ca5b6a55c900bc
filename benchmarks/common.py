"""Shared helpers for the benchmarks: timing, tables, peer tools in their own venvs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, ".peers")  # one venv per peer tool, created on first use


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` runs, in seconds: the least disturbed by the machine."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peer_python(package: str, module: str) -> Optional[str]:
    """The python of a venv holding `package` from PyPI (created once), or None."""
    venv = os.path.join(PEERS, package)
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        try:
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            subprocess.run([py, "-m", "pip", "install", "-q", package], check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"  ({package} unavailable: {exc})")
            return None
    ok = subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode == 0
    return py if ok else None


def time_in(py: str, setup: str, stmt: str, repeat: int = 3, timeout: float = 3600) -> Optional[float]:
    """Best-of time of `stmt` run by another interpreter (after `setup`, untimed)."""
    code = (
        "import time\n" + setup + "\n"
        "best = None\n"
        f"for _ in range({repeat}):\n"
        "    t = time.perf_counter()\n"
        f"    {stmt}\n"
        "    d = time.perf_counter() - t\n"
        "    best = d if best is None else min(best, d)\n"
        "print(best)\n"
    )
    p = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        print(p.stderr[-2000:])
        return None
    return float(p.stdout.strip().splitlines()[-1])


def table(title: str, rows: Sequence[Tuple[str, Optional[float], str]], size: Optional[int] = None,
          baseline: Optional[str] = None) -> List[dict]:
    """Print rows of (tool, seconds, note), with MB/s and the ratio to `baseline`."""
    print(f"\n{title}")
    base = next((s for name, s, _ in rows if name == baseline), None)
    out = []
    for name, secs, note in rows:
        if secs is None:
            print(f"  {name:<44} {'n/a':>10}   {note}")
            continue
        rate = f"{size / secs / 1e6:9.1f} MB/s" if size else ""
        ratio = f"{secs / base:8.2f}x aisbom" if base else ""
        print(f"  {name:<44} {secs * 1000:9.1f} ms {rate} {ratio}  {note}")
        out.append({"tool": name, "seconds": secs, "mb_per_s": size / secs / 1e6 if size else None, "note": note})
    return out


def save(name: str, results: dict) -> str:
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"{name}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    return path


def scratch() -> str:
    return tempfile.mkdtemp(prefix="aisbom-bench-")
