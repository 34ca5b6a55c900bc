"""Directory scans at scale, side by side in one run (issue 5, "Scale").

Generates a directory of model files (default 2,400: benign and malicious;
plain pickles, torch zip checkpoints, legacy torch files, numpy .npy/.npz,
joblib, compressed wrappers, a few non-model files), then times, in rounds
that alternate the tools so that a change in the machine's load hits all of
them alike:

  aisbom CLI       aisbom scan DIR --jobs 1 / --jobs 2      (a new process each time;
                   --format json -o /dev/null, and the text report once;
                   this checkout pip-installed into a venv of its own)
  aisbom API       walk.scan_paths([DIR], jobs=1 / 2)        (in this process, warm)
                   walk.scan_many([DIR], ProcessPoolExecutor(2))  (for comparison)
  picklescan       picklescan --path DIR                     (PyPI, own venv)
                   picklescan.scanner.scan_directory_path(DIR) (its API, in its venv)
  modelscan        modelscan -p DIR                          (PyPI, own venv)

Reports files per second (every file of the directory, whatever each tool
chose to open), the median of the rounds, the ratio of aisbom's rate to each
peer's, the machine's load average, and how many of the malicious files each
tool flagged. Target (issue 5): aisbom at least 20x picklescan's files/s.
Command-line tools run with their Python bytecode cached (in a scratch
folder), as after a pip install.

The malicious files are built from bytes; their payloads are inert (`true`,
`pass`, `0`) and nothing here ever loads them.

    python benchmarks/bench_many.py                 # writes benchmarks/results/many.json
    python benchmarks/bench_many.py --rounds 3 --files 2000
    python benchmarks/bench_many.py --profile       # where aisbom's time goes, too
"""
from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import pickle
import random
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from typing import Callable, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import peer_python, save, scratch  # noqa: E402

from aisbom import walk  # noqa: E402

# ------------------------------------------------------------------ inert malicious pickles, from bytes


def _u32(n: int) -> bytes:
    return struct.pack("<I", n)


def _binunicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + _u32(len(b)) + b


def _short(s: str) -> bytes:  # SHORT_BINUNICODE (protocol 4)
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def reduce_p2(module: str, name: str, arg: str) -> bytes:
    """module.name(arg) with GLOBAL + REDUCE, protocol 2."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + _binunicode(arg) + b"\x85R."


def reduce_p4(module: str, name: str, arg: str) -> bytes:
    """module.name(arg) with STACK_GLOBAL + REDUCE, protocol 4."""
    return b"\x80\x04" + _short(module) + _short(name) + b"\x93" + _short(arg) + b"\x85R."


def reduce_p0(module: str, name: str, arg: str) -> bytes:
    """module.name(arg), protocol 0 (text opcodes)."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def subprocess_list(arg: str) -> bytes:
    """subprocess.run([arg])."""
    return b"\x80\x02csubprocess\nrun\n]" + _binunicode(arg) + b"a\x85R."


def hidden_in_dict(module: str, name: str, arg: str) -> bytes:
    """{'config': module.name(arg), 'lr': 0.1}: the call sits inside benign-looking data."""
    call = b"c" + f"{module}\n{name}\n".encode() + _binunicode(arg) + b"\x85R"
    return (b"\x80\x02}" + _binunicode("config") + call + b"s" + _binunicode("lr")
            + b"G" + struct.pack(">d", 0.1) + b"s.")


def second_pickle(module: str, name: str, arg: str) -> bytes:
    """A benign pickle followed by a malicious one in the same file."""
    return pickle.dumps({"weights": [0.0] * 8}, protocol=2) + reduce_p2(module, name, arg)


INERT = [("os", "system", "true"), ("posix", "system", "true"), ("builtins", "exec", "pass"),
         ("builtins", "eval", "0"), ("nt", "system", "true"), ("subprocess", "check_output", "true")]


