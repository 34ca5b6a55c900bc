"""Spawn-to-exit of `python -c pass`: aisbom's jail vs a plain subprocess vs bubblewrap.

    python benchmarks/bench_jail.py [--runs N] [--json]

Runs are interleaved (one of each per round, in rotating order) so that machine
load hits every column alike; the table shows medians and the 90th percentile.
Columns:
  plain subprocess   subprocess.run([python, "-c", "pass"])
  aisbom jail (API)  aisbom.jail.run(...): path discovery, posix_spawn, status pipe
  aisbom-jail only   the helper started directly with the argv the API builds
  bubblewrap         bwrap with the same namespaces, binds, /proc, /tmp, /dev nodes
                     and uid (no seccomp/Landlock: bwrap takes only a compiled BPF
                     blob and has no Landlock); skipped when bwrap is not installed
Target (issue 4): the jail within 20 ms of the plain subprocess.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import save  # noqa: E402

from aisbom import jail  # noqa: E402

PY = sys.executable
COMMAND = [PY, "-c", "pass"]
TARGET_MS = 20.0


def helper_argv(status_w: int, cwd: str) -> List[str]:
    exe = os.path.abspath(PY)
    return jail._build_helper_argv(
        jail.helper_path(), exe, COMMAND, ro_paths=[], rw_paths=[], cwd=cwd, timeout=None,
        memory=None, nproc=None, nofile=None, fsize=None, tmp_size=None, min_level="full",
        status_fd=status_w, pass_fds=[], system_paths=True,
    )


def bwrap_argv(bwrap: str, cwd: str) -> List[str]:
    """The jail's policy, spelled for bubblewrap (binds taken from the jail's argv)."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
            "--tmpfs", "/", "--tmpfs", "/tmp", "--proc", "/proc", "--dir", "/dev"]
    jail_args = helper_argv(99, cwd)
    i = 0
    while i < len(jail_args):
        opt = jail_args[i]
        if opt == "--":
            break
        if opt in ("--ro", "--ro-try"):
            path = jail_args[i + 1]
            args += ["--ro-bind-try" if opt == "--ro-try" else "--ro-bind", path, path]
            i += 2
        elif opt == "--symlink":
            path = jail_args[i + 1]
            args += ["--symlink", os.readlink(path), path]
            i += 2
        elif opt in ("--status-fd", "--parent-pid", "--min-level", "--exec", "--chdir"):
            i += 2
        else:
            i += 1
    for node in ("/dev/null", "/dev/zero", "/dev/urandom"):
        args += ["--dev-bind", node, node]
    args += ["--remount-ro", "/", "--chdir", cwd, "--hostname", "aisbom-jail"]
    if os.geteuid() == 0:
        args += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return args + ["--"] + COMMAND


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="rounds (default 40)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("bench_jail: the jail is Linux-only", file=sys.stderr)
        return 2
    cwd = os.getcwd()

    def plain() -> None:
        subprocess.run(COMMAND, check=True)

    def jail_api() -> None:
        jail.run(COMMAND).check()

    status_r, status_w = os.pipe()
    direct_argv = helper_argv(status_w, cwd)

    def jail_helper() -> None:
        pid = os.posix_spawn(direct_argv[0], direct_argv, os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, status_w, status_w)])
        _, status = os.waitpid(pid, 0)
        os.read(status_r, 65536)
        if status != 0:
            raise RuntimeError(f"aisbom-jail failed: {status}")

    columns: Dict[str, Callable[[], None]] = {
        "plain subprocess": plain,
        "aisbom jail (API)": jail_api,
        "aisbom-jail only": jail_helper,
    }
    bwrap = shutil.which("bwrap")
    bwrap_note: Optional[str] = None
    if bwrap:
        b_argv = bwrap_argv(bwrap, cwd)
        probe = subprocess.run(b_argv, capture_output=True, text=True)
        if probe.returncode == 0:
            def bubblewrap() -> None:
                subprocess.run(b_argv, check=True)

            columns["bubblewrap"] = bubblewrap
        else:
            bwrap_note = f"bubblewrap skipped: it failed here ({probe.stderr.strip()})"
    else:
        bwrap_note = "bubblewrap skipped: bwrap is not installed (apt-get install bubblewrap)"

    level = jail.run(COMMAND).level
    for fn in columns.values():  # warm caches
        fn()
    samples: Dict[str, List[float]] = {name: [] for name in columns}
    names = list(columns)
    for r in range(args.runs):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            samples[name].append(timed(columns[name]))

    med = {n: statistics.median(s) for n, s in samples.items()}
    p90 = {n: sorted(s)[int(0.9 * (len(s) - 1))] for n, s in samples.items()}
    base = med["plain subprocess"]
    overhead = med["aisbom jail (API)"] - base
    results = {"runs": args.runs, "level": level, "uid": os.geteuid(), "cpus": os.cpu_count(),
               "platform": platform.platform(), "median_ms": med, "p90_ms": p90,
               "jail_overhead_ms": overhead, "target_ms": TARGET_MS, "bubblewrap": bwrap_note or "measured"}
    written = save("jail", results)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"spawn-to-exit of `python -c pass`, {args.runs} interleaved runs each")
    print(f"machine: Linux {platform.release()}, {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; "
          f"jail level: {level}; uid {os.geteuid()}")
    print()
    print(f"{'':20} {'median ms':>10} {'p90 ms':>8} {'vs plain':>10} {'overhead':>10}")
    for n in columns:
        print(f"{n:20} {med[n]:10.1f} {p90[n]:8.1f} {med[n] / base:9.2f}x {med[n] - base:+9.1f}")
    if bwrap_note:
        print(bwrap_note)
    if "bubblewrap" in med:
        print(f"\njail (API) / bubblewrap: {med['aisbom jail (API)'] / med['bubblewrap']:.2f}x")
    verdict = "met" if overhead <= TARGET_MS else "MISSED"
    print(f"target: jail within {TARGET_MS:.0f} ms of the plain subprocess: {verdict} "
          f"({overhead:+.1f} ms)")
    print("\nwrote", written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
