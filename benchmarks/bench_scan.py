"""Scan throughput, side by side in one run (issue 2).

Inputs: an opcode-dense plain pickle of tens of MB and a torch checkpoint of
20,000 tensors. Tools: aisbom's scan, pickletools.genops, CPython's C
pickle.loads (which runs the pickle: shown for scale only), picklescan
(installed from PyPI into its own venv under benchmarks/.peers), and a plain
read of the file. Targets: at least 3x faster than pickle.loads on the same
bytes, at least 100x faster than picklescan.

    python benchmarks/bench_scan.py            # writes benchmarks/results/scan.json
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import best_of, peer_python, save, scratch, table, time_in  # noqa: E402

import aisbom  # noqa: E402
from aisbom import _core  # noqa: E402


def dense_pickle(path: str, n: int = 1_500_000) -> None:
    """Small mixed values: one or two bytes of opcode per value, no big payloads."""
    obj = [(i, i * 0.5, str(i % 1000), None, True, [i, -i]) for i in range(n)]
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def checkpoint(path: str, tensors: int = 20_000) -> bool:
    try:
        import torch
    except ImportError:
        return False
    torch.manual_seed(0)  # the same file every run (random bytes can look like a pickle to picklescan)
    torch.save({f"layer{i}.weight": torch.randn(4) for i in range(tensors)}, path)
    return True


class _NoRun(pickle.Unpickler):
    """pickle.loads' own work, without importing or running anything."""

    def find_class(self, module, name):
        return lambda *a, **k: None

    def persistent_load(self, pid):
        return None


def genops_all(data: bytes) -> None:
    for _ in pickletools.genops(data):
        pass


def run() -> dict:
    folder = scratch()
    results: dict = {"python": sys.version.split()[0]}
    ps = peer_python("picklescan", "picklescan.scanner")
    ps_setup = "from picklescan.scanner import scan_file_path\n"

    dense = os.path.join(folder, "dense.pkl")
    dense_pickle(dense)
    size = os.path.getsize(dense)
    data = open(dense, "rb").read()
    rows = [
        ("read the file", best_of(lambda: open(dense, "rb").read()), ""),
        ("aisbom engine (_core.scan)", best_of(lambda: _core.scan(data)), "no policy pass"),
        ("aisbom.scan(path)", best_of(lambda: aisbom.scan(dense, hash=False)), "mmap + policy"),
        ("pickletools.genops", best_of(lambda: genops_all(data), 1), "opcodes only"),
        ("pickle.loads (C)", best_of(lambda: pickle.loads(data), 2), "runs the pickle"),
        ("picklescan", time_in(ps, ps_setup, f"scan_file_path({dense!r})", 1) if ps else None, "PyPI"),
    ]
    results["dense"] = {"size": size, "rows": table(f"opcode-dense pickle, {size / 1e6:.1f} MB", rows, size,
                                                      "aisbom.scan(path)")}

    ckpt = os.path.join(folder, "ckpt.pt")
    if checkpoint(ckpt):
        size = os.path.getsize(ckpt)
        with zipfile.ZipFile(ckpt) as z:
            pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
        rows = [
            ("read the file", best_of(lambda: open(ckpt, "rb").read()), ""),
            ("aisbom.scan(path)", best_of(lambda: aisbom.scan(ckpt, hash=False)), "all 20,006 members"),
            ("pickletools.genops on data.pkl", best_of(lambda: genops_all(pkl), 1), "data.pkl only"),
            ("pickle Unpickler on data.pkl (C)", best_of(lambda: _NoRun(io.BytesIO(pkl)).load(), 3),
             "no imports, data.pkl only"),
            ("picklescan", time_in(ps, ps_setup, f"scan_file_path({ckpt!r})", 1) if ps else None, "PyPI"),
        ]
        results["checkpoint"] = {"size": size, "rows": table(f"torch checkpoint, 20,000 tensors, {size / 1e6:.1f} MB",
                                                             rows, size, "aisbom.scan(path)")}
    print("\nwrote", save("scan", results))
    return results


if __name__ == "__main__":
    run()