def malicious_pickle(rng: random.Random) -> bytes:
    module, name, arg = rng.choice(INERT)
    make = rng.choice([reduce_p2, reduce_p4, reduce_p0, hidden_in_dict, second_pickle])
    if rng.random() < 0.1:
        return subprocess_list("true")
    return make(module, name, arg)


# ------------------------------------------------------------------ the corpus


def _npy_object(payload: bytes) -> bytes:
    """A .npy file of dtype object whose array data is the given pickle."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def _torch_bytes(obj, legacy: bool) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _swap_data_pkl(zip_bytes: bytes, payload: bytes) -> bytes:
    """A torch zip checkpoint whose data.pkl is replaced by `payload`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = payload if info.filename.endswith("/data.pkl") else zin.read(info)
            zout.writestr(info.filename, data)
    return out.getvalue()


def _state_dict(rng: random.Random):
    import torch

    layers = rng.randint(1, 6)
    sd = {}
    for i in range(layers):
        n = rng.choice([4, 16, 64, 256])
        sd[f"layer{i}.weight"] = torch.randn(n, generator=torch.Generator().manual_seed(rng.randrange(1 << 30)))
        sd[f"layer{i}.bias"] = torch.zeros(n // 4 or 1)
    return sd


def _benign_pickle(rng: random.Random) -> bytes:
    n = rng.choice([4, 32, 256, 2048, 16384])
    obj = {
        "name": f"run-{rng.randrange(10**6)}",
        "lr": rng.random(),
        "steps": list(range(n)),
        "hist": [(i, i * 0.5, str(i)) for i in range(n // 8)],
        "tags": {"a", "b"},
        "blob": bytes(rng.choice([0, 64, 4096])),
    }
    return pickle.dumps(obj, protocol=rng.choice([2, 3, 4, 5]))


def generate(folder: str, total: int, seed: int = 5) -> Dict[str, List[str]]:
    """Write `total` files under folder; returns {"benign": [...], "malicious": [...], "other": [...]}."""
    import numpy as np

    try:
        import joblib
    except ImportError:
        joblib = None
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
    rng = random.Random(seed)
    # The share of each kind (normalised below); malicious ~25%.
    kinds: List[Tuple[str, float]] = [
        ("pickle", 20), ("torch", 16 if have_torch else 0), ("torch-legacy", 5 if have_torch else 0),
        ("npy", 12), ("npz", 4), ("npy-object", 2), ("joblib", 8 if joblib else 0), ("pickle-gz", 2),
        ("other", 3),
        ("mal-pickle", 12), ("mal-torch", 7 if have_torch else 0), ("mal-torch-legacy", 1 if have_torch else 0),
        ("mal-npy", 2), ("mal-joblib-zlib", 2), ("mal-gz", 1),
    ]
    weight = sum(w for _, w in kinds)
    plan: List[str] = []
    for kind, w in kinds:
        plan += [kind] * round(total * w / weight)
    while len(plan) < total:
        plan.append("pickle")
    plan = plan[:total]
    rng.shuffle(plan)
    out: Dict[str, List[str]] = {"benign": [], "malicious": [], "other": []}
    ext = {"pickle": ".pkl", "torch": ".pt", "torch-legacy": ".pth", "npy": ".npy", "npz": ".npz",
           "npy-object": ".npy", "joblib": ".joblib", "pickle-gz": ".pkl.gz", "other": ".json",
           "mal-pickle": ".pkl", "mal-torch": ".bin", "mal-torch-legacy": ".ckpt", "mal-npy": ".npy",
           "mal-joblib-zlib": ".joblib", "mal-gz": ".pkl.gz"}
    for i, kind in enumerate(plan):
        d = os.path.join(folder, f"org{i % 12:02d}", f"repo{i % 97:02d}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"f{i:05d}-{kind}{ext[kind]}")
        if kind == "pickle":
            data = _benign_pickle(rng)
        elif kind == "torch":
            data = _torch_bytes(_state_dict(rng), legacy=False)
        elif kind == "torch-legacy":
            data = _torch_bytes(_state_dict(rng), legacy=True)
        elif kind == "npy":
            buf = io.BytesIO()
            np.save(buf, np.arange(rng.choice([8, 256, 4096]), dtype=rng.choice([np.float32, np.int64])))
            data = buf.getvalue()
        elif kind == "npz":
            buf = io.BytesIO()
            np.savez(buf, w=np.ones(rng.choice([8, 512])), b=np.zeros(4))
            data = buf.getvalue()
        elif kind == "npy-object":
            buf = io.BytesIO()
            arr = np.empty(3, dtype=object)
            arr[:] = [[1, 2], {"k": "v"}, "text"]
            np.save(buf, arr, allow_pickle=True)
            data = buf.getvalue()
        elif kind == "joblib":
            buf = io.BytesIO()
            joblib.dump({"coef": np.arange(rng.choice([4, 64, 1024]), dtype=np.float64), "meta": {"v": 1}}, buf)
            data = buf.getvalue()
        elif kind == "pickle-gz":
            import gzip

            data = gzip.compress(_benign_pickle(rng))
        elif kind == "other":
            data = json.dumps({"config": {"hidden": rng.randrange(1000)}}).encode()
        elif kind == "mal-pickle":
            data = malicious_pickle(rng)
        elif kind == "mal-torch":
            data = _swap_data_pkl(_torch_bytes(_state_dict(rng), legacy=False), malicious_pickle(rng))
        elif kind == "mal-torch-legacy":
            # The legacy stream's magic, protocol and sys_info pickles, then a payload as the data pickle.
            data = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
                    + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
                    + reduce_p2("os", "system", "true") + pickle.dumps([], protocol=2))
        elif kind == "mal-npy":
            data = _npy_object(reduce_p2("os", "system", "true"))
        elif kind == "mal-joblib-zlib":
            data = zlib.compress(malicious_pickle(rng), 3)
        elif kind == "mal-gz":
            import gzip

            data = gzip.compress(malicious_pickle(rng))
        else:  # pragma: no cover
            raise AssertionError(kind)
        with open(path, "wb") as f:
            f.write(data)
        out["malicious" if kind.startswith("mal-") else "other" if kind == "other" else "benign"].append(path)
    return out


# ------------------------------------------------------------------ measuring


def _load() -> float:
    return os.getloadavg()[0]


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_jiffies() -> Optional[Tuple[int, int]]:
    """(busy at normal priority, busy at nice > 0) CPU ticks of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + system + irq + softirq + steal, nice


class Timer:
    """Wall times of one way of scanning the directory, with the CPU time it used."""

    def __init__(self, name: str, run: Callable[[], object], note: str = "", cpu_known: bool = True) -> None:
        # cpu_known=False: the work runs in long-lived children whose CPU time is
        # not reported until they exit (a process pool, a peer's API loop).
        self.name, self.run, self.note, self.cpu_known = name, run, note, cpu_known
        self.walls: List[float] = []
        self.cpus: List[float] = []
        self.loads: List[float] = []
        self.others: List[float] = []  # CPUs used by everything else on the machine (normal priority)
        self.niced: List[float] = []  # CPUs used by niced processes (they yield to the benchmark)
        self.last: object = None

    def once(self) -> None:
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.loads.append(_load())
        j0 = _cpu_jiffies()
        t = time.perf_counter()
        self.last = self.run()
        wall = time.perf_counter() - t
        j1 = _cpu_jiffies()
        self.walls.append(wall)
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
               + c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
        self.cpus.append(cpu)
        if j0 and j1:
            busy = (j1[0] - j0[0]) / _HZ / wall
            # Our own CPU is unknown for work in long-lived children: then count
            # the machine's normal-priority busy CPUs minus one worker's worth at most.
            own = cpu / wall if self.cpu_known else min(busy, 2.0)
            self.others.append(max(0.0, busy - own))
            self.niced.append((j1[1] - j0[1]) / _HZ / wall)


# Command-line tools run with their bytecode cached, as after a pip install.
# (An editable install under PYTHONDONTWRITEBYTECODE=1 would otherwise
# recompile aisbom's modules at every start, while the peers' venvs hold .pyc
# files.) The cache lives in a scratch folder, never next to the sources.
_ENV = dict(os.environ)
_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
_ENV["PYTHONPYCACHEPREFIX"] = os.path.join(scratch(), "pycache")


def _cli(argv: Sequence[str], timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=_ENV)


_INSTALLED: List[str] = []  # [argv0, how] once built


def _aisbom_argv() -> List[str]:
    """The aisbom CLI as users get it: a regular `pip install` of this checkout
    into a venv of its own, like the peers' PyPI installs. (A development
    venv's editable install puts an import hook in front of every start.)
    Built once per run, under the scratch folder removed at the end; if the
    build fails, this interpreter's aisbom, and the results say so."""
    if not _INSTALLED:
        work = os.path.dirname(_ENV["PYTHONPYCACHEPREFIX"])
        src, venv = os.path.join(work, "aisbom-src"), os.path.join(work, "aisbom-venv")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        junk = shutil.ignore_patterns(".git", ".peers", ".ci-venv", "venv*", "build", "dist", "*.egg-info",
                                      "__pycache__", "*.so", "aisbom-jail", ".pytest_cache", ".mypy_cache", "out")
        exe = os.path.join(venv, "bin", "aisbom")
        try:
            print("  (installing this checkout with pip into a venv of its own, for the CLI rows)")
            shutil.copytree(root, src, ignore=junk)
            subprocess.run([sys.executable, "-m", "venv", venv], check=True)
            subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "--no-deps", src],
                           check=True, capture_output=True)
            _INSTALLED[:] = [exe, "pip install . into its own venv"]
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"  (that failed: {exc}; the CLI rows use this interpreter's aisbom)")
            dev = shutil.which("aisbom", path=os.path.dirname(sys.executable))
            _INSTALLED[:] = [dev or sys.executable, "this interpreter's install"]
    argv0 = _INSTALLED[0]
    return [argv0] if argv0 != sys.executable else [sys.executable, "-m", "aisbom"]


def _peer_exe(package: str, module: str, script: str) -> Optional[Tuple[str, str]]:
    py = peer_python(package, module)
    if not py:
        return None
    # picklescan imports numpy only when it meets a .npy/.npz file, and crashes
    # without it; a user scanning numpy files has numpy installed.
    if subprocess.run([py, "-c", "import numpy"], capture_output=True).returncode != 0:
        print(f"  (installing numpy into {package}'s venv: it needs it for .npy/.npz files)")
        subprocess.run([py, "-m", "pip", "install", "-q", "numpy"], capture_output=True)
    exe = os.path.join(os.path.dirname(py), script)
    return (py, exe) if os.path.exists(exe) else None


def _peer_api_loop(py: str, code_setup: str, stmt: str) -> Callable[[], object]:
    """A long-lived peer interpreter timing `stmt` on request: its API without its start-up."""
    proc = subprocess.Popen(
        [py, "-u", "-c", code_setup + "\nimport sys, time\nfor line in sys.stdin:\n"
         "    t = time.perf_counter()\n    " + stmt + "\n    print(time.perf_counter() - t, flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def run() -> float:
        assert proc.stdin and proc.stdout
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer API loop died (run {py} -c '{code_setup}; {stmt}' to see why)")
        return float(line)

    run.proc = proc  # type: ignore[attr-defined]
    return run


def _flagged_picklescan(out: str, files: Sequence[str]) -> int:
    hits = set()
    for line in out.splitlines():
        m = re.match(r"^(.*?): (dangerous|suspicious)? ?import", line)
        if m:
            hits.add(m.group(1).split(":", 1)[0])
    return sum(1 for f in files if f in hits)


def _flagged_modelscan(py: str, exe: str, folder: str, files: Sequence[str]) -> Optional[int]:
    report = os.path.join(scratch(), "modelscan.json")
    _cli([exe, "-p", folder, "-r", "json", "-o", report, "-l", "ERROR"])
    try:
        with open(report) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    hits = set()
    for issue in doc.get("issues", []):
        src = str(issue.get("source", ""))
        hits.add(src if os.path.isabs(src) else os.path.join(folder, src))
    return sum(1 for f in files if f in hits or os.path.relpath(f, folder) in hits)


def profile_aisbom(folder: str, files: Sequence[str]) -> dict:
    """Where aisbom's time per file goes (one process, one thread)."""
    from aisbom import _core
    from aisbom.scanning import scan

    every = sorted(files)
    size = sum(os.path.getsize(f) for f in every)

    def t(fn: Callable[[], object], repeat: int = 5) -> float:
        times = []
        for _ in range(repeat):
            s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - s)
        return statistics.median(times)

    datas = [open(f, "rb").read() for f in every]
    rows = {
        "walk only (iter_files)": t(lambda: list(walk.iter_files([folder]))),
        "open+read every file": t(lambda: [open(f, "rb").read() for f in every]),
        "_core.scan on bytes in memory (engine only)": t(lambda: [_core.scan(d) for d in datas]),
        "aisbom.scan(path, hash=False)": t(lambda: [scan(f, hash=False) for f in every]),
        "aisbom.scan(path) (with sha256)": t(lambda: [scan(f) for f in every]),
        "scan_paths(jobs=1)": t(lambda: list(walk.scan_paths([folder], jobs=1, progress=False))),
        "scan_paths(jobs=2) (threads)": t(lambda: list(walk.scan_paths([folder], jobs=2, progress=False))),
    }
    from aisbom.cli import render_json, render_text

    reports = list(walk.scan_paths([folder], jobs=1, progress=False))
    rows["render the JSON report (json.dump, indent=2)"] = t(lambda: render_json(reports, io.StringIO()))
    rows["render the text report"] = t(lambda: render_text(reports, io.StringIO()))
    start = t(lambda: _cli(_aisbom_argv() + ["--version"]), 5)
    empty = scratch()
    rows["CLI start-up: aisbom --version"] = start
    rows["CLI on an empty directory (--jobs 2)"] = t(lambda: _cli(_aisbom_argv() + ["scan", "-q", "--jobs", "2", empty]), 5)
    print(f"\nwhere aisbom's time goes ({len(every)} files, {size / 1e6:.1f} MB; median of 5)")
    for name, secs in rows.items():
        print(f"  {name:<48} {secs * 1000:9.1f} ms  {secs / len(every) * 1e6:8.1f} us/file")

    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    list(walk.scan_paths([folder], jobs=1, progress=False))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
    print("\ncProfile of scan_paths(jobs=1), by own time:")
    print("\n".join(buf.getvalue().splitlines()[:40]))
    return {"files": len(every), "bytes": size, "seconds": rows, "cprofile_top": buf.getvalue()}


def run(total: int, rounds: int, do_profile: bool, keep: bool) -> dict:
    import platform

    folder = os.path.join(scratch(), "models")
    t = time.perf_counter()
    corpus = generate(folder, total)
    every = sorted(p for p, _ in walk.iter_files([folder]))
    n = len(every)
    size = sum(os.path.getsize(p) for p in every)
    print(f"generated {n} files ({len(corpus['benign'])} benign, {len(corpus['malicious'])} malicious, "
          f"{len(corpus['other'])} other; {size / 1e6:.1f} MB) in {time.perf_counter() - t:.1f}s under {folder}")

    # What aisbom says about them (checks the corpus, and the peers' detections below are compared to it).
    reports = {r.path: r for r in walk.scan_paths([folder], progress=False)}
    verdicts: Dict[str, int] = {}
    for r in reports.values():
        verdicts[r.verdict.value] = verdicts.get(r.verdict.value, 0) + 1
    aisbom_flagged = sum(1 for p in corpus["malicious"] if reports[p].verdict.value == "malicious")
    benign_not_clean = sum(1 for p in corpus["benign"] if reports[p].verdict.value != "clean")
    print(f"aisbom verdicts: {verdicts}; malicious files flagged malicious: {aisbom_flagged}/{len(corpus['malicious'])}")

    aisbom_cli = _aisbom_argv() + ["scan", "-q", "--format", "json", "-o", os.devnull]
    timers = [
        Timer("aisbom CLI --jobs 1", lambda: _cli(aisbom_cli + ["--jobs", "1", folder]), "new process; pip install ."),
        Timer("aisbom CLI --jobs 2", lambda: _cli(aisbom_cli + ["--jobs", "2", folder]), "new process; pip install ."),
        Timer("aisbom CLI --jobs 1, text report", lambda: _cli(_aisbom_argv() + ["scan", "-q", "--jobs", "1", folder]),
              "new process; the default format"),
        Timer("aisbom API scan_paths jobs=1", lambda: list(walk.scan_paths([folder], jobs=1, progress=False)),
              "in-process"),
        Timer("aisbom API scan_paths jobs=2", lambda: list(walk.scan_paths([folder], jobs=2, progress=False)),
              "in-process, threads"),
    ]
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=2)
    list(pool.map(abs, range(4)))  # workers started before timing
    timers.append(Timer("aisbom API scan_many, 2 processes", lambda: list(walk.scan_many([folder], pool)),
                        "ProcessPoolExecutor(2), warm", cpu_known=False))
    ps = _peer_exe("picklescan", "picklescan.scanner", "picklescan")
    ps_loop = None
    if ps:
        timers.append(Timer("picklescan --path DIR", lambda: _cli([ps[1], "--path", folder]), "PyPI, new process"))
        ps_loop = _peer_api_loop(ps[0], "from picklescan.scanner import scan_directory_path",
                                 f"scan_directory_path({folder!r})")
        timers.append(Timer("picklescan API scan_directory_path", ps_loop, "in its venv, warm", cpu_known=False))
    else:
        print("picklescan could not be installed: its rows are skipped")
    ms = _peer_exe("modelscan", "modelscan", "modelscan")
    if ms:
        timers.append(Timer("modelscan -p DIR", lambda: _cli([ms[1], "-p", folder]), "PyPI, new process"))
    else:
        print("modelscan could not be installed: its row is skipped")

    # Warm-up (page cache, peers' bytecode), then rounds in alternating order.
    for tm in timers:
        tm.run()
    load_before = os.getloadavg()
    for r in range(rounds):
        order = timers if r % 2 == 0 else list(reversed(timers))
        for tm in order:
            tm.once()
        print(f"  round {r + 1}/{rounds} done (load {_load():.2f})", flush=True)
    load_after = os.getloadavg()
    pool.shutdown()

    if ps_loop is not None:
        ps_loop.proc.stdin.close()  # type: ignore[attr-defined]
        ps_loop.proc.wait(30)  # type: ignore[attr-defined]

    detections: Dict[str, Optional[int]] = {"aisbom": aisbom_flagged}
    if ps:
        out = next(tm for tm in timers if tm.name.startswith("picklescan --path")).last
        detections["picklescan"] = _flagged_picklescan(out.stdout, corpus["malicious"])  # type: ignore[union-attr]
    if ms:
        detections["modelscan"] = _flagged_modelscan(ms[0], ms[1], folder, corpus["malicious"])

    ref_names = {"picklescan": "picklescan --path DIR", "picklescan API": "picklescan API scan_directory_path",
                 "modelscan": "modelscan -p DIR"}
    med = {tm.name: statistics.median(tm.walls) for tm in timers}
    others = [x for tm in timers if tm.cpu_known for x in tm.others]
    niced = [x for tm in timers for x in tm.niced]
    print(f"\n{n} files, {size / 1e6:.1f} MB; median of {rounds} rounds; load average (1 min) "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs")
    if others:
        print(f"other programs during the timed runs (from /proc/stat): median {statistics.median(others):.2f} CPUs "
              f"busy at normal priority (max {max(others):.2f}), {statistics.median(niced):.2f} CPUs at nice > 0")
    head = f"  {'':<38} {'median s':>9} {'min s':>8} {'files/s':>9} {'CPU/wall':>8} {'load':>5}"
    for ref in ref_names:
        if ref_names[ref] in med:
            head += f" {'x ' + ref:>16}"
    print(head)
    rows = []
    for tm in timers:
        secs = med[tm.name]
        cpu = statistics.median(c / w for c, w in zip(tm.cpus, tm.walls)) if tm.cpu_known else None
        cpu_text = f"{cpu:8.2f}" if cpu is not None else f"{'n/a':>8}"
        line = (f"  {tm.name:<38} {secs:9.3f} {min(tm.walls):8.3f} {n / secs:9.0f} {cpu_text} "
                f"{statistics.median(tm.loads):5.2f}")
        ratios = {}
        for ref, ref_name in ref_names.items():
            if ref_name in med:
                ratios[ref] = med[ref_name] / secs  # how many times the reference's time
                line += f" {ratios[ref]:15.1f}x"
        print(line + f"  {tm.note}")
        rows.append({"tool": tm.name, "median_seconds": secs, "min_seconds": min(tm.walls), "walls": tm.walls,
                     "files_per_s": n / secs, "cpu_per_wall": cpu, "load": tm.loads, "other_cpus": tm.others,
                     "ratios": ratios,
                     "note": tm.note})
    print("  (the x columns: that row's files/s divided by the reference's files/s)")
    print(f"\nmalicious files flagged (of {len(corpus['malicious'])}): "
          + ", ".join(f"{k} {'n/a' if v is None else v}" for k, v in detections.items()))
    target = None
    if "picklescan --path DIR" in med:
        best_cli = min(med["aisbom CLI --jobs 1"], med["aisbom CLI --jobs 2"])
        target = med["picklescan --path DIR"] / best_cli
        print(f"target (issue 5): aisbom CLI >= 20x picklescan CLI files/s: measured {target:.1f}x "
              f"({'met' if target >= 20 else 'MISSED'})")

    results: dict = {
        "python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
        "files": n, "bytes": size, "corpus": {k: len(v) for k, v in corpus.items()},
        "aisbom_verdicts": verdicts, "benign_not_clean": benign_not_clean, "rounds": rounds,
        "load_before": load_before, "load_after": load_after,
        "other_cpus_normal_priority": {"median": statistics.median(others), "max": max(others)} if others else None,
        "other_cpus_niced_median": statistics.median(niced) if niced else None,
        "rows": rows, "detections": detections,
        "target_ratio_vs_picklescan_cli": target, "bytecode": "cached (PYTHONPYCACHEPREFIX)",
        "aisbom_cli": _INSTALLED[1] if _INSTALLED else None,
    }
    if do_profile:
        results["profile"] = profile_aisbom(folder, every)
    if rounds >= 3:
        print("\nwrote", save("many", results))
    else:  # a quick look does not replace the recorded run
        print(f"\n(not saved: results/many.json keeps runs of 3 rounds or more, this was {rounds})")
    shutil.rmtree(os.path.dirname(_ENV["PYTHONPYCACHEPREFIX"]), ignore_errors=True)
    if not keep:
        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    else:
        print("kept", folder)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=2400, help="files to generate (default 2400)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per tool (default 5; medians)")
    ap.add_argument("--profile", action="store_true", help="also break down where aisbom's time goes")
    ap.add_argument("--keep", action="store_true", help="keep the generated directory")
    args = ap.parse_args()
    run(args.files, args.rounds, args.profile, args.keep)


if __name__ == "__main__":
    main()
